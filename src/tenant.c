/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The current tenant: eventsource.current_tenant() and its C API,
 *	  es_current_tenant().
 *
 * A transaction chooses its tenant with the setting eventsource.tenant
 * (SET LOCAL: it ends with the transaction, so a pooled server connection
 * never hands it to the next client).  Which tenant a statement works in is
 * decided here, for the role that runs it (GetUserId(): the caller of a
 * store function, before it becomes the owner; the querying role of a
 * row-level security policy; the owner of a SECURITY DEFINER handler) and
 * the session's role (GetSessionUserId(): the role that logged in, or the
 * one SET SESSION AUTHORIZATION chose):
 *
 *	- the store's owner (and roles with its privileges), superusers and
 *	  BYPASSRLS roles (*exempt*: row-level security does not apply to them
 *	  either): the setting, or 'default' when it is empty;
 *	- a role that is a member of a role named in eventsource.tenant_roles,
 *	  directly or not, inheriting or not (is_member_of_role: a NOINHERIT
 *	  member could SET ROLE to the bound role anyway), is *bound* to the
 *	  tenants bound to those roles;
 *	- when the session's role is bound (and not exempt), the role running
 *	  the statement may use only the session's tenants too, whatever SET
 *	  ROLE or a SECURITY DEFINER function changed: a bound login role that
 *	  is also a member of an unbound group (es_writer) does not escape its
 *	  tenants with SET ROLE es_writer.  The allowed tenants are then the
 *	  intersection of both roles' bindings (the session's alone when the
 *	  running role is unbound).  A background worker's session role is the
 *	  bootstrap superuser (BackgroundWorkerInitializeConnectionByOid with
 *	  no role), exempt; so while a subscription's handler runs, its owner
 *	  counts as the session's role (es_tenant_session_override, set by
 *	  handler.c): the handler has exactly the rights of a session its owner
 *	  logged into, and a SECURITY DEFINER function of an unbound role does
 *	  not take it out of its owner's tenants;
 *	- a bound caller with an empty setting gets its tenant when it has
 *	  exactly one (ES006 with several, 42501 with none); a tenant it may not
 *	  use is 42501, whether that tenant exists or not (a bound role cannot
 *	  probe for other tenants);
 *	- any other role may choose any registered tenant; empty means 'default'.
 *
 * A tenant that is not in eventsource.tenants is ES005: a typo must never
 * silently start a new tenant.  On a database still on the 1.0 SQL there is
 * no tenant but the default: the setting must be empty or 'default'
 * (55000 with a hint to update otherwise).
 *
 * This runs on every append and in every row-level security check, so it
 * costs a comparison in the common case: the last answer is kept for the
 * last (user, setting), and what it was computed from is cached per
 * backend — the registered tenants, the rows of tenant_roles, and per user
 * whether it is exempt and which tenants it is bound to.  The caches are
 * read with a fresh snapshot by a plain heap scan (no SPI, no privilege
 * check, no row-level security: the policy of tenant_roles calls this
 * function), and dropped on any relcache invalidation of tenants or
 * tenant_roles (the guard trigger, guard.c, registers one for every write it
 * lets through, so other backends drop theirs when the write commits) or of
 * eventsource.events (whose owner is exempt), on a change of role
 * membership (AUTHMEMROLEMEM) or of a role's attributes (AUTHOID: superuser,
 * BYPASSRLS).  A callback only marks the caches stale;
 * they are freed and rebuilt at the next call, never during a build.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "eventsource.h"
#include "tenant.h"

char	   *es_tenant_setting = NULL;
bool		es_tenant_write_in_progress = false;

typedef char EsTenantId[ES_MAX_TENANT_LEN + 1];

/* a row of eventsource.tenant_roles */
typedef struct EsBinding
{
	Oid			role;
	EsTenantId	tenant;
} EsBinding;

