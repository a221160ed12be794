/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The worker slots in shared memory: which subscription partitions exist
 *	  in which database, what they should be doing, and how they are doing.
 *	  This file is the slots' only writer: the SQL API (at commit), the
 *	  launcher and the workers change them through the functions below.
 *
 * Slot lifecycle (one slot per subscription partition):
 *
 *	 free         in_use false.  Taken by es_registry_register() (the commit
 *	   |          of create_subscription, or discovery at startup).
 *	   v
 *	 registered   in_use, desired run / pause / failed, pid 0.  The status
 *	   |          shows the idle state of "desired" (starting, paused,
 *	   |          failed).  While desired is run and next_start_at is due,
 *	   |          the launcher starts a process for it:
 *	   v
 *	 starting     es_slot_begin_start_locked() bumps generation; the process
 *	   |          is registered with the postmaster but has not attached
 *	   |          (pid still 0).  Should it die before attaching, the
 *	   |          launcher counts a crash (slot_crashed_locked).
 *	   v
 *	 attached     es_registry_attach(): pid, latch, attached_generation set
 *	   |          (only if the generation, desired run and pid 0 still hold).
 *	   |          The worker loads its row, then runs: catching_up / live /
 *	   |          circuit_open (the state field, under the slot's mutex).
 *	   v
 *	 stopping     desired changed away from run (pause, failed, drop, DROP
 *	   |          DATABASE): the process got SIGTERM and drains.
 *	   v
 *	 detached     es_registry_detach() from the worker's exit callback: pid
 *	              and latch cleared; desired run → back to "registered" with
 *	              a restart time (at once after a clean exit, else the crash
 *	              backoff es_restart_delay_ms()); desired drop → free.
 *
 *	 retired      a slot of an earlier incarnation of the same name whose
 *	              worker still drains: name cleared, desired drop; it becomes
 *	              free when that worker detaches.  Without a worker a retired
 *	              or dropped slot is freed at once (es_free_slot_locked).
 *
 * Locking:
 *	 - The WORKERS LWLock (es_lwlock(ES_LWLOCK_WORKERS)) protects the
 *	   identity and control fields of every slot (in_use, dboid, name,
 *	   incarnation, partition(s), desired, generation, attached_generation,
 *	   pid, latch, next_start_at, crash_count, retry_requested) and the
 *	   launcher fields of EsWorkersShared (launcher_pid, launcher_latch,
 *	   launcher_*_at, discovery_done, shutting_down, changes,
 *	   register_when_freed).  Writers hold it exclusively; it is held only
 *	   for a scan of the slot array and a few stores, never across SPI,
 *	   heap access or a latch wait.  Functions named *_locked assert it.
 *	 - Each slot's spinlock (mutex) protects its state and statistics,
 *	   which its worker updates as it goes and the status view copies.
 *	 - Lock order: WORKERS, then a slot's mutex (never the other way, and
 *	   never two mutexes).  The launcher calls RegisterDynamicBackgroundWorker
 *	   and GetBackgroundWorkerPid under WORKERS, so the postmaster's
 *	   BackgroundWorkerLock comes after it; nothing here takes WORKERS while
 *	   holding BackgroundWorkerLock.  progress_cv (a condition variable) is
 *	   broadcast after the writes it announces, with or without WORKERS.
 *	 - es_workers->nslots never changes after startup: read without a lock.
 *
 * The SQL API changes slots only at commit (subscription.c), so a worker
 * started for a slot always finds its subscription's committed row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "subscription.h"

EsWorkersShared *es_workers = NULL;

/* The WORKERS lock is held (exclusively, for a writer). */
#define AssertWorkersLocked() \
	Assert(LWLockHeldByMe(es_lwlock(ES_LWLOCK_WORKERS)))
#define AssertWorkersLockedExclusive() \
	Assert(LWLockHeldByMeInMode(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE))

Size
es_workers_shmem_size(void)
{
	return add_size(offsetof(EsWorkersShared, slots),
					mul_size(sizeof(EsWorkerSlot), es_max_workers));
}

