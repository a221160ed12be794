/*-------------------------------------------------------------------------
 *
 * append.c
 *	  append() and append_event(): optimistic concurrency, idempotent retry,
 *	  positions from the horizon.
 *
 * One call appends all of its events or none, to a stream of the caller's
 * current tenant (tenant.c, resolved once per call as the caller; every
 * query below names it, so versions, expected-version checks and event ids
 * are per tenant):
 *
 *	1. parse and check the events (before any lock is taken);
 *	2. take the stream's lock, a transaction-level heavyweight lock on a
 *	   64-bit hash of the tenant and the stream id (advisory lock space,
 *	   field4 = 'ES'), so that appends to one stream of one tenant serialise
 *	   and appends to different streams, or to the same stream id in two
 *	   tenants, never wait for each other;
 *	3. read the stream's current version with a fresh snapshot (the lock
 *	   holder before us has committed, also under REPEATABLE READ);
 *	4. if the caller supplied event ids, look them up: an exact retry of a
 *	   call that already succeeded returns its original result without
 *	   writing; any other reuse is ES002;
 *	5. check the expected version (ES001 on conflict);
 *	6. reserve positions (horizon.c) and insert the rows with one INSERT.
 *
 * The stream's version is not stored separately: it is the highest
 * stream_version in the events table, one backward index probe on the
 * primary key, read together with the stream's lifecycle row when it has one
 * (lifecycle.c: a tombstoned stream refuses with ES003, a deleted one reads
 * as version 0 and is re-opened after its last version).  That keeps the
 * append path at one INSERT and no UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "eventsource.h"
#include "tenant.h"
#include "trace.h"
#include "upcalls.h"

/* One event of a call, checked and ready to insert. */
typedef struct EsEvent
{
	pg_uuid_t	id;
	bool		id_given;
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;
} EsEvent;

typedef struct EsAppendResult
{
	int64		stream_version;
	int64		first_position;
	int64		last_position;
} EsAppendResult;

/* two variants each: 1.0 and 1.1 SQL (lifecycle.c, es_visible_plan) */
static SPIPlanPtr ids_plans[2];
static SPIPlanPtr insert_one_plans[2];
static SPIPlanPtr insert_many_plans[2];

/* Error context while parsing: arg points at the index of the event. */
static void
parse_error_context(void *arg)
{
	errcontext("event %d of the events array", *(int *) arg + 1);
}

/*
 * Random bytes for the event ids, drawn from pg_strong_random() a few
 * kilobytes at a time: each call of it costs about a microsecond whatever
 * it returns (OpenSSL's generator state, locks and parameter lookups), as
 * much as the rest of an event's parsing, so one call per event cost a
 * 100-event append a tenth of its time (test/bench/run_tenancy.sh).  The
 * bytes are as strong as pg_strong_random()'s and each is handed out once;
 * the pool belongs to the process that filled it (random_pool_pid), so a
 * child forked after a fill never reuses its parent's bytes.
 */
#define ES_RANDOM_POOL_SIZE 4096

static unsigned char random_pool[ES_RANDOM_POOL_SIZE];
static int	random_pool_used = ES_RANDOM_POOL_SIZE;
static int	random_pool_pid = 0;

/* Fill buf with len (<= ES_RANDOM_POOL_SIZE) strong random bytes. */
static void
strong_random_bytes(unsigned char *buf, int len)
{
	Assert(len <= ES_RANDOM_POOL_SIZE);
	if (random_pool_pid != MyProcPid ||
		random_pool_used > ES_RANDOM_POOL_SIZE - len)
	{
		/* a failed fill leaves the pool empty */
		random_pool_used = ES_RANDOM_POOL_SIZE;
		if (!pg_strong_random(random_pool, ES_RANDOM_POOL_SIZE))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random values")));
		random_pool_pid = MyProcPid;
		random_pool_used = 0;
	}
	memcpy(buf, random_pool + random_pool_used, len);
	/* no copy of handed-out bytes stays behind */
	memset(random_pool + random_pool_used, 0, len);
	random_pool_used += len;
}