/* what one user may do */
typedef struct EsTenantUser
{
	Oid			user;			/* hash key */
	bool		exempt;			/* owner, superuser, BYPASSRLS */
	int			nallowed;		/* > 0: the user is bound */
	EsTenantId *allowed;
} EsTenantUser;

static MemoryContext tenant_cxt = NULL;
static bool callbacks_registered = false;
static bool stale = true;		/* set by the callbacks */
static uint64 invalidations = 0;	/* counted by the callbacks */

static Oid	tenants_relid = InvalidOid;
static Oid	roles_relid = InvalidOid;
static Oid	events_relid = InvalidOid;
static HTAB *registered = NULL; /* EsTenantId -> itself */
static EsBinding *bindings = NULL;
static int	nbindings = -1;		/* -1: not loaded */
static int	bindings_allocated = 0;
static HTAB *users = NULL;

/* the last answer */
static bool last_valid = false;
static Oid	last_user = InvalidOid;
static Oid	last_session = InvalidOid;
static EsTenantId last_setting;
static EsTenantId last_result;

static const char *tenant_for_setting(const char *setting);

/* 1 to ES_MAX_TENANT_LEN bytes of [A-Za-z0-9_.:-] */
bool
es_tenant_id_valid(const char *id, int len)
{
	if (len < 1 || len > ES_MAX_TENANT_LEN)
		return false;
	for (int i = 0; i < len; i++)
	{
		char		c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

/* The check hook of eventsource.tenant: '' or a valid id (22023 at SET). */
bool
es_tenant_check_hook(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' ||
		es_tenant_id_valid(*newval, strlen(*newval)))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("A tenant id is 1 to %d bytes of letters, digits, \"_\", \".\", \":\" and \"-\".",
						ES_MAX_TENANT_LEN);
	return false;
}

static void
mark_stale(void)
{
	stale = true;
	last_valid = false;
	invalidations++;
}

/*
 * The tenant tables changed, or the log did (its owner is who is exempt:
 * an ALTER ... OWNER invalidates it; so do a VACUUM or an index build,
 * rarely enough).
 */
static void
relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == tenants_relid || relid == roles_relid ||
		relid == events_relid)
		mark_stale();
}

static void
syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	mark_stale();
}