void
es_workers_shmem_init(void *area, bool found)
{
	es_workers = (EsWorkersShared *) area;
	if (found)
		return;
	memset(area, 0, es_workers_shmem_size());
	es_workers->nslots = es_max_workers;
	for (int i = 0; i < es_max_workers; i++)
	{
		SpinLockInit(&es_workers->slots[i].mutex);
		ConditionVariableInit(&es_workers->slots[i].progress_cv);
	}
}

const char *
es_state_name(EsWorkerState state)
{
	switch (state)
	{
		case ES_STATE_STARTING:
			return "starting";
		case ES_STATE_CATCHING_UP:
			return "catching_up";
		case ES_STATE_LIVE:
			return "live";
		case ES_STATE_PAUSED:
			return "paused";
		case ES_STATE_CIRCUIT_OPEN:
			return "circuit_open";
		case ES_STATE_FAILED:
			return "failed";
		case ES_STATE_STOPPED:
			return "stopped";
	}
	return "unknown";
}

/* The state a slot shows while no process runs it. */
static EsWorkerState
idle_state(EsDesired desired)
{
	switch (desired)
	{
		case ES_DESIRED_RUN:
			return ES_STATE_STARTING;
		case ES_DESIRED_PAUSE:
			return ES_STATE_PAUSED;
		case ES_DESIRED_FAILED:
			return ES_STATE_FAILED;
		case ES_DESIRED_DROP:
			break;
	}
	return ES_STATE_STOPPED;
}

static void
reset_slot_stats(EsWorkerSlot *slot, EsDesired desired)
{
	SpinLockAcquire(&slot->mutex);
	slot->state = idle_state(desired);
	slot->started_at = 0;
	slot->heartbeat_at = 0;
	slot->last_activity_at = 0;
	slot->checkpoint = 0;
	slot->last_position = 0;
	slot->last_recorded_at = 0;
	slot->events_processed = 0;
	slot->events_failed = 0;
	slot->events_retried = 0;
	slot->dead_letters = 0;
	slot->consecutive_failures = 0;
	slot->bookkeeping_failures = 0;
	memset(slot->errors_by_second, 0, sizeof(slot->errors_by_second));
	memset(slot->error_second, 0, sizeof(slot->error_second));
	slot->last_error[0] = '\0';
	slot->last_sqlstate[0] = '\0';
	slot->last_error_at = 0;
	slot->circuit_open_until = 0;
	memset(&slot->shutdown, 0, sizeof(slot->shutdown));
	slot->progress_position = 0;
	slot->progress_resets = 0;
	slot->progress_pid = 0;
	SpinLockRelease(&slot->mutex);
}

static bool
slot_matches(EsWorkerSlot *slot, Oid dboid, const char *name)
{
	return slot->in_use && slot->dboid == dboid && strcmp(slot->name, name) == 0;
}

/* A subscription partition's slot, or NULL.  Caller holds the WORKERS lock. */
static EsWorkerSlot *
find_slot_locked(Oid dboid, const char *name, int partition)
{
	AssertWorkersLocked();
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (slot_matches(slot, dboid, name) && slot->partition == partition)
			return slot;
	}
	return NULL;
}

/* Release a slot.  Caller holds the WORKERS lock exclusively. */
void
es_free_slot_locked(EsWorkerSlot *slot)
{
	AssertWorkersLockedExclusive();
	slot->in_use = false;
	slot->dboid = InvalidOid;
	slot->name[0] = '\0';
	slot->desired = ES_DESIRED_DROP;
	SpinLockAcquire(&slot->mutex);
	slot->state = ES_STATE_STOPPED;
	SpinLockRelease(&slot->mutex);
	/* anyone waiting for this partition's progress must look again */
	ConditionVariableBroadcast(&slot->progress_cv);

	/*
	 * A subscription could not be registered for want of slots
	 * (es_registry_register): the launcher tries again now, by discovery.
	 */
	if (es_workers->register_when_freed)
	{
		es_workers->register_when_freed = false;
		es_workers->discovery_done = false;
		es_launcher_wake();
	}
}

int
es_registry_free_slots(void)
{
	int			n = 0;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	for (int i = 0; i < es_workers->nslots; i++)
		if (!es_workers->slots[i].in_use)
			n++;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return n;
}

