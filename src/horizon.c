/*-------------------------------------------------------------------------
 *
 * horizon.c
 *	  Position reservations and the safe horizon.
 *
 * Global positions come from a sequence (CACHE 1, so nextval() returns
 * increasing values across backends), but rows become visible when their
 * transaction commits, in any order.  A reader that moved its cursor past a
 * position whose transaction is still running would never come back for it.
 * The safe horizon is the highest position H such that every position <= H
 * belongs to a transaction that has committed or aborted; read_all() never
 * returns anything above it.
 *
 * Protocol (all of it under the HORIZON LWLock, held only for a few loads
 * and stores, never across heap access):
 *
 *	appender:  1. register an intent: its slot's min_position becomes
 *				  last_known + 1, a lower bound of any value nextval() can
 *				  return from now on;
 *			   2. call nextval() (outside the lock);
 *			   3. tighten min_position to the first value it got and raise
 *				  last_known;
 *			   4. at commit or abort (the xact callback, which PostgreSQL runs
 *				  after the transaction became visible or was marked aborted)
 *				  clear the slot.
 *	reader:	   read the sequence's last_value L (outside the lock), then
 *			   H = min(max(last_known, L), min over this database's slots of
 *			   min_position - 1).
 *
 * A position p <= L was handed out before the reader read L; its appender
 * registered its intent before that, so either the reader sees its slot or
 * the transaction has ended.  Every H handed out is <= last_known at that
 * time, and later intents start above last_known, so H never moves backwards.
 * Unrelated transactions (no slot) never hold the horizon back, and slots of
 * other databases are ignored.
 *
 * Crash: shared memory is rebuilt empty and the sequence, recovered from WAL,
 * is at or above every value it handed out.  An aborted reservation is only
 * released after WAL is flushed up to the sequence record that handed it
 * out, so a crash can never rewind the sequence below a position the horizon
 * has already passed.  (A commit flushes that record itself, unless
 * synchronous_commit is off: then, as for any asynchronous commit, a crash
 * may lose the last transactions, see the README.)
 *
 * Subtransactions: each reservation remembers the subtransaction that made
 * it; when that subtransaction aborts its positions are dead and released at
 * once, so a rolled-back savepoint never holds readers back.
 *
 * PREPARE TRANSACTION of a transaction holding a reservation is refused: the
 * prepared transaction would outlive this backend's slot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "eventsource.h"
#include "upcalls.h"

/* Per-database state, found by database OID. */
typedef struct EsDatabaseState
{
	Oid			dboid;			/* InvalidOid: free */
	Oid			seqoid;			/* the position sequence this state is about */
	pg_atomic_uint64 last_known;	/* a position handed out (or the
									 * sequence's last_value); never above
									 * the sequence, never decreasing */
	int			active;			/* slots of this database holding positions */
	uint64		last_used;		/* clock tick, for reusing entries */
} EsDatabaseState;

typedef struct EsHorizonShared
{
	int			ndatabases;
	int			nslots;
	uint64		clock;
	EsDatabaseState dbs[FLEXIBLE_ARRAY_MEMBER];
	/* followed by EsReservation slots[nslots] */
} EsHorizonShared;

static EsHorizonShared *horizon = NULL;
static EsReservation *slots = NULL;

/*
 * Backend-local record of this transaction's reservations: one entry per
 * subtransaction that reserved, with the lowest position it holds.
 */
typedef struct LocalReservation
{
	SubTransactionId subid;
	int64		min_position;
} LocalReservation;

static LocalReservation *local_res = NULL;
static int	local_nres = 0;
static int	local_maxres = 0;
static XLogRecPtr reserve_lsn = InvalidXLogRecPtr;
static bool callbacks_registered = false;

static Size
es_horizon_slots_offset(void)
{
	return MAXALIGN(add_size(offsetof(EsHorizonShared, dbs),
							 mul_size(sizeof(EsDatabaseState), es_max_databases)));
}

