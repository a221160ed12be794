/*-------------------------------------------------------------------------
 *
 * cleanup.c
 *	  The cleanup worker: physical removal of hidden events in the
 *	  background, and the retention passes (retention.c), one worker per
 *	  database that has the extension.
 *
 * Hiding is logical (lifecycle.c): a lifecycle row says that versions
 * 1 .. hidden_through of its stream are hidden.  This worker deletes those
 * rows from eventsource.events, one stream at a time, in batches of at most
 * eventsource.cleanup_batch_size versions by primary-key range, each batch
 * its own short transaction that also moves the row's cleaned_through up.
 * So a crash or a restart resumes where the last committed batch stopped,
 * and a batch that was rolled back removed nothing.  Between batches it
 * sleeps so as to stay under eventsource.cleanup_max_rows_per_second.
 *
 * A batch takes row locks only: the DELETE's, and the stream's lifecycle row
 * (FOR UPDATE, which a lifecycle operation on that stream waits for, for
 * the length of one batch).  It never takes the stream's append lock:
 * versions 1 .. hidden_through are never written again (appends go above
 * last_version >= hidden_through, and hidden_through only moves up), so
 * removing them cannot race an append, and readers already skip them.
 * The guard trigger (guard.c) lets the DELETE through only for this file's
 * own statement (es_exec_guarded(), guard.c).
 *
 * The worker serves every tenant of its database (it runs as the owner,
 * past row-level security), but each action is one (tenant, stream): the
 * lifecycle row it picks names both, and its DELETE, its snapshot removal
 * and its progress match both.
 *
 * Every eventsource.cleanup_naptime the worker also runs a retention pass
 * (retention.c), which turns the max age / max count rules into
 * truncations; their rows are then cleaned like any other hidden rows.
 *
 * Process model.  The launcher (launcher.c) calls es_cleanup_supervise() on
 * every tick; it starts a worker for each database marked "wanted" here,
 * and restarts one that stopped on an error after a naptime.  A database
 * is marked wanted by the launcher's discovery (it has the extension) and
 * by the functions that create work (lifecycle operations, retention
 * rules) so that a database given the extension after the server started
 * gets its worker too.  A worker that finds no extension, or the 1.0 SQL,
 * unmarks its database and exits.  DROP DATABASE and DROP EXTENSION stop it
 * (utility_hook.c: es_cleanup_stop) before they take their locks, as they
 * stop the subscription workers; if the drop does not happen, the
 * launcher's rediscovery marks the database again.
 *
 * Shared state (this file owns it): one entry per database, under the
 * entries' spinlock (short copies only).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventsource.h"
#include "subscription.h"
#include "tenant.h"

#define ES_CLEANUP_ERROR_LEN	256

/* the settings */
bool		es_cleanup_enabled = true;
int			es_cleanup_naptime_ms = 10000;
int			es_cleanup_batch_size = 1000;
int			es_cleanup_max_rows_per_second = 10000;

PGDLLEXPORT void es_cleanup_main(Datum main_arg);

/* One database's cleanup worker, as shared memory knows it. */
typedef struct EsCleanupDb
{
	Oid			dboid;			/* InvalidOid: entry free */
	bool		wanted;			/* the launcher keeps a worker running */
	int			pid;			/* the running worker, 0 if none */
	TimestampTz started_at;
	TimestampTz last_pass_at;	/* last retention pass */
	TimestampTz next_pass_at;
	TimestampTz last_batch_at;	/* last batch that removed rows */
	int64		rows_removed;	/* since the worker started */
	int64		batches;
	int64		truncations;
	char		last_error[ES_CLEANUP_ERROR_LEN];
	TimestampTz last_error_at;
} EsCleanupDb;

typedef struct EsCleanupShared
{
	slock_t		mutex;			/* protects every entry */
	ConditionVariable exited;	/* a worker cleared its pid */
	int			nentries;
	EsCleanupDb entries[FLEXIBLE_ARRAY_MEMBER];
} EsCleanupShared;

static EsCleanupShared *cleanup_shared = NULL;

/* ---------------------------------------------------------------------
 * Settings and shared memory
 * ---------------------------------------------------------------------
 */