/*
 * The slots in use by a subscription of database "dboid" (name NULL: by all
 * of its subscriptions), including those whose worker is still draining.
 */
int
es_registry_count_slots(Oid dboid, const char *name)
{
	int			n = 0;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (slot->in_use && slot->dboid == dboid &&
			(name == NULL || strcmp(slot->name, name) == 0))
			n++;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return n;
}

/*
 * Is this slot (of the right name) the incarnation's own?  Not if it belongs
 * to another incarnation, nor if it is on its way out: ids start again at 1
 * when the extension is created again, so a slot left by a dropped
 * extension can carry the same id.  Caller holds the WORKERS lock.
 */
static bool
slot_is_ours(EsWorkerSlot *slot, int64 incarnation)
{
	return slot->incarnation == incarnation && slot->desired != ES_DESIRED_DROP;
}

/*
 * A slot of an earlier subscription of the same name (another incarnation)
 * is no longer the name's: a draining worker keeps it as a tombstone (no
 * name, to be dropped, freed as the worker exits); an idle one is freed now.
 * Caller holds the WORKERS lock exclusively.
 */
static void
retire_slot_locked(EsWorkerSlot *slot)
{
	AssertWorkersLockedExclusive();
	if (slot->pid == 0)
	{
		es_free_slot_locked(slot);
		return;
	}
	slot->name[0] = '\0';
	slot->desired = ES_DESIRED_DROP;
	kill(slot->pid, SIGTERM);
}

/*
 * The change count of subscriptions (EsWorkersShared.changes).  Read it
 * before the snapshot whose rows you will pass as "as_of".
 */
uint64
es_registry_changes(void)
{
	uint64		changes;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	changes = es_workers->changes;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return changes;
}

/*
 * A committed transaction is about to apply its subscription changes to the
 * slots (subscription.c, commit callback): whoever read rows before it
 * committed must not set slots from them any more.
 */
void
es_registry_note_changes(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_workers->changes++;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* Did subscriptions change since *as_of?  Caller holds the WORKERS lock. */
static bool
stale_locked(const uint64 *as_of)
{
	AssertWorkersLocked();
	return as_of != NULL && *as_of != es_workers->changes;
}

/*
 * Make sure the subscription "incarnation" (its id) has one slot per
 * partition.  New slots get the desired state ("failed", if not NULL, marks
 * the partitions whose row stopped at an event); slots of the same
 * incarnation are left as they are, statistics and desired state (discovery
 * registers again what exists); slots of an earlier incarnation of the name
 * are retired.  as_of: NULL from the commit that made the change, else the
 * change count read before the rows (discovery).  Nothing is changed unless
 * it returns ES_REGISTER_OK.
 */
EsRegisterResult
es_registry_register(Oid dboid, const char *name, int64 incarnation,
					 int partitions, EsDesired desired, const bool *failed,
					 const uint64 *as_of)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_WORKERS);
	int			missing = 0;
	int			free_count = 0;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (stale_locked(as_of))
	{
		LWLockRelease(lock);
		return ES_REGISTER_STALE;
	}
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (!slot->in_use)
			free_count++;
		else if (slot_matches(slot, dboid, name) && !slot_is_ours(slot, incarnation) &&
				 slot->pid == 0)
			free_count++;		/* will be freed below */
	}
	for (int p = 0; p < partitions; p++)
	{
		EsWorkerSlot *slot = find_slot_locked(dboid, name, p);

		if (slot == NULL || !slot_is_ours(slot, incarnation))
			missing++;
	}
	if (missing > free_count)
	{
		/* registered by discovery once slots are freed (es_free_slot_locked) */
		es_workers->register_when_freed = true;
		LWLockRelease(lock);
		return ES_REGISTER_NO_SLOTS;
	}

	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (slot_matches(slot, dboid, name) &&
			(!slot_is_ours(slot, incarnation) || slot->partition >= partitions))
			retire_slot_locked(slot);
	}

	for (int p = 0; p < partitions; p++)
	{
		EsWorkerSlot *slot = find_slot_locked(dboid, name, p);
		EsDesired	d = desired;

		/*
		 * Registered already: every commit that changed it since kept its
		 * desired state right (and its worker may have stopped at an event
		 * whose row this caller read too early).
		 */
		if (slot != NULL)
			continue;
		if (failed != NULL && failed[p] && d == ES_DESIRED_RUN)
			d = ES_DESIRED_FAILED;
		for (int i = 0; i < es_workers->nslots && slot == NULL; i++)
			if (!es_workers->slots[i].in_use)
				slot = &es_workers->slots[i];
		slot->in_use = true;
		slot->dboid = dboid;
		strlcpy(slot->name, name, sizeof(slot->name));
		slot->incarnation = incarnation;
		slot->partition = p;
		slot->partitions = partitions;
		slot->desired = d;
		slot->pid = 0;
		slot->latch = NULL;
		slot->next_start_at = 0;
		slot->crash_count = 0;
		slot->retry_requested = false;
		reset_slot_stats(slot, d);
	}
	LWLockRelease(lock);
	es_launcher_wake();
	return ES_REGISTER_OK;
}