/*
 * A time-ordered UUID (version 7: 48 bits of Unix milliseconds, then random
 * bits), so that the event_id index is appended to at its right edge.
 */
static void
generate_event_id(pg_uuid_t *id)
{
	uint64		ms = (uint64) ((GetCurrentTimestamp() / 1000) +
							   (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000);

	strong_random_bytes(id->data + 6, UUID_LEN - 6);
	for (int i = 0; i < 6; i++)
		id->data[i] = (unsigned char) (ms >> (40 - 8 * i));
	id->data[6] = (id->data[6] & 0x0f) | 0x70;	/* version 7 */
	id->data[8] = (id->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

static Jsonb *
empty_object(void)
{
	JsonbValue	v;

	v.type = jbvObject;
	v.val.object.nPairs = 0;
	v.val.object.pairs = NULL;
	return JsonbValueToJsonb(&v);
}

/*
 * Check an event type given by a caller.  Types beginning with "$" are the
 * store's own (the system events of lifecycle.c, es_append_system_event(),
 * which does not come here): refused once the database has the 1.1 SQL, so
 * a writer cannot forge a $StreamDeleted that projections would act on.  On
 * a database still on the 1.0 SQL they stay allowed, as 1.0 allowed them:
 * there the store writes no system events, and a library update alone must
 * not break a 1.0 application (the refusal starts with ALTER EXTENSION
 * UPDATE, see README "Upgrading").  The version is only read for such a
 * type, so ordinary appends pay nothing.
 */
static text *
check_event_type(const char *str, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type must not be empty")));
	if (str[0] == '$' && es_lifecycle_installed())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%.*s\" is reserved", Min(len, 100), str),
				 errdetail("Event types beginning with \"$\" are the store's own system events."),
				 errhint("Use a type that does not begin with \"$\".")));
	if (len > ES_MAX_EVENT_TYPE_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event type is too long"),
				 errdetail("It is %d bytes; the limit is %d bytes.",
						   len, ES_MAX_EVENT_TYPE_LEN)));
	return cstring_to_text_with_len(str, len);
}

static void
check_event_size(EsEvent *ev)
{
	Size		size = VARSIZE(ev->data) + VARSIZE(ev->metadata);

	if (size > ES_MAX_EVENT_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is too large"),
				 errdetail("Its data and metadata take %zu bytes; the limit is %d bytes.",
						   size, ES_MAX_EVENT_SIZE)));
}

static void
check_metadata_object(Jsonb *metadata)
{
	if (!JB_ROOT_IS_OBJECT(metadata) || JB_ROOT_IS_SCALAR(metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event metadata must be a JSON object")));
}

static void
parse_uuid(const char *str, int len, pg_uuid_t *out)
{
	char	   *cstr = pnstrdup(str, len);
	pg_uuid_t  *u = DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(cstr)));

	memcpy(out, u, sizeof(pg_uuid_t));
}

/*
 * Parse one element of the events array: an object with "type" (non-empty
 * string), "data" (any JSON), optional "metadata" (object or null) and
 * optional "id" (uuid string or null).  Other keys are refused, so that a
 * misspelt key is an error instead of lost metadata.
 */
