/*-------------------------------------------------------------------------
 *
 * worker_config.c
 *	  A subscription worker's configuration: its row of
 *	  eventsource.subscriptions (and its partition row) loaded into es_cfg,
 *	  checked by the rules of create_subscription's arguments before it
 *	  runs, and loaded again when an update of the extension's SQL objects
 *	  commits under the running worker.  Also the key of the partition row
 *	  every worker query uses.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "subscription.h"
#include "subscription_rules.h"
#include "tenant.h"
#include "worker.h"

EsSubConfig es_cfg = {.row_desired = ES_DESIRED_RUN};

static void load_events_desc(void);

/*
 * Is the extension we started in still there?  Ids start again at 1 when
 * the extension is dropped and created again, and our saved plans would
 * then find the new tables by name: a row with our name, partition and id
 * is not ours if the extension changed.  Inside a transaction.
 *
 * Asked before and after every batch's row lock, so it must be cheap: the
 * partitions table we started with still existing is the test (one
 * syscache probe; a DROP EXTENSION drops it, a new CREATE EXTENSION makes
 * a table with a new OID), where a pg_extension lookup was an index scan
 * per call.  ALTER EXTENSION UPDATE keeps the table.
 */
bool
es_worker_extension_is_ours(void)
{
	return OidIsValid(es_worker.partitions_rel) &&
		SearchSysCacheExists1(RELOID, ObjectIdGetDatum(es_worker.partitions_rel));
}

/*
 * The key of this worker's partition row, as parameters $1..$3 of every
 * query that reads or writes it: subscription name, partition, incarnation.
 */
void
es_worker_row_key(Datum *values)
{
	values[0] = CStringGetTextDatum(es_worker.name);
	values[1] = Int32GetDatum(es_worker.partition);
	values[2] = Int64GetDatum(es_worker.incarnation);
}

/*
 * The options stored in the loaded row, as create_subscription's arguments
 * (subscription_rules.h), to be checked by the same rules.  Pointers into
 * the row: valid while it is.
 */
static void
row_options(HeapTuple tup, TupleDesc desc, EsSubscriptionOptions *opts)
{
	bool		isnull;
	Datum		filter;

	memset(opts, 0, sizeof(*opts));
	opts->name = es_worker.name;
	opts->handler = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	opts->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	opts->start_from = NULL;	/* history: where the row began */
	opts->batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	opts->checkpoint_strategy = SPI_getvalue(tup, desc, 5);
	opts->intervals[ES_OPT_CHECKPOINT_INTERVAL] =
		DatumGetIntervalP(SPI_getbinval(tup, desc, 6, &isnull));
	opts->intervals[ES_OPT_PROCESSING_TIMEOUT] =
		DatumGetIntervalP(SPI_getbinval(tup, desc, 7, &isnull));
	opts->max_retries = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	opts->intervals[ES_OPT_RETRY_BACKOFF] =
		DatumGetIntervalP(SPI_getbinval(tup, desc, 9, &isnull));
	opts->continue_on_error = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	opts->breaker_threshold = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
	opts->intervals[ES_OPT_BREAKER_RESET] =
		DatumGetIntervalP(SPI_getbinval(tup, desc, 12, &isnull));
	filter = SPI_getbinval(tup, desc, 13, &isnull);
	opts->event_types = isnull ? NULL : DatumGetArrayTypeP(filter);
	filter = SPI_getbinval(tup, desc, 14, &isnull);
	opts->categories = isnull ? NULL : DatumGetArrayTypeP(filter);
	opts->partitions = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
	opts->has_tenant = es_sql_version() >= ES_SQL_1_1;
	opts->tenant = SPI_getvalue(tup, desc, 19);	/* NULL: cross-tenant */
}

/* The row being loaded, for validate_row(). */
typedef struct EsLoadedRow
{
	HeapTuple	tup;
	TupleDesc	desc;
	EsSubscriptionOptions *opts;	/* its options; the check derives the rest */
} EsLoadedRow;

