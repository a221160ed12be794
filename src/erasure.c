/*-------------------------------------------------------------------------
 *
 * erasure.c
 *	  erase_stream() and erase_by_metadata(): erasure of personal data by
 *	  redaction in place.
 *
 * Erasure keeps the log's shape: an erased event keeps its position, stream,
 * version, type, id and time, and its "data" (and the chosen top-level keys
 * of its "metadata") become the redaction marker {"$erased": true}.  So the
 * log can still be replayed, every projection can be rebuilt without the
 * personal data, and nothing about positions, versions or hiding changes
 * (the hiding predicate of lifecycle.c is not involved: erasure redacts, it
 * does not hide, and hidden events are redacted too, since their rows are
 * still stored).
 *
 * Per stream it erases from, under that stream's locks (the one append()
 * takes, and its erasure lock), one transaction:
 *
 *	- one UPDATE of eventsource.events, the only UPDATE the guard trigger lets
 *	  through (guard.c: es_exec_guarded(ES_GUARDED_ERASE) runs that statement
 *	  and consumed by the trigger), which touches only rows that still hold
 *	  something to erase, so erasing twice is a no-op;
 *	- the system event $StreamErased at the stream's next negative version
 *	  (the lifecycle operation counter of eventsource.stream_lifecycle, as
 *	  delete_stream() and truncate_stream() use it), its data saying what was
 *	  erased (how many events, which versions, which metadata keys; never the
 *	  value that selected them, which is itself an identifier);
 *	- the deletion of every snapshot of the stream (any version, any schema
 *	  version: a snapshot summarises the erased data).
 *
 * and, once for the call, the redaction of the copies the extension keeps of
 * the erased events: eventsource.dead_letters (data, chosen metadata keys
 * and the error text), and the error text of eventsource.recent_errors and of
 * a subscription partition stopped at an erased event
 * (eventsource.subscription_partitions), since a handler's message may quote
 * the event.
 *
 * A subscription worker also keeps the text of its last failure in shared
 * memory (registry.c), shown by subscription_status.last_error; this file
 * keeps the time of the last erasure committed in the cluster
 * (es_erasure_committed_at()), and the status withholds a slot's error text
 * noted before it.  The texts in tables are redacted per event as above.
 * A worker that fails on an event takes the event's stream's erasure lock
 * in share mode before it copies the event (es_erasure_lock_for_copy(),
 * bookkeeping.c): an erasure that committed before is visible to its
 * re-read of the row, one that starts later redacts what it wrote.
 *
 * Snapshots racing an erasure: save_snapshot() calls
 * es_erasure_before_snapshot_save(), which takes the stream's erasure lock
 * in share mode (so a snapshot saved by a transaction still open when the
 * erasure starts is committed before the erasure deletes the stream's
 * snapshots, and one saved later waits for the erasure) and refuses (40001)
 * a snapshot whose caller read the stream before an erasure that has
 * committed since.  The erasure lock is a lock of its own (lock_erasure()),
 * which an erasure takes exclusively after the stream's append lock: only
 * erasures conflict with saves.  Were it the append lock, a save would wait
 * for every append in flight to the stream, block appends until its
 * transaction ends, and deadlock two transactions that each append to one
 * stream and save a snapshot of the other.
 *
 * Bounded work: erase_stream() erases a whole stream in one transaction (its
 * cost grows with that stream, which is the unit the application chose);
 * erase_by_metadata() erases at most max_events events per call and says
 * whether more may remain, so erasing a subject with events in many streams
 * is a loop of short transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "eventsource.h"
#include "tenant.h"

/* The marker an erased value becomes, in SQL and as the system event says */
#define ES_ERASED_JSON		"'{\"$erased\": true}'::pg_catalog.jsonb"
#define ES_ERASED_TEXT		"'" ES_ERASED_ERROR_TEXT "'"
#define ES_ERASED_TYPE		"$StreamErased"

/*
 * The metadata object with each key of the text[] parameter "param" that it
 * has set to the marker (the keys it does not have stay absent).
 */
#define REDACTED_METADATA(m, param) \
	"(" m " OPERATOR(pg_catalog.||) COALESCE((SELECT pg_catalog.jsonb_object_agg(k.k, " \
	ES_ERASED_JSON ") FROM pg_catalog.unnest(" param "::pg_catalog.text[]) AS k(k)" \
	" WHERE " m " OPERATOR(pg_catalog.?) k.k), '{}'::pg_catalog.jsonb))"

