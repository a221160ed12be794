/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A subscription worker: delivers the events of one subscription
 *	  partition to its handler, in position order, never skipping.
 *
 * Each batch is one transaction (every_batch): lock the partition's
 * checkpoint row, compute the safe horizon, read up to batch_size events
 * after the checkpoint and at or below the horizon, call the handler for
 * each in a subtransaction, move the checkpoint, commit.  The handler's
 * writes and the checkpoint commit together, so after any crash the read
 * model matches the checkpoint: nothing is applied twice, nothing is lost.
 * every_event commits after each event; periodic commits the handler's
 * writes every batch but the checkpoint only every checkpoint_interval
 * (at-least-once).  Events that the subscription's filters or partition
 * leave out still move the checkpoint.
 *
 * Failures: a failed call is retried after retry_backoff * 2^k (capped at
 * ES_MAX_BACKOFF_MS), waiting outside any transaction after committing the
 * events before it.  After max_retries the event goes to the dead letters
 * in the transaction that moves the checkpoint past it, or, with
 * continue_on_error off, the partition stops in state failed before it.
 * circuit_breaker_threshold consecutive failed events open the breaker for
 * circuit_breaker_reset; then the next event is a probe: delivered, the
 * breaker closes; failed again, it opens again.
 *
 * Wake-up: the commit of an append sets this worker's latch (registry.c,
 * from the commit callback).  The idle wait's timeout only refreshes the
 * heartbeat.
 *
 * Stop (SIGTERM from a server stop, pause, drop or DROP DATABASE): no new
 * batch is read; the in-flight batch may finish within
 * eventsource.drain_timeout, else it is rolled back (forced); the outcome is
 * logged and kept in the slot and in subscription_partitions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

#include "subscription.h"
#include "trace.h"

#define ES_MAX_BACKOFF_MS		(5 * 60 * 1000)
#define ES_IDLE_WAIT_MS			10000
#define ES_ERROR_WAIT_MAX_MS	60000

/* The subscription's definition, loaded from its row. */
typedef struct EsSubConfig
{
	Oid			handler;
	Oid			owner;
	bool		batch_handler;
	int			batch_size;
	EsStrategy	strategy;
	int64		checkpoint_interval_ms;
	int64		processing_timeout_ms;
	int			max_retries;
	int64		retry_backoff_ms;
	bool		continue_on_error;
	int			breaker_threshold;
	int64		breaker_reset_ms;
	Datum		event_types;	/* text[] or 0 */
	Datum		categories;		/* text[] or 0 */
} EsSubConfig;

/* What a batch ended with. */
typedef enum EsBatchOutcome
{
	BATCH_IDLE,					/* nothing to deliver: caught up */
	BATCH_DONE,					/* delivered events; maybe more to come */
	BATCH_RETRY_WAIT,			/* an event failed; retry after backoff */
	BATCH_BREAKER_OPEN,
	BATCH_FAILED,				/* stopped at an event (continue_on_error off) */
	BATCH_FORCED,				/* drain timed out: rolled back */
	BATCH_GONE,					/* the subscription no longer exists */
	BATCH_ENDED_EARLY			/* every_event: the row or the SQL moved */
} EsBatchOutcome;

static EsWorkerSlot *MySlot = NULL;
static Oid	my_dboid;
static char my_name[ES_MAX_NAME_LEN + 1];
static int	my_partition;
static int	my_partitions;
static int64 my_incarnation;	/* eventsource.subscriptions.id */
static Oid	my_extension;		/* the extension our subscription is in */
static int	my_sql_version = 0; /* the version of its SQL objects we run with */
static char my_sql_version_text[NAMEDATALEN];
static EsDesired row_desired = ES_DESIRED_RUN;	/* what our row says */
static EsSubConfig cfg;
static FmgrInfo handler_finfo;
static TupleDesc events_desc = NULL;	/* row type of eventsource.events */
static Oid	events_type = InvalidOid;
static MemoryContext batch_cxt = NULL;
static char *handler_name = NULL;
static char *my_dbname = NULL;	/* for log lines, read at start */

static void load_events_desc(void);

/*
 * The delivery state: where this partition is and what it waits for.  One
 * instance (dlv), written only by the delivery functions below (the
 * "delivery" section); the main loop reads it through delivery_wait_ms(),
 * delivery_unsaved() and the stop paths.
 *
 * States and transitions:
 *
 *	 unsynced     position_known false: at start, after a batch rolled back
 *	   |          (an error of our own, a forced stop), after a reset seen
 *	   |          between two every_event commits.  The next batch takes
 *	   |          position from the checkpoint row (process_batch).
 *	   v
 *	 delivering   position_known; no event being retried; breaker closed.
 *	   |          Each batch moves position past what it delivered, and
 *	   |          saved_position when it writes the checkpoint (every batch,
 *	   |          every event, or every checkpoint_interval: checkpoint_due).
 *	   |          The row moving under us (reset_subscription: position or
 *	   |          resets differ from what we saved) puts us back in sync
 *	   |          with the row at the next batch.
 *	   |
 *	   +-- an event fails --> retrying: retry_position is the event,
 *	   |          retry_attempts its failed calls, first_failed_at the
 *	   |          first; no batch before retry_not_before (retry_backoff *
 *	   |          2^k, capped).  Delivered: back to delivering.  Retries
 *	   |          exhausted: continue_on_error off → failed (the worker
 *	   |          exits; the slot says failed); on → dead-lettered and
 *	   |          passed (position moves past it), or, should parking it
 *	   |          fail, retrying again.
 *	   |
 *	   +-- consecutive_failed dead letters reach circuit_breaker_threshold
 *	   |          --> breaker open: no batch before breaker_open_until.
 *	   |          Then half-open (breaker_probe): the next batch is one
 *	   |          event; delivered → closed (delivering), dead-lettered →
 *	   |          open again.
 *	   v
 *	 stopping     es_shutdown_requested: checkpoint_due() says every batch
 *	              writes its checkpoint (checkpoints_saved_in_drain counts
 *	              them), and the stop path writes a periodic subscription's
 *	              last position (delivery_final_checkpoint).
 *
 * resets_seen is the row's reset count when we last read it; position and
 * saved_position mean nothing while position_known is false.
 */
typedef struct EsDelivery
{
	/* where we are */
	bool		position_known; /* false: take position from the row */
	int64		position;		/* everything <= position is done */
	int64		saved_position; /* what the checkpoint row says */
	TimestampTz saved_at;		/* when we last wrote it (periodic) */
	int64		resets_seen;	/* the row's "resets" when we last read it */

	/* the event being retried (0: none) */
	int64		retry_position;
	int			retry_attempts; /* failed calls of it so far */
	TimestampTz retry_not_before;	/* also: after an error of our own */
	TimestampTz first_failed_at;

	/* the circuit breaker */
	int64		consecutive_failed; /* dead-lettered events in a row */
	TimestampTz breaker_open_until; /* 0: closed */
	bool		breaker_probe;	/* half-open: the next batch is one event */

	/* a stop */
	int			checkpoints_saved_in_drain;
} EsDelivery;

static EsDelivery dlv = {.resets_seen = -1};

/* transaction bracket */
static Oid	tx_save_userid;
static int	tx_save_sec_context;

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr read_plans[2];	/* 1.0 and 1.1 SQL (es_visible_plan) */
static SPIPlanPtr write_plan = NULL;
static SPIPlanPtr dead_letter_plan = NULL;
static SPIPlanPtr error_plan = NULL;
static SPIPlanPtr error_prune_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr retry_select_plan = NULL;
static SPIPlanPtr retry_done_plan = NULL;
static SPIPlanPtr retry_again_plan = NULL;
static SPIPlanPtr shutdown_plan = NULL;

/*
 * Notifications of the current transaction's failed calls, sent in a
 * transaction of their own once it committed (send_notices): a full NOTIFY
 * queue fails the commit that notifies, and that must never be a batch.
 * In TopMemoryContext; dropped when the transaction rolls back.
 */
typedef struct EsNotice
{
	char	   *payload;
	char	   *fields;			/* the failed event's log fields */
} EsNotice;
static List *pending_notices = NIL;

static void send_notices(void);
static void drop_notices(void);

