/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  A subscription worker process: one per running subscription partition,
 *	  started by the launcher for a worker slot (registry.c).  This file is
 *	  the process around the delivery: it attaches to its slot, loads its
 *	  subscription (worker_config.c), runs the main loop that asks the
 *	  delivery state machine for batches (delivery.c), and stops.  The
 *	  other files of the worker are listed in worker.h.
 *
 * Wake-up: the commit of an append sets this worker's latch (registry.c,
 * es_wake_workers, from the commit callback).  The idle wait's timeout only
 * refreshes the heartbeat.
 *
 * Stop (SIGTERM from a server stop, pause, drop or DROP DATABASE): no new
 * batch is read; the in-flight batch may finish within
 * eventsource.drain_timeout, else it is rolled back (forced); the outcome is
 * logged and kept in the slot and in subscription_partitions.
 *
 * Errors of our own (not a handler's: those are caught per call), e.g. a
 * serialization or lock problem: the batch rolls back, the error is kept in
 * the slot, and the loop tries again after a wait that doubles up to
 * ES_ERROR_WAIT_MAX_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/extension.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "subscription.h"
#include "trace.h"
#include "worker.h"

#define ES_IDLE_WAIT_MS			10000
#define ES_ERROR_WAIT_MAX_MS	60000

EsWorker	es_worker;

/* transaction bracket */
static Oid	tx_save_userid;
static int	tx_save_sec_context;

static SPIPlanPtr shutdown_plan = NULL;

PGDLLEXPORT void es_worker_main(Datum main_arg);

/* ---------------------------------------------------------------------
 * the stop request and the slot
 * ---------------------------------------------------------------------
 */

/*
 * The stop request: set by our SIGTERM handler (a server stop, pause, drop,
 * DROP DATABASE), read by the main loop, the delivery (checkpoint_due,
 * es_drain_expired) and the handler timer's signal handler (handler.c).
 */
volatile sig_atomic_t es_shutdown_requested = false;
volatile TimestampTz es_shutdown_requested_at = 0;

/*
 * Has the stop request's drain time (eventsource.drain_timeout) run out at
 * "now"?  Plain loads only: the timer's signal handler calls it.
 */
bool
es_drain_expired_at(TimestampTz now)
{
	return es_shutdown_requested_at != 0 &&
		now >= es_shutdown_requested_at + (int64) es_drain_timeout_ms_guc * 1000;
}

bool
es_drain_expired(void)
{
	return es_drain_expired_at(GetCurrentTimestamp());
}

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

/*
 * Exit callback: give the slot back (registry.c sets the restart time from
 * the exit code).
 */
static void
worker_exit(int code, Datum arg)
{
	if (es_worker.slot != NULL)
		es_registry_detach(es_worker.slot, code);
}

/* ---------------------------------------------------------------------
 * transactions
 * ---------------------------------------------------------------------
 */

void
es_worker_tx_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	es_become_owner(&tx_save_userid, &tx_save_sec_context);
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
es_worker_tx_commit(void)
{
	es_restore_user(tx_save_userid, tx_save_sec_context);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	es_send_notices();
}

void
es_worker_tx_abort(void)
{
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);
	es_drop_notices();
}

/*
 * Run fn(ev, arg) in a subtransaction of the current transaction.  Returns
 * NULL when it succeeded, else its error (in the caller's memory context):
 * then it was rolled back alone.
 */
ErrorData *
es_worker_try_in_subxact(EsBookkeepingFn fn, EsEventRef *ev, void *arg)
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

/*
 * Run fn(arg) in a transaction of its own on the way out (the stop path):
 * should it fail, the error is logged and the transaction rolled back, and
 * the exit goes on.
 */