/* An event that still holds something to erase ($2: the metadata keys) */
#define NOT_YET_ERASED \
	" (e.data OPERATOR(pg_catalog.<>) " ES_ERASED_JSON \
	"  OR e.metadata OPERATOR(pg_catalog.<>) " REDACTED_METADATA("e.metadata", "$2") ")"

/* The selecting metadata key and its string value ($3, $4) */
#define MATCHES_KEY \
	" e.metadata OPERATOR(pg_catalog.@>) pg_catalog.jsonb_build_object($3::pg_catalog.text, $4::pg_catalog.text)"

static SPIPlanPtr erase_stream_plan = NULL;
static SPIPlanPtr erase_versions_plan = NULL;
static SPIPlanPtr candidates_plan = NULL;
static SPIPlanPtr drop_snapshots_plan = NULL;
static SPIPlanPtr copies_plans[3] = {NULL, NULL, NULL};
static SPIPlanPtr erasures_plan = NULL;
static SPIPlanPtr sweep_plans[3] = {NULL, NULL, NULL};
static SPIPlanPtr subject_sweep_plans[3] = {NULL, NULL, NULL};

/*
 * Shared memory: when the last erasure committed, in any database of the
 * cluster (0: none since the server started, like the slots' error texts).
 * Written at commit by the erasing backend, read without a lock.
 */
typedef struct EsErasureShared
{
	pg_atomic_uint64 committed_at;	/* TimestampTz */
} EsErasureShared;

static EsErasureShared *erasure_shared = NULL;

/* field4 of the erasure lock's advisory tag (the append lock's is 'ES') */
#define ES_ERASURE_LOCK_FIELD4		0x4545	/* 'EE' */
static bool erased_in_xact = false;
static bool xact_callback_registered = false;

/* The positions of the events a call erased */
typedef struct ErasedPositions
{
	Datum	   *elems;			/* int8 datums */
	int			n;
	int			size;
} ErasedPositions;

/* What one stream's erasure did */
typedef struct EraseResult
{
	int64		events;			/* events erased */
	int64		position;		/* of the $StreamErased event (0: none) */
	int64		first_version;
	int64		last_version;
} EraseResult;

Size
es_erasure_shmem_size(void)
{
	return sizeof(EsErasureShared);
}

void
es_erasure_shmem_init(void *area, bool found)
{
	erasure_shared = (EsErasureShared *) area;
	if (!found)
		pg_atomic_init_u64(&erasure_shared->committed_at, 0);
}

/* The time of the last committed erasure in the cluster (0: none). */
TimestampTz
es_erasure_committed_at(void)
{
	if (erasure_shared == NULL)
		return 0;
	return (TimestampTz) pg_atomic_read_u64(&erasure_shared->committed_at);
}

/*
 * At commit of a transaction that erased, publish the time: every error text
 * a worker noted until now may quote what it erased.  (An erasure rolled
 * back in a subtransaction publishes too; that only withholds more.)
 */
static void
erasure_xact_callback(XactEvent event, void *arg)
{
	if (!erased_in_xact || erasure_shared == NULL)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		uint64		now = (uint64) GetCurrentTimestamp();
		uint64		old = pg_atomic_read_u64(&erasure_shared->committed_at);

		while (old < now &&
			   !pg_atomic_compare_exchange_u64(&erasure_shared->committed_at, &old, now))
			;
		erased_in_xact = false;
	}
	else if (event == XACT_EVENT_PRE_PREPARE)
	{
		/*
		 * Its commit would happen elsewhere (COMMIT PREPARED), unseen by
		 * this callback: an erasure commits where it ran.
		 */
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot PREPARE a transaction that erased events"),
				 errhint("Run the erasure in a transaction of its own and COMMIT it.")));
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		erased_in_xact = false;
}

/*
 * The stream's erasure lock, until the end of the transaction: exclusive for
 * an erasure (taken after the stream's append lock, es_lock_stream), share
 * for save_snapshot().  Same key as the append lock (the tenant and the
 * stream id: the same stream id in two tenants are two locks), another
 * field4.
 */