/* Free the caches if a callback said so.  Never called during a build. */
static void
reset_if_stale(void)
{
	HASHCTL		ctl;

	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(AUTHOID, syscache_callback, (Datum) 0);
		tenant_cxt = AllocSetContextCreate(TopMemoryContext, "eventsource tenants",
										   ALLOCSET_SMALL_SIZES);
		callbacks_registered = true;
	}
	if (!stale)
		return;
	stale = false;
	MemoryContextReset(tenant_cxt);
	tenants_relid = InvalidOid;
	roles_relid = InvalidOid;
	events_relid = InvalidOid;
	bindings = NULL;
	nbindings = -1;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(EsTenantId);
	ctl.entrysize = sizeof(EsTenantId);
	ctl.hcxt = tenant_cxt;
	registered = hash_create("eventsource tenants", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(EsTenantUser);
	ctl.hcxt = tenant_cxt;
	users = hash_create("eventsource tenant users", 16, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Read every row of eventsource.tenants or tenant_roles with a fresh
 * snapshot (this transaction's own earlier writes included), calling "row"
 * for each.
 */
static void
scan_table(Oid relid, void (*row) (HeapTuple tup, TupleDesc desc))
{
	Relation	rel = table_open(relid, AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snap, 0, NULL);
	HeapTuple	tup;

	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		row(tup, RelationGetDescr(rel));
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
}

/* a text column into an EsTenantId (ids are checked on the way in) */
static void
copy_tenant_column(HeapTuple tup, TupleDesc desc, int attno, EsTenantId out)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attno, desc, &isnull);
	text	   *t;
	int			len;

	out[0] = '\0';
	if (isnull)
		return;
	t = DatumGetTextPP(d);
	len = Min(VARSIZE_ANY_EXHDR(t), ES_MAX_TENANT_LEN);
	memcpy(out, VARDATA_ANY(t), len);
	out[len] = '\0';
}

static void
registered_row(HeapTuple tup, TupleDesc desc)
{
	EsTenantId	id;

	copy_tenant_column(tup, desc, 1, id);	/* tenants.tenant_id */
	if (id[0] != '\0')
		(void) hash_search(registered, id, HASH_ENTER, NULL);
}

static void
binding_row(HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		role = heap_getattr(tup, 1, desc, &isnull); /* tenant_roles.role */

	if (isnull)
		return;
	if (nbindings == bindings_allocated)
	{
		bindings_allocated *= 2;
		bindings = repalloc(bindings, sizeof(EsBinding) * bindings_allocated);
	}
	bindings[nbindings].role = DatumGetObjectId(role);
	copy_tenant_column(tup, desc, 2, bindings[nbindings].tenant);	/* tenant_id */
	nbindings++;
}

/* Load the registered tenants and the bindings, unless they are loaded. */
static void
load_tables(void)
{
	MemoryContext old;
	uint64		before = invalidations;

	if (nbindings >= 0)
		return;
	old = MemoryContextSwitchTo(tenant_cxt);
	events_relid = es_catalog()->events_oid;
	tenants_relid = es_lookup_relation("tenants", es_catalog()->namespace_oid);
	roles_relid = es_lookup_relation("tenant_roles", es_catalog()->namespace_oid);
	scan_table(tenants_relid, registered_row);
	bindings_allocated = 16;
	bindings = palloc(sizeof(EsBinding) * bindings_allocated);
	nbindings = 0;
	scan_table(roles_relid, binding_row);
	MemoryContextSwitchTo(old);

	/* changed while we read: use it for this call, read again next time */
	if (invalidations != before)
		stale = true;
}

/* What "user" may do (the caches are loaded). */
static EsTenantUser *
user_entry(Oid user)
{
	bool		found;
	EsTenantUser *u = hash_search(users, &user, HASH_ENTER, &found);

	if (found)
		return u;
	u->exempt = superuser_arg(user) || has_bypassrls_privilege(user) ||
		has_privs_of_role(user, es_catalog()->owner_oid);
	u->nallowed = 0;
	u->allowed = NULL;
	if (u->exempt)
		return u;
	for (int i = 0; i < nbindings; i++)
	{
		bool		dup = false;

		/* membership, not privileges: see the file header */
		if (!is_member_of_role_nosuper(user, bindings[i].role))
			continue;
		for (int j = 0; j < u->nallowed && !dup; j++)
			dup = (strcmp(u->allowed[j], bindings[i].tenant) == 0);
		if (dup)
			continue;
		if (u->allowed == NULL)
			u->allowed = MemoryContextAlloc(tenant_cxt, sizeof(EsTenantId) * nbindings);
		strlcpy(u->allowed[u->nallowed++], bindings[i].tenant, sizeof(EsTenantId));
	}
	return u;
}

static bool
user_allows(const EsTenantUser *u, const char *tenant)
{
	for (int i = 0; i < u->nallowed; i++)
		if (strcmp(u->allowed[i], tenant) == 0)
			return true;
	return false;
}

static const char *
role_name(Oid user)
{
	char	   *name = GetUserNameFromId(user, true);

	return name ? name : psprintf("%u", user);
}

/* The role that counts as the session's while a handler runs (InvalidOid: none) */
static Oid	session_override = InvalidOid;

/*
 * Make "role" count as the session's role (InvalidOid: the real one again)
 * and return the previous override.  handler.c sets the subscription's
 * owner around a handler call and restores the previous value on every
 * path out of it.
 */
Oid
es_tenant_session_override(Oid role)
{
	Oid			old = session_override;

	session_override = role;
	return old;
}

static Oid
effective_session(void)
{
	return OidIsValid(session_override) ? session_override : GetSessionUserId();
}

/*
 * Who restricts a caller running as "user" in a session of "session" (see
 * the file header): *u, and *s when the session's role is bound (NULL
 * otherwise).  Neither when "user" is exempt.  The caches are loaded.
 */
static void
restricting(Oid user, Oid session, EsTenantUser **u, EsTenantUser **s)
{
	*u = user_entry(user);
	*s = NULL;
	if ((*u)->exempt || session == user || !OidIsValid(session))
		return;
	*s = user_entry(session);
	if ((*s)->exempt || (*s)->nallowed == 0)
		*s = NULL;
}

/* May a caller restricted by u (bound or not) and s (NULL: not) use "tenant"? */
static bool
scope_allows(const EsTenantUser *u, const EsTenantUser *s, const char *tenant)
{
	return (u->nallowed == 0 || user_allows(u, tenant)) &&
		(s == NULL || user_allows(s, tenant));
}

/* Decide, with the caches loaded.  Returns a pointer into the caches. */
static const char *
resolve(Oid user, Oid session, const char *setting)
{
	EsTenantUser *u;
	EsTenantUser *s;
	const char *tenant = setting;

	restricting(user, session, &u, &s);
	if (!u->exempt && (u->nallowed > 0 || s != NULL))
	{
		if (setting[0] == '\0')
		{
			/* the one tenant the caller may use, if there is one */
			const EsTenantUser *from = u->nallowed > 0 ? u : s;
			int			n = 0;

			for (int i = 0; i < from->nallowed; i++)
				if (scope_allows(u, s, from->allowed[i]))
				{
					tenant = from->allowed[i];
					n++;
				}
			if (n > 1)
				ereport(ERROR,
						(errcode(ERRCODE_ES_NO_TENANT),
						 errmsg("no tenant selected"),
						 errdetail("Role \"%s\" is bound to %d tenants.", role_name(user), n),
						 errhint("Choose one with SET LOCAL eventsource.tenant = '...' (the data functions also take it as their last argument, tenant).")));
			if (n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("role \"%s\" may not use any tenant in a session of role \"%s\"",
								role_name(user), role_name(session)),
						 errdetail("The two roles are bound to tenants (eventsource.tenant_roles), and to none in common.")));
		}
		else if (!scope_allows(u, s, setting))
		{
			/* the session's bindings refuse it, the role's own would not */
			if (s != NULL && !user_allows(s, setting) &&
				(u->nallowed == 0 || user_allows(u, setting)))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("role \"%s\" may not use tenant \"%s\" in a session of role \"%s\"",
								role_name(user), setting, role_name(session)),
						 errdetail("The session's role is bound to other tenants (eventsource.tenant_roles); SET ROLE does not lift that.")));
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" may not use tenant \"%s\"", role_name(user), setting),
					 errdetail("The role is bound to other tenants (eventsource.tenant_roles).")));
		}
	}
	else if (setting[0] == '\0')
		tenant = ES_DEFAULT_TENANT;

	if (hash_search(registered, tenant, HASH_FIND, NULL) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_ES_UNKNOWN_TENANT),
				 errmsg("tenant \"%s\" does not exist", tenant),
				 errhint("Check eventsource.tenant for a typo, or register the tenant with eventsource.create_tenant().")));
	return tenant;
}