/*
 * Change what a subscription's partitions should do.  Running workers that
 * must stop get SIGTERM and drain (worker.c, delivery.c); slots of a dropped
 * subscription are freed at once when no process holds them, else by their
 * worker as it exits.
 */
void
es_registry_set_desired(Oid dboid, const char *name, EsDesired desired)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_WORKERS);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (!slot_matches(slot, dboid, name))
			continue;
		slot->desired = desired;
		if (desired == ES_DESIRED_RUN)
		{
			slot->crash_count = 0;
			slot->next_start_at = 0;
		}
		if (slot->pid != 0)
		{
			if (desired != ES_DESIRED_RUN)
				kill(slot->pid, SIGTERM);
		}
		else if (desired == ES_DESIRED_DROP)
			es_free_slot_locked(slot);
		else
		{
			SpinLockAcquire(&slot->mutex);
			slot->state = idle_state(desired);
			SpinLockRelease(&slot->mutex);
		}
	}
	LWLockRelease(lock);
	es_launcher_wake();
}

/*
 * A database is being dropped (or its extension): every worker there must
 * leave, and no new one may start.  Returns after signalling; the caller
 * waits for the processes to go (utility_hook.c).
 */
void
es_registry_drop_database(Oid dboid)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_WORKERS);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (!slot->in_use || slot->dboid != dboid)
			continue;
		slot->desired = ES_DESIRED_DROP;
		if (slot->pid != 0)
			kill(slot->pid, SIGTERM);
		else
			es_free_slot_locked(slot);
	}
	LWLockRelease(lock);
}

/*
 * Wake a subscription's workers: after reset_subscription() (they must
 * reload their position, now "position") or retry_dead_letters() (they have
 * work).
 */
void
es_registry_request(Oid dboid, const char *name, bool reset, int64 position, bool retry)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_WORKERS);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (!slot_matches(slot, dboid, name))
			continue;
		if (reset)
		{
			/*
			 * What the checkpoint row says now: wait_for_subscription() reads
			 * it.  (The worker learns of the reset from the row's "resets".)
			 */
			SpinLockAcquire(&slot->mutex);
			slot->checkpoint = position;
			SpinLockRelease(&slot->mutex);
		}
		if (retry)
			slot->retry_requested = true;
		if (slot->latch)
			SetLatch(slot->latch);
	}
	LWLockRelease(lock);
}

/*
 * Called from the commit or abort callback of a transaction that held
 * positions (the horizon moved): wake the workers of this database.  A
 * shared lock and a scan of the slot array; no NOTIFY, no polling.
 */
void
es_wake_workers(Oid dboid)
{
	LWLock	   *lock;

	if (es_workers == NULL)
		return;
	lock = es_lwlock(ES_LWLOCK_WORKERS);
	LWLockAcquire(lock, LW_SHARED);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (slot->in_use && slot->dboid == dboid && slot->latch != NULL)
			SetLatch(slot->latch);
	}
	LWLockRelease(lock);
}

/*
 * Wake the launcher.  Reads launcher_latch without the lock: it is one
 * pointer, stored by the launcher under WORKERS; a stale one is still the
 * latch of a PGPROC in shared memory, and setting it is harmless.  Callable
 * with or without the WORKERS lock.
 */
