/*-------------------------------------------------------------------------
 *
 * tenant.h
 *	  The current tenant (tenant.c): which tenant a statement's caller works
 *	  in, validated against the registered tenants and the caller's
 *	  bindings.  docs/tenancy.md is the design.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_TENANT_H
#define ES_TENANT_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

/* the tenant of a store that never chose one, and of every 1.0 row */
#define ES_DEFAULT_TENANT		"default"
/* a tenant id: 1 to ES_MAX_TENANT_LEN bytes of [A-Za-z0-9_.:-] */
#define ES_MAX_TENANT_LEN		63

/* the setting eventsource.tenant ("" = not set), defined by guc.c */
extern char *es_tenant_setting;
extern bool es_tenant_check_hook(char **newval, void **extra, GucSource source);

extern bool es_tenant_id_valid(const char *id, int len);

/*
 * The current tenant of the caller, evaluated as GetUserId(): call it
 * before es_owner_begin().  Raises ES005 (unknown), ES006 (a bound role
 * with several tenants and no setting), 42501 (a bound role naming a tenant
 * it is not bound to), 55000 (a tenant other than the default on the 1.0
 * SQL).  es_current_tenant() returns a static buffer, valid until the next
 * call; es_current_tenant_text() a palloc'd text for an SPI parameter.
 */
extern const char *es_current_tenant(void);
extern text *es_current_tenant_text(void);

/*
 * The tenant of a store function's call: its "tenant" argument (argno, the
 * 1.1 overloads) when given, else es_current_tenant_text().  Same errors, plus
 * 22023 for a malformed id.
 */
extern text *es_tenant_for_call(FunctionCallInfo fcinfo, int argno);

/*
 * Who is bound (tenant.c, on the 1.1 SQL): the caller as es_current_tenant()
 * decides; a role that is never restricted (superuser, BYPASSRLS, the
 * owner's privileges); a role named in tenant_roles.
 */
extern bool es_tenant_caller_bound(void);
extern bool es_tenant_caller_may_use(const char *tenant);
extern void es_tenant_check_caller(const char *tenant);
extern Oid	es_tenant_session_override(Oid role);
extern bool es_tenant_role_exempt(Oid role);
extern bool es_tenant_role_has_bindings(Oid role);
extern bool es_tenant_any_binding(void);

/* May a role (not the caller) work in a tenant (NULL: across tenants)? */
extern bool es_tenant_role_may_use(Oid role, const char *tenant);
extern void es_tenant_check_role(Oid role, const char *tenant);

/* tenant.c: the guard lets the tenant functions' own writes through */
extern bool es_tenant_write_in_progress;

#endif							/* ES_TENANT_H */