static LockAcquireResult
lock_erasure_ext(text *tenant, text *stream_id, LOCKMODE mode, bool dont_wait)
{
	LOCKTAG		tag;
	uint64		h = es_hash_tenant_stream(tenant, stream_id);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 ES_ERASURE_LOCK_FIELD4);
	return LockAcquire(&tag, mode, false, dont_wait);
}

static void
lock_erasure(text *tenant, text *stream_id, LOCKMODE mode)
{
	(void) lock_erasure_ext(tenant, stream_id, mode, false);
}

/*
 * Called by a subscription worker (bookkeeping.c) before it writes a copy of
 * an event of the stream (a dead letter, an error text): take the stream's
 * erasure lock in share mode until the end of the transaction, without
 * waiting.  Once it holds it, an erasure of the stream that committed before
 * is visible to a fresh snapshot, and one that comes later waits for the
 * worker's transaction to commit and then redacts what it wrote (the sweep
 * of erase_stream(), erase_copies()).  False when an erasure of the stream
 * holds the lock or waits for it: the worker does not wait (an erasure
 * waiting for it holds the stream's append lock, which a handler later in
 * the batch may want), it treats the event as possibly erased.
 */
bool
es_erasure_lock_for_copy(text *tenant, text *stream_id)
{
	return lock_erasure_ext(tenant, stream_id, ShareLock, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* This transaction erases: publish its commit (see above). */
static void
note_erasure(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(erasure_xact_callback, NULL);
		xact_callback_registered = true;
	}
	erased_in_xact = true;
}

/*
 * The metadata_keys argument: a one-dimensional text array without nulls or
 * empty keys (NULL: none).  Returned as the array datum to pass to the
 * queries.
 */
static Datum
arg_metadata_keys(FunctionCallInfo fcinfo, int argno)
{
	ArrayType  *arr;
	Datum	   *keys;
	bool	   *nulls;
	int			n;

	if (PG_ARGISNULL(argno))
		return PointerGetDatum(construct_empty_array(TEXTOID));
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	es_check_text_array(arr, "metadata_keys");
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &keys, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (VARSIZE_ANY_EXHDR(DatumGetPointer(keys[i])) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata_keys must not contain an empty key")));
	return PointerGetDatum(arr);
}

static void
push_text_array(EsJson *j, const char *key, Datum arr)
{
	Datum	   *elems;
	int			n;
	EsJson		a;

	es_json_array(&a);
	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &n);
	for (int i = 0; i < n; i++)
		es_json_string(&a, NULL, TextDatumGetCString(elems[i]));
	es_json_nested(j, key, &a);
}

/*
 * Erase from one stream: with "versions" NULL every event of it (versions
 * >= 1, hidden ones included), else the events of those versions that still
 * match the key ($3 = $4).  Appends $StreamErased and records the operation
 * in stream_lifecycle when anything was erased (the caller deletes the
 * stream's snapshots: drop_snapshots()).  The positions of the erased events are added to *positions.
 *
 * Caller holds the stream's locks, runs as the owner inside SPI, with a
 * snapshot taken after the locks active.
 */
static void
erase_in_stream(text *tenant, text *stream_id, Datum keys, Datum versions, text *key, text *value,
				ErasedPositions *positions, EraseResult *res)
{
	Datum		values[6];
	SPIPlanPtr	plan;
	uint64		n;
	int64	   *erased_versions;
	EsStreamState st;
	EsJson		details;

	memset(res, 0, sizeof(EraseResult));
	if (erase_versions_plan == NULL)
	{
		Oid			types[6] = {TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID, INT8ARRAYOID,
		TEXTOID};

		/* both or none: the second assignment marks them ready */
		erase_stream_plan = es_prepare(
									   "UPDATE eventsource.events e SET data = " ES_ERASED_JSON ","
									   " metadata = " REDACTED_METADATA("e.metadata", "$2")
									   " WHERE e.tenant_id OPERATOR(pg_catalog.=) $6"
									   " AND e.stream_id OPERATOR(pg_catalog.=) $1"
									   " AND e.stream_version OPERATOR(pg_catalog.>=) 1"
									   " AND" NOT_YET_ERASED
									   " RETURNING e.global_position, e.stream_version",
									   6, types);
		erase_versions_plan = es_prepare(
										 "UPDATE eventsource.events e SET data = " ES_ERASED_JSON ","
										 " metadata = " REDACTED_METADATA("e.metadata", "$2")
										 " WHERE e.tenant_id OPERATOR(pg_catalog.=) $6"
										 " AND e.stream_id OPERATOR(pg_catalog.=) $1"
										 " AND e.stream_version OPERATOR(pg_catalog.=) ANY ($5)"
										 " AND" MATCHES_KEY
										 " AND" NOT_YET_ERASED
										 " RETURNING e.global_position, e.stream_version",
										 6, types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = keys;
	values[2] = key ? PointerGetDatum(key) : (Datum) 0;
	values[3] = value ? PointerGetDatum(value) : (Datum) 0;
	values[4] = versions;
	values[5] = PointerGetDatum(tenant);
	plan = versions ? erase_versions_plan : erase_stream_plan;

	/* the guard on eventsource.events lets this one statement through */
	n = es_exec_guarded(ES_GUARDED_ERASE, plan, values, NULL, GetActiveSnapshot(),
						SPI_OK_UPDATE_RETURNING);

	if (n == 0)
		return;
	note_erasure();

	erased_versions = palloc(sizeof(int64) * n);
	res->first_version = PG_INT64_MAX;
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		int64		pos = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 1, &isnull));
		int64		ver = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 2, &isnull));

		if (positions->n == positions->size)
		{
			positions->size = Max(positions->size * 2, 64);
			positions->elems = positions->elems == NULL ?
				palloc(sizeof(Datum) * positions->size) :
				repalloc(positions->elems, sizeof(Datum) * positions->size);
		}
		positions->elems[positions->n++] = Int64GetDatum(pos);
		erased_versions[i] = ver;
		res->first_version = Min(res->first_version, ver);
		res->last_version = Max(res->last_version, ver);
	}
	res->events = (int64) n;

	/* the system event, at the stream's next lifecycle number */
	es_stream_state(tenant, stream_id, false, &st);
	es_json_object(&details);
	es_json_int(&details, "events", res->events);
	es_json_int(&details, "first_version", res->first_version);
	es_json_int(&details, "last_version", res->last_version);
	push_text_array(&details, "metadata_keys", keys);
	if (versions)
	{
		/* by metadata: which versions (at most max_events of them) */
		EsJson		v;

		es_json_array(&v);
		for (uint64 i = 0; i < n; i++)
			es_json_int(&v, NULL, erased_versions[i]);
		es_json_nested(&details, "versions", &v);
		es_json_string(&details, "by_metadata_key", text_to_cstring(key));
	}
	/* an erasure hides nothing and tombstones nothing */
	res->position = es_record_operation(tenant, stream_id, &st, 0, false, ES_ERASED_TYPE,
										DatumGetJsonbP(es_json_jsonb(&details)));
}