PGDLLEXPORT void es_worker_main(Datum main_arg);

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (!es_shutdown_requested)
	{
		es_shutdown_requested_at = GetCurrentTimestamp();
		es_shutdown_requested = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* ---------------------------------------------------------------------
 * slot bookkeeping
 * ---------------------------------------------------------------------
 */

/*
 * Exit callback: give the slot back (registry.c sets the restart time from
 * the exit code).
 */
static void
worker_exit(int code, Datum arg)
{
	if (MySlot != NULL)
		es_registry_detach(MySlot, code);
}

/* ---------------------------------------------------------------------
 * transactions
 * ---------------------------------------------------------------------
 */

static void
tx_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	es_become_owner(&tx_save_userid, &tx_save_sec_context);
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
tx_commit(void)
{
	es_restore_user(tx_save_userid, tx_save_sec_context);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	send_notices();
}

static void
tx_abort(void)
{
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	drop_notices();
}

typedef struct EsEventRef
{
	HeapTuple	tuple;			/* in events_desc's layout */
	int64		position;
	TimestampTz recorded_at;
} EsEventRef;

typedef void (*EsBookkeepingFn) (EsEventRef *ev, void *arg);

/*
 * Run fn(ev, arg) in a subtransaction of the current transaction.  Returns
 * NULL when it succeeded, else its error (in the caller's memory context):
 * then it was rolled back alone.
 */
static ErrorData *
try_in_subxact(EsBookkeepingFn fn, EsEventRef *ev, void *arg)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		fn(ev, arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

/* ---------------------------------------------------------------------
 * configuration
 * ---------------------------------------------------------------------
 */

static int64
col_int64(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return DatumGetInt64(SPI_getbinval(tup, desc, col, &isnull));
}

/* An interval column in milliseconds, by the rule create_subscription checked. */
static int64
col_interval_ms(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	int64		us;

	if (!es_interval_us(DatumGetIntervalP(SPI_getbinval(tup, desc, col, &isnull)), &us))
		us = 0;
	return Max(us / 1000, 0);
}

/*
 * Is the extension we started in still there?  Ids start again at 1 when
 * the extension is dropped and created again, and our saved plans would
 * then find the new tables by name: a row with our name, partition and id
 * is not ours if the extension changed.  Inside a transaction.
 */
static bool
extension_is_ours(void)
{
	return get_extension_oid("eventsource", true) == my_extension;
}

/*
 * The key of this worker's partition row, as parameters $1..$3 of every
 * query that reads or writes it: subscription name, partition, incarnation.
 */
static void
set_row_key(Datum *values)
{
	values[0] = CStringGetTextDatum(my_name);
	values[1] = Int32GetDatum(my_partition);
	values[2] = Int64GetDatum(my_incarnation);
}

/* The row being loaded, for validate_row(). */
typedef struct EsLoadedRow
{
	HeapTuple	tup;
	TupleDesc	desc;
} EsLoadedRow;

/*
 * Check the loaded row by the rules of create_subscription's arguments
 * (subscription_rules.c): the table's CHECK constraints may be missing (a
 * database still on the 1.0 SQL) or NOT VALID for an old row, and the
 * handler's signature, the owner's rights and the partition rows are no
 * constraint.  Raises the first rule broken.
 */
static void
validate_row(EsEventRef *unused, void *arg)
{
	EsLoadedRow *row = arg;
	HeapTuple	tup = row->tup;
	TupleDesc	desc = row->desc;
	bool		isnull;
	Oid			owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	bool		batch_handler = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	int32		partitions;
	int32		rows;
	Datum		filter;

	es_check_subscription_name(my_name);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of subscription \"%s\" (role %u) no longer exists",
						my_name, owner)));
	if (es_check_handler(DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull)), owner) !=
		batch_handler)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_handler is %s, but the handler takes %s",
						batch_handler ? "true" : "false",
						batch_handler ? "one event" : "a batch")));
	es_check_int_range(DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull)),
					   "batch_size", 1, ES_MAX_EVENTS_PER_CALL);
	(void) es_check_strategy(SPI_getvalue(tup, desc, 5));
	(void) es_check_interval_ms(DatumGetIntervalP(SPI_getbinval(tup, desc, 6, &isnull)),
								"checkpoint_interval", false);
	(void) es_check_interval_ms(DatumGetIntervalP(SPI_getbinval(tup, desc, 7, &isnull)),
								"processing_timeout", false);
	es_check_int_range(DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull)),
					   "max_retries", 0, ES_MAX_RETRIES);
	(void) es_check_interval_ms(DatumGetIntervalP(SPI_getbinval(tup, desc, 9, &isnull)),
								"retry_backoff", true);
	es_check_int_range(DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull)),
					   "circuit_breaker_threshold", 0, ES_MAX_BREAKER_THRESHOLD);
	(void) es_check_interval_ms(DatumGetIntervalP(SPI_getbinval(tup, desc, 12, &isnull)),
								"circuit_breaker_reset", false);
	filter = SPI_getbinval(tup, desc, 13, &isnull);
	if (!isnull)
		es_check_text_array(DatumGetArrayTypeP(filter), "event_types");
	filter = SPI_getbinval(tup, desc, 14, &isnull);
	if (!isnull)
		es_check_text_array(DatumGetArrayTypeP(filter), "categories");
	partitions = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
	es_check_partitions(partitions);
	/* events hashed to a partition without a row would never be delivered */
	rows = DatumGetInt32(SPI_getbinval(tup, desc, 18, &isnull));
	if (partitions != rows)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions is %d, but the subscription was created with %d",
						partitions, rows),
				 errhint("Create a new subscription to change the partition count.")));
}

/* Why the loaded configuration is invalid (NULL: it is valid). */
static ErrorData *config_error = NULL;

/*
 * Load the subscription's row.  Returns false when it is gone (or replaced
 * by a newer subscription of the same name); row_desired says what the row
 * wants: run, paused, or stopped at an event; config_error whether it
 * breaks a rule (then nothing else is loaded).  Inside a transaction,
 * connected to SPI, as the extension owner.
 */
static bool
load_config(void)
{
	SPIPlanPtr	plan;
	Oid			types[3] = {TEXTOID, INT4OID, INT8OID};
	Datum		values[3];
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	MemoryContext old;

	if (!extension_is_ours())
		return false;
	plan = SPI_prepare("SELECT s.handler::pg_catalog.oid, s.owner::pg_catalog.oid, s.batch_handler,"
					   " s.batch_size, s.checkpoint_strategy,"
					   " s.checkpoint_interval,"
					   " s.processing_timeout,"
					   " s.max_retries,"
					   " s.retry_backoff,"
					   " s.continue_on_error, s.circuit_breaker_threshold,"
					   " s.circuit_breaker_reset,"
					   " s.event_types, s.categories, s.partitions, s.state, p.state,"
					   " (SELECT pg_catalog.count(*) FROM eventsource.subscription_partitions q"
					   "   WHERE q.subscription OPERATOR(pg_catalog.=) s.name)::pg_catalog.int4"
					   " FROM eventsource.subscriptions s"
					   " JOIN eventsource.subscription_partitions p ON p.subscription OPERATOR(pg_catalog.=) s.name"
					   " WHERE s.name OPERATOR(pg_catalog.=) $1 AND p.partition OPERATOR(pg_catalog.=) $2"
					   " AND s.id OPERATOR(pg_catalog.=) $3",
					   3, types);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	set_row_key(values);
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "eventsource worker: could not read subscription \"%s\"", my_name);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	/* paused or stopped since we were registered (e.g. during discovery) */
	row_desired = strcmp(SPI_getvalue(tup, desc, 17), "ok") != 0 ? ES_DESIRED_FAILED :
		strcmp(SPI_getvalue(tup, desc, 16), "active") != 0 ? ES_DESIRED_PAUSE :
		ES_DESIRED_RUN;
	if (!SearchSysCacheExists1(PROCOID, SPI_getbinval(tup, desc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the handler of subscription \"%s\" (function %u) no longer exists",
						my_name, DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull))),
				 errhint("Drop the subscription, or create the function again and restart its worker.")));
	if (row_desired == ES_DESIRED_RUN)
	{
		EsLoadedRow row = {tup, desc};

		old = MemoryContextSwitchTo(TopMemoryContext);
		config_error = try_in_subxact(validate_row, NULL, &row);
		MemoryContextSwitchTo(old);
		if (config_error != NULL)
			return true;
	}

	old = MemoryContextSwitchTo(TopMemoryContext);
	cfg.handler = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	cfg.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	cfg.batch_handler = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	cfg.batch_size = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
	cfg.strategy = es_check_strategy(SPI_getvalue(tup, desc, 5));
	cfg.checkpoint_interval_ms = col_interval_ms(tup, desc, 6);
	cfg.processing_timeout_ms = col_interval_ms(tup, desc, 7);
	cfg.max_retries = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	cfg.retry_backoff_ms = col_interval_ms(tup, desc, 9);
	cfg.continue_on_error = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	cfg.breaker_threshold = DatumGetInt32(SPI_getbinval(tup, desc, 11, &isnull));
	cfg.breaker_reset_ms = col_interval_ms(tup, desc, 12);
	cfg.event_types = SPI_getbinval(tup, desc, 13, &isnull);
	cfg.event_types = isnull ? (Datum) 0 : datumCopy(cfg.event_types, false, -1);
	cfg.categories = SPI_getbinval(tup, desc, 14, &isnull);
	cfg.categories = isnull ? (Datum) 0 : datumCopy(cfg.categories, false, -1);
	my_partitions = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
	MemoryContextSwitchTo(old);
	SPI_freeplan(plan);

	fmgr_info_cxt(cfg.handler, &handler_finfo, TopMemoryContext);
	old = MemoryContextSwitchTo(TopMemoryContext);
	handler_name = format_procedure(cfg.handler);
	my_dbname = get_database_name(MyDatabaseId);
	MemoryContextSwitchTo(old);

	if (events_desc == NULL)
		load_events_desc();
	return true;
}

/*
 * Read the row type of eventsource.events into events_desc.  The new
 * descriptor is built aside and swapped in only when complete: events_desc
 * is never NULL once the worker has started, whatever fails on the way
 * (retry_dead_letters() and the delivery paths use it without looking).
 */