/*
 * Check the loaded row by the rules of create_subscription's arguments
 * (es_check_subscription_options, which also derives the strategy, the
 * interval options in milliseconds and whether the handler takes a batch):
 * the table's CHECK constraints may be missing (a database still on the 1.0
 * SQL) or NOT VALID for an old row, and the handler's signature, the
 * owner's rights and the partition rows are no constraint.  Raises the
 * first rule broken.
 */
static void
validate_row(EsEventRef *unused, void *arg)
{
	EsLoadedRow *row = arg;
	HeapTuple	tup = row->tup;
	TupleDesc	desc = row->desc;
	EsSubscriptionOptions *opts = row->opts;
	bool		isnull;
	bool		batch_handler = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	int32		rows;

	es_check_subscription_name(es_worker.name);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(opts->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of subscription \"%s\" (role %u) no longer exists",
						es_worker.name, opts->owner)));
	es_check_subscription_options(opts);
	if (opts->batch_handler != batch_handler)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_handler is %s, but the handler takes %s",
						batch_handler ? "true" : "false",
						batch_handler ? "one event" : "a batch")));
	/* events hashed to a partition without a row would never be delivered */
	rows = DatumGetInt32(SPI_getbinval(tup, desc, 18, &isnull));
	if (opts->partitions != rows)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions is %d, but the subscription was created with %d",
						opts->partitions, rows),
				 errhint("Create a new subscription to change the partition count.")));
}

/*
 * Load the subscription's row.  Returns false when it is gone (or replaced
 * by a newer subscription of the same name); es_cfg.row_desired says what
 * the row wants: run, paused, or stopped at an event.  Only a row that says
 * run is checked and loaded (a paused or stopped one is not run: the worker
 * exits, or finishes its batch with what it had); es_cfg.error says whether
 * it breaks a rule (then nothing else is loaded).  Inside a transaction,
 * connected to SPI, as the extension owner.
 */