/* Called from es_define_gucs() (guc.c). */
void
es_cleanup_define_gucs(void)
{
	DefineCustomBoolVariable("eventsource.cleanup",
							 "Whether the cleanup workers remove hidden events and enforce retention.",
							 "Off: they stay idle; hidden events stay in the table and retention rules expire nothing until it is on again.",
							 &es_cleanup_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.cleanup_naptime",
							"Time between two retention passes of the cleanup worker, and its sleep when it has nothing to remove.",
							"Expiry by max age / max count takes effect at most this long after it is due (plus the pass itself).",
							&es_cleanup_naptime_ms,
							10000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.cleanup_batch_size",
							"Versions of one stream the cleanup worker removes per transaction.",
							NULL,
							&es_cleanup_batch_size,
							1000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.cleanup_max_rows_per_second",
							"Rate limit of the cleanup worker's removals (0: no limit).",
							NULL,
							&es_cleanup_max_rows_per_second,
							10000, 0, INT_MAX,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

Size
es_cleanup_shmem_size(void)
{
	return add_size(offsetof(EsCleanupShared, entries),
					mul_size(es_max_databases, sizeof(EsCleanupDb)));
}

void
es_cleanup_shmem_init(void *area, bool found)
{
	cleanup_shared = (EsCleanupShared *) area;
	if (found)
		return;
	memset(area, 0, es_cleanup_shmem_size());
	SpinLockInit(&cleanup_shared->mutex);
	ConditionVariableInit(&cleanup_shared->exited);
	cleanup_shared->nentries = es_max_databases;
}

/* The entry of a database, or -1.  Caller holds the mutex. */
static int
find_entry_locked(Oid dboid)
{
	for (int i = 0; i < cleanup_shared->nentries; i++)
		if (cleanup_shared->entries[i].dboid == dboid)
			return i;
	return -1;
}

/*
 * An entry no worker needs any more (its database was dropped, or its
 * extension, or it is on the 1.0 SQL): not wanted and no process.  Its
 * counters are only history, so another database may take it; should the
 * first come back, it takes a free or stopped entry again.  Caller holds
 * the mutex.
 */
static int
find_stopped_entry_locked(void)
{
	for (int i = 0; i < cleanup_shared->nentries; i++)
		if (!cleanup_shared->entries[i].wanted && cleanup_shared->entries[i].pid == 0)
			return i;
	return -1;
}

/*
 * Ask the launcher to keep a cleanup worker running in this database.
 * Cheap when it already is: the functions that create work call it every
 * time.  Without shared memory (not preloaded) there is no worker.
 */
void
es_cleanup_want(Oid dboid)
{
	int			i;
	bool		news = false;

	if (cleanup_shared == NULL)
		return;
	SpinLockAcquire(&cleanup_shared->mutex);
	i = find_entry_locked(dboid);
	if (i < 0)
		i = find_entry_locked(InvalidOid);
	if (i < 0)
		i = find_stopped_entry_locked();
	if (i >= 0 && !cleanup_shared->entries[i].wanted)
	{
		EsCleanupDb *e = &cleanup_shared->entries[i];

		if (e->dboid != dboid)
		{
			memset(e, 0, sizeof(EsCleanupDb));
			e->dboid = dboid;
		}
		e->wanted = true;
		news = true;
	}
	SpinLockRelease(&cleanup_shared->mutex);
	if (i < 0)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("eventsource: no cleanup worker for database %u: eventsource.max_databases (%d) databases already have one",
						dboid, es_max_databases),
				 errdetail("Hidden events of this database stay in the table and its retention rules are not enforced."),
				 errhint("Increase eventsource.max_databases and restart the server.")));
	if (news)
		es_launcher_wake();
}

/*
 * Stop the cleanup worker of a database that is being dropped (or whose
 * extension is): unmark it, signal the worker, and wait until it has
 * disconnected (at most drain_timeout plus a margin; a batch is one short
 * transaction).  Called by the ProcessUtility hook (utility_hook.c) before
 * the drop takes its locks.
 */