Size
es_horizon_shmem_size(void)
{
	return add_size(es_horizon_slots_offset(),
					mul_size(sizeof(EsReservation), MaxBackends));
}

void
es_horizon_shmem_init(void *area, bool found)
{
	horizon = (EsHorizonShared *) area;
	slots = (EsReservation *) ((char *) area + es_horizon_slots_offset());
	if (found)
		return;
	memset(area, 0, es_horizon_shmem_size());
	for (int i = 0; i < es_max_databases; i++)
		pg_atomic_init_u64(&horizon->dbs[i].last_known, 0);
	horizon->ndatabases = es_max_databases;
	horizon->nslots = MaxBackends;
}

/* This backend's slot.  Every backend and background worker has an id. */
static EsReservation *
my_slot(void)
{
	Assert(MyBackendId >= 1 && MyBackendId <= horizon->nslots);
	return &slots[MyBackendId - 1];
}

/*
 * Read the sequence's last_value (0 when nextval was never called).  The
 * caller runs as a role that may read the sequence (the extension owner).
 */
static int64
sequence_last_value(Oid seqoid)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqoid);
	fcinfo->args[0].isnull = false;
	result = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(result);
}

/*
 * Find this database's state.  Caller holds the HORIZON lock; with
 * create = true it must hold it exclusively, and then a missing entry is
 * made (reusing the least recently used idle entry when the table is full)
 * and an entry about another sequence (the extension was dropped and created
 * again) starts over.  Returns NULL when not found (create = false) or when
 * every entry is busy.
 */
static EsDatabaseState *
find_db_locked(Oid seqoid, bool create)
{
	EsDatabaseState *victim = NULL;

	for (int i = 0; i < horizon->ndatabases; i++)
	{
		EsDatabaseState *db = &horizon->dbs[i];

		if (db->dboid == MyDatabaseId)
		{
			if (db->seqoid == seqoid)
				return db;
			if (!create)
				return NULL;
			victim = db;
			break;
		}
		if (db->dboid == InvalidOid || db->active == 0)
		{
			if (victim == NULL ||
				(victim->dboid != InvalidOid &&
				 (db->dboid == InvalidOid || db->last_used < victim->last_used)))
				victim = db;
		}
	}
	if (!create || victim == NULL)
		return NULL;

	/*
	 * An idle entry of another database can be reused: when that database
	 * comes back it reads its sequence again, which is at or above anything
	 * its last_known said.
	 */
	if (victim->dboid != MyDatabaseId)
		victim->active = 0;
	victim->dboid = MyDatabaseId;
	victim->seqoid = seqoid;
	pg_atomic_write_u64(&victim->last_known, 0);
	return victim;
}

static void
raise_max_databases(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("too many databases are appending to or reading from event stores at once"),
			 errdetail("eventsource.max_databases is %d.", es_max_databases),
			 errhint("Increase eventsource.max_databases and restart the server.")));
}

/*
 * Raise last_known to at least "value".  Caller holds the lock, shared or
 * exclusive: readers under the shared lock race with each other, hence the
 * compare-and-swap loop that keeps the maximum.
 */
static inline void
raise_last_known(EsDatabaseState *db, int64 value)
{
	uint64		cur = pg_atomic_read_u64(&db->last_known);

	while ((int64) cur < value)
	{
		if (pg_atomic_compare_exchange_u64(&db->last_known, &cur, (uint64) value))
			break;
	}
}

static inline int64
last_known(EsDatabaseState *db)
{
	return (int64) pg_atomic_read_u64(&db->last_known);
}

/*
 * Return this database's state, creating it when needed.  Caller holds the
 * lock exclusively.  "seqval" is a fresh read of the sequence, or -1 when
 * the caller has none; when the entry must be created without one, NULL is
 * returned so the caller can read the sequence (outside the lock) and retry.
 */