bool
es_worker_load_config(void)
{
	SPIPlanPtr	plan;
	Oid			types[3] = {TEXTOID, INT4OID, INT8OID};
	Datum		values[3];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	MemoryContext old;
	EsSubscriptionOptions opts;
	EsLoadedRow row;
	bool		has_tenant;
	char	   *tenant;

	if (!es_worker_extension_is_ours())
		return false;
	has_tenant = es_sql_version() >= ES_SQL_1_1;
	plan = SPI_prepare(psprintf("SELECT s.handler::pg_catalog.oid, s.owner::pg_catalog.oid, s.batch_handler,"
					   " s.batch_size, s.checkpoint_strategy,"
					   " s.checkpoint_interval,"
					   " s.processing_timeout,"
					   " s.max_retries,"
					   " s.retry_backoff,"
					   " s.continue_on_error, s.circuit_breaker_threshold,"
					   " s.circuit_breaker_reset,"
					   " s.event_types, s.categories, s.partitions, s.state, p.state,"
					   " (SELECT pg_catalog.count(*) FROM eventsource.subscription_partitions q"
					   "   WHERE q.subscription OPERATOR(pg_catalog.=) s.name)::pg_catalog.int4,"
					   " %s"
					   " FROM eventsource.subscriptions s"
					   " JOIN eventsource.subscription_partitions p ON p.subscription OPERATOR(pg_catalog.=) s.name"
					   " WHERE s.name OPERATOR(pg_catalog.=) $1 AND p.partition OPERATOR(pg_catalog.=) $2"
					   " AND s.id OPERATOR(pg_catalog.=) $3",
					   has_tenant ? "s.tenant" : "NULL::pg_catalog.text"),	/* 1.1: the tenant */
					   3, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	es_worker_row_key(values);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventsource worker: could not read subscription \"%s\"", es_worker.name);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	/* paused or stopped since we were registered (e.g. during discovery) */
	es_cfg.row_desired = strcmp(SPI_getvalue(tup, desc, 17), "ok") != 0 ? ES_DESIRED_FAILED :
		strcmp(SPI_getvalue(tup, desc, 16), "active") != 0 ? ES_DESIRED_PAUSE :
		ES_DESIRED_RUN;
	if (!SearchSysCacheExists1(PROCOID, SPI_getbinval(tup, desc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of subscription \"%s\" (function %u) no longer exists",
						es_worker.name, DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull))),
				 errhint("Drop the subscription, or create the function again and restart its worker.")));
	if (es_cfg.row_desired != ES_DESIRED_RUN)
	{
		SPI_freeplan(plan);
		return true;
	}

	/* checked, and converted, once: by the rules of create_subscription */
	row_options(tup, desc, &opts);
	row.tup = tup;
	row.desc = desc;
	row.opts = &opts;
	old = MemoryContextSwitchTo(TopMemoryContext);
	es_cfg.error = es_worker_try_in_subxact(validate_row, NULL, &row);
	MemoryContextSwitchTo(old);
	if (es_cfg.error != NULL)
	{
		SPI_freeplan(plan);
		return true;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	es_cfg.handler = opts.handler;
	es_cfg.owner = opts.owner;
	es_cfg.batch_handler = opts.batch_handler;
	es_cfg.batch_size = opts.batch_size;
	es_cfg.strategy = opts.strategy;
	es_cfg.checkpoint_interval_ms = opts.interval_ms[ES_OPT_CHECKPOINT_INTERVAL];
	es_cfg.processing_timeout_ms = opts.interval_ms[ES_OPT_PROCESSING_TIMEOUT];
	es_cfg.max_retries = opts.max_retries;
	es_cfg.retry_backoff_ms = opts.interval_ms[ES_OPT_RETRY_BACKOFF];
	es_cfg.continue_on_error = opts.continue_on_error;
	es_cfg.breaker_threshold = opts.breaker_threshold;
	es_cfg.breaker_reset_ms = opts.interval_ms[ES_OPT_BREAKER_RESET];
	es_cfg.event_types = SPI_getbinval(tup, desc, 13, &isnull);
	es_cfg.event_types = isnull ? (Datum) 0 : datumCopy(es_cfg.event_types, false, -1);
	es_cfg.categories = SPI_getbinval(tup, desc, 14, &isnull);
	es_cfg.categories = isnull ? (Datum) 0 : datumCopy(es_cfg.categories, false, -1);
	es_cfg.has_tenant = opts.has_tenant;
	tenant = es_cfg.tenant;
	es_cfg.tenant = opts.tenant ? pstrdup(opts.tenant) : NULL;
	if (tenant != NULL)
		pfree(tenant);
	es_worker.partitions = opts.partitions;
	MemoryContextSwitchTo(old);
	SPI_freeplan(plan);

	fmgr_info_cxt(es_cfg.handler, &es_cfg.handler_finfo, TopMemoryContext);
	old = MemoryContextSwitchTo(TopMemoryContext);
	es_cfg.handler_name = format_procedure(es_cfg.handler);
	es_worker.dbname = get_database_name(MyDatabaseId);
	MemoryContextSwitchTo(old);

	if (es_cfg.events_desc == NULL)
		load_events_desc();
	return true;
}

/* the tenant rule again, for es_worker_tenant_still_allowed() */
static void
check_tenant(EsEventRef *unused, void *arg)
{
	es_check_subscription_tenant(es_cfg.tenant, es_cfg.owner);
}

/*
 * May the subscription's owner still work in its tenant (or across
 * tenants)?  A binding of the owner added or removed since the row was
 * checked breaks the rule the row was checked with: the handler would run
 * in a tenant its owner may no longer use, or a bound role would receive
 * every tenant's events.  The answer is the tenant cache's (tenant.c: a
 * hash probe; the bindings are read again after a write to them commits).
 * On false, es_cfg.error says why, for es_fail_invalid_config().  Inside
 * the batch's transaction.
 */