/*
 * Delete every snapshot of the stream (any version, any schema version: a
 * snapshot summarises the erased data).  Caller as for erase_in_stream().
 */
static void
drop_snapshots(text *tenant, text *stream_id)
{
	Datum		values[2];

	if (drop_snapshots_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};

		drop_snapshots_plan = es_prepare("DELETE FROM eventsource.snapshots"
										 " WHERE tenant_id OPERATOR(pg_catalog.=) $2"
										 " AND stream_id OPERATOR(pg_catalog.=) $1",
										 2, types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = PointerGetDatum(tenant);
	es_exec_with_active_snapshot(drop_snapshots_plan, values, SPI_OK_DELETE);
}

/* Run "n" prepared UPDATEs of the copies; how many rows they changed. */
static uint64
exec_copy_updates(SPIPlanPtr *plans, int n, Datum *values)
{
	uint64		changed = 0;

	for (int i = 0; i < n; i++)
		changed += es_exec_with_active_snapshot(plans[i], values, SPI_OK_UPDATE);
	return changed;
}

/*
 * Redact the copies the extension keeps of the events at "positions": the
 * dead letters (data, the chosen metadata keys, the error text), the error
 * text of recent_errors and of a partition stopped at one of them.  Caller
 * runs as the owner inside SPI with the erasure's snapshot active.
 */
static void
erase_copies(ErasedPositions *positions, Datum keys)
{
	Datum		values[2];

	if (positions->n == 0)
		return;
	if (copies_plans[0] == NULL)
	{
		Oid			types[2] = {INT8ARRAYOID, TEXTARRAYOID};

		copies_plans[2] = es_prepare(
									 "UPDATE eventsource.subscription_partitions"
									 " SET error_message = " ES_ERASED_TEXT
									 " WHERE failed_position OPERATOR(pg_catalog.=) ANY ($1)"
									 " AND error_message IS NOT NULL",
									 1, types);
		copies_plans[1] = es_prepare(
									 "UPDATE eventsource.recent_errors"
									 " SET error_message = " ES_ERASED_TEXT
									 " WHERE global_position OPERATOR(pg_catalog.=) ANY ($1)",
									 1, types);
		/* last: it marks the three ready */
		copies_plans[0] = es_prepare(
									 "UPDATE eventsource.dead_letters e SET data = " ES_ERASED_JSON ","
									 " metadata = " REDACTED_METADATA("e.metadata", "$2") ","
									 " error_message = " ES_ERASED_TEXT
									 " WHERE e.global_position OPERATOR(pg_catalog.=) ANY ($1)",
									 2, types);
	}
	values[0] = PointerGetDatum(construct_array(positions->elems, positions->n,
												INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = keys;
	(void) exec_copy_updates(copies_plans, 3, values);
}

/*
 * The same for every event of a stream that erase_stream() has just left
 * erased (all its events of versions >= 1, under its lock): also the copies
 * of events erased by an earlier call, which a worker may have written
 * after that call committed, from a batch it had read before (a dead letter
 * of an event it was handling then).  And every snapshot of the stream,
 * also when this call erased nothing: an application that loaded the stream
 * before an earlier erasure may have saved its state since (in READ
 * COMMITTED, a later statement's snapshot passes the 40001 check of
 * es_erasure_before_snapshot_save()), and erasing again is the way to purge
 * such a copy.  Returns whether a copy of an event changed.  Caller as for
 * erase_copies().
 */
static bool
sweep_copies_of_stream(text *tenant, text *stream_id, Datum keys)
{
	Datum		values[3];
	uint64		n;

	if (sweep_plans[0] == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTARRAYOID, TEXTOID};

		/*
		 * Another tenant's stream of the same id keeps its copies: the
		 * error texts are found by their event's position (unique across
		 * tenants), the dead letters by their own tenant_id and stream id
		 * (also a dead letter whose event the cleanup has removed since: it
		 * still carries both).
		 */
#define STREAM_POSITIONS \
	" (SELECT e.global_position FROM eventsource.events e" \
	"  WHERE e.tenant_id OPERATOR(pg_catalog.=) $3" \
	"  AND e.stream_id OPERATOR(pg_catalog.=) $1" \
	"  AND e.stream_version OPERATOR(pg_catalog.>=) 1)"

		sweep_plans[2] = es_prepare(
									"UPDATE eventsource.subscription_partitions"
									" SET error_message = " ES_ERASED_TEXT
									" WHERE failed_position OPERATOR(pg_catalog.=) ANY" STREAM_POSITIONS
									" AND error_message OPERATOR(pg_catalog.<>) " ES_ERASED_TEXT,
									3, types);
		sweep_plans[1] = es_prepare(
									"UPDATE eventsource.recent_errors"
									" SET error_message = " ES_ERASED_TEXT
									" WHERE global_position OPERATOR(pg_catalog.=) ANY" STREAM_POSITIONS
									" AND error_message OPERATOR(pg_catalog.<>) " ES_ERASED_TEXT,
									3, types);
		/* last: it marks the three ready */
		sweep_plans[0] = es_prepare(
									"UPDATE eventsource.dead_letters e SET data = " ES_ERASED_JSON ","
									" metadata = " REDACTED_METADATA("e.metadata", "$2") ","
									" error_message = " ES_ERASED_TEXT
									" WHERE e.tenant_id OPERATOR(pg_catalog.=) $3"
									" AND e.stream_id OPERATOR(pg_catalog.=) $1"
									" AND e.stream_version OPERATOR(pg_catalog.>=) 1"
									" AND" NOT_YET_ERASED,
									3, types);
#undef STREAM_POSITIONS
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = keys;
	values[2] = PointerGetDatum(tenant);
	n = exec_copy_updates(sweep_plans, 3, values);
	drop_snapshots(tenant, stream_id);
	if (n > 0)
		note_erasure();
	return n > 0;
}

/*
 * erase_by_metadata()'s counterpart of sweep_copies_of_stream(), run on
 * every call: the copies of events already erased that a worker wrote after
 * their erasure committed, from a batch it had read before.  Such an event
 * no longer matches (or holds nothing left to erase), so a later call does
 * not find it as a candidate and erase_copies() never sees its position.
 * A dead letter is a copy of its event's row: one whose metadata still has
 * key = value ($1, $2) while its event is erased takes the event's current
 * (redacted) data and metadata.  Error texts have no metadata to match: the
 * text of any error of an erased event is redacted (recent_errors is
 * bounded, subscription_partitions has a row per partition), which only
 * loses the text of a failure on an already redacted event.  Returns
 * whether anything changed.  Caller as for erase_copies().
 */
static bool
sweep_copies_of_erased(text *tenant, text *key, text *value)
{
	Datum		values[3];
	uint64		n;

	if (subject_sweep_plans[0] == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

		subject_sweep_plans[2] = es_prepare(
											"UPDATE eventsource.subscription_partitions p"
											" SET error_message = " ES_ERASED_TEXT
											" FROM eventsource.events e"
											" WHERE e.global_position OPERATOR(pg_catalog.=) p.failed_position"
											" AND e.data OPERATOR(pg_catalog.=) " ES_ERASED_JSON
											" AND p.error_message OPERATOR(pg_catalog.<>) " ES_ERASED_TEXT,
											0, types);
		subject_sweep_plans[1] = es_prepare(
											"UPDATE eventsource.recent_errors r"
											" SET error_message = " ES_ERASED_TEXT
											" FROM eventsource.events e"
											" WHERE e.global_position OPERATOR(pg_catalog.=) r.global_position"
											" AND e.data OPERATOR(pg_catalog.=) " ES_ERASED_JSON
											" AND r.error_message OPERATOR(pg_catalog.<>) " ES_ERASED_TEXT,
											0, types);
		/* last: it marks the three ready */
		subject_sweep_plans[0] = es_prepare(
											"UPDATE eventsource.dead_letters d"
											" SET data = e.data, metadata = e.metadata,"
											" error_message = " ES_ERASED_TEXT
											" FROM eventsource.events e"
											" WHERE d.metadata OPERATOR(pg_catalog.@>)"
											"  pg_catalog.jsonb_build_object($1::pg_catalog.text, $2::pg_catalog.text)"
											" AND e.global_position OPERATOR(pg_catalog.=) d.global_position"
											" AND e.tenant_id OPERATOR(pg_catalog.=) $3"
											" AND e.data OPERATOR(pg_catalog.=) " ES_ERASED_JSON
											" AND (d.data OPERATOR(pg_catalog.<>) e.data"
											"  OR d.metadata OPERATOR(pg_catalog.<>) e.metadata)",
											3, types);
	}
	values[0] = PointerGetDatum(key);
	values[1] = PointerGetDatum(value);
	values[2] = PointerGetDatum(tenant);
	n = exec_copy_updates(subject_sweep_plans, 3, values);
	if (n > 0)
		note_erasure();
	return n > 0;
}

static Datum
result_datum(FunctionCallInfo fcinfo, int n, Datum *values, bool *nulls)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	Assert(tupdesc->natts == n);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

PG_FUNCTION_INFO_V1(es_erase_stream);

/*
 * erase_stream(stream_id text, metadata_keys text[] DEFAULT NULL,
 *				expected_version bigint DEFAULT -1,
 *				OUT events_erased bigint, OUT position bigint)
 *
 * Erase every event of the stream, its hidden events included; a deleted or
 * tombstoned stream can be erased (its rows are still stored).  Erasing
 * again erases only what is not erased yet (events appended since, or
 * metadata keys not named before); with nothing left it changes nothing and
 * returns 0 and a null position.
 */
Datum
es_erase_stream(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	text	   *stream_id;
	Datum		keys;
	int64		expected;
	EsStreamState st;
	EsOwnerCall owner;
	EraseResult res;
	ErasedPositions positions = {NULL, 0, 0};
	Datum		values[2];
	bool		nulls[2] = {false, false};

	es_require_shmem("eventsource.erase_stream()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	keys = arg_metadata_keys(fcinfo, 1);
	expected = es_lifecycle_arg_expected(fcinfo, 2);
	es_require_writable("eventsource.erase_stream()");
	es_require_sql_version("1.1", "eventsource.erase_stream()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	es_lock_stream(tenant, stream_id);
	lock_erasure(tenant, stream_id, ExclusiveLock);
	PushActiveSnapshot(GetLatestSnapshot());
	es_stream_state(tenant, stream_id, false, &st);
	if (st.last_version == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_NOT_FOUND),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(stream_id)),
				 errdetail("The stream has no events.")));
	es_check_expected_version(tenant, stream_id, expected, es_visible_version(&st));

	erase_in_stream(tenant, stream_id, keys, (Datum) 0, NULL, NULL, &positions, &res);
	sweep_copies_of_stream(tenant, stream_id, keys);
	PopActiveSnapshot();
	es_owner_end(&owner);

	values[0] = Int64GetDatum(res.events);
	values[1] = Int64GetDatum(res.position);
	nulls[1] = (res.position == 0);
	PG_RETURN_DATUM(result_datum(fcinfo, 2, values, nulls));
}

PG_FUNCTION_INFO_V1(es_erase_by_metadata);

/*
 * erase_by_metadata(key text, value text, metadata_keys text[] DEFAULT NULL,
 *					 max_events integer DEFAULT 1000,
 *					 OUT events_erased bigint, OUT streams bigint,
 *					 OUT more boolean)
 *
 * Erase the events whose metadata has the top-level key "key" with the
 * string value "value" (metadata @> {key: value}), at most max_events of
 * them, the oldest first (log order: which ones a capped call erases does
 * not depend on the plan); "more" says that the call stopped at
 * max_events and another call may find more.  Every affected stream gets
 * its $StreamErased and loses its snapshots.
 *
 * The candidates are found without a lock (a scan of the log, or of the
 * user's index on the metadata, see README "Erasure"); then their streams
 * are locked in stream-id order (two erasures never deadlock each other),
 * and each stream's UPDATE, with a snapshot taken after the locks, erases
 * those of the candidates that still match and still hold something to
 * erase.
 */
Datum
es_erase_by_metadata(PG_FUNCTION_ARGS)
{
	text	   *tenant;
	text	   *key;
	text	   *value;
	Datum		keys;
	int32		max_events;
	EsOwnerCall owner;
	Datum		values[5];
	bool		nulls[3] = {false, false, false};
	uint64		found;
	SPITupleTable *cands;
	ErasedPositions positions = {NULL, 0, 0};
	int64		erased = 0;
	int64		streams = 0;
	bool		more;

	es_require_shmem("eventsource.erase_by_metadata()");
	key = cstring_to_text(es_arg_name(fcinfo, 0, "key", ES_MAX_NAME_LEN));
	es_arg_not_null(fcinfo, 1, "value");
	value = PG_GETARG_TEXT_PP(1);
	if (VARSIZE_ANY_EXHDR(value) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value must not be empty"),
				 errhint("Pass the identifier whose events are to be erased.")));
	/* no event can hold a longer one */
	if (VARSIZE_ANY_EXHDR(value) > ES_MAX_EVENT_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value is too long"),
				 errdetail("It is %d bytes; no event's metadata can hold more than %d bytes.",
						   (int) VARSIZE_ANY_EXHDR(value), ES_MAX_EVENT_SIZE)));
	keys = arg_metadata_keys(fcinfo, 2);
	max_events = es_arg_int32(fcinfo, 3, "max_events");
	if (max_events < 1 || max_events > ES_MAX_EVENTS_PER_CALL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be between 1 and %d", ES_MAX_EVENTS_PER_CALL)));
	es_require_writable("eventsource.erase_by_metadata()");
	es_require_sql_version("1.1", "eventsource.erase_by_metadata()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	if (candidates_plan == NULL)
	{
		Oid			types[5] = {INT4OID, TEXTARRAYOID, TEXTOID, TEXTOID, TEXTOID};

		candidates_plan = es_prepare(
									 "SELECT c.stream_id, pg_catalog.array_agg(c.stream_version)"
									 " FROM (SELECT e.stream_id, e.stream_version"
									 "  FROM eventsource.events e"
									 "  WHERE e.tenant_id OPERATOR(pg_catalog.=) $5"
									 "  AND" MATCHES_KEY
									 "  AND e.stream_version OPERATOR(pg_catalog.>=) 1"
									 "  AND" NOT_YET_ERASED
									 "  ORDER BY e.global_position LIMIT $1) c"
									 " GROUP BY c.stream_id ORDER BY c.stream_id",
									 5, types);
	}
	values[0] = Int32GetDatum(max_events + 1);
	values[1] = keys;
	values[2] = PointerGetDatum(key);
	values[3] = PointerGetDatum(value);
	values[4] = PointerGetDatum(tenant);
	es_spi_read_latest(candidates_plan, values, NULL, NULL, 0);
	cands = SPI_tuptable;
	found = 0;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		ArrayType  *arr = DatumGetArrayTypeP(SPI_getbinval(cands->vals[i], cands->tupdesc,
														   2, &isnull));

		found += ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	}
	more = (found > (uint64) max_events);

	/* lock every stream first, in stream-id order, then read and write */
	{
		uint64		nstreams = SPI_processed;
		text	  **ids = palloc(sizeof(text *) * Max(nstreams, 1));
		Datum	   *vers = palloc(sizeof(Datum) * Max(nstreams, 1));
		int64		budget = max_events;

		for (uint64 i = 0; i < nstreams; i++)
		{
			bool		isnull;
			ArrayType  *arr;
			Datum	   *elems;
			int			n;

			ids[i] = DatumGetTextPP(SPI_getbinval(cands->vals[i], cands->tupdesc, 1, &isnull));
			arr = DatumGetArrayTypeP(SPI_getbinval(cands->vals[i], cands->tupdesc, 2, &isnull));
			/* the one candidate beyond max_events only says "more" */
			deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &elems, NULL, &n);
			n = (int) Min((int64) n, budget);
			budget -= n;
			vers[i] = n > 0 ?
				PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)) :
				(Datum) 0;
			if (n > 0)
			{
				es_lock_stream(tenant, ids[i]);
				lock_erasure(tenant, ids[i], ExclusiveLock);
			}
		}

		PushActiveSnapshot(GetLatestSnapshot());
		for (uint64 i = 0; i < nstreams; i++)
		{
			EraseResult res;

			if (vers[i] == (Datum) 0)
				continue;
			erase_in_stream(tenant, ids[i], keys, vers[i], key, value, &positions, &res);
			erased += res.events;
			if (res.events > 0)
			{
				drop_snapshots(tenant, ids[i]);
				streams++;
			}
		}
		erase_copies(&positions, keys);
		sweep_copies_of_erased(tenant, key, value);
		PopActiveSnapshot();
	}
	es_owner_end(&owner);

	values[0] = Int64GetDatum(erased);
	values[1] = Int64GetDatum(streams);
	values[2] = BoolGetDatum(more);
	PG_RETURN_DATUM(result_datum(fcinfo, 3, values, nulls));
}

