/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher, and the discovery of subscriptions at startup.
 *
 * The launcher is a static background worker, registered from _PG_init,
 * connected to no database.  It keeps every worker slot whose subscription
 * partition should run (registry.c) supplied with a worker process, started
 * with RegisterDynamicBackgroundWorker, restarting crashed ones after their
 * backoff (es_restart_delay_ms: counted by the worker's exit callback, or
 * here when a worker died before it attached).  Every write to a slot goes
 * through registry.c.  It writes a heartbeat for liveness().
 *
 * Shared memory starts empty at every server start (and after a
 * crash-restart), so the launcher first runs a short-lived discovery worker
 * in each database that accepts connections: if the extension is installed
 * there, it registers the database's subscriptions.  Later changes reach the
 * registry from the SQL API at commit.
 *
 * The launcher sleeps on its latch: set by the SQL API, by exiting workers
 * and by the postmaster (bgw_notify_pid); the timeout only serves restart
 * backoffs and the heartbeat.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/heapam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "subscription.h"
#include "trace.h"

#define ES_LAUNCHER_TICK_MS		1000
#define ES_NO_SLOT_RETRY_MS		5000

PGDLLEXPORT void es_launcher_main(Datum main_arg);
PGDLLEXPORT void es_discovery_main(Datum main_arg);

static volatile sig_atomic_t got_sigterm = false;

/* handles of the workers this launcher started, by slot */
typedef struct LauncherHandle
{
	BackgroundWorkerHandle *handle;
	uint32		generation;
	bool		warned_no_slot;
} LauncherHandle;

static LauncherHandle *handles = NULL;

static void
launcher_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Called from _PG_init while preloading. */
void
es_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventsource");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventsource launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventsource launcher");
	RegisterBackgroundWorker(&worker);

	if (max_worker_processes < es_max_workers + 1)
		ereport(WARNING,
				(errmsg("max_worker_processes (%d) is lower than eventsource.max_workers + 1 (%d)",
						max_worker_processes, es_max_workers + 1),
				 errdetail("Each running subscription partition takes one background worker, and the eventsource launcher one more."),
				 errhint("Raise max_worker_processes (it also serves parallel query and logical replication).")));
}

static void
launcher_exit(int code, Datum arg)
{
	es_registry_launcher_detach();
}

static void
fill_worker(BackgroundWorker *worker, const char *function, const char *name,
			const char *type)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker->bgw_library_name, BGW_MAXLEN, "eventsource");
	snprintf(worker->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker->bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker->bgw_type, BGW_MAXLEN, "%s", type);
	worker->bgw_notify_pid = MyProcPid;
}

/*
 * Run a discovery worker in every database that accepts connections, one
 * after the other.  Returns false when a worker could not be started (no
 * free background worker slot): try again later.
 */
static bool
discover(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	ListCell   *lc;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, dbs)
	{
		BackgroundWorker worker;
		BackgroundWorkerHandle *handle;
		Oid			dboid = lfirst_oid(lc);

		if (got_sigterm)
			return false;		/* not done: our successor starts over */
		fill_worker(&worker, "es_discovery_main", "eventsource discovery",
					"eventsource discovery");
		worker.bgw_main_arg = ObjectIdGetDatum(dboid);
		if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		{
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("eventsource launcher: no free background worker slot to look for subscriptions"),
					 errhint("Raise max_worker_processes.")));
			list_free(dbs);
			return false;
		}
		(void) WaitForBackgroundWorkerShutdown(handle);
		pfree(handle);
	}
	list_free(dbs);
	return true;
}

/*
 * Start a worker for a slot.  Caller holds the WORKERS lock exclusively.
 * Returns false when no background worker slot was free; *warn then says
 * whether this is news worth a WARNING (given by the caller, after
 * releasing the lock).
 */