static void
load_events_desc(void)
{
	Oid			type = get_rel_type_id(es_catalog()->events_oid);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(type, -1);

	MemoryContextSwitchTo(old);
	if (events_desc != NULL)
		FreeTupleDesc(events_desc);
	events_desc = desc;
	events_type = type;
}

/* ---------------------------------------------------------------------
 * checkpoint
 * ---------------------------------------------------------------------
 */

/*
 * Read and lock this partition's row (its checkpoint) until the transaction
 * ends: reset_subscription() and drop_subscription() wait for the batch.
 * Returns false when the row is gone or belongs to a newer subscription of
 * the same name: ours was dropped.
 */
static bool
read_checkpoint(int64 *pos, int64 *resets)
{
	Datum		values[3];
	Oid			types[3] = {TEXTOID, INT4OID, INT8OID};

	if (!extension_is_ours())
		return false;
	if (lock_plan == NULL)
		lock_plan = es_prepare("SELECT position, resets FROM eventsource.subscription_partitions"
							   " WHERE subscription OPERATOR(pg_catalog.=) $1"
							   " AND partition OPERATOR(pg_catalog.=) $2"
							   " AND subscription_id OPERATOR(pg_catalog.=) $3 FOR UPDATE",
							   3, types);
	set_row_key(values);
	es_exec_plan(lock_plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;
	*pos = col_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*resets = col_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/*
 * Write the checkpoint in the current transaction, which holds the row's
 * lock (read_checkpoint).
 */
static void
write_checkpoint(int64 pos)
{
	Datum		values[4];
	Oid			types[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};

	if (write_plan == NULL)
		write_plan = es_prepare("UPDATE eventsource.subscription_partitions SET position = $4,"
								" checkpointed_at = pg_catalog.now()"
								" WHERE subscription OPERATOR(pg_catalog.=) $1"
								" AND partition OPERATOR(pg_catalog.=) $2"
								" AND subscription_id OPERATOR(pg_catalog.=) $3",
								4, types);
	set_row_key(values);
	values[3] = Int64GetDatum(pos);
	es_exec_plan(write_plan, values, NULL, SPI_OK_UPDATE);
	dlv.saved_position = pos;
	dlv.saved_at = GetCurrentTimestamp();
	if (es_shutdown_requested)
		dlv.checkpoints_saved_in_drain++;
}

/* Is a checkpoint write due (the strategy says when)? */
static bool
checkpoint_due(void)
{
	if (dlv.position == dlv.saved_position)
		return false;
	if (cfg.strategy != ES_PERIODIC || es_shutdown_requested)
		return true;
	return GetCurrentTimestamp() >= dlv.saved_at + cfg.checkpoint_interval_ms * 1000;
}

/* ---------------------------------------------------------------------
 * failures: recent errors, notifications, dead letters, stop-at-event
 * ---------------------------------------------------------------------
 */

static Datum
event_column(EsEventRef *ev, int attno, bool *isnull)
{
	return heap_getattr(ev->tuple, attno, events_desc, isnull);
}

/*
 * A value for a key=value log field, quoted (logfmt style) when it holds a
 * space, a quote or an equals sign.
 */
static char *
logfmt(const char *value)
{
	StringInfoData buf;

	if (value == NULL)
		value = "";
	if (value[0] != '\0' && strpbrk(value, " \"=\\") == NULL)
		return pstrdup(value);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	for (const char *p = value; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '"');
	return buf.data;
}

/*
 * The structured fields of a log line about an event: they go into
 * errdetail, which log_destination = 'jsonlog' keeps as "detail".
 */
static char *
log_fields(EsEventRef *ev, const char *sqlstate)
{
	bool		isnull;

	/* no event: a failure of the subscription itself (its configuration) */
	if (ev == NULL)
		return psprintf("database=%s subscription=%s partition=%d sqlstate=%s category=%s severity=%s",
						logfmt(my_dbname), logfmt(my_name), my_partition, sqlstate,
						es_error_category(sqlstate), es_error_severity(sqlstate));
	return psprintf("database=%s subscription=%s partition=%d event_id=%s position=" INT64_FORMAT
					" sqlstate=%s category=%s severity=%s%s",
					logfmt(my_dbname), logfmt(my_name), my_partition,
					DatumGetCString(DirectFunctionCall1(uuid_out, event_column(ev, 4, &isnull))),
					ev->position, sqlstate, es_error_category(sqlstate),
					es_error_severity(sqlstate), es_trace_log_fields());
}

/* ---------------------------------------------------------------------
 * Bookkeeping that must never stop delivery
 *
 * Recording an error, notifying, parking a dead letter, writing a status:
 * each runs in a subtransaction of its own (run_bookkeeping), so that its
 * failure (a too-long value, a trigger someone put on our tables, a lock
 * timeout, ...) rolls back only itself.  The failure is logged with the
 * event's structured fields and counted in the slot; the event itself goes
 * on through the retry / dead-letter path like any handler failure.
 */


/* A bookkeeping step failed: say so in the log and count it. */
static void
note_bookkeeping_failure(const char *what, const char *fields, ErrorData *edata)
{
	const char *sqlstate = unpack_sql_state(edata->sqlerrcode);
	int64		failures;
	char	   *message;

	failures = es_slot_bookkeeping_failed(MySlot);
	message = psprintf("could not %s: %s", what, edata->message);
	es_slot_note_error(MySlot, message, sqlstate, false);
	pfree(message);				/* the slot keeps a copy; the caller may be in TopMemoryContext */
	ereport(WARNING,
			(errmsg("eventsource: subscription \"%s\" partition %d could not %s: %s",
					my_name, my_partition, what, edata->message),
			 errdetail("%s bookkeeping_sqlstate=%s bookkeeping_failures=" INT64_FORMAT,
					   fields, sqlstate, failures),
			 errhint("Delivery goes on: the event is retried or dead-lettered as usual.")));
}

/*
 * Run fn(ev, arg) in a subtransaction of the current transaction (connected
 * to SPI, as the extension owner).  Returns false when it failed: then it
 * was rolled back alone, logged and counted.
 */
static bool
run_bookkeeping(const char *what, EsEventRef *ev, EsBookkeepingFn fn, void *arg)
{
	ErrorData  *edata = try_in_subxact(fn, ev, arg);

	if (edata == NULL)
		return true;
	note_bookkeeping_failure(what, log_fields(ev, unpack_sql_state(edata->sqlerrcode)),
							 edata);
	FreeErrorData(edata);
	return false;
}

/*
 * The payload of a notification about a failed call, cut to fit NOTIFY's
 * limit (async.c: payloads of BLCKSZ - NAMEDATALEN - 128 bytes or more are
 * refused): the message is shortened on a character boundary, and
 * "message_truncated" says whether it was.  "head" is the JSON object up to
 * the message.
 */
#define ES_NOTIFY_PAYLOAD_MAX	(BLCKSZ - NAMEDATALEN - 128)

static char *
notify_payload(const char *head, const char *message)
{
	int			len = strlen(message);
	int			keep = len;

	for (;;)
	{
		StringInfoData buf;
		int			over;

		initStringInfo(&buf);
		appendStringInfoString(&buf, head);
		escape_json(&buf, keep == len ? message : pnstrdup(message, keep));
		appendStringInfo(&buf, ", \"message_truncated\": %s, \"message_bytes\": %d}",
						 keep < len ? "true" : "false", len);
		over = buf.len - (ES_NOTIFY_PAYLOAD_MAX - 1);
		if (over <= 0 || keep == 0)
			return buf.data;
		/* each byte cut shortens the escaped text by at least one */
		keep = pg_mbcliplen(message, keep, Max(keep - over, 0));
		pfree(buf.data);
	}
}

/*
 * Send the notifications of the transaction that just committed, in a
 * transaction of their own.  A failure (e.g. the NOTIFY queue is full) is
 * logged and counted, and the notifications are lost: the errors are in
 * eventsource.recent_errors and the log.
 */
static void
send_notices(void)
{
	ListCell   *lc;
	EsNotice   *failed_at = NULL;

	if (pending_notices == NIL)
		return;
	PG_TRY();
	{
		StartTransactionCommand();
		foreach(lc, pending_notices)
		{
			failed_at = lfirst(lc);
			Async_Notify("eventsource_errors", failed_at->payload);
		}
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		note_bookkeeping_failure("send a notification on channel eventsource_errors",
								 failed_at ? failed_at->fields : "", edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	drop_notices();
}

static void
drop_notices(void)
{
	ListCell   *lc;

	foreach(lc, pending_notices)
	{
		EsNotice   *n = lfirst(lc);

		pfree(n->payload);
		pfree(n->fields);
	}
	list_free_deep(pending_notices);
	pending_notices = NIL;
}

typedef struct EsErrorRow
{
	EsCallError *err;
	int			attempt;
} EsErrorRow;

/* The recent_errors row of a failed call, and the table's bound. */
static void
insert_error_row(EsEventRef *ev, void *arg)
{
	EsErrorRow *row = arg;
	Datum		values[10];
	bool		isnull;

	if (error_plan == NULL)
	{
		Oid			types[10] = {TEXTOID, INT4OID, INT8OID, UUIDOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};

		error_plan = es_prepare("INSERT INTO eventsource.recent_errors (subscription, partition,"
								" global_position, event_id, event_type, error_message, error_sqlstate,"
								" error_category, error_severity, attempt)"
								" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
								10, types);
	}
	if (error_prune_plan == NULL)
	{
		Oid			prune_types[1] = {INT4OID};

		error_prune_plan = es_prepare("DELETE FROM eventsource.recent_errors WHERE id OPERATOR(pg_catalog.<=)"
									  " ((SELECT pg_catalog.max(id) FROM eventsource.recent_errors)"
									  "  OPERATOR(pg_catalog.-) $1)",
									  1, prune_types);
	}
	values[0] = CStringGetTextDatum(my_name);
	values[1] = Int32GetDatum(my_partition);
	values[2] = Int64GetDatum(ev->position);
	values[3] = event_column(ev, 4, &isnull);
	values[4] = event_column(ev, 5, &isnull);
	values[5] = CStringGetTextDatum(row->err->message);
	values[6] = CStringGetTextDatum(row->err->sqlstate);
	values[7] = CStringGetTextDatum(es_error_category(row->err->sqlstate));
	values[8] = CStringGetTextDatum(es_error_severity(row->err->sqlstate));
	values[9] = Int32GetDatum(row->attempt);
	es_exec_plan(error_plan, values, NULL, SPI_OK_INSERT);
	values[0] = Int32GetDatum(es_recent_errors_kept);
	es_exec_plan(error_prune_plan, values, NULL, SPI_OK_DELETE);
}

/*
 * Record one failed handler call: the slot's statistics, the bounded
 * recent_errors table, a notification when severe enough (sent once the
 * transaction commits), the log.  In the current transaction; none of it
 * can fail the transaction.
 */
static void
record_error(EsEventRef *ev, EsCallError *err, int attempt, bool will_retry)
{
	const char *category = es_error_category(err->sqlstate);
	const char *severity = es_error_severity(err->sqlstate);
	EsErrorRow	row = {err, attempt};
	bool		isnull;

	es_slot_note_error(MySlot, err->message, err->sqlstate, will_retry);
	(void) run_bookkeeping("record the error in eventsource.recent_errors", ev,
						   insert_error_row, &row);

	/* publish it, from the worker and never from appenders */
	if (es_severity_rank(severity) >= es_notify_min_severity)
	{
		StringInfoData head;
		char	   *event_id = DatumGetCString(DirectFunctionCall1(uuid_out,
																   event_column(ev, 4, &isnull)));
		MemoryContext old;
		EsNotice   *notice;
		char	   *payload;
		char	   *fields;

		initStringInfo(&head);
		appendStringInfoString(&head, "{\"subscription\": ");
		escape_json(&head, my_name);
		appendStringInfo(&head, ", \"partition\": %d, \"position\": " INT64_FORMAT
						 ", \"event_id\": \"%s\", \"sqlstate\": \"%s\", \"category\": \"%s\""
						 ", \"severity\": \"%s\", \"attempt\": %d, \"will_retry\": %s, \"message\": ",
						 my_partition, ev->position, event_id, err->sqlstate, category,
						 severity, attempt, will_retry ? "true" : "false");
		/*
		 * Built in the current (batch) context, whose temporaries go with
		 * it; only the two kept strings and the list cell live in
		 * TopMemoryContext until drop_notices() frees them.
		 */
		payload = notify_payload(head.data, err->message);
		fields = log_fields(ev, err->sqlstate);
		old = MemoryContextSwitchTo(TopMemoryContext);
		notice = palloc(sizeof(EsNotice));
		notice->payload = pstrdup(payload);
		notice->fields = pstrdup(fields);
		pending_notices = lappend(pending_notices, notice);
		MemoryContextSwitchTo(old);
	}

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" handler failed on event at position " INT64_FORMAT " (attempt %d%s): %s",
					my_name, ev->position, attempt,
					will_retry ? ", will retry" : "", err->message),
			 errdetail("%s attempt=%d", log_fields(ev, err->sqlstate), attempt)));
}

typedef struct EsDeadLetter
{
	EsCallError *err;
	int			retries;
} EsDeadLetter;

static void
insert_dead_letter(EsEventRef *ev, void *arg)
{
	EsDeadLetter *dl = arg;
	Datum		values[16];
	bool		isnull;

	if (dead_letter_plan == NULL)
	{
		Oid			types[16] = {TEXTOID, INT4OID, INT8OID, TEXTOID, INT8OID, UUIDOID,
			TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, INT4OID, TIMESTAMPTZOID};

		dead_letter_plan = es_prepare("INSERT INTO eventsource.dead_letters (subscription, partition,"
									  " global_position, stream_id, stream_version, event_id, event_type,"
									  " data, metadata, recorded_at, error_message, error_sqlstate,"
									  " error_category, error_severity, retry_count, first_failed_at)"
									  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
									  " $14, $15, $16)",
									  16, types);
	}
	values[0] = CStringGetTextDatum(my_name);
	values[1] = Int32GetDatum(my_partition);
	for (int i = 0; i < 8; i++)
		values[2 + i] = event_column(ev, i + 1, &isnull);
	values[10] = CStringGetTextDatum(dl->err->message);
	values[11] = CStringGetTextDatum(dl->err->sqlstate);
	values[12] = CStringGetTextDatum(es_error_category(dl->err->sqlstate));
	values[13] = CStringGetTextDatum(es_error_severity(dl->err->sqlstate));
	values[14] = Int32GetDatum(dl->retries);
	values[15] = TimestampTzGetDatum(dlv.first_failed_at ? dlv.first_failed_at : GetCurrentTimestamp());
	es_exec_plan(dead_letter_plan, values, NULL, SPI_OK_INSERT);
}

/*
 * Park an event in the dead letters, in the transaction that passes it.
 * False when that failed: the event must not be passed (it would be lost);
 * it is retried later.
 */
static bool
dead_letter(EsEventRef *ev, EsCallError *err, int retries)
{
	EsDeadLetter dl = {err, retries};

	if (!run_bookkeeping("park the event in eventsource.dead_letters", ev,
						 insert_dead_letter, &dl))
		return false;
	es_slot_event_failed(MySlot, true);
	return true;
}

typedef struct EsFailedRow
{
	const char *message;
	const char *sqlstate;
} EsFailedRow;

/*
 * Our partition row says: stopped, at event "ev" (NULL: at no event, the
 * configuration is invalid), with this error.
 */
static void
write_failed_row(EsEventRef *ev, void *arg)
{
	EsFailedRow *f = arg;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Oid			types[7] = {TEXTOID, INT4OID, INT8OID, INT8OID, UUIDOID, TEXTOID, TEXTOID};

	if (fail_plan == NULL)
		fail_plan = es_prepare("UPDATE eventsource.subscription_partitions SET state = 'failed',"
							   " failed_position = $4, failed_event_id = $5, error_message = $6,"
							   " error_sqlstate = $7, failed_at = pg_catalog.now()"
							   " WHERE subscription OPERATOR(pg_catalog.=) $1"
							   " AND partition OPERATOR(pg_catalog.=) $2"
							   " AND subscription_id OPERATOR(pg_catalog.=) $3",
							   7, types);
	set_row_key(values);
	if (ev != NULL)
	{
		values[3] = Int64GetDatum(ev->position);
		values[4] = event_column(ev, 4, &isnull);
	}
	else
		nulls[3] = nulls[4] = 'n';
	values[5] = CStringGetTextDatum(f->message);
	values[6] = CStringGetTextDatum(f->sqlstate);
	es_exec_plan(fail_plan, values, nulls, SPI_OK_UPDATE);
}

/*
 * Commit the transaction that wrote our partition row as failed.  The slot
 * says "failed" before the row does: a resume_subscription() waits for our
 * row lock, so it commits, and sets the slot back to run, only after this
 * (the other order could lose that resume).  A failed commit undoes it.
 */
static void
commit_as_failed(void)
{
	es_slot_set_desired_if(MySlot, ES_DESIRED_RUN, ES_DESIRED_FAILED);
	PG_TRY();
	{
		tx_commit();
	}
	PG_CATCH();
	{
		es_slot_set_desired_if(MySlot, ES_DESIRED_FAILED, ES_DESIRED_RUN);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Stop this partition at an event (continue_on_error off).  Own
 * transaction.  Should the row not take the record, the slot still says
 * failed (until a restart, which then retries the event).
 */
static void
stop_at_event(EsEventRef *ev, EsCallError *err)
{
	EsFailedRow f = {err->message, err->sqlstate};

	tx_begin("eventsource: stopping at a failed event");
	if (!extension_is_ours())
	{
		tx_commit();			/* the next batch finds us gone */
		return;
	}
	(void) run_bookkeeping("record that the partition stopped", ev, write_failed_row, &f);

	commit_as_failed();
	es_slot_event_failed(MySlot, false);
	es_slot_set_state(MySlot, ES_STATE_FAILED);
	ereport(WARNING,
			(errmsg("eventsource: subscription \"%s\" partition %d stopped at the event at position " INT64_FORMAT " after %d failed attempts (continue_on_error is off): %s",
					my_name, my_partition, ev->position, cfg.max_retries + 1, err->message),
			 errdetail("%s", log_fields(ev, err->sqlstate)),
			 errhint("Fix the cause, then call eventsource.resume_subscription('%s') to retry the event.",
					 my_name)));
}

/*
 * The configuration we loaded breaks a rule (config_error): never run it.
 * The partition goes to failed, with the reason in its row and slot (the
 * status view's last_error), and the worker exits.  resume_subscription()
 * after the row is corrected starts it again (and it checks again).
 */
static void
fail_invalid_config(void)
{
	EsFailedRow f;
	char	   *message = psprintf("invalid configuration: %s", config_error->message);

	f.message = message;
	f.sqlstate = unpack_sql_state(config_error->sqlerrcode);
	tx_begin("eventsource: refusing an invalid configuration");
	if (my_dbname == NULL)
		my_dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	if (extension_is_ours())
		(void) run_bookkeeping("record that the partition stopped", NULL, write_failed_row, &f);
	commit_as_failed();
	es_slot_note_error(MySlot, message, f.sqlstate, false);
	es_slot_set_state(MySlot, ES_STATE_FAILED);
	ereport(WARNING,
			(errcode(config_error->sqlerrcode),
			 errmsg("eventsource: subscription \"%s\" partition %d does not run: %s",
					my_name, my_partition, message),
			 errdetail("%s", log_fields(NULL, f.sqlstate)),
			 errhint("Correct its row in eventsource.subscriptions, then call eventsource.resume_subscription('%s').",
					 my_name)));
	proc_exit(0);
}

/* ---------------------------------------------------------------------
 * delivery
 * ---------------------------------------------------------------------
 */

static int64
backoff_ms(int attempts)
{
	int64		ms = cfg.retry_backoff_ms;

	for (int i = 1; i < attempts && ms < ES_MAX_BACKOFF_MS; i++)
		ms *= 2;
	return Min(ms, (int64) ES_MAX_BACKOFF_MS);
}

/* Call the handler for one event (a 1-element array for batch handlers). */
static EsCallResult
deliver_one(EsEventRef *ev, EsCallError *err)
{
	Datum		arg = heap_copy_tuple_as_datum(ev->tuple, events_desc);

	if (cfg.batch_handler)
		arg = PointerGetDatum(construct_array(&arg, 1, events_type, -1, false, TYPALIGN_DOUBLE));
	es_trace_set_retry(ev->position == dlv.retry_position ? dlv.retry_attempts : 0);
	return es_call_handler(&handler_finfo, arg, cfg.owner, cfg.processing_timeout_ms,
						   my_name, ev->tuple, events_desc, err);
}

/* Call a batch handler once with the whole batch. */
static EsCallResult
deliver_all(EsEventRef *events, int n, EsCallError *err)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		elems[i] = heap_copy_tuple_as_datum(events[i].tuple, events_desc);
	return es_call_handler(&handler_finfo,
						   PointerGetDatum(construct_array(elems, n, events_type, -1,
														   false, TYPALIGN_DOUBLE)),
						   cfg.owner, cfg.processing_timeout_ms, my_name, NULL, NULL, err);
}

/*
 * Read the next events: after the checkpoint, at or below the horizon, in
 * this partition, passing the filters.  Copies them into batch_cxt.  Sets
 * *scanned_to to the position up to which everything was looked at.
 */
static int
fetch_events(int64 after, int64 head, int limit, EsEventRef **out, int64 *scanned_to)
{
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	MemoryContext old;
	int			n;
	SPIPlanPtr	read_plan;

	{
		Oid			types[7] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, INT4OID, INT4OID, INT4OID};

		/* the visible events only: lifecycle.c, es_visible_plan() */
		read_plan = es_visible_plan(read_plans, "SELECT * FROM @EVENTS@"
							   " WHERE global_position OPERATOR(pg_catalog.>) $1"
							   " AND global_position OPERATOR(pg_catalog.<=) $2"
							   " AND ($3 IS NULL OR event_type OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.unnest($3)))"
							   " AND ($4 IS NULL OR pg_catalog.split_part(stream_id, '-', 1)"
							   "      OPERATOR(pg_catalog.=) ANY (SELECT pg_catalog.unnest($4)))"
							   " AND ($5 OPERATOR(pg_catalog.=) 1 OR"
							   "      eventsource.stream_partition(stream_id, $5) OPERATOR(pg_catalog.=) $6)"
							   " ORDER BY global_position LIMIT $7",
							   7, types, true);
	}
	values[0] = Int64GetDatum(after);
	values[1] = Int64GetDatum(head);
	values[2] = cfg.event_types;
	nulls[2] = cfg.event_types ? ' ' : 'n';
	values[3] = cfg.categories;
	nulls[3] = cfg.categories ? ' ' : 'n';
	values[4] = Int32GetDatum(my_partitions);
	values[5] = Int32GetDatum(my_partition);
	values[6] = Int32GetDatum(limit);
	es_spi_read_latest(read_plan, values, nulls, NULL, 0);

	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(batch_cxt);
	*out = palloc(sizeof(EsEventRef) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		(*out)[i].tuple = heap_copytuple(tup);
		(*out)[i].position = DatumGetInt64(heap_getattr(tup, 1, SPI_tuptable->tupdesc, &isnull));
		(*out)[i].recorded_at = DatumGetTimestampTz(heap_getattr(tup, 8, SPI_tuptable->tupdesc, &isnull));
	}
	MemoryContextSwitchTo(old);

	/* fewer than asked: everything up to the horizon was looked at */
	*scanned_to = (n < limit) ? head : (*out)[n - 1].position;
	return n;
}

/* After a success: the breaker closes, counters move. */
static void
note_success(EsEventRef *ev, int n)
{
	dlv.position = ev->position;
	dlv.consecutive_failed = 0;
	dlv.breaker_probe = false;
	if (dlv.retry_position != 0 && ev->position >= dlv.retry_position)
	{
		dlv.retry_position = 0;
		dlv.retry_attempts = 0;
		dlv.first_failed_at = 0;
	}
	es_slot_delivered(MySlot, ev->position, ev->recorded_at, n);
}

/* The event at "position" is retried after its "attempt"-th failed call. */
static void
retry_later(int64 position, int attempt)
{
	dlv.retry_position = position;
	dlv.retry_attempts = attempt;
	dlv.retry_not_before = GetCurrentTimestamp() + backoff_ms(attempt) * 1000;
}

/*
 * An event failed.  Returns the batch outcome to stop with, or BATCH_DONE to
 * go on with the next event (it was dead-lettered).  In the batch's
 * transaction.
 */
static EsBatchOutcome
handle_failure(EsEventRef *ev, EsCallError *err)
{
	int			attempt = (ev->position == dlv.retry_position ? dlv.retry_attempts : 0) + 1;
	bool		will_retry = attempt <= cfg.max_retries;

	if (dlv.first_failed_at == 0 || ev->position != dlv.retry_position)
		dlv.first_failed_at = GetCurrentTimestamp();
	record_error(ev, err, attempt, will_retry);

	if (will_retry)
	{
		retry_later(ev->position, attempt);
		return BATCH_RETRY_WAIT;
	}

	/* retries exhausted */
	dlv.retry_position = 0;
	dlv.retry_attempts = 0;
	if (!cfg.continue_on_error)
		return BATCH_FAILED;

	if (!dead_letter(ev, err, attempt - 1))
	{
		/* not parked, so not passed: try it again later */
		retry_later(ev->position, attempt);
		return BATCH_RETRY_WAIT;
	}
	dlv.first_failed_at = 0;
	dlv.position = ev->position;
	dlv.consecutive_failed++;
	if (dlv.breaker_probe ||
		(cfg.breaker_threshold > 0 && dlv.consecutive_failed >= cfg.breaker_threshold))
	{
		dlv.breaker_probe = false;
		dlv.breaker_open_until = GetCurrentTimestamp() + cfg.breaker_reset_ms * 1000;
		es_slot_set_circuit_open_until(MySlot, dlv.breaker_open_until);
		ereport(LOG,
				(errmsg("eventsource: subscription \"%s\" partition %d: circuit breaker open for " INT64_FORMAT " ms after " INT64_FORMAT " consecutive failed events",
						my_name, my_partition, cfg.breaker_reset_ms, dlv.consecutive_failed)));
		return BATCH_BREAKER_OPEN;
	}
	return BATCH_DONE;
}

/* Commit what the batch did: checkpoint (if due), then the transaction. */
static void
finish_batch(void)
{
	if (checkpoint_due())
		write_checkpoint(dlv.position);
	tx_commit();
	es_slot_checkpointed(MySlot, dlv.saved_position);
	es_slot_set_progress(MySlot, dlv.position, dlv.resets_seen);	/* for the status */
}

/*
 * The database's SQL objects may be updated under us (ALTER EXTENSION
 * eventsource UPDATE): the first batch after that commit runs with the new
 * version, without a restart.  Paths that need a newer version's objects
 * test my_sql_version.  A new version may change the subscription's row and
 * the row type of eventsource.events, so both are read again.
 *
 * The caller holds AccessShareLock on eventsource.events, taken in this
 * transaction before the call: an update script that alters the table has
 * then either committed (and the snapshot we take here sees its version) or
 * waits for our transaction, so the events we read in it match the row type
 * we hand to the handler.  every_event commits after each event, so it
 * locks again after each commit and ends the batch if the version moved
 * (sql_version_moved()).  Returns false when the subscription is gone.
 * Inside a batch transaction, connected to SPI, as the extension owner.
 */
static bool
follow_sql_version(void)
{
	int			version;
	char		version_text[NAMEDATALEN];
	bool		ok;

	/* the version and the definition with one snapshot, taken after the lock */
	PushActiveSnapshot(GetLatestSnapshot());
	version = es_sql_version();
	if (version == my_sql_version)
	{
		PopActiveSnapshot();
		return true;
	}
	strlcpy(version_text, es_sql_version_text(), sizeof(version_text));
	ok = load_config();
	PopActiveSnapshot();
	if (!ok)
		return false;
	/* the old descriptor stays in use should the reload fail */
	load_events_desc();

	/* only now: should the reload fail, the next batch tries again */
	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d now runs with version %s of the extension's SQL objects (was %s)",
					my_name, my_partition, version_text, my_sql_version_text),
			 errdetail("database=%s subscription=%s partition=%d sql_version=%s",
					   logfmt(my_dbname), logfmt(my_name), my_partition, logfmt(version_text))));
	my_sql_version = version;
	strlcpy(my_sql_version_text, version_text, sizeof(my_sql_version_text));
	return true;
}

