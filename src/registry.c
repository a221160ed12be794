/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  The worker slots in shared memory: which subscription partitions exist
 *	  in which database, what they should be doing, and how they are doing.
 *
 * Locking: the WORKERS LWLock protects the identity and control fields of
 * every slot (in_use, dboid, name, partition, desired, generation, pid,
 * latch, restart backoff, requests); it is held only for a scan of the slot
 * array and a few stores, never across anything that can block.  Each slot's
 * spinlock protects its state and statistics, which its worker updates as it
 * goes and the status view copies.
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
 * must stop get SIGTERM and drain (worker.c); slots of a dropped
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