void
es_launcher_wake(void)
{
	Latch	   *latch;

	if (es_workers == NULL)
		return;
	latch = es_workers->launcher_latch;
	if (latch)
		SetLatch(latch);
}

/*
 * Count a handler failure in the slot's statistics: the rolling per-second
 * buckets behind error_rate_per_minute, and the last error.
 */
void
es_slot_note_error(EsWorkerSlot *slot, const char *message,
				   const char *sqlstate, bool retried)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		sec = now / USECS_PER_SEC;
	int			b = (int) (sec % ES_ERROR_BUCKETS);
	/* cut on a character boundary, and outside the spinlock */
	int			len = pg_mbcliplen(message, strlen(message), ES_ERROR_TEXT_LEN - 1);

	SpinLockAcquire(&slot->mutex);
	if (slot->error_second[b] != sec)
	{
		slot->error_second[b] = sec;
		slot->errors_by_second[b] = 0;
	}
	slot->errors_by_second[b]++;
	if (retried)
		slot->events_retried++;
	memcpy(slot->last_error, message, len);
	slot->last_error[len] = '\0';
	strlcpy(slot->last_sqlstate, sqlstate, sizeof(slot->last_sqlstate));
	slot->last_error_at = now;
	SpinLockRelease(&slot->mutex);
}

/*
 * Replace the text of the slot's last error (noted by its own worker just
 * before) by "note": it may quote an event erased since it was read
 * (bookkeeping.c, es_note_batch_error).  The counts stay.
 */
void
es_slot_withhold_error(EsWorkerSlot *slot, const char *note)
{
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->last_error, note, sizeof(slot->last_error));
	SpinLockRelease(&slot->mutex);
}

/* Errors in the last 60 seconds.  Caller holds the slot's mutex. */
int64
es_slot_error_rate(EsWorkerSlot *slot, TimestampTz now)
{
	int64		sec = now / USECS_PER_SEC;
	int64		total = 0;

	for (int b = 0; b < ES_ERROR_BUCKETS; b++)
		if (slot->error_second[b] > sec - ES_ERROR_BUCKETS &&
			slot->error_second[b] <= sec)
			total += slot->errors_by_second[b];
	return total;
}

/*
 * The worker running "slot" has committed everything up to "position" (the
 * events its filters or partition leave out included), having read its
 * checkpoint row with reset count "resets".  The status (status.c) measures
 * the partition's lag from the greater of this and the row's position, as
 * long as the row's reset count is the same and this process still runs the
 * slot: a periodic checkpoint is written only every interval.
 */
void
es_slot_set_progress(EsWorkerSlot *slot, int64 position, int64 resets)
{
	SpinLockAcquire(&slot->mutex);
	slot->progress_position = position;
	slot->progress_resets = resets;
	slot->progress_pid = MyProcPid;
	SpinLockRelease(&slot->mutex);
}

/* ---------------------------------------------------------------------
 * The restart backoff
 * ---------------------------------------------------------------------
 */

/*
 * How long to wait before starting a slot's worker again after its
 * crash_count-th crash in a row: 1 s, doubling, capped at a minute.  The
 * one rule for a worker that crashed after attaching (es_registry_detach)
 * and one that died before it attached (the launcher).
 */
int64
es_restart_delay_ms(int crash_count)
{
	return Min((int64) ES_RESTART_BACKOFF_MS << Min(Max(crash_count - 1, 0), 6),
			   (int64) ES_RESTART_BACKOFF_MAX_MS);
}

/*
 * Count a crash of the slot's worker and set its restart time.  "ran_since"
 * is when the crashed process started (0: it never attached): a worker that
 * ran well for ES_STEADY_RUN_MS starts its count again.
 */
static void
slot_crashed_locked(EsWorkerSlot *slot, TimestampTz now, TimestampTz ran_since)
{
	AssertWorkersLockedExclusive();
	if (ran_since != 0 && now - ran_since > (int64) ES_STEADY_RUN_MS * 1000)
		slot->crash_count = 0;
	slot->crash_count++;
	slot->next_start_at = now + es_restart_delay_ms(slot->crash_count) * 1000;
}