/*
 * Did an update of the SQL objects commit since we followed the last one?
 * With a snapshot taken now (the caller holds the events lock).
 */
static bool
sql_version_moved(void)
{
	bool		moved;

	PushActiveSnapshot(GetLatestSnapshot());
	moved = es_sql_version() != my_sql_version;
	PopActiveSnapshot();
	return moved;
}

/*
 * Lock eventsource.events and our checkpoint row for this transaction, and
 * read the row: false when it is gone (the subscription was dropped).
 * *moved says whether the row is not where we left it: reset_subscription()
 * moved it (its reset count changed, even when it names the very position
 * we last saved).  We hold the row's lock until the transaction ends, so no
 * reset lands between this read and our write.  Lock order
 * (CONTRIBUTING.md): eventsource.events, then our row.
 */
static bool
lock_checkpoint(int64 *row_position, bool *moved)
{
	int64		resets;

	LockRelationOid(es_catalog()->events_oid, AccessShareLock);
	if (!read_checkpoint(row_position, &resets))
		return false;
	*moved = !dlv.position_known || *row_position != dlv.saved_position ||
		resets != dlv.resets_seen;
	dlv.resets_seen = resets;
	return true;
}

/*
 * every_event: commit the event just delivered (its effects and its
 * checkpoint), and open the next event's transaction.  BATCH_DONE to go on;
 * BATCH_GONE; or BATCH_ENDED_EARLY when the rest of the batch must be read
 * again: reset_subscription() moved our row in between (the next batch
 * follows it), or an update of the SQL objects committed (the rest was read
 * with the old row type; the next batch follows the update).  Leaves a
 * transaction open whatever it returns.
 */