bool
es_worker_tenant_still_allowed(void)
{
	MemoryContext old;

	if (!es_cfg.has_tenant || es_tenant_role_may_use(es_cfg.owner, es_cfg.tenant))
		return true;
	old = MemoryContextSwitchTo(TopMemoryContext);
	es_cfg.error = es_worker_try_in_subxact(check_tenant, NULL, NULL);
	MemoryContextSwitchTo(old);
	return es_cfg.error == NULL;
}

/*
 * Read the row type of eventsource.events into es_cfg.events_desc.  The new
 * descriptor is built aside and swapped in only when complete: es_cfg.events_desc
 * is never NULL once the worker has started, whatever fails on the way
 * (es_retry_dead_letters() and the delivery paths use it without looking).
 */
static void
load_events_desc(void)
{
	Oid			type = get_rel_type_id(es_catalog()->events_oid);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(type, -1);

	MemoryContextSwitchTo(old);
	if (es_cfg.events_desc != NULL)
		FreeTupleDesc(es_cfg.events_desc);
	es_cfg.events_desc = desc;
	es_cfg.events_type = type;
	/* 1.1: the event's tenant, which a handler call runs in (delivery.c) */
	es_cfg.tenant_attno = 0;
	for (int i = 0; i < desc->natts; i++)
		if (!TupleDescAttr(desc, i)->attisdropped &&
			strcmp(NameStr(TupleDescAttr(desc, i)->attname), "tenant_id") == 0)
			es_cfg.tenant_attno = i + 1;
}

/*
 * The database's SQL objects may be updated under us (ALTER EXTENSION
 * eventsource UPDATE): the first batch after that commit runs with the new
 * version, without a restart.  Paths that need a newer version's objects
 * test es_cfg.sql_version.  A new version may change the subscription's row and
 * the row type of eventsource.events, so both are read again.
 *
 * The caller holds AccessShareLock on eventsource.events, taken in this
 * transaction before the call: an update script that alters the table has
 * then either committed (and the snapshot we take here sees its version) or
 * waits for our transaction, so the events we read in it match the row type
 * we hand to the handler.  every_event commits after each event, so it
 * locks again after each commit and ends the batch if the version moved
 * (es_worker_sql_version_moved()).  Returns false when the subscription is gone.
 * Inside a batch transaction, connected to SPI, as the extension owner.
 */
bool
es_worker_follow_sql_version(void)
{
	int			version;
	char		version_text[NAMEDATALEN];
	bool		ok;

	/* the version and the definition with one snapshot, taken after the lock */
	PushActiveSnapshot(GetLatestSnapshot());
	version = es_sql_version();
	if (version == es_cfg.sql_version)
	{
		PopActiveSnapshot();
		return true;
	}
	strlcpy(version_text, es_sql_version_text(), sizeof(version_text));
	ok = es_worker_load_config();
	PopActiveSnapshot();
	if (!ok)
		return false;
	/* the old descriptor stays in use should the reload fail */
	load_events_desc();

	/* only now: should the reload fail, the next batch tries again */
	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d now runs with version %s of the extension's SQL objects (was %s)",
					es_worker.name, es_worker.partition, version_text, es_cfg.sql_version_text),
			 errdetail("database=%s subscription=%s partition=%d sql_version=%s",
					   es_logfmt(es_worker.dbname), es_logfmt(es_worker.name), es_worker.partition, es_logfmt(version_text))));
	es_cfg.sql_version = version;
	strlcpy(es_cfg.sql_version_text, version_text, sizeof(es_cfg.sql_version_text));
	return true;
}

/*
 * Did an update of the SQL objects commit since we followed the last one?
 * With a snapshot taken now (the caller holds the events lock).
 */
bool
es_worker_sql_version_moved(void)
{
	bool		moved;

	PushActiveSnapshot(GetLatestSnapshot());
	moved = es_sql_version() != es_cfg.sql_version;
	PopActiveSnapshot();
	return moved;
}

