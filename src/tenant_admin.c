/*-------------------------------------------------------------------------
 *
 * tenant_admin.c
 *	  The operator's functions for tenants: create_tenant(),
 *	  bind_role_to_tenant(), unbind_role_from_tenant().
 *
 * They are the only writers of eventsource.tenants and tenant_roles: the
 * guard trigger (guard.c) refuses every other INSERT, UPDATE, DELETE and
 * TRUNCATE, and registers a relcache invalidation of the table for each
 * write it lets through, so that every backend's cache of tenants and
 * bindings (tenant.c) is dropped when the write commits.  No tenant is ever
 * removed here: erasing a tenant's data is the lifecycle functions' job,
 * and its bindings are removed last with unbind_role_from_tenant().
 *
 * Not granted to PUBLIC (docs/privileges.md: the operator's role), and
 * refused to a bound caller (as tenant.c decides: the role, or the
 * session's role, is bound), checked as the caller before the switch to
 * the owner: a bound role that was granted EXECUTE on them by mistake
 * (GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA) could otherwise bind itself
 * to any tenant.  A role that is never restricted (superuser, BYPASSRLS,
 * the owner's privileges) cannot be bound: the binding would do nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "eventsource.h"
#include "tenant.h"

static SPIPlanPtr create_plan = NULL;
static SPIPlanPtr exists_plan = NULL;
static SPIPlanPtr bind_plan = NULL;
static SPIPlanPtr unbind_plan = NULL;

/* A tenant id argument: not null, well formed (22023).  A palloc'd text. */
static text *
arg_tenant_id(FunctionCallInfo fcinfo, int argno)
{
	text	   *t;

	es_arg_not_null(fcinfo, argno, "tenant_id");
	t = PG_GETARG_TEXT_PP(argno);
	if (!es_tenant_id_valid(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant id \"%s\"", text_to_cstring(t)),
				 errdetail("A tenant id is 1 to %d bytes of letters, digits, \"_\", \".\", \":\" and \"-\".",
						   ES_MAX_TENANT_LEN)));
	return t;
}

/* A role argument: not null, an existing role. */
static Oid
arg_role(FunctionCallInfo fcinfo, int argno)
{
	Oid			role;

	es_arg_not_null(fcinfo, argno, "role");
	role = PG_GETARG_OID(argno);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role with OID %u does not exist", role)));
	return role;
}

/*
 * The checks every tenant function makes first: a writable server, the 1.1
 * SQL, a caller that is not bound to tenants (42501).  "what" names the
 * function for the messages.
 */
static void
tenant_admin_begin(const char *what)
{
	es_require_writable(what);
	es_require_sql_version("1.1", what);
	if (es_tenant_caller_bound())
	{
		char	   *name = GetUserNameFromId(GetUserId(), true);

		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", what),
				 errdetail("Role \"%s\" (or the session's role) is bound to tenants; a bound role may not register tenants or change bindings.",
						   name ? name : "?"),
				 errhint("Call it as an operator role that is not bound to a tenant.")));
	}
}

/* Run one write of the tenant tables, let through by the guard. */
static uint64
tenant_write(SPIPlanPtr plan, Datum *values, int expected)
{
	es_tenant_write_in_progress = true;
	PG_TRY();
	{
		es_exec_plan(plan, values, NULL, expected);
	}
	PG_FINALLY();
	{
		es_tenant_write_in_progress = false;
	}
	PG_END_TRY();
	return SPI_processed;
}

PG_FUNCTION_INFO_V1(es_create_tenant);

/*
 * create_tenant(tenant_id text) RETURNS boolean
 *
 * Register a tenant.  Idempotent: false when it was already registered (a
 * deployment script may run it on every start).
 */
Datum
es_create_tenant(PG_FUNCTION_ARGS)
{
	text	   *tenant = arg_tenant_id(fcinfo, 0);
	Datum		values[1];
	EsOwnerCall owner;
	uint64		n;

	tenant_admin_begin("eventsource.create_tenant()");
	es_owner_begin(&owner);
	if (create_plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		create_plan = es_prepare("INSERT INTO eventsource.tenants (tenant_id) VALUES ($1)"
								 " ON CONFLICT (tenant_id) DO NOTHING", 1, types);
	}
	values[0] = PointerGetDatum(tenant);
	n = tenant_write(create_plan, values, SPI_OK_INSERT);
	es_owner_end(&owner);
	PG_RETURN_BOOL(n > 0);
}