static EsBatchOutcome
next_event_transaction(void)
{
	int64		row_position;
	bool		moved;

	finish_batch();
	tx_begin("eventsource: delivering events");
	if (!lock_checkpoint(&row_position, &moved))
		return BATCH_GONE;
	if (moved)
	{
		dlv.position_known = false;
		return BATCH_ENDED_EARLY;
	}
	if (sql_version_moved())
		return BATCH_ENDED_EARLY;
	return BATCH_DONE;
}

/*
 * Deliver the batch's events in order, in the open transaction; the one
 * delivery loop.  A batch handler gets them all in one call unless an event
 * is being retried or the breaker probes; should that call fail, they are
 * delivered again one at a time to find the event that fails.  Sets
 * *delivered (events delivered and committed or to be committed), and
 * *failed and *err for the event a BATCH_FAILED stops at.  Returns with a
 * transaction open and the handler timer armed.
 */
static EsBatchOutcome
deliver_batch(EsEventRef *events, int n, int *delivered, int *failed,
			  EsCallError *err)
{
	bool		whole = cfg.batch_handler && dlv.retry_position == 0 &&
		!dlv.breaker_probe && n > 0;
	int			i = 0;

	while (i < n)
	{
		int			count = whole ? n : 1;
		EsCallResult r;
		EsBatchOutcome outcome = BATCH_DONE;

		if (es_drain_expired())
			return BATCH_FORCED;
		r = whole ? deliver_all(events, n, err) : deliver_one(&events[i], err);
		if (r == ES_CALL_DRAIN_EXPIRED)
			return BATCH_FORCED;
		if (r == ES_CALL_OK)
		{
			note_success(&events[i + count - 1], count);
			*delivered += count;
		}
		else if (whole)
		{
			/* find the poison event: deliver them one at a time */
			es_slot_note_error(MySlot, err->message, err->sqlstate, true);
			whole = false;
			continue;
		}
		else
		{
			*failed = i;
			outcome = handle_failure(&events[i], err);
			if (outcome != BATCH_DONE)
				return outcome;
		}
		i += count;

		/* every_event: this event's effects and checkpoint commit now */
		if (cfg.strategy == ES_EVERY_EVENT && i < n)
		{
			outcome = next_event_transaction();
			if (outcome != BATCH_DONE)
				return outcome;
		}
	}
	return BATCH_DONE;
}