static EsDatabaseState *
attach_db_locked(Oid seqoid, int64 seqval)
{
	EsDatabaseState *db = find_db_locked(seqoid, false);

	if (db == NULL)
	{
		if (seqval < 0)
			return NULL;
		db = find_db_locked(seqoid, true);
		if (db == NULL)
		{
			LWLockRelease(es_lwlock(ES_LWLOCK_HORIZON));
			raise_max_databases();
		}
	}
	if (seqval > 0)
		raise_last_known(db, seqval);
	db->last_used = ++horizon->clock;
	return db;
}

/*
 * Take the HORIZON lock exclusively and return this database's state,
 * creating it when needed: then the sequence is read first, outside the
 * lock.  Returns with the lock held.
 */
static EsDatabaseState *
lock_db(const EsCatalog *cat)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	int64		seqval = -1;

	for (;;)
	{
		EsDatabaseState *db;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		db = attach_db_locked(cat->sequence_oid, seqval);
		if (db != NULL)
			return db;
		LWLockRelease(lock);
		seqval = sequence_last_value(cat->sequence_oid);
	}
}

/* Lowest reservation this backend still holds, 0 if none. */
static int64
local_min(void)
{
	int64		min = 0;

	for (int i = 0; i < local_nres; i++)
		if (min == 0 || local_res[i].min_position < min)
			min = local_res[i].min_position;
	return min;
}

/*
 * Publish this backend's current local minimum in its slot.  Caller holds the
 * lock exclusively.
 */
static void
publish_slot_locked(EsDatabaseState *db)
{
	EsReservation *slot = my_slot();
	int64		min = local_min();

	if (min != 0 && slot->min_position == 0)
	{
		slot->dboid = MyDatabaseId;
		slot->pid = MyProcPid;
		slot->since = GetCurrentTimestamp();
		slot->xid = GetTopTransactionIdIfAny();
		slot->count = 0;
		slot->max_position = 0;
		if (db)
			db->active++;
	}
	else if (min == 0 && slot->min_position != 0)
	{
		if (db)
			db->active--;
		slot->count = 0;
		slot->max_position = 0;
	}
	slot->min_position = min;
}

/*
 * Record a reservation of the current subtransaction starting at
 * min_position.  Returns true when this made a new entry, false when the
 * subtransaction already held (lower) positions.
 */
static bool
add_local(int64 min_position)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	for (int i = 0; i < local_nres; i++)
	{
		if (local_res[i].subid == subid)
		{
			if (min_position < local_res[i].min_position)
				local_res[i].min_position = min_position;
			return false;
		}
	}
	if (local_nres == local_maxres)
	{
		int			newmax = local_maxres == 0 ? 8 : local_maxres * 2;

		if (local_res == NULL)
			local_res = MemoryContextAlloc(TopMemoryContext,
										   newmax * sizeof(LocalReservation));
		else
			local_res = repalloc(local_res, newmax * sizeof(LocalReservation));
		local_maxres = newmax;
	}
	local_res[local_nres].subid = subid;
	local_res[local_nres].min_position = min_position;
	local_nres++;
	return true;
}

/* The entry of the current subtransaction; it exists after add_local(). */
static LocalReservation *
current_local(void)
{
	SubTransactionId subid = GetCurrentSubTransactionId();

	for (int i = 0; i < local_nres; i++)
		if (local_res[i].subid == subid)
			return &local_res[i];
	elog(ERROR, "eventsource: no reservation for the current subtransaction");
	return NULL;				/* keep compiler quiet */
}

/*
 * Reserve "count" positions for the current transaction and store them,
 * increasing, in positions[].  Returns the first.  The caller runs as the
 * extension owner (it reads and advances the sequence).
 */