/*
 * The caller's current tenant (see the file header).  Returns a static
 * buffer, valid until the next call.
 */
const char *
es_current_tenant(void)
{
	return tenant_for_setting(es_tenant_setting ? es_tenant_setting : "");
}

/*
 * The tenant a store function works in: its "tenant" argument (argument
 * number argno: the 1.1 overloads of the data functions take it after all
 * of the 1.0 function's) when the caller passed one, else the current
 * tenant.  The argument is decided exactly as the setting would be
 * for the caller (the file header): an unknown tenant is ES005, one a bound
 * caller may not use is 42501; it overrides the setting for this call only
 * and does not change it.  NULL, and the 1.0 function without the
 * argument, mean the setting.  One statement instead of four (BEGIN; SET
 * LOCAL; the call; COMMIT) for a client that knows its tenant at each call:
 * README's tenancy benchmark compares the two (sides T and S).
 */
text *
es_tenant_for_call(FunctionCallInfo fcinfo, int argno)
{
	text	   *arg;
	int			len;
	char		id[ES_MAX_TENANT_LEN + 1];

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return es_current_tenant_text();
	arg = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(arg);
	if (!es_tenant_id_valid(VARDATA_ANY(arg), len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant id: \"%.*s%s\"",
						Min(pg_mbcliplen(VARDATA_ANY(arg), len, ES_MAX_TENANT_LEN + 1), len),
						VARDATA_ANY(arg), len > ES_MAX_TENANT_LEN + 1 ? "..." : ""),
				 errdetail("A tenant id is 1 to %d bytes of letters, digits, \"_\", \".\", \":\" and \"-\".",
						   ES_MAX_TENANT_LEN),
				 errhint("Pass NULL (or leave the argument out) to use eventsource.tenant.")));
	memcpy(id, VARDATA_ANY(arg), len);
	id[len] = '\0';
	return cstring_to_text(tenant_for_setting(id));
}