static void
parse_event(JsonbValue *elem, EsEvent *ev)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		have_type = false;
	bool		have_data = false;

	if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("each event must be a JSON object")));

	memset(ev, 0, sizeof(EsEvent));
	it = JsonbIteratorInit(elem->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *key;
		int			keylen;

		if (tok != WJB_KEY)
			continue;
		key = k.val.string.val;
		keylen = k.val.string.len;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);

		if (keylen == 4 && memcmp(key, "type", 4) == 0)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event type must be a JSON string")));
			ev->type = check_event_type(v.val.string.val, v.val.string.len);
			have_type = true;
		}
		else if (keylen == 4 && memcmp(key, "data", 4) == 0)
		{
			ev->data = JsonbValueToJsonb(&v);
			have_data = true;
		}
		else if (keylen == 8 && memcmp(key, "metadata", 8) == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event metadata must be a JSON object")));
			ev->metadata = JsonbValueToJsonb(&v);
		}
		else if (keylen == 2 && memcmp(key, "id", 2) == 0)
		{
			if (v.type == jbvNull)
				continue;
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("event id must be a uuid string")));
			parse_uuid(v.val.string.val, v.val.string.len, &ev->id);
			ev->id_given = true;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown key \"%s\" in event", pnstrdup(key, keylen)),
					 errhint("An event has the keys \"type\", \"data\", \"metadata\" and \"id\".")));
	}

	if (!have_type)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has no \"type\"")));
	if (!have_data)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event has no \"data\""),
				 errhint("Use \"data\": {} for an event without a payload.")));
	if (ev->metadata == NULL)
		ev->metadata = empty_object();
	if (!ev->id_given)
		generate_event_id(&ev->id);
	check_event_size(ev);
}

/* Parse the events argument of append() into an array of EsEvent. */
static EsEvent *
parse_events(Jsonb *events, int *count)
{
	ErrorContextCallback errcallback;
	EsEvent    *result;
	int			n;
	int			i;

	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON array of event objects")));
	n = JB_ROOT_COUNT(events);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array")));
	if (n > ES_MAX_EVENTS_PER_CALL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one call"),
				 errdetail("The call has %d events; the limit is %d.",
						   n, ES_MAX_EVENTS_PER_CALL)));

	result = palloc(sizeof(EsEvent) * n);
	errcallback.callback = parse_error_context;
	errcallback.arg = &i;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	for (i = 0; i < n; i++)
		parse_event(getIthJsonbValueFromContainer(&events->root, i), &result[i]);
	error_context_stack = errcallback.previous;

	*count = n;
	return result;
}

/*
 * Refuse an id that appears twice in one call: it could never be stored.
 */
static void
check_ids_unique_in_call(EsEvent *events, int n)
{
	for (int i = 1; i < n; i++)
	{
		if (!events[i].id_given)
			continue;
		for (int j = 0; j < i; j++)
			if (events[j].id_given &&
				memcmp(&events[i].id, &events[j].id, UUID_LEN) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
						 errmsg("event id %s appears twice in the call",
								DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&events[i].id)))),
						 errdetail("Events %d and %d have the same id.", j + 1, i + 1)));
	}
}

/*
 * Lock the stream of the tenant for the rest of the transaction.  The lock
 * lives in the advisory lock space with field4 = 0x4553 ('ES'), which
 * pg_advisory_lock() never uses (it uses 1 and 2), and shows in pg_locks as
 * an advisory lock.  Its key hashes the tenant and the stream id
 * (stream.c), so the same stream id in two tenants never waits.
 */
void
es_lock_stream(text *tenant, text *stream_id)
{
	LOCKTAG		tag;
	uint64		h = es_hash_tenant_stream(tenant, stream_id);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (h >> 32), (uint32) h,
						 ES_STREAM_LOCK_FIELD4);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static const char *
describe_expected(int64 expected)
{
	switch (expected)
	{
		case ES_EXPECT_ANY:
			return "-1 (any)";
		case ES_EXPECT_NO_STREAM:
			return "0 (the stream must not exist)";
		case ES_EXPECT_STREAM_EXISTS:
			return "-2 (the stream must exist)";
		default:
			return psprintf(INT64_FORMAT, expected);
	}
}

/*
 * Does the stored run of events (first stored at version "first") match what
 * a call with this expected version would have produced?
 */
static bool
expected_allows_first(int64 expected, int64 first, int64 hidden_through)
{
	if (expected == ES_EXPECT_ANY)
		return true;
	if (expected == ES_EXPECT_STREAM_EXISTS)
		return first >= 2;
	/* "no stream" also re-opens a deleted stream after its hidden versions */
	if (expected == ES_EXPECT_NO_STREAM && hidden_through > 0)
		return first == 1 || first == hidden_through + 1;
	return first == expected + 1;
}