int64
es_reserve_positions(int count, int64 *positions)
{
	const EsCatalog *cat = es_catalog();
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	EsDatabaseState *db;
	EsReservation *slot;
	int64		lower;
	bool		fresh;

	Assert(count > 0);
	es_horizon_register_callbacks();

	/* The xid is what horizon_blockers shows; the INSERT needs one anyway. */
	(void) GetTopTransactionId();

	/* 1. the intent */
	db = lock_db(cat);
	lower = last_known(db) + 1;
	fresh = add_local(lower);
	publish_slot_locked(db);
	LWLockRelease(lock);

	/* 2. the positions; nextval() serialises on the sequence's buffer */
	for (int i = 0; i < count; i++)
		positions[i] = nextval_internal(cat->sequence_oid, false);

	if (positions[0] < lower)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the event position sequence went backwards"),
				 errdetail("It returned %lld, below %lld which was already handed out.",
						   (long long) positions[0], (long long) lower - 1),
				 errhint("The sequence eventsource.events_global_position_seq must never be reset.")));

	/* what an abort must flush before the horizon may pass these positions */
	reserve_lsn = GetXLogInsertRecPtr();

	/*
	 * 3. tighten the reservation to what we really hold.  Only an entry made
	 * by this call: an earlier append of the same subtransaction holds lower
	 * positions, which must stay reserved.
	 */
	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (fresh)
		current_local()->min_position = positions[0];
	db = find_db_locked(cat->sequence_oid, false);
	if (db != NULL)
		raise_last_known(db, positions[count - 1]);
	publish_slot_locked(db);
	slot = my_slot();
	slot->count += count;
	if (positions[count - 1] > slot->max_position)
		slot->max_position = positions[count - 1];
	if (slot->xid == InvalidTransactionId)
		slot->xid = GetTopTransactionIdIfAny();
	LWLockRelease(lock);

	return positions[0];
}

/*
 * A restore (COPY into an empty store, see guard.c) writes rows with the
 * positions of the dump.  Hold the horizon below all of them until the
 * restoring transaction ends.
 */
void
es_reserve_for_restore(void)
{
	const EsCatalog *cat = es_catalog();
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	EsDatabaseState *db;

	es_horizon_register_callbacks();
	db = lock_db(cat);
	/* the dump's positions may be anywhere: hold the horizon below all */
	(void) add_local(1);
	publish_slot_locked(db);
	LWLockRelease(lock);
}

/*
 * The safe horizon of the current database.  Caller runs as the extension
 * owner.  See the file header for why this is exact.
 */
int64
es_horizon(void)
{
	const EsCatalog *cat = es_catalog();
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	EsDatabaseState *db;
	int64		seqval;
	int64		result;

	/*
	 * A standby sees commits in replay order and knows nothing of the
	 * primary's reservations: it cannot tell which positions are final.
	 */
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the safe horizon is not known on a standby"),
				 errdetail("read_all() and head_position() need the primary's in-progress appends to never skip an event."),
				 errhint("Read the global log from the primary; read_stream() and load() work on a standby.")));

	seqval = sequence_last_value(cat->sequence_oid);

	LWLockAcquire(lock, LW_SHARED);
	db = find_db_locked(cat->sequence_oid, false);
	if (db == NULL)
	{
		LWLockRelease(lock);
		LWLockAcquire(lock, LW_EXCLUSIVE);
		db = attach_db_locked(cat->sequence_oid, seqval);
	}
	raise_last_known(db, seqval);
	result = last_known(db);
	if (db->active > 0)
	{
		for (int i = 0; i < horizon->nslots; i++)
		{
			EsReservation *slot = &slots[i];

			if (slot->min_position != 0 && slot->dboid == MyDatabaseId &&
				slot->min_position - 1 < result)
				result = slot->min_position - 1;
		}
	}
	LWLockRelease(lock);
	return result;
}

/*
 * Copy the reservations held in the current database (for the
 * horizon_blockers view).  Returns the number copied into out[], which has
 * room for MaxBackends entries.
 */