/*
 * The tenant for a setting (or an argument, es_tenant_for_call) "setting",
 * "" meaning none, decided for the caller.
 */
static const char *
tenant_for_setting(const char *setting)
{
	Oid			user = GetUserId();
	Oid			session = effective_session();

	/*
	 * The last answer, when nothing it depends on changed.  It was computed
	 * on the 1.1 SQL (the 1.0 branch below keeps none), and the SQL cannot
	 * go back to 1.0 without dropping the tenant tables, which marks the
	 * caches stale: so the version need not be read again here (reading it
	 * is a catalog lookup, the bulk of a call otherwise).
	 */
	if (last_valid && !stale && last_user == user && last_session == session &&
		strcmp(last_setting, setting) == 0)
		return last_result;

	if (es_sql_version() < ES_SQL_1_1)
	{
		if (setting[0] != '\0' && strcmp(setting, ES_DEFAULT_TENANT) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("eventsource.tenant is \"%s\", but this database has no tenants", setting),
					 errdetail("Its eventsource SQL objects are version %s; tenants came with 1.1.",
							   es_sql_version_text()),
					 errhint("Run ALTER EXTENSION eventsource UPDATE, or leave eventsource.tenant empty.")));
		return ES_DEFAULT_TENANT;
	}

	reset_if_stale();
	load_tables();
	strlcpy(last_result, resolve(user, session, setting), sizeof(EsTenantId));
	strlcpy(last_setting, setting, sizeof(EsTenantId));
	last_user = user;
	last_session = session;
	last_valid = !stale;
	return last_result;
}

/*
 * Is the caller (GetUserId(), in a session of GetSessionUserId()) bound to
 * tenants, as es_current_tenant() decides?  On the 1.1 SQL.
 */
bool
es_tenant_caller_bound(void)
{
	EsTenantUser *u;
	EsTenantUser *s;

	reset_if_stale();
	load_tables();
	restricting(GetUserId(), effective_session(), &u, &s);
	return !u->exempt && (u->nallowed > 0 || s != NULL);
}

/*
 * May the caller (its role and its session's, as es_current_tenant()
 * decides) work in "tenant" (NULL: across tenants)?  Never raises for a
 * rule broken; an unregistered tenant is allowed to an unbound caller here
 * (the caller's own check reports it).  On the 1.1 SQL.
 */
bool
es_tenant_caller_may_use(const char *tenant)
{
	EsTenantUser *u;
	EsTenantUser *s;

	reset_if_stale();
	load_tables();
	restricting(GetUserId(), effective_session(), &u, &s);
	if (u->exempt)
		return true;
	if (tenant == NULL)
		return u->nallowed == 0 && s == NULL;
	return (u->nallowed == 0 || user_allows(u, tenant)) &&
		(s == NULL || user_allows(s, tenant));
}