/*
 * Look up the caller-supplied ids in the tenant (event ids are unique per
 * tenant).  Returns true and fills *result when the call is an exact retry
 * of one that already succeeded; returns false when none of the ids is
 * stored; raises ES002 otherwise.  Inside SPI.
 */
static bool
check_stored_ids(text *tenant, text *stream_id, int64 expected, int64 hidden_through,
				 EsEvent *events, int n, EsAppendResult *result)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	int			nids = 0;
	Datum		values[2];
	SPIPlanPtr	plan;
	Oid			types[2] = {UUIDARRAYOID, TEXTOID};
	int64	   *versions;
	int64	   *positions;
	bool		exact;
	char	   *sid = text_to_cstring(stream_id);

	for (int i = 0; i < n; i++)
		if (events[i].id_given)
			ids[nids++] = UUIDPGetDatum(&events[i].id);

	plan = es_visible_plan(ids_plans,
						   "SELECT event_id, stream_id, stream_version, global_position"
						   " FROM eventsource.events"
						   " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $2"
						   " AND event_id OPERATOR(pg_catalog.=) ANY ($1)",
						   2, types, false);
	values[0] = PointerGetDatum(construct_array(ids, nids, UUIDOID, UUID_LEN,
												false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(tenant);
	es_spi_read_latest(plan, values, NULL, NULL, 0);
	if (SPI_processed == 0)
		return false;

	/* which stored row belongs to which event of the call */
	versions = palloc0(sizeof(int64) * n);
	positions = palloc0(sizeof(int64) * n);
	exact = (nids == n && SPI_processed == (uint64) n);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *other_stream = SPI_getvalue(tup, desc, 2);
		int64		version = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		int64		position = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		int			i;

		for (i = 0; i < n; i++)
			if (events[i].id_given && memcmp(&events[i].id, id, UUID_LEN) == 0)
				break;
		Assert(i < n);
		if (strcmp(other_stream, sid) != 0)
		{
			es_stats_count(tenant, ES_STAT_DUPLICATE_IDS, 1);
			ereport(ERROR,
					(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
					 errmsg("event id %s is already used in another stream",
							DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)))),
					 errdetail("It is version " INT64_FORMAT " of stream \"%s\".",
							   version, other_stream),
					 errhint("Every event needs an id of its own; generate a new one.")));
		}
		versions[i] = version;
		positions[i] = position;
	}

	if (exact)
	{
		exact = expected_allows_first(expected, versions[0], hidden_through);
		for (int i = 1; exact && i < n; i++)
			exact = (versions[i] == versions[0] + i);
	}
	if (!exact)
	{
		int			i;

		es_stats_count(tenant, ES_STAT_DUPLICATE_IDS, 1);
		for (i = 0; i < n; i++)
			if (versions[i] != 0)
				break;
		ereport(ERROR,
				(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
				 errmsg("event id %s is already stored",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&events[i].id)))),
				 errdetail("It is version " INT64_FORMAT " of stream \"%s\", and the call is not an exact retry of the append that stored it.",
						   versions[i], sid),
				 errhint("A retry must send the same events, with the same ids, in the same order and with the same expected version.")));
	}

	es_stats_count(tenant, ES_STAT_IDEMPOTENT_RETRIES, 1);
	result->stream_version = versions[n - 1];
	result->first_position = positions[0];
	result->last_position = positions[n - 1];
	return true;
}

void
es_check_expected_version(text *tenant, text *stream_id, int64 expected, int64 current)
{
	bool		ok;

	if (expected == ES_EXPECT_ANY)
		ok = true;
	else if (expected == ES_EXPECT_STREAM_EXISTS)
		ok = current > 0;
	else
		ok = (current == expected);

	if (!ok)
	{
		es_stats_count(tenant, ES_STAT_CONFLICTS, 1);
		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"",
						text_to_cstring(stream_id)),
				 errdetail("Expected version %s, actual version " INT64_FORMAT ".",
						   describe_expected(expected), current),
				 errhint("Re-read the stream and decide again against its current version.")));
	}
}