/*
 * Called by save_snapshot() before it writes (snapshot.c): take the stream's
 * erasure lock in share mode (never the append lock: see the file header),
 * so the snapshot commits before an erasure of the stream deletes its
 * snapshots or waits for it to commit, and refuse (40001) to save a state
 * read before an erasure that committed after the caller's snapshot (the
 * statement's in READ COMMITTED, the transaction's otherwise) -- that state
 * may hold the erased data.  Nothing on a database still on the 1.0 SQL,
 * which cannot erase.  Caller runs as the owner inside SPI.
 */
void
es_erasure_before_snapshot_save(text *tenant, text *stream_id)
{
	Datum		values[2];
	int64		before;
	int64		now;
	bool		isnull;

	if (!es_lifecycle_installed())
		return;
	lock_erasure(tenant, stream_id, ShareLock);
	if (erasures_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};

		/* the stream's system events: one index range of negative versions */
		erasures_plan = es_prepare(
								   "SELECT pg_catalog.count(*) FROM eventsource.events"
								   " WHERE tenant_id OPERATOR(pg_catalog.=) $2"
								   " AND stream_id OPERATOR(pg_catalog.=) $1"
								   " AND stream_version OPERATOR(pg_catalog.<) 0"
								   " AND event_type OPERATOR(pg_catalog.=) '" ES_ERASED_TYPE "'",
								   2, types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = PointerGetDatum(tenant);
	es_spi_read(erasures_plan, values, NULL, NULL, 1);
	before = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull));
	es_spi_read_latest(erasures_plan, values, NULL, NULL, 1);
	now = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
	if (now != before)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("stream \"%s\" was erased after this snapshot's state was read",
						text_to_cstring(stream_id)),
				 errdetail("An erasure of the stream committed after this statement's (or transaction's) snapshot; the state may hold erased data."),
				 errhint("Load the stream again and save the state rebuilt from its erased events.")));
}