void
es_cleanup_stop(Oid dboid)
{
	TimestampTz deadline;
	int			i;

	if (cleanup_shared == NULL)
		return;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   (int64) es_drain_timeout_ms_guc + 10000);
	for (;;)
	{
		int			pid = 0;
		TimestampTz now;

		SpinLockAcquire(&cleanup_shared->mutex);
		i = find_entry_locked(dboid);
		if (i >= 0)
		{
			cleanup_shared->entries[i].wanted = false;
			pid = cleanup_shared->entries[i].pid;
		}
		SpinLockRelease(&cleanup_shared->mutex);
		now = GetCurrentTimestamp();
		if (pid == 0 || pid == MyProcPid || now >= deadline)
			break;
		(void) kill(pid, SIGTERM);
		/* the timeout covers an exit between the look and the sleep */
		(void) ConditionVariableTimedSleep(&cleanup_shared->exited,
										   Min((deadline - now) / 1000 + 1, 200),
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/* ---------------------------------------------------------------------
 * The launcher's side
 * ---------------------------------------------------------------------
 */

/* the workers this launcher started, by entry (launcher memory) */
typedef struct CleanupHandle
{
	BackgroundWorkerHandle *handle;
	Oid			dboid;
	TimestampTz next_start_at;
	bool		warned_no_slot;
} CleanupHandle;

static CleanupHandle *cleanup_handles = NULL;

/*
 * Start a cleanup worker for every wanted database that has none.  Called
 * by the launcher on every tick; returns the time until it should be
 * called again at the latest (ms).
 */
int64
es_cleanup_supervise(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		wait_ms = 60000;

	if (cleanup_shared == NULL)
		return wait_ms;
	if (cleanup_handles == NULL)
		cleanup_handles = MemoryContextAllocZero(TopMemoryContext,
												 sizeof(CleanupHandle) * cleanup_shared->nentries);

	for (int i = 0; i < cleanup_shared->nentries; i++)
	{
		CleanupHandle *h = &cleanup_handles[i];
		Oid			dboid;
		bool		wanted;
		int			pid;
		BackgroundWorker worker;
		MemoryContext old;

		SpinLockAcquire(&cleanup_shared->mutex);
		dboid = cleanup_shared->entries[i].dboid;
		wanted = cleanup_shared->entries[i].wanted;
		pid = cleanup_shared->entries[i].pid;
		SpinLockRelease(&cleanup_shared->mutex);

		if (h->handle != NULL)
		{
			pid_t		hpid;
			BgwHandleStatus st = GetBackgroundWorkerPid(h->handle, &hpid);

			if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
				continue;
			pfree(h->handle);
			h->handle = NULL;
			/* it stopped: not again before a naptime, should it keep failing */
			h->next_start_at = TimestampTzPlusMilliseconds(now, Min(es_cleanup_naptime_ms, 10000));
		}
		if (!OidIsValid(dboid) || !wanted || pid != 0)
			continue;			/* (pid: started by a previous launcher) */
		if (h->dboid != dboid)
		{
			h->dboid = dboid;
			h->next_start_at = 0;
		}
		if (h->next_start_at > now)
		{
			wait_ms = Min(wait_ms, (h->next_start_at - now) / 1000 + 1);
			continue;
		}

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventsource");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_cleanup_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "eventsource cleanup %u", dboid);
		snprintf(worker.bgw_type, BGW_MAXLEN, "eventsource cleanup");
		worker.bgw_main_arg = Int32GetDatum(i);
		memcpy(worker.bgw_extra, &dboid, sizeof(Oid));
		worker.bgw_notify_pid = MyProcPid;
		old = MemoryContextSwitchTo(TopMemoryContext);
		if (!RegisterDynamicBackgroundWorker(&worker, &h->handle))
		{
			h->handle = NULL;
			h->next_start_at = TimestampTzPlusMilliseconds(now, 5000);
			wait_ms = Min(wait_ms, 5000);
			if (!h->warned_no_slot)
				ereport(WARNING,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("eventsource: cannot start the cleanup worker of database %u: no free background worker slot",
								dboid),
						 errhint("Raise max_worker_processes (now %d): eventsource needs one per database that has the extension, for its cleanup worker.",
								 max_worker_processes)));
			h->warned_no_slot = true;
		}
		else
			h->warned_no_slot = false;
		MemoryContextSwitchTo(old);
	}
	return wait_ms;
}

/* ---------------------------------------------------------------------
 * The worker
 * ---------------------------------------------------------------------
 */

static int	my_entry = -1;

static void
cleanup_exit(int code, Datum arg)
{
	SpinLockAcquire(&cleanup_shared->mutex);
	if (cleanup_shared->entries[my_entry].pid == MyProcPid)
		cleanup_shared->entries[my_entry].pid = 0;
	SpinLockRelease(&cleanup_shared->mutex);
	ConditionVariableBroadcast(&cleanup_shared->exited);
}

/* Keep the text of an error for cleanup_status. */
static void
record_error(const char *message)
{
	EsCleanupDb *e = &cleanup_shared->entries[my_entry];
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&cleanup_shared->mutex);
	strlcpy(e->last_error, message, sizeof(e->last_error));
	e->last_error_at = now;
	SpinLockRelease(&cleanup_shared->mutex);
}

