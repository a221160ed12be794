/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  SPI as the extension's owner: the cached OIDs of the extension's
 *	  objects, owner rights, and the helpers that prepare, run and read
 *	  plans.
 *
 * Every SQL function of the extension reads and writes its tables as the
 * owner of those tables (the role that created the extension), the way a
 * SECURITY DEFINER function would, but without the cost of the fmgr wrapper
 * and a search_path GUC on every call.  So a role that was granted EXECUTE
 * on append() can append, yet has no privilege on the tables themselves.
 * All queries are schema-qualified, operators included, so the caller's
 * search_path cannot change their meaning.
 *
 * The OIDs are cached per backend and forgotten on any relcache invalidation
 * of the events table or its sequence (DROP EXTENSION, a restore).
 *
 * Which version of the SQL objects the database has is extversion.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "eventsource.h"

static EsCatalog catalog_cache;
static bool catalog_valid = false;
static bool catalog_callback_registered = false;

static void
es_catalog_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid ||
		relid == catalog_cache.events_oid ||
		relid == catalog_cache.sequence_oid)
		catalog_valid = false;
}

/*
 * The OID of relation eventsource.<name> in schema "nsp"; 55000 when it is
 * missing (a damaged extension).
 */
Oid
es_lookup_relation(const char *name, Oid nsp)
{
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("relation \"eventsource.%s\" does not exist", name),
				 errhint("The eventsource extension is damaged; recreate it.")));
	return relid;
}

/*
 * The OIDs of the extension's objects in the current database.  Raises 55000
 * when the extension is not installed here.
 */
const EsCatalog *
es_catalog(void)
{
	HeapTuple	tuple;
	Oid			nsp;

	if (catalog_valid)
		return &catalog_cache;

	if (!catalog_callback_registered)
	{
		CacheRegisterRelcacheCallback(es_catalog_inval, (Datum) 0);
		catalog_callback_registered = true;
	}

	nsp = get_namespace_oid("eventsource", true);
	if (!OidIsValid(nsp))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"eventsource\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION eventsource.")));

	catalog_cache.namespace_oid = nsp;
	catalog_cache.events_oid = es_lookup_relation("events", nsp);
	catalog_cache.sequence_oid = es_lookup_relation("events_global_position_seq", nsp);

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(catalog_cache.events_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", catalog_cache.events_oid);
	catalog_cache.owner_oid = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	catalog_valid = true;
	return &catalog_cache;
}

/* The cache without any catalog access (for abort paths); may be NULL. */
const EsCatalog *
es_catalog_cached(void)
{
	return catalog_valid ? &catalog_cache : NULL;
}

/*
 * Switch to the extension owner.  The transaction (or subtransaction) abort
 * restores the previous user when an error escapes before es_restore_user().
 */
void
es_become_owner(Oid *save_userid, int *save_sec_context)
{
	const EsCatalog *cat = es_catalog();

	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(cat->owner_oid,
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
es_restore_user(Oid save_userid, int save_sec_context)
{
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

/*
 * The body of most SQL functions: as the extension owner, connected to SPI.
 * An error in between needs no cleanup (the abort restores both).
 */
void
es_owner_begin(EsOwnerCall *call)
{
	es_become_owner(&call->save_userid, &call->save_sec_context);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
es_owner_end(EsOwnerCall *call)
{
	SPI_finish();
	es_restore_user(call->save_userid, call->save_sec_context);
}

/* Prepare and keep a plan for the life of the backend. */
SPIPlanPtr
es_prepare(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(query, nargs, argtypes);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 query, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/*
 * The kept plan of a statement that differs between the SQL versions (a
 * write naming the tenant column, which the 1.0 SQL lacks): "q10" on a
 * database still on 1.0, "q11" from 1.1 on; slots[0] and slots[1] keep
 * them.  Reads use es_visible_plan() (lifecycle.c) and its tokens instead.
 */
SPIPlanPtr
es_prepare_versioned(SPIPlanPtr *slots, const char *q10, const char *q11,
					 int nargs, Oid *argtypes)
{
	int			v = es_sql_version() >= ES_SQL_1_1 ? 1 : 0;

	if (slots[v] == NULL)
		slots[v] = es_prepare(v ? q11 : q10, nargs, argtypes);
	return slots[v];
}

/*
 * Run a kept plan (read-write: a fresh snapshot in READ COMMITTED) and
 * check the result code; anything else is an internal error, named by the
 * plan's query.
 */
void
es_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls, int expected)
{
	int			rc = SPI_execute_plan(plan, values, nulls, false, 0);

	if (rc != expected)
	{
		List	   *sources = SPI_plan_get_plan_sources(plan);

		elog(ERROR, "eventsource: query \"%s\" failed: %s",
			 sources != NIL ? ((CachedPlanSource *) linitial(sources))->query_string : "?",
			 SPI_result_code_string(rc));
	}
}

/* Parameters for SPI_execute_plan_extended(); nulls as for SPI_execute_plan(). */
static ParamListInfo
param_list(SPIPlanPtr plan, Datum *values, const char *nulls)
{
	int			nargs = SPI_getargcount(plan);
	ParamListInfo params = makeParamList(nargs);

	for (int i = 0; i < nargs; i++)
	{
		ParamExternData *prm = &params->params[i];

		prm->value = values[i];
		prm->isnull = (nulls && nulls[i] == 'n');
		prm->pflags = PARAM_FLAG_CONST;
		prm->ptype = SPI_getargtypeid(plan, i);
	}
	return params;
}

/*
 * Run a read-only plan with the active snapshot (the caller's).  Rows go to
 * "dest" when given, else to SPI_tuptable.
 */
void
es_spi_read(SPIPlanPtr plan, Datum *values, const char *nulls,
			DestReceiver *dest, uint64 tcount)
{
	SPIExecuteOptions options;
	int			rc;

	memset(&options, 0, sizeof(options));
	options.params = param_list(plan, values, nulls);
	options.read_only = true;
	options.tcount = tcount;
	options.dest = dest;
	rc = SPI_execute_plan_extended(plan, &options);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "eventsource: read query failed: %s", SPI_result_code_string(rc));
}

/*
 * The same with a snapshot taken now, not the transaction's.
 *
 * read_all() must see every commit that happened before it computed the
 * horizon, also under REPEATABLE READ, and append() must see the latest
 * version of a stream it has locked; the transaction snapshot may be older
 * than both.
 *
 * A path that also asks the SQL version for what it reads must ask with the
 * same snapshot: push GetLatestSnapshot() itself, call es_sql_version() and
 * es_spi_read() while it is active, then pop it.
 */
void
es_spi_read_latest(SPIPlanPtr plan, Datum *values, const char *nulls,
				   DestReceiver *dest, uint64 tcount)
{
	PushActiveSnapshot(GetLatestSnapshot());
	es_spi_read(plan, values, nulls, dest, tcount);
	PopActiveSnapshot();
}