/*
 * Raise unless the caller may work in "tenant", as es_current_tenant()
 * would decide for that setting: 42501 for a bound caller outside its
 * tenants (whether the tenant exists or not), ES005 for an unknown tenant.
 * create_subscription() asks it for its creator, who may be in a session
 * of a bound role after SET ROLE.  (Across tenants needs an exempt creator,
 * which no session binding restricts: create_subscription checks that.)
 */
void
es_tenant_check_caller(const char *tenant)
{
	reset_if_stale();
	load_tables();
	(void) resolve(GetUserId(), effective_session(), tenant);
}

/*
 * Is "role" exempt (a superuser, BYPASSRLS, or with the privileges of the
 * store's owner): never restricted to a tenant?  On the 1.1 SQL.
 */
bool
es_tenant_role_exempt(Oid role)
{
	reset_if_stale();
	load_tables();
	return user_entry(role)->exempt;
}

/*
 * Is any role bound to a tenant (eventsource.tenant_roles not empty)?  Then
 * some role of the database is restricted to its tenants, and what every
 * role can see (a notification) must not carry tenant data.  On the 1.1
 * SQL.
 */
bool
es_tenant_any_binding(void)
{
	reset_if_stale();
	load_tables();
	return nbindings > 0;
}

/* Does eventsource.tenant_roles name "role"?  On the 1.1 SQL. */
bool
es_tenant_role_has_bindings(Oid role)
{
	reset_if_stale();
	load_tables();
	for (int i = 0; i < nbindings; i++)
		if (bindings[i].role == role)
			return true;
	return false;
}

text *
es_current_tenant_text(void)
{
	return cstring_to_text(es_current_tenant());
}

/*
 * May "role" work in "tenant" (NULL: across tenants)?  The rules of the
 * file header, for a role other than the caller: the owner of a
 * subscription, whose handler runs with that tenant selected (the
 * subscription rules, subscription_rules.c).  Across tenants: any role but
 * a bound one (only the store's owner may create such a subscription; that
 * stricter rule is create_subscription's).  A tenant must be registered.
 * Never raises for a rule broken; needs a transaction (the caches).
 */
bool
es_tenant_role_may_use(Oid role, const char *tenant)
{
	EsTenantUser *u;

	reset_if_stale();
	load_tables();
	u = user_entry(role);
	if (tenant == NULL)
		return u->nallowed == 0;
	if (u->nallowed > 0 && !user_allows(u, tenant))
		return false;
	return hash_search(registered, tenant, HASH_FIND, NULL) != NULL;
}

/*
 * Raise what es_tenant_role_may_use() said no to: 42501 for a bound role
 * outside its tenants (or across them), ES005 for an unknown tenant.
 */
void
es_tenant_check_role(Oid role, const char *tenant)
{
	reset_if_stale();
	load_tables();
	if (tenant == NULL)
	{
		if (user_entry(role)->nallowed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("role \"%s\" may not work across tenants", role_name(role)),
					 errdetail("The role is bound to tenants (eventsource.tenant_roles).")));
		return;
	}
	(void) resolve(role, InvalidOid, tenant);
}

PG_FUNCTION_INFO_V1(es_current_tenant_sql);

/* current_tenant() RETURNS text */
Datum
es_current_tenant_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(es_current_tenant_text());
}

PG_FUNCTION_INFO_V1(es_caller_bound_to_tenants);

/*
 * caller_bound_to_tenants() RETURNS boolean: es_tenant_caller_bound(), for
 * the policies of dead_letters and recent_errors (a bound role sees only a
 * tenant-scoped subscription's rows).  The 1.1 SQL creates it after the
 * tenant tables, so they are there whenever it can be called.
 */
Datum
es_caller_bound_to_tenants(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(es_tenant_caller_bound());
}