/*
 * One batch, in one transaction (every_event: one per event).  See the file
 * header and the delivery state above.  Every path disarms the handler
 * timer, armed only around deliver_batch().
 */
static EsBatchOutcome
process_batch(void)
{
	EsEventRef *events;
	int64		head;
	int64		scanned_to;
	int64		row_position;
	bool		moved;
	int			n;
	int			delivered = 0;
	int			failed = -1;
	EsCallError err;
	EsBatchOutcome outcome;

	MemoryContextReset(batch_cxt);
	tx_begin("eventsource: reading events");
	if (!lock_checkpoint(&row_position, &moved) || !follow_sql_version())
	{
		tx_commit();
		return BATCH_GONE;
	}

	/*
	 * Where are we?  The row says, unless we are ahead of it (periodic keeps
	 * its position in memory between checkpoints) and nobody moved it.
	 */
	if (moved)
	{
		dlv.position = row_position;
		dlv.retry_position = 0;
		dlv.retry_attempts = 0;
	}
	dlv.saved_position = row_position;
	dlv.position_known = true;
	if (dlv.saved_at == 0)
		dlv.saved_at = GetCurrentTimestamp();

	head = es_horizon();
	if (dlv.position >= head)
	{
		finish_batch();
		return BATCH_IDLE;
	}

	n = fetch_events(dlv.position, head, dlv.breaker_probe ? 1 : cfg.batch_size,
					 &events, &scanned_to);
	es_slot_set_state(MySlot, ES_STATE_CATCHING_UP);
	es_handler_arm_timer();
	outcome = deliver_batch(events, n, &delivered, &failed, &err);
	es_handler_disarm_timer();

	switch (outcome)
	{
		case BATCH_FORCED:
			tx_abort();
			dlv.position_known = false; /* reload: the batch was rolled back */
			es_slot_set_in_flight(MySlot, n - (cfg.strategy == ES_EVERY_EVENT ? delivered : 0));
			return BATCH_FORCED;
		case BATCH_GONE:
		case BATCH_ENDED_EARLY:
			tx_commit();		/* nothing done in it yet */
			return outcome;
		case BATCH_FAILED:
			/* commit the events before it, then stop at it (err outlives it) */
			err.message = MemoryContextStrdup(batch_cxt, err.message);
			finish_batch();
			stop_at_event(&events[failed], &err);
			return BATCH_FAILED;
		case BATCH_DONE:
			/* filtered-out events after the last delivered one count as done */
			if (scanned_to > dlv.position)
				dlv.position = scanned_to;
			finish_batch();
			if (dlv.position >= head)
				es_slot_set_state(MySlot, ES_STATE_LIVE);	/* caught up with this horizon */
			return n == 0 ? BATCH_IDLE : BATCH_DONE;
		case BATCH_IDLE:
		case BATCH_RETRY_WAIT:
		case BATCH_BREAKER_OPEN:
			break;
	}
	finish_batch();
	return outcome;
}

/* ---------------------------------------------------------------------
 * The delivery state as the main loop and the stop path see it
 * ---------------------------------------------------------------------
 */

/*
 * How long before the next batch may run (0: now): the breaker is open, or
 * an event waits for its retry (or we for ours after an error).  An open
 * breaker whose time is up turns half-open: the next batch is its probe.
 */
static int64
delivery_wait_ms(TimestampTz now)
{
	if (dlv.breaker_open_until != 0)
	{
		if (now < dlv.breaker_open_until)
		{
			es_slot_set_state(MySlot, ES_STATE_CIRCUIT_OPEN);
			return (dlv.breaker_open_until - now) / 1000 + 1;
		}
		dlv.breaker_open_until = 0;
		dlv.breaker_probe = true;
	}
	if (dlv.retry_not_before > now)
		return (dlv.retry_not_before - now) / 1000 + 1;
	return 0;
}