PG_FUNCTION_INFO_V1(es_bind_role_to_tenant);

/*
 * bind_role_to_tenant(role regrole, tenant_id text) RETURNS boolean
 *
 * From now on the role (and every member of it) may use only
 * the tenants bound to it.  False when the binding already existed.
 */
Datum
es_bind_role_to_tenant(PG_FUNCTION_ARGS)
{
	Oid			role;
	text	   *tenant;
	Datum		values[2];
	EsOwnerCall owner;
	uint64		n;

	es_arg_not_null(fcinfo, 0, "role");
	tenant = arg_tenant_id(fcinfo, 1);
	tenant_admin_begin("eventsource.bind_role_to_tenant()");

	/*
	 * Locked as DROP ROLE locks it (AccessExclusiveLock until its end), so
	 * that the role cannot be dropped between the check and our commit; then
	 * checked, with the syscaches up to date after the lock.  A DROP ROLE
	 * that follows refuses while the binding exists (utility_hook.c).
	 */
	LockSharedObject(AuthIdRelationId, PG_GETARG_OID(0), 0, AccessShareLock);
	role = arg_role(fcinfo, 0);
	if (es_tenant_role_exempt(role))
	{
		char	   *name = GetUserNameFromId(role, true);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("role \"%s\" cannot be bound to a tenant", name ? name : "?"),
				 errdetail("It is a superuser, has BYPASSRLS, or has the privileges of the store's owner: neither row-level security nor the store's functions ever restrict it."),
				 errhint("Bind the role the application connects as, one without those attributes.")));
	}
	es_owner_begin(&owner);
	if (bind_plan == NULL)
	{
		Oid			types[2] = {REGROLEOID, TEXTOID};
		Oid			exists_types[1] = {TEXTOID};

		exists_plan = es_prepare("SELECT 1 FROM eventsource.tenants"
								 " WHERE tenant_id OPERATOR(pg_catalog.=) $1 FOR KEY SHARE",
								 1, exists_types);
		bind_plan = es_prepare("INSERT INTO eventsource.tenant_roles (role, tenant_id)"
							   " VALUES ($1, $2) ON CONFLICT (role, tenant_id) DO NOTHING",
							   2, types);
	}
	values[0] = PointerGetDatum(tenant);
	es_exec_plan(exists_plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_TENANT),
				 errmsg("tenant \"%s\" does not exist", text_to_cstring(tenant)),
				 errhint("Register it first with eventsource.create_tenant().")));
	values[0] = ObjectIdGetDatum(role);
	values[1] = PointerGetDatum(tenant);
	n = tenant_write(bind_plan, values, SPI_OK_INSERT);
	es_owner_end(&owner);
	PG_RETURN_BOOL(n > 0);
}

PG_FUNCTION_INFO_V1(es_unbind_role_from_tenant);

/*
 * unbind_role_from_tenant(role regrole, tenant_id text) RETURNS boolean
 *
 * Remove one binding; false when there was none.  A role whose last binding
 * goes is unbound again: it may choose any tenant.
 */
Datum
es_unbind_role_from_tenant(PG_FUNCTION_ARGS)
{
	Oid			role;
	text	   *tenant;
	Datum		values[2];
	EsOwnerCall owner;
	uint64		n;

	/* a dropped role's binding can still be removed: no existence check */
	es_arg_not_null(fcinfo, 0, "role");
	role = PG_GETARG_OID(0);
	tenant = arg_tenant_id(fcinfo, 1);
	tenant_admin_begin("eventsource.unbind_role_from_tenant()");
	es_owner_begin(&owner);
	if (unbind_plan == NULL)
	{
		Oid			types[2] = {REGROLEOID, TEXTOID};

		unbind_plan = es_prepare("DELETE FROM eventsource.tenant_roles"
								 " WHERE role OPERATOR(pg_catalog.=) $1"
								 " AND tenant_id OPERATOR(pg_catalog.=) $2",
								 2, types);
	}
	values[0] = ObjectIdGetDatum(role);
	values[1] = PointerGetDatum(tenant);
	n = tenant_write(unbind_plan, values, SPI_OK_DELETE);
	es_owner_end(&owner);
	PG_RETURN_BOOL(n > 0);
}