/*
 * Start a transaction for one step of the worker, connected to SPI, with a
 * snapshot, as the extension's owner.  Returns false (and ends the
 * transaction) when this database no longer has the 1.1 SQL objects: the
 * extension was dropped, or is still on 1.0 (nothing can be hidden there).
 */
static bool
begin_step(EsOwnerCall *owner)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (!OidIsValid(get_extension_oid("eventsource", true)) ||
		!es_sql_version_at_least("1.1"))
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return false;
	}
	es_owner_begin(owner);		/* (connects to SPI) */
	return true;
}

static void
end_step(EsOwnerCall *owner)
{
	es_owner_end(owner);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * The pending streams one batch may take (their lifecycle rows are locked
 * for the batch): many short streams are cleaned a few dozen per
 * transaction instead of one each.
 */
#define ES_CLEANUP_MAX_STREAMS_PER_BATCH	100

static SPIPlanPtr pick_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr mark_plan = NULL;
static SPIPlanPtr snapshots_plan = NULL;

/*
 * Remove versions from + 1 .. to of a stream of a tenant (all hidden), its snapshots
 * up to "to", and record cleaned_through = to.  Caller is cleanup_batch(),
 * inside the batch's transaction, holding the stream's lifecycle row lock.
 * Returns the rows removed.
 */
static int64
clean_range(text *tenant, text *stream_id, int64 from, int64 to)
{
	Datum		values[4];
	int64		removed;
	int			rc;

	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(from);
	values[2] = Int64GetDatum(to);
	values[3] = PointerGetDatum(tenant);

	/* the guard lets exactly this statement delete from the log */
	removed = (int64) es_exec_guarded(ES_GUARDED_CLEANUP_DELETE, delete_plan, values, NULL,
									  InvalidSnapshot, SPI_OK_DELETE);

	/* a snapshot saved while the stream was being deleted (lifecycle.c) */
	rc = SPI_execute_plan(snapshots_plan, values, NULL, false, 0);
	if (rc != SPI_OK_DELETE)
		elog(ERROR, "eventsource cleanup: could not delete hidden snapshots: %s",
			 SPI_result_code_string(rc));

	/* the progress, in the same transaction as the removal */
	if (es_exec_guarded(ES_GUARDED_LIFECYCLE, mark_plan, values, NULL, InvalidSnapshot,
						SPI_OK_UPDATE) != 1)
		elog(ERROR, "eventsource cleanup: could not record the progress of stream \"%s\"",
			 text_to_cstring(stream_id));
	return removed;
}

/*
 * One batch, in its own transaction: the pending streams with the oldest
 * lifecycle operations, for each versions cleaned_through + 1 .. at most
 * hidden_through, until eventsource.cleanup_batch_size versions are covered
 * (so one long stream takes several batches, and several short ones share
 * one).  Returns the rows removed; *more says whether work may be left;
 * *ready false when the database has no 1.1 SQL objects.
 */
static int64
cleanup_batch(bool *more, bool *ready)
{
	EsOwnerCall owner;
	Datum		limit;
	int64		budget = es_cleanup_batch_size;
	int64		removed = 0;
	int			nstreams;
	text	  **ids;
	text	  **tenants;
	int64	   *cleaned;
	int64	   *hidden;
	int			rc;
	TimestampTz now;

	*more = false;
	if (!begin_step(&owner))
	{
		*ready = false;
		return 0;
	}
	*ready = true;
	pgstat_report_activity(STATE_RUNNING, "eventsource cleanup: removing hidden events");
	if (mark_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, INT8OID, INT8OID, TEXTOID};
		Oid			limit_type[1] = {INT4OID};

		/*
		 * FOR UPDATE: a lifecycle operation on one of the streams (which
		 * updates its row) waits for this batch, never longer than one
		 * batch; SKIP LOCKED: a row locked by an operation in progress is
		 * taken on a later round.
		 */
		pick_plan = es_prepare("SELECT l.stream_id, l.cleaned_through, l.hidden_through,"
							   " l.tenant_id"
							   " FROM eventsource.stream_lifecycle l"
							   " WHERE l.cleaned_through OPERATOR(pg_catalog.<) l.hidden_through"
							   " ORDER BY l.last_position LIMIT $1"
							   " FOR UPDATE OF l SKIP LOCKED", 1, limit_type);
		delete_plan = es_prepare("DELETE FROM eventsource.events e"
								 " WHERE e.tenant_id OPERATOR(pg_catalog.=) $4"
								 " AND e.stream_id OPERATOR(pg_catalog.=) $1"
								 " AND e.stream_version OPERATOR(pg_catalog.>) $2"
								 " AND e.stream_version OPERATOR(pg_catalog.<=) $3",
								 4, types);
		snapshots_plan = es_prepare("DELETE FROM eventsource.snapshots"
									" WHERE tenant_id OPERATOR(pg_catalog.=) $4"
									" AND stream_id OPERATOR(pg_catalog.=) $1"
									" AND stream_version OPERATOR(pg_catalog.<=) $3",
									4, types);
		/* both or none of the others: this one marks them ready */
		mark_plan = es_prepare("UPDATE eventsource.stream_lifecycle"
							   " SET cleaned_through = $3, cleaned_at = pg_catalog.now()"
							   " WHERE tenant_id OPERATOR(pg_catalog.=) $4"
							   " AND stream_id OPERATOR(pg_catalog.=) $1"
							   " AND cleaned_through OPERATOR(pg_catalog.=) $2",
							   4, types);
	}
	limit = Int32GetDatum(Min(es_cleanup_batch_size, ES_CLEANUP_MAX_STREAMS_PER_BATCH));
	rc = SPI_execute_plan(pick_plan, &limit, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "eventsource cleanup: could not read the lifecycle rows: %s",
			 SPI_result_code_string(rc));
	nstreams = (int) SPI_processed;
	ids = palloc(sizeof(text *) * Max(nstreams, 1));
	tenants = palloc(sizeof(text *) * Max(nstreams, 1));
	cleaned = palloc(sizeof(int64) * Max(nstreams, 1));
	hidden = palloc(sizeof(int64) * Max(nstreams, 1));
	for (int i = 0; i < nstreams; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		ids[i] = DatumGetTextPCopy(SPI_getbinval(tup, desc, 1, &isnull));
		tenants[i] = DatumGetTextPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		cleaned[i] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		hidden[i] = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}

	for (int i = 0; i < nstreams && budget > 0; i++)
	{
		int64		to = (hidden[i] - cleaned[i] > budget) ? cleaned[i] + budget : hidden[i];

		removed += clean_range(tenants[i], ids[i], cleaned[i], to);
		budget -= to - cleaned[i];
	}
	end_step(&owner);

	if (nstreams == 0)
		return 0;
	/* (more may be pending: the next call looks) */
	*more = true;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&cleanup_shared->mutex);
	cleanup_shared->entries[my_entry].rows_removed += removed;
	cleanup_shared->entries[my_entry].batches++;
	if (removed > 0)
		cleanup_shared->entries[my_entry].last_batch_at = now;
	SpinLockRelease(&cleanup_shared->mutex);
	return removed;
}