static bool
start_worker_locked(int index, bool *warn)
{
	EsWorkerSlot *slot = &es_workers->slots[index];
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	char		title[BGW_MAXLEN];

	uint32		generation;

	Assert(LWLockHeldByMeInMode(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE));
	generation = es_slot_begin_start_locked(slot);
	snprintf(title, sizeof(title), "eventsource worker %s/%d", slot->name, slot->partition);
	fill_worker(&worker, "es_worker_main", title, "eventsource worker");
	worker.bgw_main_arg = Int32GetDatum(index);
	memcpy(worker.bgw_extra, &generation, sizeof(uint32));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		char		msg[ES_ERROR_TEXT_LEN];

		snprintf(msg, sizeof(msg),
				 "no free background worker slot (max_worker_processes = %d)",
				 max_worker_processes);
		es_slot_start_failed_locked(slot, GetCurrentTimestamp(), msg,
									ES_NO_SLOT_RETRY_MS);
		*warn = !handles[index].warned_no_slot;
		handles[index].warned_no_slot = true;
		return false;
	}
	if (handles[index].handle)
		pfree(handles[index].handle);
	handles[index].handle = handle;
	handles[index].generation = generation;
	handles[index].warned_no_slot = false;
	return true;
}

/*
 * Has the process started for this slot's current generation gone away
 * without ever attaching?  Then it failed at startup (e.g. its database
 * could not be connected): count it as a crash.
 */
static bool
died_before_attach_locked(int index)
{
	LauncherHandle *h = &handles[index];
	EsWorkerSlot *slot = &es_workers->slots[index];
	pid_t		pid;

	Assert(LWLockHeldByMe(es_lwlock(ES_LWLOCK_WORKERS)));
	if (h->handle == NULL || h->generation != slot->generation)
		return false;
	if (GetBackgroundWorkerPid(h->handle, &pid) != BGWH_STOPPED)
		return false;
	pfree(h->handle);
	h->handle = NULL;
	/* a worker that attached counted its own exit (es_registry_detach) */
	return !es_slot_attached_locked(slot, h->generation);
}

static bool
start_pending_locked(int index)
{
	LauncherHandle *h = &handles[index];
	pid_t		pid;

	Assert(LWLockHeldByMe(es_lwlock(ES_LWLOCK_WORKERS)));
	return h->handle != NULL &&
		h->generation == es_workers->slots[index].generation &&
		GetBackgroundWorkerPid(h->handle, &pid) != BGWH_STOPPED;
}

/*
 * One pass over the slots: start what is due.  Returns the time until the
 * next restart is due (ms), capped at the launcher tick.
 */
static int64
supervise(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		wait_ms = ES_LAUNCHER_TICK_MS;
	int			no_slot_for = -1;
	char		no_slot_name[ES_MAX_NAME_LEN + 1];
	int			no_slot_partition = 0;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_registry_launcher_heartbeat_locked(now);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];
		TimestampTz due_at;

		if (!es_slot_wants_process_locked(slot))
			continue;
		if (start_pending_locked(i))
			continue;
		if (!es_slot_start_due_locked(slot, now, died_before_attach_locked(i), &due_at))
		{
			wait_ms = Min(wait_ms, (due_at - now) / 1000 + 1);
			continue;
		}
		{
			bool		warn = false;

			if (!start_worker_locked(i, &warn))
			{
				wait_ms = Min(wait_ms, (int64) ES_NO_SLOT_RETRY_MS);
				if (warn && no_slot_for < 0)
				{
					no_slot_for = i;
					strlcpy(no_slot_name, slot->name, sizeof(no_slot_name));
					no_slot_partition = slot->partition;
				}
			}
		}
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));

	if (no_slot_for >= 0)
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("eventsource: cannot start a worker for subscription \"%s\" partition %d: no free background worker slot",
						no_slot_name, no_slot_partition),
				 errhint("Raise max_worker_processes (now %d): eventsource needs one per running subscription partition plus one for its launcher.",
						 max_worker_processes)));
	return wait_ms;
}

void
es_launcher_main(Datum main_arg)
{
	pqsignal(SIGTERM, launcher_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("eventsource launcher");

	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(LauncherHandle) * es_workers->nslots);

	es_registry_launcher_attach();	/* and discover first */
	before_shmem_exit(launcher_exit, (Datum) 0);

	ereport(LOG, (errmsg("eventsource launcher started")));

	while (!got_sigterm)
	{
		int64		wait_ms;

		/* a request made while it runs is not lost: it asks again */
		if (es_registry_begin_discovery() && !discover())
			es_registry_discovery_failed();
		wait_ms = supervise();
		wait_ms = Min(wait_ms, es_otlp_supervise());	/* issue 13: tracing */
		wait_ms = Min(wait_ms, es_cleanup_supervise());	/* issue 14: cleanup.c */
		if (es_registry_discovery_wanted())
			wait_ms = Min(wait_ms, (int64) ES_NO_SLOT_RETRY_MS);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		QueryCancelPending = false; /* nothing to cancel here */
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}

	/*
	 * SIGTERM: a server shutdown (the postmaster stops the workers itself,
	 * and they drain) or pg_terminate_backend().  Exit code 1 so that the
	 * postmaster starts the launcher again in the second case (it never
	 * restarts anything while shutting down); until then readiness() says
	 * "shutting down".
	 */
	es_registry_launcher_stopping();
	proc_exit(1);
}