/* Delivered but not yet in the checkpoint row (periodic)? */
static bool
delivery_unsaved(void)
{
	return dlv.position_known && dlv.position != dlv.saved_position;
}

/*
 * A batch failed by an error of our own and was rolled back: take the
 * position from the row again, and run no batch before "retry_at".
 */
static void
delivery_rolled_back(TimestampTz retry_at)
{
	dlv.position_known = false;
	dlv.retry_not_before = retry_at;
}

/*
 * The stop path of a periodic subscription: save what was delivered since
 * the last checkpoint, in our own row only, and only if nobody reset it
 * meanwhile.  A failure is logged: the events are delivered again after the
 * restart (at-least-once).
 */
static void
delivery_final_checkpoint(void)
{
	if (cfg.strategy != ES_PERIODIC || !delivery_unsaved())
		return;
	PG_TRY();
	{
		int64		row;
		int64		resets;

		tx_begin("eventsource: final checkpoint");
		if (read_checkpoint(&row, &resets) && row == dlv.saved_position &&
			resets == dlv.resets_seen)
			write_checkpoint(dlv.position);
		tx_commit();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		tx_abort();
	}
	PG_END_TRY();
}

typedef struct EsRetriedLetter
{
	Datum		id;
	EsCallError *err;
} EsRetriedLetter;

/* A dead letter failed again: its new error, and one more retry. */
static void
update_dead_letter(EsEventRef *ev, void *arg)
{
	EsRetriedLetter *r = arg;
	Datum		again[5];

	again[0] = r->id;
	again[1] = CStringGetTextDatum(r->err->message);
	again[2] = CStringGetTextDatum(r->err->sqlstate);
	again[3] = CStringGetTextDatum(es_error_category(r->err->sqlstate));
	again[4] = CStringGetTextDatum(es_error_severity(r->err->sqlstate));
	es_exec_plan(retry_again_plan, again, NULL, SPI_OK_UPDATE);
}

/*
 * A dead letter (a row of eventsource.dead_letters, described by "desc") as
 * a row of eventsource.events: each column of events takes the dead
 * letter's column of the same name, null if it has none.  By name, not by
 * position, so a column a release adds to events (or to dead_letters)
 * cannot land in another's place.
 */
static HeapTuple
dead_letter_as_event(HeapTuple row, TupleDesc desc)
{
	int			natts = events_desc->natts;
	Datum	   *values = palloc0(natts * sizeof(Datum));
	bool	   *nulls = palloc(natts * sizeof(bool));

	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(events_desc, i);
		int			col;

		nulls[i] = true;
		if (att->attisdropped)
			continue;
		col = SPI_fnumber(desc, NameStr(att->attname));
		if (col <= 0)
			continue;
		if (SPI_gettypeid(desc, col) != att->atttypid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of eventsource.dead_letters is of type %s, of eventsource.events %s",
							NameStr(att->attname), format_type_be(SPI_gettypeid(desc, col)),
							format_type_be(att->atttypid))));
		values[i] = SPI_getbinval(row, desc, col, &nulls[i]);
	}
	return heap_form_tuple(events_desc, values, nulls);
}

/*
 * Before a retry: drop the dead letters (of this partition, asked to be
 * retried) whose event a lifecycle operation has hidden since it failed.
 * Every read path skips a hidden event, so a retry must not hand it to the
 * handler again (after the stream's $StreamDeleted it would re-create what
 * the handler just removed).  On a database still on the 1.0 SQL nothing
 * can be hidden and nothing is dropped.  "values" are the subscription's
 * name and partition.  Caller is in the retry's transaction, in SPI.
 */
static void
drop_hidden_dead_letters(Datum *values)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			types[2] = {TEXTOID, INT4OID};
	SPIPlanPtr	plan;
	uint64		n;

	if (!es_lifecycle_installed())
		return;
	/* the visible events: lifecycle.c, es_visible_plan() */
	plan = es_visible_plan(plans,
						   "DELETE FROM eventsource.dead_letters d"
						   " WHERE d.id OPERATOR(pg_catalog.=) ANY (ARRAY("
						   "   SELECT x.id FROM eventsource.dead_letters x"
						   "   WHERE x.subscription OPERATOR(pg_catalog.=) $1"
						   "   AND x.partition OPERATOR(pg_catalog.=) $2 AND x.retry_requested"
						   "   AND NOT EXISTS (SELECT FROM @EVENTS@ v"
						   "     WHERE v.global_position OPERATOR(pg_catalog.=) x.global_position)"
						   "   FOR UPDATE SKIP LOCKED))",
						   2, types, true);
	es_exec_plan(plan, values, NULL, SPI_OK_DELETE);
	n = SPI_processed;
	if (n == 0)
		return;
	es_slot_dead_letters_gone(MySlot, 0, (int64) n);
	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d: dropped " UINT64_FORMAT " dead letters of events hidden by a lifecycle operation instead of retrying them",
					my_name, my_partition, n)));
}

/*
 * retry_dead_letters(): deliver the parked events that were asked for, one
 * attempt each.  Delivered ones leave the table; the others stay, with the
 * new error.
 */
static void
retry_dead_letters(void)
{
	Datum		values[2];
	int			n;

	if (!es_slot_take_retry_request(MySlot))
		return;

	tx_begin("eventsource: retrying dead letters");
	/* the events we build below must have the row type the handler takes */
	LockRelationOid(es_catalog()->events_oid, AccessShareLock);
	if (!follow_sql_version())
	{
		tx_commit();			/* gone: the next batch says so */
		return;
	}
	if (retry_again_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Oid			done_types[1] = {INT8OID};
		Oid			again_types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		/* all three or none: the last assignment marks them ready */
		retry_select_plan = es_prepare("SELECT * FROM eventsource.dead_letters"
									   " WHERE subscription OPERATOR(pg_catalog.=) $1"
									   " AND partition OPERATOR(pg_catalog.=) $2 AND retry_requested"
									   " ORDER BY id FOR UPDATE SKIP LOCKED",
									   2, types);
		retry_done_plan = es_prepare("DELETE FROM eventsource.dead_letters WHERE id OPERATOR(pg_catalog.=) $1",
									 1, done_types);
		retry_again_plan = es_prepare("UPDATE eventsource.dead_letters SET retry_requested = false,"
									  " retry_count = retry_count OPERATOR(pg_catalog.+) 1,"
									  " error_message = $2, error_sqlstate = $3, error_category = $4,"
									  " error_severity = $5, last_failed_at = pg_catalog.now()"
									  " WHERE id OPERATOR(pg_catalog.=) $1",
									  5, again_types);
	}
	values[0] = CStringGetTextDatum(my_name);
	values[1] = Int32GetDatum(my_partition);
	drop_hidden_dead_letters(values);
	es_exec_plan(retry_select_plan, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	if (n > 0)
	{
		SPITupleTable *tab = SPI_tuptable;

		es_handler_arm_timer();
		for (int i = 0; i < n; i++)
		{
			HeapTuple	row = tab->vals[i];
			bool		isnull;
			Datum		id = SPI_getbinval(row, tab->tupdesc, SPI_fnumber(tab->tupdesc, "id"), &isnull);
			EsEventRef	ev;
			EsCallError err;

			ev.tuple = dead_letter_as_event(row, tab->tupdesc);
			ev.position = DatumGetInt64(SPI_getbinval(row, tab->tupdesc,
													  SPI_fnumber(tab->tupdesc, "global_position"), &isnull));
			ev.recorded_at = DatumGetTimestampTz(SPI_getbinval(row, tab->tupdesc,
															   SPI_fnumber(tab->tupdesc, "recorded_at"), &isnull));
			values[0] = id;
			if (deliver_one(&ev, &err) == ES_CALL_OK)
			{
				es_exec_plan(retry_done_plan, values, NULL, SPI_OK_DELETE);
				es_slot_dead_letters_gone(MySlot, 1, 0);
			}
			else
			{
				EsRetriedLetter again = {id, &err};

				record_error(&ev, &err, 1, false);
				(void) run_bookkeeping("record the new error of a dead letter", &ev,
									   update_dead_letter, &again);
			}
		}
		es_handler_disarm_timer();
	}
	tx_commit();
}

/* Keep the last shutdown's outcome: log line, slot, table. */
static void
record_shutdown(bool forced, bool gone)
{
	EsShutdownRecord rec;
	EsDesired	desired = es_slot_desired(MySlot);
	TimestampTz now = GetCurrentTimestamp();

	memset(&rec, 0, sizeof(rec));
	rec.at = now;
	strlcpy(rec.reason,
			desired == ES_DESIRED_PAUSE ? "pause" :
			desired == ES_DESIRED_DROP || gone ? "drop" :
			desired == ES_DESIRED_FAILED ? "failed" : "server stop",
			sizeof(rec.reason));
	strlcpy(rec.phase, forced ? "forced" : "completed", sizeof(rec.phase));
	rec.forced = forced;
	rec.duration_ms = es_shutdown_requested_at ? (now - es_shutdown_requested_at) / 1000 : 0;
	rec.checkpoints_saved = dlv.checkpoints_saved_in_drain;
	es_slot_record_shutdown(MySlot, &rec);

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d stopped (%s, %s)",
					my_name, my_partition, rec.reason, rec.phase),
			 errdetail("database=%s subscription=%s partition=%d reason=%s phase=%s duration_ms=" INT64_FORMAT " forced=%s events_in_flight=%d checkpoints_saved=%d checkpoint=" INT64_FORMAT,
					   logfmt(my_dbname), logfmt(my_name), my_partition, logfmt(rec.reason),
					   rec.phase, rec.duration_ms,
					   rec.forced ? "true" : "false", rec.events_in_flight,
					   rec.checkpoints_saved, dlv.saved_position)));

	if (gone || desired == ES_DESIRED_DROP)
		return;
	PG_TRY();
	{
		Datum		values[4];
		Oid			types[4] = {TEXTOID, INT4OID, INT8OID, JSONBOID};
		char	   *json;
		char		iso[MAXDATELEN + 1];

		tx_begin("eventsource: recording shutdown");
		if (shutdown_plan == NULL)
			shutdown_plan = es_prepare("UPDATE eventsource.subscription_partitions SET last_shutdown = $4"
									   " WHERE subscription OPERATOR(pg_catalog.=) $1"
									   " AND partition OPERATOR(pg_catalog.=) $2"
									   " AND subscription_id OPERATOR(pg_catalog.=) $3",
									   4, types);
		json = psprintf("{\"at\": \"%s\", \"reason\": \"%s\", \"phase\": \"%s\", \"duration_ms\": " INT64_FORMAT
						", \"forced\": %s, \"events_in_flight\": %d, \"checkpoints_saved\": %d, \"checkpoint\": " INT64_FORMAT "}",
						JsonEncodeDateTime(iso, TimestampTzGetDatum(now), TIMESTAMPTZOID, NULL), rec.reason, rec.phase, rec.duration_ms,
						rec.forced ? "true" : "false", rec.events_in_flight,
						rec.checkpoints_saved, dlv.saved_position);
		set_row_key(values);
		values[3] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
		if (extension_is_ours())
			es_exec_plan(shutdown_plan, values, NULL, SPI_OK_UPDATE);
		tx_commit();
	}
	PG_CATCH();
	{
		/* the record is also in the log and the slot; don't fail the exit */
		EmitErrorReport();
		FlushErrorState();
		tx_abort();
	}
	PG_END_TRY();
}