/*
 * Insert the rows into the tenant's stream.  Inside SPI, as the extension
 * owner.  On the 1.0 SQL (no tenant column) the tenant is the default and
 * is not written.
 */
static void
insert_events(text *tenant, text *stream_id, int64 first_version, EsEvent *events, int n,
			  int64 *positions)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	int			rc;
	SPIPlanPtr	plan;
	Oid			one_types[9] = {INT8OID, TEXTOID, INT8OID, UUIDOID,
	TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TEXTOID};
	Oid			many_types[9] = {INT8ARRAYOID, TEXTOID, INT8ARRAYOID, UUIDARRAYOID,
	TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TIMESTAMPTZOID, TEXTOID};

#define INSERT_EVENTS(cols, rows) \
	"INSERT INTO eventsource.events (global_position, stream_id, stream_version," \
	" event_id, event_type, data, metadata, recorded_at" cols ")" rows
#define FROM_ARRAYS \
	" FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($3)," \
	" pg_catalog.unnest($4), pg_catalog.unnest($5)," \
	" pg_catalog.unnest($6), pg_catalog.unnest($7)) AS u(p, v, i, t, d, m)"

	if (n == 1)
	{
		Datum		values[9];

		plan = es_prepare_versioned(insert_one_plans,
									INSERT_EVENTS("", " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
									INSERT_EVENTS(", tenant_id",
												  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
									9, one_types);
		values[0] = Int64GetDatum(positions[0]);
		values[1] = PointerGetDatum(stream_id);
		values[2] = Int64GetDatum(first_version);
		values[3] = UUIDPGetDatum(&events[0].id);
		values[4] = PointerGetDatum(events[0].type);
		values[5] = JsonbPGetDatum(events[0].data);
		values[6] = JsonbPGetDatum(events[0].metadata);
		values[7] = TimestampTzGetDatum(now);
		values[8] = PointerGetDatum(tenant);
		es_append_in_progress = true;
		rc = SPI_execute_plan(plan, values, NULL, false, 0);
	}
	else
	{
		Datum		values[9];
		Datum	   *pos = palloc(sizeof(Datum) * n);
		Datum	   *ver = palloc(sizeof(Datum) * n);
		Datum	   *ids = palloc(sizeof(Datum) * n);
		Datum	   *types = palloc(sizeof(Datum) * n);
		Datum	   *data = palloc(sizeof(Datum) * n);
		Datum	   *meta = palloc(sizeof(Datum) * n);

		plan = es_prepare_versioned(insert_many_plans,
									INSERT_EVENTS("", " SELECT u.p, $2, u.v, u.i, u.t, u.d, u.m, $8" FROM_ARRAYS),
									INSERT_EVENTS(", tenant_id",
												  " SELECT u.p, $2, u.v, u.i, u.t, u.d, u.m, $8, $9" FROM_ARRAYS),
									9, many_types);
		for (int i = 0; i < n; i++)
		{
			pos[i] = Int64GetDatum(positions[i]);
			ver[i] = Int64GetDatum(first_version + i);
			ids[i] = UUIDPGetDatum(&events[i].id);
			types[i] = PointerGetDatum(events[i].type);
			data[i] = JsonbPGetDatum(events[i].data);
			meta[i] = JsonbPGetDatum(events[i].metadata);
		}
		values[0] = PointerGetDatum(construct_array(pos, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[1] = PointerGetDatum(stream_id);
		values[2] = PointerGetDatum(construct_array(ver, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[3] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
		values[4] = PointerGetDatum(construct_array(types, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[5] = PointerGetDatum(construct_array(data, n, JSONBOID, -1, false, TYPALIGN_INT));
		values[6] = PointerGetDatum(construct_array(meta, n, JSONBOID, -1, false, TYPALIGN_INT));
		values[7] = TimestampTzGetDatum(now);
		values[8] = PointerGetDatum(tenant);
		es_append_in_progress = true;
		rc = SPI_execute_plan(plan, values, NULL, false, 0);
	}
	es_append_in_progress = false;
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "eventsource: inserting %d events failed: %s",
			 n, SPI_result_code_string(rc));
}

/*
 * Inside the PG_CATCH of the INSERT: an id stored meanwhile by a concurrent
 * append to another stream (committed after our check) trips the unique
 * index; say so with ES002, as for an id we had seen.  Anything else is
 * rethrown as it is.
 */
static void
rethrow_duplicate_id(MemoryContext cxt, text *tenant)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	if (edata->sqlerrcode != ERRCODE_UNIQUE_VIOLATION || edata->constraint_name == NULL ||
		strcmp(edata->constraint_name, "events_event_id_key") != 0)
		PG_RE_THROW();
	FlushErrorState();
	es_stats_count(tenant, ES_STAT_DUPLICATE_IDS, 1);
	ereport(ERROR,
			(errcode(ERRCODE_ES_DUPLICATE_EVENT_ID),
			 errmsg("an event id of the call was stored by a concurrent append"),
			 errdetail("%s", edata->detail ? edata->detail : edata->message),
			 errhint("Every event needs an id of its own; generate a new one.")));
}

/*
 * The body shared by append() and append_event().  "events" are parsed and
 * checked; "tenant" is the call's (es_tenant_for_call(), resolved as the
 * caller).  Runs as the extension owner inside its own SPI connection.
 */
static EsAppendResult
append_events(text *tenant, text *stream_id, int64 expected, EsEvent *events, int n)
{
	EsAppendResult result;
	EsOwnerCall owner;
	bool		any_id_given = false;
	int64		current;
	int64	   *positions;
	MemoryContext cxt;
	EsStreamState state;

	for (int i = 0; i < n; i++)
		any_id_given |= events[i].id_given;
	if (any_id_given)
		check_ids_unique_in_call(events, n);

	es_owner_begin(&owner);

	es_lock_stream(tenant, stream_id);
	es_stream_state(tenant, stream_id, true, &state);
	es_check_not_tombstoned(stream_id, &state);
	current = es_visible_version(&state);

	if (!any_id_given ||
		!check_stored_ids(tenant, stream_id, expected, state.hidden_through, events, n, &result))
	{
		es_check_expected_version(tenant, stream_id, expected, current);

		/* inside a subscription handler: causation and correlation (upcalls.h) */
		for (int i = 0; i < n; i++)
			events[i].metadata = es_inherit_causation(events[i].metadata);
		/* the trace context: the metadata's, checked, else the current one */
		for (int i = 0; i < n; i++)
			events[i].metadata = es_trace_metadata(events[i].metadata);

		positions = palloc(sizeof(int64) * n);
		es_reserve_positions(n, positions);
		cxt = CurrentMemoryContext;
		PG_TRY();
		{
			insert_events(tenant, stream_id, state.last_version + 1, events, n, positions);
		}
		PG_CATCH();
		{
			es_append_in_progress = false;
			rethrow_duplicate_id(cxt, tenant);
		}
		PG_END_TRY();

		es_stats_count(tenant, ES_STAT_APPENDS, 1);
		es_stats_count(tenant, ES_STAT_EVENTS_APPENDED, n);
		if (state.last_version == 0)	/* never written before */
			es_stats_count(tenant, ES_STAT_STREAMS_CREATED, 1);
		result.stream_version = state.last_version + n;
		result.first_position = positions[0];
		result.last_position = positions[n - 1];
	}

	es_owner_end(&owner);
	return result;
}

/*
 * Append one system event of a lifecycle operation (lifecycle.c) to the
 * tenant's stream it concerns, at the given (negative) version.  The caller
 * holds the stream's lock and runs as the owner inside SPI.  Returns its
 * position.
 */
int64
es_append_system_event(text *tenant, text *stream_id, int64 version, const char *type,
					   Jsonb *data)
{
	EsEvent		ev;
	int64		position;

	memset(&ev, 0, sizeof(ev));
	ev.type = cstring_to_text(type);
	ev.data = data;
	ev.metadata = es_inherit_causation(empty_object());
	generate_event_id(&ev.id);
	es_reserve_positions(1, &position);
	insert_events(tenant, stream_id, version, &ev, 1, &position);
	es_stats_count(tenant, ES_STAT_APPENDS, 1);
	es_stats_count(tenant, ES_STAT_EVENTS_APPENDED, 1);
	return position;
}

/* Check the expected_version argument (NULL means any). */
static int64
arg_expected_version(FunctionCallInfo fcinfo, int argno)
{
	int64		expected;

	if (PG_ARGISNULL(argno))
		return ES_EXPECT_ANY;
	expected = PG_GETARG_INT64(argno);
	if (expected < ES_EXPECT_STREAM_EXISTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid expected_version " INT64_FORMAT, expected),
				 errhint("Use -1 or NULL for any version, 0 for a new stream, -2 for an existing stream, or the stream's current version.")));
	return expected;
}

static Datum
append_result_datum(FunctionCallInfo fcinfo, EsAppendResult *r)
{
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int64GetDatum(r->stream_version);
	values[1] = Int64GetDatum(r->first_position);
	values[2] = Int64GetDatum(r->last_position);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

PG_FUNCTION_INFO_V1(es_append);

/*
 * append(stream_id text, expected_version bigint, events jsonb [, tenant text])
 *	 RETURNS (stream_version bigint, first_position bigint, last_position bigint)
 */
Datum
es_append(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		expected;
	EsEvent    *events;
	int			n;
	EsAppendResult result;

	es_require_shmem("eventsource.append()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	expected = arg_expected_version(fcinfo, 1);
	es_arg_not_null(fcinfo, 2, "events");
	es_require_writable("eventsource.append()");
	events = parse_events(PG_GETARG_JSONB_P(2), &n);
	result = append_events(es_tenant_for_call(fcinfo, 3), stream_id, expected, events, n);
	return append_result_datum(fcinfo, &result);
}

PG_FUNCTION_INFO_V1(es_append_event);

/*
 * append_event(stream_id text, expected_version bigint, event_type text,
 *				data jsonb, metadata jsonb DEFAULT '{}', event_id uuid DEFAULT NULL)
 * and its overload with a seventh argument, tenant text (1.1).
 */
Datum
es_append_event(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		expected;
	text	   *type;
	EsEvent		ev;
	EsAppendResult result;

	es_require_shmem("eventsource.append_event()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	expected = arg_expected_version(fcinfo, 1);
	es_arg_not_null(fcinfo, 2, "event_type");
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("data must not be null"),
				 errhint("Use '{}' or 'null'::jsonb for an event without a payload.")));
	es_require_writable("eventsource.append_event()");

	type = PG_GETARG_TEXT_PP(2);
	memset(&ev, 0, sizeof(ev));
	ev.type = check_event_type(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	ev.data = PG_GETARG_JSONB_P(3);
	if (PG_ARGISNULL(4))
		ev.metadata = empty_object();
	else
	{
		ev.metadata = PG_GETARG_JSONB_P(4);
		check_metadata_object(ev.metadata);
	}
	if (PG_ARGISNULL(5))
		generate_event_id(&ev.id);
	else
	{
		memcpy(&ev.id, PG_GETARG_UUID_P(5), sizeof(pg_uuid_t));
		ev.id_given = true;
	}
	check_event_size(&ev);

	result = append_events(es_tenant_for_call(fcinfo, 6), stream_id, expected, &ev, 1);
	return append_result_datum(fcinfo, &result);
}