/*
 * A step of the loop failed: report it, keep its text for cleanup_status,
 * and roll its transaction back.  Called in the step's PG_CATCH.
 */
static void
report_step_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	ereport(LOG,
			(errmsg("eventsource cleanup: %s", edata->message)));
	record_error(edata->message);
	FreeErrorData(edata);
}

/* A retention pass (retention.c); false when the database has no 1.1 SQL. */
static bool
retention_pass(void)
{
	EsOwnerCall owner;
	int64		truncations;
	char		note[ES_CLEANUP_ERROR_LEN];
	TimestampTz now;

	/* only to check that the SQL objects are there */
	if (!begin_step(&owner))
		return false;
	end_step(&owner);

	pgstat_report_activity(STATE_RUNNING, "eventsource cleanup: retention pass");
	truncations = es_retention_enforce(note, sizeof(note));
	pgstat_report_activity(STATE_IDLE, NULL);
	/* streams skipped behind a user's lock (retention.c logged them) */
	if (note[0] != '\0')
		record_error(note);
	now = GetCurrentTimestamp();
	SpinLockAcquire(&cleanup_shared->mutex);
	cleanup_shared->entries[my_entry].truncations += truncations;
	cleanup_shared->entries[my_entry].last_pass_at = now;
	cleanup_shared->entries[my_entry].next_pass_at =
		TimestampTzPlusMilliseconds(now, es_cleanup_naptime_ms);
	SpinLockRelease(&cleanup_shared->mutex);
	return true;
}