int
es_horizon_blockers(EsReservation *out)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	int			n = 0;

	LWLockAcquire(lock, LW_SHARED);
	for (int i = 0; i < horizon->nslots; i++)
		if (slots[i].min_position != 0 && slots[i].dboid == MyDatabaseId)
			out[n++] = slots[i];
	LWLockRelease(lock);
	return n;
}

/*
 * Drop reservations.  "subid" = InvalidSubTransactionId drops all of them
 * (end of the top-level transaction).  "aborted" says the positions are
 * dead: then WAL is flushed first so that the sequence can't hand them out
 * again after a crash once the horizon has passed them.  Returns whether
 * anything was dropped (then the horizon may have moved: wake the workers).
 */
static bool
release(SubTransactionId subid, bool aborted)
{
	const EsCatalog *cat;
	LWLock	   *lock = es_lwlock(ES_LWLOCK_HORIZON);
	EsDatabaseState *db;
	int			kept = 0;

	for (int i = 0; i < local_nres; i++)
		if (subid != InvalidSubTransactionId && local_res[i].subid != subid)
			local_res[kept++] = local_res[i];
	if (kept == local_nres)
		return false;
	local_nres = kept;

	if (aborted && !XLogRecPtrIsInvalid(reserve_lsn))
		XLogFlush(reserve_lsn);
	if (local_nres == 0)
		reserve_lsn = InvalidXLogRecPtr;

	/* no catalog access here: we may be in an aborted transaction */
	cat = es_catalog_cached();
	LWLockAcquire(lock, LW_EXCLUSIVE);
	db = cat ? find_db_locked(cat->sequence_oid, false) : NULL;
	if (db == NULL)
	{
		/* find our database's entry whatever the sequence */
		for (int i = 0; i < horizon->ndatabases; i++)
			if (horizon->dbs[i].dboid == MyDatabaseId)
				db = &horizon->dbs[i];
	}
	publish_slot_locked(db);
	LWLockRelease(lock);
	return true;
}

static void
es_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (local_nres > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has appended events"),
						 errdetail("A prepared transaction would hold the event store's safe horizon back for as long as it stays prepared."),
						 errhint("Commit the append directly; two-phase commit is not supported for eventsource.append().")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (local_nres > 0)
			{
				/* the horizon moves first, then the workers wake to see it (upcalls.h) */
				(void) release(InvalidSubTransactionId, false);
				es_wake_workers(MyDatabaseId);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the horizon may jump past the gap onto committed events */
			if (release(InvalidSubTransactionId, true))
				es_wake_workers(MyDatabaseId);
			break;
		default:
			break;
	}
}

static void
es_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			{
				/* the parent inherits the positions */
				int			child = -1;
				int			parent = -1;

				for (int i = 0; i < local_nres; i++)
				{
					if (local_res[i].subid == mySubid)
						child = i;
					else if (local_res[i].subid == parentSubid)
						parent = i;
				}
				if (child < 0)
					break;
				if (parent < 0)
					local_res[child].subid = parentSubid;
				else
				{
					if (local_res[child].min_position < local_res[parent].min_position)
						local_res[parent].min_position = local_res[child].min_position;
					local_res[child] = local_res[--local_nres];
				}
				break;
			}
		case SUBXACT_EVENT_ABORT_SUB:
			if (release(mySubid, true))
				es_wake_workers(MyDatabaseId);
			break;
		default:
			break;
	}
}

/*
 * Safety net: a backend that exits never leaves its slot behind.  Runs after
 * the exit path aborted any open transaction, so normally there is nothing
 * left to do.
 */
static void
es_horizon_shmem_exit(int code, Datum arg)
{
	if (horizon == NULL || local_nres == 0)
		return;
	if (release(InvalidSubTransactionId, true))
		es_wake_workers(MyDatabaseId);
}

void
es_horizon_register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(es_xact_callback, NULL);
	RegisterSubXactCallback(es_subxact_callback, NULL);
	on_shmem_exit(es_horizon_shmem_exit, (Datum) 0);
	callbacks_registered = true;
}