/* Wait for a latch set, a timeout, or a signal. */
static void
worker_wait(int64 timeout_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(timeout_ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	/* a query cancel only means something while a handler runs */
	QueryCancelPending = false;
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

static int64
idle_wait_ms(void)
{
	return Min((int64) ES_IDLE_WAIT_MS, (int64) es_liveness_timeout_ms / 3);
}

/*
 * The main loop.  Returns when the worker should exit; *forced tells whether
 * a stop had to roll back a batch, *gone whether the subscription vanished.
 */
static void
worker_loop(bool *forced, bool *gone)
{
	volatile int64 error_wait_ms = 1000;

	*forced = false;
	*gone = false;
	for (;;)
	{
		TimestampTz now;
		int64		wait_ms;
		EsBatchOutcome outcome = BATCH_IDLE;

		es_slot_heartbeat(MySlot);
		if (es_shutdown_requested || es_slot_desired(MySlot) != ES_DESIRED_RUN)
			return;

		now = GetCurrentTimestamp();
		wait_ms = delivery_wait_ms(now);
		if (wait_ms > 0)
		{
			worker_wait(Min(wait_ms, idle_wait_ms()));
			continue;
		}

		es_trace_batch_begin(my_name, my_partition, my_dbname);
		PG_TRY();
		{
			retry_dead_letters();
			outcome = process_batch();
			Assert(!es_handler_timer_armed());
			error_wait_ms = 1000;
		}
		PG_CATCH();
		{
			/*
			 * Not a handler error (those are caught per call): our own
			 * bookkeeping failed, e.g. a serialization or lock problem, or
			 * the extension is being dropped.  Record it, wait, try again.
			 */
			ErrorData  *edata;

			es_handler_disarm_timer();
			HOLD_INTERRUPTS();
			EmitErrorReport();
			MemoryContextSwitchTo(TopMemoryContext);
			edata = CopyErrorData();
			FlushErrorState();
			tx_abort();
			RESUME_INTERRUPTS();
			es_slot_note_error(MySlot, edata->message, unpack_sql_state(edata->sqlerrcode), false);
			FreeErrorData(edata);
			outcome = BATCH_RETRY_WAIT;
			delivery_rolled_back(GetCurrentTimestamp() + error_wait_ms * 1000);
			error_wait_ms = Min(error_wait_ms * 2, (int64) ES_ERROR_WAIT_MAX_MS);

			/* the extension gone from this database: nothing to run */
			StartTransactionCommand();
			if (!extension_is_ours())
				*gone = true;
			CommitTransactionCommand();
			if (*gone)
				return;
		}
		PG_END_TRY();
		es_trace_batch_end();

		switch (outcome)
		{
			case BATCH_IDLE:
				es_slot_set_state(MySlot, ES_STATE_LIVE);
				if (!es_shutdown_requested)
					worker_wait(cfg.strategy == ES_PERIODIC && delivery_unsaved() ?
								Min(cfg.checkpoint_interval_ms, idle_wait_ms()) : idle_wait_ms());
				break;
			case BATCH_DONE:
			case BATCH_ENDED_EARLY:
				CHECK_FOR_INTERRUPTS();
				break;
			case BATCH_RETRY_WAIT:
			case BATCH_BREAKER_OPEN:
				break;
			case BATCH_FAILED:
				return;
			case BATCH_FORCED:
				*forced = true;
				return;
			case BATCH_GONE:
				*gone = true;
				return;
		}
	}
}

/* Attach to the slot the launcher started us for; false if it is not ours. */
static bool
attach_slot(int index, uint32 generation)
{
	EsSlotIdentity id;

	MySlot = es_registry_attach(index, generation, &id);
	if (MySlot == NULL)
		return false;
	my_dboid = id.dboid;
	strlcpy(my_name, id.name, sizeof(my_name));
	my_partition = id.partition;
	my_partitions = id.partitions;
	my_incarnation = id.incarnation;
	return true;
}

void
es_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	uint32		generation;
	bool		forced = false;
	bool		gone = false;
	char		appname[NAMEDATALEN];

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));
	pqsignal(SIGTERM, worker_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (!attach_slot(index, generation))
		proc_exit(0);
	before_shmem_exit(worker_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(my_dboid, InvalidOid, 0);
	snprintf(appname, sizeof(appname), "eventsource %s/%d", my_name, my_partition);
	SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(appname);
	es_handler_init_timer();
	batch_cxt = AllocSetContextCreate(TopMemoryContext, "eventsource batch",
									  ALLOCSET_DEFAULT_SIZES);

	/*
	 * Our definition; the subscription or the extension may be gone, or the
	 * row may say paused / stopped at an event (a race with discovery).  The
	 * slot follows the row, unless subscriptions changed since we read it:
	 * then a pause or resume may have committed after our snapshot, and we
	 * read again.
	 */
	PG_TRY();
	{
		StartTransactionCommand();
		my_extension = get_extension_oid("eventsource", true);
		if (!OidIsValid(my_extension))
			gone = true;
		CommitTransactionCommand();
		while (!gone)
		{
			uint64		as_of = es_registry_changes();

			CHECK_FOR_INTERRUPTS();

			tx_begin("eventsource: loading subscription");
			my_sql_version = es_sql_version();
			strlcpy(my_sql_version_text, es_sql_version_text(), sizeof(my_sql_version_text));
			gone = !load_config();
			tx_commit();
			if (gone || row_desired == ES_DESIRED_RUN)
				break;
			if (es_slot_follow_row(MySlot, row_desired, as_of))
				proc_exit(0);
		}
	}
	PG_CATCH();
	{
		/* keep the reason where the status view shows it, then exit */
		ErrorData  *edata;
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		edata = CopyErrorData();
		MemoryContextSwitchTo(old);
		es_slot_note_error(MySlot, edata->message, unpack_sql_state(edata->sqlerrcode), false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (gone)
	{
		/* an incarnation never comes back: the slot goes */
		es_slot_gone(MySlot);
		proc_exit(0);
	}
	if (config_error != NULL)
		fail_invalid_config();

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d started", my_name, my_partition),
			 errdetail("database=%s subscription=%s partition=%d handler=%s batch_size=%d sql_version=%s",
					   logfmt(my_dbname), logfmt(my_name), my_partition, logfmt(handler_name),
					   cfg.batch_size, logfmt(my_sql_version_text))));

	worker_loop(&forced, &gone);

	/* a stop request: the in-flight batch is done (or was rolled back) */
	if (!gone && !forced)
		delivery_final_checkpoint();
	if (gone)
		es_slot_gone(MySlot);
	if (es_shutdown_requested || gone || es_slot_desired(MySlot) != ES_DESIRED_FAILED)
		record_shutdown(forced, gone);
	proc_exit(0);
}