/*
 * Register one subscription read by discovery: its partitions whose row
 * stopped at an event are in failed[0..partitions-1].  Returns false when
 * subscriptions changed since as_of.
 */
static bool
register_discovered(Oid dboid, const char *name, int64 incarnation,
					int partitions, EsDesired desired, const bool *failed,
					uint64 as_of)
{
	switch (es_registry_register(dboid, name, incarnation, partitions, desired,
								 failed, &as_of))
	{
		case ES_REGISTER_OK:
			break;
		case ES_REGISTER_STALE:
			return false;
		case ES_REGISTER_NO_SLOTS:
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("eventsource: subscription \"%s\" cannot run: all eventsource.max_workers slots are taken",
							name),
					 errdetail("It runs as soon as enough slots are freed."),
					 errhint("Drop unused subscriptions, or raise eventsource.max_workers (now %d) and restart the server.",
							 es_max_workers)));
			break;
	}
	return true;
}

/*
 * One pass of discovery over this database, in one transaction.  Returns
 * false when it must be done again (subscriptions changed under it).
 */
static bool
discover_database(Oid dboid)
{
	uint64		as_of = es_registry_changes();	/* before the snapshot */
	bool		done = true;

	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("eventsource", true)))
	{
		Oid			save_userid;
		int			save_sec_context;
		bool		failed[ES_MAX_PARTITIONS];
		uint64		first = 0;	/* the current subscription's first row */

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		es_become_owner(&save_userid, &save_sec_context);
		if (SPI_execute("SELECT s.name, s.partitions, s.state, p.partition, p.state, s.id"
						" FROM eventsource.subscriptions s"
						" JOIN eventsource.subscription_partitions p"
						"   ON p.subscription OPERATOR(pg_catalog.=) s.name"
						" ORDER BY s.name, p.partition", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "eventsource discovery: could not read subscriptions");

		/* rows come by subscription: register each after its last row */
		for (uint64 i = 0; i < SPI_processed && done; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			char	   *name = SPI_getvalue(tup, desc, 1);
			int			partitions = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			int			partition = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
			char	   *pstate = SPI_getvalue(tup, desc, 5);

			if (i == first)
				memset(failed, 0, sizeof(failed));
			if (partition >= 0 && partition < Min(partitions, ES_MAX_PARTITIONS))
				failed[partition] = strcmp(pstate, "failed") == 0;
			if (i + 1 == SPI_processed ||
				strcmp(name, SPI_getvalue(SPI_tuptable->vals[i + 1], desc, 1)) != 0)
			{
				char	   *state = SPI_getvalue(tup, desc, 3);
				int64		incarnation = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));

				done = register_discovered(dboid, name, incarnation,
										   Min(partitions, ES_MAX_PARTITIONS),
										   strcmp(state, "paused") == 0 ?
										   ES_DESIRED_PAUSE : ES_DESIRED_RUN,
										   failed, as_of);
				first = i + 1;
			}
		}
		es_restore_user(save_userid, save_sec_context);
		PopActiveSnapshot();
		SPI_finish();
		es_cleanup_want(dboid); /* issue 14: its cleanup worker (cleanup.c) */
	}
	CommitTransactionCommand();
	return done;
}

/*
 * Discovery worker: register this database's subscriptions, then exit.
 */
void
es_discovery_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);

	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("eventsource discovery");
	/* the launcher waits for us: never for long behind someone's lock */
	SetConfigOption("lock_timeout", "10s", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Read every subscription and register it.  Should a commit change
	 * subscriptions meanwhile (after our snapshot), what we read may be out
	 * of date: read again (registry.c, "as_of").
	 */
	while (!discover_database(dboid))
		CHECK_FOR_INTERRUPTS();
	proc_exit(0);
}