/*
 * The database has no 1.1 SQL objects (any more): nothing to do here.  Said
 * once in the log, so that an operator (and TAP 044) can tell "left" from
 * "never started"; the next lifecycle operation there wants a worker again.
 */
static void
leave_database(void)
{
	ereport(LOG,
			(errmsg("eventsource cleanup: the database with OID %u has no eventsource 1.1 objects, the worker stops",
					MyDatabaseId),
			 errhint("After ALTER EXTENSION eventsource UPDATE, the next lifecycle operation there starts it again.")));
	SpinLockAcquire(&cleanup_shared->mutex);
	cleanup_shared->entries[my_entry].wanted = false;
	SpinLockRelease(&cleanup_shared->mutex);
	proc_exit(0);
}

void
es_cleanup_main(Datum main_arg)
{
	Oid			dboid;
	bool		claimed = false;
	TimestampTz started_at;
	volatile TimestampTz last_pass = 0;
	MemoryContext loop_cxt;

	my_entry = DatumGetInt32(main_arg);
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	/*
	 * SIGTERM is die(): at the next CHECK_FOR_INTERRUPTS, also inside a
	 * running query or a lock wait, the worker ends (FATAL), its transaction
	 * rolled back (a batch removed nothing, a truncation did not happen).  A
	 * flag looked at between steps only would keep DROP DATABASE, DROP
	 * EXTENSION and a fast shutdown waiting for a whole retention pass
	 * (seconds on a store with a million streams) or a lock wait (up to the
	 * worker's lock_timeout).
	 */
	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* one worker per database: the entry says which process it is */
	started_at = GetCurrentTimestamp();
	SpinLockAcquire(&cleanup_shared->mutex);
	if (my_entry >= 0 && my_entry < cleanup_shared->nentries &&
		cleanup_shared->entries[my_entry].dboid == dboid &&
		cleanup_shared->entries[my_entry].wanted &&
		cleanup_shared->entries[my_entry].pid == 0)
	{
		EsCleanupDb *e = &cleanup_shared->entries[my_entry];

		e->pid = MyProcPid;
		e->started_at = started_at;
		e->rows_removed = e->batches = e->truncations = 0;
		claimed = true;
	}
	SpinLockRelease(&cleanup_shared->mutex);
	if (!claimed)
		proc_exit(0);
	before_shmem_exit(cleanup_exit, (Datum) 0);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("eventsource cleanup");
	/* never wait long behind a user's lock: the next round tries again */
	SetConfigOption("lock_timeout", "10s", PGC_SUSET, PGC_S_OVERRIDE);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "eventsource cleanup",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		volatile bool more = false;
		volatile bool ready = true;
		volatile int64 removed = 0;
		volatile bool backoff = false;
		long		sleep_ms;
		MemoryContext old = MemoryContextSwitchTo(loop_cxt);
		/* (from the setting now: a reload takes effect at once) */
		volatile TimestampTz next_pass = last_pass == 0 ? 0 :
			TimestampTzPlusMilliseconds(last_pass, es_cleanup_naptime_ms);

		/*
		 * The retention pass and the batch fail apart: a pass that keeps
		 * failing (a rule the pass cannot evaluate, a lock timeout) must not
		 * stop the removal of rows already hidden, nor a failing batch the
		 * passes.  Either one is retried after a naptime.
		 */
		if (!es_cleanup_enabled)
			last_pass = GetCurrentTimestamp();	/* idle */
		else if (GetCurrentTimestamp() >= next_pass)
		{
			last_pass = GetCurrentTimestamp();	/* (a failed pass too) */
			PG_TRY();
			{
				ready = retention_pass();
			}
			PG_CATCH();
			{
				report_step_error(loop_cxt);
			}
			PG_END_TRY();
		}
		if (ready && es_cleanup_enabled)
		{
			PG_TRY();
			{
				bool		m;
				bool		r;

				removed = cleanup_batch(&m, &r);
				more = m;
				ready = r;
			}
			PG_CATCH();
			{
				report_step_error(loop_cxt);
				more = false;
				backoff = true;
			}
			PG_END_TRY();
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
		if (!ready)
			leave_database();

		next_pass = TimestampTzPlusMilliseconds(last_pass, es_cleanup_naptime_ms);
		if (more)
			sleep_ms = es_cleanup_max_rows_per_second > 0 ?
				(long) (removed * 1000 / es_cleanup_max_rows_per_second) : 0;
		else if (backoff)
			sleep_ms = es_cleanup_naptime_ms;	/* no retry before a naptime */
		else
			sleep_ms = Max((next_pass - GetCurrentTimestamp()) / 1000 + 1, 1);
		if (sleep_ms > 0)
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
	proc_exit(0);
}

PG_FUNCTION_INFO_V1(es_cleanup_worker_status);

/*
 * cleanup_worker() RETURNS record: the cleanup worker of the current
 * database, from shared memory (never scans anything).
 */
Datum
es_cleanup_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[11];
	bool		nulls[11];
	EsCleanupDb e;
	int			i;

	es_require_shmem("eventsource.cleanup_worker()");
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);

	memset(&e, 0, sizeof(e));
	SpinLockAcquire(&cleanup_shared->mutex);
	i = find_entry_locked(MyDatabaseId);
	if (i >= 0)
		e = cleanup_shared->entries[i];
	SpinLockRelease(&cleanup_shared->mutex);

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(e.pid);
	nulls[0] = (e.pid == 0);
	values[1] = CStringGetTextDatum(e.pid == 0 ? (e.wanted ? "starting" : "stopped") :
									es_cleanup_enabled ? "running" : "disabled");
#define TS(n, t) do { values[n] = TimestampTzGetDatum(t); nulls[n] = ((t) == 0); } while (0)
	TS(2, e.started_at);
	TS(3, e.last_pass_at);
	TS(4, e.next_pass_at);
	TS(5, e.last_batch_at);
#undef TS
	values[6] = Int64GetDatum(e.rows_removed);
	values[7] = Int64GetDatum(e.batches);
	values[8] = Int64GetDatum(e.truncations);

	/*
	 * The worker serves every tenant, and its errors name the stream they
	 * met (a retention note, a lock timeout): a caller bound to tenants
	 * gets that the worker failed and when, not the text.  Unbound callers
	 * may choose any tenant anyway.
	 */
	if (e.last_error[0] != '\0' && es_tenant_caller_bound())
		values[9] = CStringGetTextDatum("(withheld: the cleanup worker's errors may name other tenants' streams)");
	else
		values[9] = CStringGetTextDatum(e.last_error);
	nulls[9] = (e.last_error[0] == '\0');
	values[10] = TimestampTzGetDatum(e.last_error_at);
	nulls[10] = (e.last_error_at == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