/* ---------------------------------------------------------------------
 * The launcher's side
 * ---------------------------------------------------------------------
 */

/* The launcher starts: it is the one to wake, and it discovers first. */
void
es_registry_launcher_attach(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_workers->launcher_pid = MyProcPid;
	es_workers->launcher_latch = MyLatch;
	es_workers->shutting_down = false;
	es_workers->launcher_started_at = GetCurrentTimestamp();
	es_workers->launcher_heartbeat_at = es_workers->launcher_started_at;

	/*
	 * A launcher always discovers first: a predecessor that ended by an
	 * error inside discovery left discovery_done true.
	 */
	es_workers->discovery_done = false;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* The launcher exits (its exit callback). */
void
es_registry_launcher_detach(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	if (es_workers->launcher_pid == MyProcPid)
	{
		es_workers->launcher_pid = 0;
		es_workers->launcher_latch = NULL;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* The launcher got SIGTERM: readiness() says "shutting down" until it is back. */
void
es_registry_launcher_stopping(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_workers->shutting_down = true;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* The launcher's heartbeat (liveness()).  Caller holds WORKERS exclusively. */
void
es_registry_launcher_heartbeat_locked(TimestampTz now)
{
	AssertWorkersLockedExclusive();
	es_workers->launcher_heartbeat_at = now;
}

/*
 * Ask the launcher to discover the subscriptions of every database again
 * (a DROP EXTENSION or DROP DATABASE rolled back, a restore), and wake it.
 */
void
es_registry_rediscover(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_workers->discovery_done = false;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	es_launcher_wake();
}

/*
 * The launcher is about to discover: true (and discovery marked done) when
 * it was asked for.  Test and set in one lock hold, so that a request made
 * while discovery runs (es_registry_rediscover) is not lost: it sets the
 * flag false again, and the next call says so.
 */
bool
es_registry_begin_discovery(void)
{
	bool		wanted;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	wanted = !es_workers->discovery_done;
	es_workers->discovery_done = true;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return wanted;
}

/* Discovery could not finish: it is wanted again. */
void
es_registry_discovery_failed(void)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	es_workers->discovery_done = false;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* Is a discovery wanted (and not yet begun)? */
bool
es_registry_discovery_wanted(void)
{
	bool		wanted;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	wanted = !es_workers->discovery_done;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return wanted;
}

/*
 * Should the slot have a process and has none?  Caller holds WORKERS.
 */
bool
es_slot_wants_process_locked(EsWorkerSlot *slot)
{
	AssertWorkersLocked();
	return slot->in_use && slot->desired == ES_DESIRED_RUN && slot->pid == 0;
}

/*
 * Is the slot's start due?  Counts a crash first when the process started
 * for its current generation died before it attached ("died_unattached",
 * which the launcher learns from its handle).  If not due, *due_at says
 * when.  Caller holds WORKERS exclusively.
 */
bool
es_slot_start_due_locked(EsWorkerSlot *slot, TimestampTz now,
						 bool died_unattached, TimestampTz *due_at)
{
	AssertWorkersLockedExclusive();
	if (died_unattached)
		slot_crashed_locked(slot, now, 0);
	*due_at = slot->next_start_at;
	return slot->next_start_at <= now;
}

/*
 * Did the process started for this slot's current "generation" attach?
 * Caller holds WORKERS.
 */
bool
es_slot_attached_locked(EsWorkerSlot *slot, uint32 generation)
{
	AssertWorkersLocked();
	return slot->generation == generation &&
		slot->attached_generation == generation;
}

/*
 * The launcher starts a process for the slot: its generation, which the
 * process must present to attach.  Caller holds WORKERS exclusively.
 */
uint32
es_slot_begin_start_locked(EsWorkerSlot *slot)
{
	AssertWorkersLockedExclusive();
	return ++slot->generation;
}

/*
 * No background worker could be registered for the slot: try again after
 * "retry_ms", and show why in the status (last_error, SQLSTATE 53000).
 * Caller holds WORKERS exclusively.
 */
void
es_slot_start_failed_locked(EsWorkerSlot *slot, TimestampTz now,
							const char *message, int64 retry_ms)
{
	AssertWorkersLockedExclusive();
	slot->next_start_at = now + retry_ms * 1000;
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->last_error, message, sizeof(slot->last_error));
	strlcpy(slot->last_sqlstate, "53000", sizeof(slot->last_sqlstate));
	slot->last_error_at = now;
	SpinLockRelease(&slot->mutex);
}

/* ---------------------------------------------------------------------
 * The worker's side: attach, desired state, requests, detach
 * ---------------------------------------------------------------------
 */

/*
 * Attach this process to the slot the launcher started it for: only if
 * the slot is still that start's (generation), should run and has no
 * process.  Copies the slot's identity into *id.  NULL: not ours, exit.
 */
EsWorkerSlot *
es_registry_attach(int index, uint32 generation, EsSlotIdentity *id)
{
	EsWorkerSlot *slot = &es_workers->slots[index];
	bool		ok;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	ok = slot->in_use && slot->generation == generation && slot->pid == 0 &&
		slot->desired == ES_DESIRED_RUN;
	if (ok)
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		slot->attached_generation = generation;
		id->dboid = slot->dboid;
		strlcpy(id->name, slot->name, sizeof(id->name));
		id->partition = slot->partition;
		id->partitions = slot->partitions;
		id->incarnation = slot->incarnation;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	if (!ok)
		return NULL;
	SpinLockAcquire(&slot->mutex);
	slot->state = ES_STATE_STARTING;
	slot->started_at = GetCurrentTimestamp();
	slot->heartbeat_at = slot->started_at;
	SpinLockRelease(&slot->mutex);
	return slot;
}

/*
 * Give the slot back (the worker's exit callback; "code" its exit code).  A
 * dropped subscription's slot is freed; otherwise the restart time is set
 * here, where the exit code is known (the launcher only starts what is
 * due): at once after a clean exit, after the crash backoff otherwise.
 */
void
es_registry_detach(EsWorkerSlot *slot, int code)
{
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	slot->pid = 0;
	slot->latch = NULL;
	if (slot->desired == ES_DESIRED_DROP)
		es_free_slot_locked(slot);
	else
	{
		if (code != 0 && slot->desired == ES_DESIRED_RUN)
		{
			TimestampTz started_at;

			SpinLockAcquire(&slot->mutex);
			started_at = slot->started_at;
			SpinLockRelease(&slot->mutex);
			slot_crashed_locked(slot, now, started_at);
		}
		else if (slot->desired == ES_DESIRED_RUN)
			slot->next_start_at = now;	/* a clean stop: start again at once */
		SpinLockAcquire(&slot->mutex);
		if (slot->desired == ES_DESIRED_PAUSE)
			slot->state = ES_STATE_PAUSED;
		else if (slot->desired == ES_DESIRED_FAILED)
			slot->state = ES_STATE_FAILED;
		else if (slot->state != ES_STATE_FAILED)
			slot->state = ES_STATE_STARTING;
		SpinLockRelease(&slot->mutex);
		ConditionVariableBroadcast(&slot->progress_cv);
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	es_launcher_wake();
}

/* What the slot should be doing now. */
EsDesired
es_slot_desired(EsWorkerSlot *slot)
{
	EsDesired	d;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	d = slot->desired;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return d;
}

/* The slot's desired state becomes "to" if it is "from" (nobody changed it). */
void
es_slot_set_desired_if(EsWorkerSlot *slot, EsDesired from, EsDesired to)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	if (slot->desired == from)
		slot->desired = to;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/*
 * A starting worker read its row, which says "desired" (paused, or stopped
 * at an event) although its slot says run: the slot follows the row, unless
 * subscriptions changed since "as_of" (read before the row's snapshot).
 * Returns false when they did: read again.
 */
bool
es_slot_follow_row(EsWorkerSlot *slot, EsDesired desired, uint64 as_of)
{
	bool		stale;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	stale = stale_locked(&as_of);
	if (!stale && slot->desired == ES_DESIRED_RUN)
		slot->desired = desired;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return !stale;
}

/* The worker found its subscription gone: an incarnation never comes back. */
void
es_slot_gone(EsWorkerSlot *slot)
{
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	slot->desired = ES_DESIRED_DROP;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
}

/* Was retry_dead_letters() asked for since the last call?  Clears the request. */
bool
es_slot_take_retry_request(EsWorkerSlot *slot)
{
	bool		requested;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_EXCLUSIVE);
	requested = slot->retry_requested;
	slot->retry_requested = false;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return requested;
}

/* ---------------------------------------------------------------------
 * The worker's side: state and statistics (the slot's mutex)
 * ---------------------------------------------------------------------
 */

/* The slot's state (and its heartbeat). */
void
es_slot_set_state(EsWorkerSlot *slot, EsWorkerState state)
{
	SpinLockAcquire(&slot->mutex);
	slot->state = state;
	slot->heartbeat_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
}

void
es_slot_heartbeat(EsWorkerSlot *slot)
{
	SpinLockAcquire(&slot->mutex);
	slot->heartbeat_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
}

/* After a commit that moved the checkpoint: publish it and wake waiters. */
void
es_slot_checkpointed(EsWorkerSlot *slot, int64 position)
{
	SpinLockAcquire(&slot->mutex);
	slot->checkpoint = position;
	slot->heartbeat_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
	ConditionVariableBroadcast(&slot->progress_cv);
}

/* "n" events delivered, the last at "position", recorded at "recorded_at". */
void
es_slot_delivered(EsWorkerSlot *slot, int64 position, TimestampTz recorded_at, int n)
{
	SpinLockAcquire(&slot->mutex);
	slot->last_position = position;
	slot->last_recorded_at = recorded_at;
	slot->events_processed += n;
	slot->consecutive_failures = 0;
	slot->last_activity_at = GetCurrentTimestamp();
	slot->heartbeat_at = slot->last_activity_at;
	SpinLockRelease(&slot->mutex);
}

/* An event failed for good: dead-lettered, or the partition stopped at it. */
void
es_slot_event_failed(EsWorkerSlot *slot, bool dead_lettered)
{
	SpinLockAcquire(&slot->mutex);
	slot->events_failed++;
	if (dead_lettered)
		slot->dead_letters++;
	slot->consecutive_failures++;
	SpinLockRelease(&slot->mutex);
}

/*
 * Dead letters left the table: "delivered" by a retry (then counted as
 * processed), or "dropped" (hidden by a lifecycle operation).
 */
void
es_slot_dead_letters_gone(EsWorkerSlot *slot, int64 delivered, int64 dropped)
{
	SpinLockAcquire(&slot->mutex);
	slot->events_processed += delivered;
	slot->dead_letters = Max(slot->dead_letters - delivered - dropped, 0);
	SpinLockRelease(&slot->mutex);
}

/* One more of the worker's own bookkeeping writes failed: the new count. */
int64
es_slot_bookkeeping_failed(EsWorkerSlot *slot)
{
	int64		failures;

	SpinLockAcquire(&slot->mutex);
	failures = ++slot->bookkeeping_failures;
	SpinLockRelease(&slot->mutex);
	return failures;
}

void
es_slot_set_circuit_open_until(EsWorkerSlot *slot, TimestampTz until)
{
	SpinLockAcquire(&slot->mutex);
	slot->circuit_open_until = until;
	SpinLockRelease(&slot->mutex);
}

/* A forced stop rolled back "n" events (kept for the shutdown record). */
void
es_slot_set_in_flight(EsWorkerSlot *slot, int n)
{
	SpinLockAcquire(&slot->mutex);
	slot->shutdown.events_in_flight = n;
	SpinLockRelease(&slot->mutex);
}

/*
 * Keep the outcome of the worker's shutdown; a forced one takes the events
 * in flight es_slot_set_in_flight() noted.  Fills rec->events_in_flight.
 */
void
es_slot_record_shutdown(EsWorkerSlot *slot, EsShutdownRecord *rec)
{
	SpinLockAcquire(&slot->mutex);
	rec->events_in_flight = rec->forced ? slot->shutdown.events_in_flight : 0;
	slot->shutdown = *rec;
	SpinLockRelease(&slot->mutex);
}