void
es_worker_try_transaction(const char *activity, void (*fn) (void *arg), void *arg)
{
	PG_TRY();
	{
		es_worker_tx_begin(activity);
		fn(arg);
		es_worker_tx_commit();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
		es_worker_tx_abort();
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * the process: main loop, start, stop
 * ---------------------------------------------------------------------
 */

/* The shutdown record in our partition row (last_shutdown, jsonb). */
static void
write_shutdown_row(void *arg)
{
	EsShutdownRecord *rec = arg;
	Datum		values[4];
	Oid			types[4] = {TEXTOID, INT4OID, INT8OID, JSONBOID};
	EsJson		json;

	if (shutdown_plan == NULL)
		shutdown_plan = es_prepare("UPDATE eventsource.subscription_partitions SET last_shutdown = $4"
								   " WHERE subscription OPERATOR(pg_catalog.=) $1"
								   " AND partition OPERATOR(pg_catalog.=) $2"
								   " AND subscription_id OPERATOR(pg_catalog.=) $3",
								   4, types);
	es_json_object(&json);
	es_json_time(&json, "at", rec->at);
	es_json_string(&json, "reason", rec->reason);
	es_json_string(&json, "phase", rec->phase);
	es_json_int(&json, "duration_ms", rec->duration_ms);
	es_json_bool(&json, "forced", rec->forced);
	es_json_int(&json, "events_in_flight", rec->events_in_flight);
	es_json_int(&json, "checkpoints_saved", rec->checkpoints_saved);
	es_json_int(&json, "checkpoint", es_delivery_saved_position());
	es_worker_row_key(values);
	values[3] = es_json_jsonb(&json);
	if (es_worker_extension_is_ours())
		es_exec_plan(shutdown_plan, values, NULL, SPI_OK_UPDATE);
}

/* Keep the last shutdown's outcome: log line, slot, table. */
static void
record_shutdown(bool forced, bool gone)
{
	EsShutdownRecord rec;
	EsDesired	desired = es_slot_desired(es_worker.slot);
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
	rec.checkpoints_saved = es_delivery_checkpoints_saved_in_drain();
	es_slot_record_shutdown(es_worker.slot, &rec);

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d stopped (%s, %s)",
					es_worker.name, es_worker.partition, rec.reason, rec.phase),
			 errdetail("database=%s subscription=%s partition=%d reason=%s phase=%s duration_ms=" INT64_FORMAT " forced=%s events_in_flight=%d checkpoints_saved=%d checkpoint=" INT64_FORMAT,
					   es_logfmt(es_worker.dbname), es_logfmt(es_worker.name), es_worker.partition, es_logfmt(rec.reason),
					   rec.phase, rec.duration_ms,
					   rec.forced ? "true" : "false", rec.events_in_flight,
					   rec.checkpoints_saved, es_delivery_saved_position())));

	/* the record is also in the log and the slot: a failure here is only logged */
	if (!gone && desired != ES_DESIRED_DROP)
		es_worker_try_transaction("eventsource: recording shutdown", write_shutdown_row, &rec);
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

		es_slot_heartbeat(es_worker.slot);
		if (es_shutdown_requested || es_slot_desired(es_worker.slot) != ES_DESIRED_RUN)
			return;

		now = GetCurrentTimestamp();
		wait_ms = es_delivery_wait_ms(now);
		if (wait_ms > 0)
		{
			worker_wait(Min(wait_ms, idle_wait_ms()));
			continue;
		}

		es_trace_batch_begin(es_worker.name, es_worker.partition, es_worker.dbname);
		PG_TRY();
		{
			es_worker_retry_dead_letters();
			outcome = es_delivery_batch();
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
			es_worker_tx_abort();
			RESUME_INTERRUPTS();
			es_slot_note_error(es_worker.slot, edata->message, unpack_sql_state(edata->sqlerrcode), false);
			FreeErrorData(edata);
			outcome = BATCH_RETRY_WAIT;
			es_delivery_rolled_back(GetCurrentTimestamp() + error_wait_ms * 1000);
			error_wait_ms = Min(error_wait_ms * 2, (int64) ES_ERROR_WAIT_MAX_MS);

			/* the extension gone from this database: nothing to run */
			StartTransactionCommand();
			if (!es_worker_extension_is_ours())
				*gone = true;
			CommitTransactionCommand();
		}
		PG_END_TRY();
		es_trace_batch_end();	/* the batch's spans, on every way out */
		if (*gone)
			return;

		switch (outcome)
		{
			case BATCH_IDLE:
				es_slot_set_state(es_worker.slot, ES_STATE_LIVE);
				if (!es_shutdown_requested)
					worker_wait(es_cfg.strategy == ES_PERIODIC && es_delivery_unsaved() ?
								Min(es_cfg.checkpoint_interval_ms, idle_wait_ms()) : idle_wait_ms());
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

	es_worker.slot = es_registry_attach(index, generation, &id);
	if (es_worker.slot == NULL)
		return false;
	es_worker.dboid = id.dboid;
	strlcpy(es_worker.name, id.name, sizeof(es_worker.name));
	es_worker.partition = id.partition;
	es_worker.partitions = id.partitions;
	es_worker.incarnation = id.incarnation;
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

	BackgroundWorkerInitializeConnectionByOid(es_worker.dboid, InvalidOid, 0);
	snprintf(appname, sizeof(appname), "eventsource %s/%d", es_worker.name, es_worker.partition);
	SetConfigOption("application_name", appname, PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname(appname);
	es_handler_init_timer();
	es_worker.batch_cxt = AllocSetContextCreate(TopMemoryContext, "eventsource batch",
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
		es_worker.extension = get_extension_oid("eventsource", true);
		if (!OidIsValid(es_worker.extension))
			gone = true;
		else
			es_worker.partitions_rel =
				get_relname_relid("subscription_partitions",
								  get_namespace_oid("eventsource", true));
		if (!OidIsValid(es_worker.partitions_rel))
			gone = true;
		CommitTransactionCommand();
		while (!gone)
		{
			uint64		as_of = es_registry_changes();

			CHECK_FOR_INTERRUPTS();

			es_worker_tx_begin("eventsource: loading subscription");
			es_cfg.sql_version = es_sql_version();
			strlcpy(es_cfg.sql_version_text, es_sql_version_text(), sizeof(es_cfg.sql_version_text));
			gone = !es_worker_load_config();
			es_worker_tx_commit();
			if (gone || es_cfg.row_desired == ES_DESIRED_RUN)
				break;
			if (es_slot_follow_row(es_worker.slot, es_cfg.row_desired, as_of))
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
		es_slot_note_error(es_worker.slot, edata->message, unpack_sql_state(edata->sqlerrcode), false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (gone)
	{
		/* an incarnation never comes back: the slot goes */
		es_slot_gone(es_worker.slot);
		proc_exit(0);
	}
	if (es_cfg.error != NULL)
		es_fail_invalid_config();

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d started", es_worker.name, es_worker.partition),
			 errdetail("database=%s subscription=%s partition=%d handler=%s batch_size=%d sql_version=%s",
					   es_logfmt(es_worker.dbname), es_logfmt(es_worker.name), es_worker.partition, es_logfmt(es_cfg.handler_name),
					   es_cfg.batch_size, es_logfmt(es_cfg.sql_version_text))));

	worker_loop(&forced, &gone);

	/* a stop request: the in-flight batch is done (or was rolled back) */
	if (!gone && !forced)
		es_delivery_final_checkpoint();
	if (gone)
		es_slot_gone(es_worker.slot);
	if (es_shutdown_requested || gone || es_slot_desired(es_worker.slot) != ES_DESIRED_FAILED)
		record_shutdown(forced, gone);
	proc_exit(0);
}
