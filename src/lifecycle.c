/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  delete_stream() and truncate_stream(): hiding a stream's events, and
 *	  the one place that says which events are hidden.
 *
 * A lifecycle operation never touches the log's rows.  It records, under the
 * stream's lock (the one append() takes), a row of eventsource.stream_lifecycle
 * saying that versions 1 .. hidden_through of the stream are hidden (and, for
 * a hard delete, that the stream is tombstoned), and appends a system event
 * ($StreamDeleted, $StreamTruncated) to the stream itself at a negative
 * version (-n for the n-th operation), in the same transaction.  So:
 *
 *	- the hiding commits atomically with the system event, and is seen by
 *	  every reader whose snapshot sees that commit;
 *	- the system event is delivered in log order, to the same subscription
 *	  partition as the stream's own events, and passes the same category
 *	  filter; it never takes one of the stream's versions;
 *	- versions are never reused: appends continue after last_version, which
 *	  the row keeps even once a later cleanup removes the hidden rows.
 *
 * Which events are hidden is spelled once, in the view
 * eventsource.visible_events (eventsource--1.0--1.1.sql).  Every read path
 * over several streams builds its query over "@EVENTS@", which
 * es_visible_plan() replaces by that view, or by the table on a database
 * still on the 1.0 SQL (where nothing can be hidden).  The per-stream
 * readers (read_stream, load) read the table above "@FLOOR($n)@", the
 * stream's hidden_through in its tenant, in the same statement: for the versions >= 1 of one
 * stream that is exactly the view's predicate, because every hidden event
 * is older than the operation that hid it (the operation holds the
 * stream's lock, which appends hold until they commit) and hidden_through
 * only moves up.  A change to the view must change @FLOOR($n)@ with it.
 *
 * The lifecycle state is per (tenant, stream): stream_lifecycle is keyed by
 * (tenant_id, stream_id), the view's probe and the floor match both, and
 * every operation runs in the caller's current tenant, resolved once as the
 * caller (es_current_tenant_text()) and passed to every query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"

#include "eventsource.h"
#include "tenant.h"

#define ES_EVENTS_TOKEN		"@EVENTS@"
#define ES_FLOOR_TOKEN		"@FLOOR("
#define ES_LAST_OP_TOKEN	"@LAST_OPERATION@"
#define ES_TENANT_TOKEN		"@TENANT_ID"

static SPIPlanPtr state_plans[2] = {NULL, NULL};
static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr drop_snapshots_plan = NULL;

/*
 * Is the lifecycle schema (1.1) installed in this database, as the data is
 * read (extversion.c: es_sql_version(), with the active snapshot; inside the
 * update script itself it is still 1.0)?
 */
bool
es_lifecycle_installed(void)
{
	return es_sql_version_at_least("1.1");
}

/* Replace every occurrence of "token" in "str" by "by" (palloc'd result). */
static char *
replace_token(const char *str, const char *token, const char *by)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;
	size_t		toklen = strlen(token);

	initStringInfo(&buf);
	while ((hit = strstr(p, token)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, by);
		p = hit + toklen;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Replace every "@TENANT_ID@" (a row's tenant column) and "@TENANT_ID(a)@"
 * (alias a's) by the column, or, on the 1.0 SQL, which has no such column,
 * by the constant 'default' (every 1.0 row is the default tenant's, and
 * tenant.c allows no other there): "@TENANT_ID@ = $n" then reads the same
 * on both.
 */
static char *
replace_tenant_tokens(const char *str, bool have_column)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, ES_TENANT_TOKEN)) != NULL)
	{
		const char *q = hit + strlen(ES_TENANT_TOKEN);
		const char *alias = NULL;
		int			alias_len = 0;

		appendBinaryStringInfo(&buf, p, hit - p);
		if (*q == '(')
		{
			alias = q + 1;
			q = strchr(alias, ')');
			if (q == NULL)
				elog(ERROR, "eventsource: unterminated tenant token in \"%s\"", str);
			alias_len = q - alias;
			q++;
		}
		if (*q != '@')
			elog(ERROR, "eventsource: malformed tenant token in \"%s\"", str);
		if (!have_column)
			appendStringInfoString(&buf, "'" ES_DEFAULT_TENANT "'::pg_catalog.text");
		else
		{
			if (alias != NULL)
				appendStringInfo(&buf, "%.*s.", alias_len, alias);
			appendStringInfoString(&buf, "tenant_id");
		}
		p = q + 1;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Replace every "@FLOOR($n)@" by the hidden_through of the stream $1 of the
 * tenant $n (0 when it has no lifecycle row), or by 0 on the 1.0 SQL, where
 * nothing is hidden.
 */
static char *
replace_floor_tokens(const char *str, bool lifecycle)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, ES_FLOOR_TOKEN)) != NULL)
	{
		const char *param = hit + strlen(ES_FLOOR_TOKEN);
		const char *q = strchr(param, ')');

		if (q == NULL || q[1] != '@' || *param != '$')
			elog(ERROR, "eventsource: malformed floor token in \"%s\"", str);
		appendBinaryStringInfo(&buf, p, hit - p);
		if (lifecycle)
			appendStringInfo(&buf,
							 "(SELECT COALESCE(pg_catalog.max(l.hidden_through), 0)"
							 " FROM eventsource.stream_lifecycle l"
							 " WHERE l.tenant_id OPERATOR(pg_catalog.=) %.*s"
							 " AND l.stream_id OPERATOR(pg_catalog.=) $1)",
							 (int) (q - param), param);
		else
			appendStringInfoString(&buf, "0");
		p = q + 2;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * The kept plan of a read query, prepared on first use for the SQL version
 * of this database.  "query_fmt" reads @EVENTS@ wherever it reads the log,
 * and may use @FLOOR($n)@ (with the stream id as $1 and its tenant as $n)
 * as a lower bound of the stream's versions, and @LAST_OPERATION@ as the position above which no
 * event is hidden, and @TENANT_ID@ or @TENANT_ID(alias)@ for the tenant
 * column (replace_tenant_tokens).  "slots" holds the two variants (1.0 SQL, 1.1 SQL);
 * "generic" asks for a plan that is never replanned per call (see below);
 * plans are revalidated by the plan cache like any kept plan.  Caller is
 * connected to SPI.
 */
SPIPlanPtr
es_visible_plan(SPIPlanPtr *slots, const char *query_fmt, int nargs, Oid *argtypes,
				bool generic)
{
	int			v = es_lifecycle_installed() ? 1 : 0;

	if (slots[v] == NULL)
	{
		char	   *q;

		q = replace_token(query_fmt, ES_EVENTS_TOKEN,
						  v ? "eventsource.visible_events" : "eventsource.events");
		q = replace_floor_tokens(q, v);
		/*
		 * The position of the newest lifecycle operation: every event above
		 * it is visible (the first clause of visible_events, for queries
		 * that test rows one by one and want to skip the view's probe)
		 */
		q = replace_token(q, ES_LAST_OP_TOKEN,
						  v ? "(SELECT COALESCE(pg_catalog.max(l.last_position), 0)"
						  " FROM eventsource.stream_lifecycle l)" : "0");
		q = replace_tenant_tokens(q, v);
		if (v && generic)
		{
			/*
			 * A generic plan, always (for the read paths; monitoring asks for
			 * custom plans, status.c): planning the view's subqueries costs
			 * about half a millisecond, more than a batch of a subscription
			 * takes to read, and the plan cache would otherwise replan for
			 * every call (the custom plans of a range on global_position
			 * look cheaper than the generic one).  The generic plan is the
			 * same index scan.
			 */
			SPIPlanPtr	plan = SPI_prepare_cursor(q, nargs, argtypes,
												  CURSOR_OPT_GENERIC_PLAN);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
					 q, SPI_result_code_string(SPI_result));
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "SPI_keepplan failed");
			slots[v] = plan;
		}
		else
			slots[v] = es_prepare(q, nargs, argtypes);
	}
	return slots[v];
}

/*
 * The state of a stream of a tenant, read with a snapshot taken now (the caller holds
 * the stream's lock, so this is the state its writes build on) — or, when
 * "latest" is false, with the caller's snapshot.  Caller is connected to SPI
 * and runs as the owner.

 */
void
es_stream_state(text *tenant, text *stream_id, bool latest, EsStreamState *st)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			v = es_lifecycle_installed() ? 1 : 0;

	if (state_plans[v] == NULL)
	{
		/* the physical last version: numbering never reuses a version */
		if (v)
			state_plans[v] = es_prepare(
										"SELECT (SELECT e.stream_version FROM eventsource.events e"
										"   WHERE e.tenant_id OPERATOR(pg_catalog.=) $2"
										"   AND e.stream_id OPERATOR(pg_catalog.=) $1"
										"   ORDER BY e.stream_version DESC LIMIT 1),"
										" l.hidden_through, l.last_version, l.tombstoned, l.operations"
										" FROM (VALUES (1)) AS d(x)"
										" LEFT JOIN eventsource.stream_lifecycle l"
										"   ON l.tenant_id OPERATOR(pg_catalog.=) $2"
										"   AND l.stream_id OPERATOR(pg_catalog.=) $1",
										2, types);
		else
			state_plans[v] = es_prepare(
										"SELECT (SELECT e.stream_version FROM eventsource.events e"
										"   WHERE e.stream_id OPERATOR(pg_catalog.=) $1"
										"   ORDER BY e.stream_version DESC LIMIT 1),"
										" NULL::bigint, NULL::bigint, NULL::boolean, NULL::integer",
										1, types);	/* 1.0: every row is 'default' */
	}
	plan = state_plans[v];
	values[0] = PointerGetDatum(stream_id);
	values[1] = PointerGetDatum(tenant);
	if (latest)
		es_spi_read_latest(plan, values, NULL, NULL, 1);
	else
		es_spi_read(plan, values, NULL, NULL, 1);
	Assert(SPI_processed == 1);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	memset(st, 0, sizeof(EsStreamState));
	d = SPI_getbinval(tup, desc, 1, &isnull);
	st->last_version = isnull ? 0 : Max(DatumGetInt64(d), 0);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	if (!isnull)
	{
		st->has_row = true;
		st->hidden_through = DatumGetInt64(d);
		st->last_version = Max(st->last_version,
							   DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull)));
		st->tombstoned = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		st->operations = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	}
}


/*
 * The version a reader sees: the last version, or 0 when the stream is
 * absent (never written, deleted, tombstoned).  A stream is deleted exactly
 * when every version it has is hidden; an append re-opens it by adding a
 * version above hidden_through.
 */
int64
es_visible_version(const EsStreamState *st)
{
	if (st->tombstoned || st->last_version <= st->hidden_through)
		return 0;
	return st->last_version;
}

/*
 * The current version of a stream as a reader sees it (0 when absent), with
 * the caller's snapshot or, with "latest", as of now.  Caller is connected
 * to SPI and runs as the owner.
 */
int64
es_stream_version(text *tenant, text *stream_id, bool latest)
{
	EsStreamState st;

	es_stream_state(tenant, stream_id, latest, &st);
	return es_visible_version(&st);
}

void
es_check_not_tombstoned(text *stream_id, const EsStreamState *st)
{
	if (st->tombstoned)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_DELETED),
				 errmsg("stream \"%s\" is deleted for good", text_to_cstring(stream_id)),
				 errdetail("It was hard-deleted (tombstoned) after version " INT64_FORMAT ".",
						   st->last_version),
				 errhint("A tombstoned stream id can never be written again; use a new stream id.")));
}

/*
 * The expected_version argument of a lifecycle function (erasure.c's too):
 * required.
 */
int64
es_lifecycle_arg_expected(FunctionCallInfo fcinfo, int argno)
{
	int64		expected;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("expected_version must not be null"),
				 errhint("Pass the stream's current version, or -1 for whatever version it has.")));
	expected = PG_GETARG_INT64(argno);
	if (expected < ES_EXPECT_STREAM_EXISTS || expected == ES_EXPECT_NO_STREAM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid expected_version " INT64_FORMAT, expected),
				 errhint("Use -1 for any version, -2 for an existing stream, or the stream's current version.")));
	return expected;
}

/* Refuse an operation on a stream that has nothing to hide. */
static void
check_stream_present(text *stream_id, const EsStreamState *st, bool allow_deleted)
{
	if (st->last_version == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_NOT_FOUND),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(stream_id)),
				 errdetail("The stream has no events.")));
	es_check_not_tombstoned(stream_id, st);
	if (!allow_deleted && es_visible_version(st) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_DELETED),
				 errmsg("stream \"%s\" is deleted", text_to_cstring(stream_id)),
				 errdetail("It was deleted at version " INT64_FORMAT ".", st->hidden_through),
				 errhint("Appending to it again re-opens it.")));
}

/*
 * Run a writing plan with the active snapshot (the one the operation read
 * the stream's state with, see lock_and_read_state()), not the transaction
 * snapshot SPI would take: under REPEATABLE READ or SERIALIZABLE the
 * transaction snapshot may predate another session's operation on the same
 * stream, and the upsert of its lifecycle row (ON CONFLICT DO UPDATE) or the
 * DELETE of a snapshot row would then fail with 40001 although the stream's
 * lock already orders the two operations.
 */
uint64
es_exec_with_active_snapshot(SPIPlanPtr plan, Datum *values, int expected)
{
	return es_exec_plan_snapshot(plan, values, NULL, GetActiveSnapshot(), expected);
}

/*
 * Lock the stream and read its state with a snapshot taken now, which stays
 * the active snapshot until the caller pops it: the state and the writes
 * based on it (record_operation()) use the same snapshot, taken after the
 * lock was granted, as append() does for its version check.  Caller runs as
 * the owner inside SPI.
 */
static void
lock_and_read_state(text *tenant, text *stream_id, EsStreamState *st)
{
	es_lock_stream(tenant, stream_id);
	PushActiveSnapshot(GetLatestSnapshot());
	es_stream_state(tenant, stream_id, false, st);
}

/*
 * Record the new state and the system event, drop the snapshots that
 * summarise hidden versions.  Caller holds the stream's lock, runs as the
 * owner inside SPI, with the snapshot of lock_and_read_state() active.
 * Returns the system event's position.
 */
static int64
record_operation(text *tenant, text *stream_id, const EsStreamState *st, int64 hidden_through,
				 bool tombstone, const char *event_type, EsJson *details)
{
	Datum		values[7];
	int64		position;
	int32		operations = st->operations + 1;

	position = es_append_system_event(tenant, stream_id, -(int64) operations, event_type,
									  DatumGetJsonbP(es_json_jsonb(details)));

	if (drop_snapshots_plan == NULL)
	{
		Oid			types[7] = {TEXTOID, INT8OID, INT8OID, BOOLOID, INT4OID, INT8OID, TEXTOID};
		Oid			drop_types[7] = {TEXTOID, INT8OID, INT8OID, BOOLOID, INT4OID, INT8OID, TEXTOID};

		/* both or none: the second assignment marks them ready */
		upsert_plan = es_prepare(
								 "INSERT INTO eventsource.stream_lifecycle AS l (tenant_id, stream_id,"
								 " hidden_through, last_version, tombstoned, operations, last_position)"
								 " VALUES ($7, $1, $2, $3, $4, $5, $6)"
								 " ON CONFLICT (tenant_id, stream_id) DO UPDATE SET"
								 " hidden_through = excluded.hidden_through,"
								 " last_version = excluded.last_version,"
								 " tombstoned = excluded.tombstoned,"
								 " operations = excluded.operations,"
								 " last_position = excluded.last_position,"
								 " updated_at = pg_catalog.now()",
								 7, types);
		drop_snapshots_plan = es_prepare(
										 "DELETE FROM eventsource.snapshots"
										 " WHERE tenant_id OPERATOR(pg_catalog.=) $7"
										 " AND stream_id OPERATOR(pg_catalog.=) $1"
										 " AND stream_version OPERATOR(pg_catalog.<=) $2",
										 7, drop_types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(hidden_through);
	values[2] = Int64GetDatum(st->last_version);
	values[3] = BoolGetDatum(tombstone);
	values[4] = Int32GetDatum(operations);
	values[5] = Int64GetDatum(position);
	values[6] = PointerGetDatum(tenant);
	/* the guard on stream_lifecycle lets this one statement through */
	es_exec_guarded(ES_GUARDED_LIFECYCLE, upsert_plan, values, NULL,
					GetActiveSnapshot(), SPI_OK_INSERT);

	es_exec_with_active_snapshot(drop_snapshots_plan, values, SPI_OK_DELETE);
	/* the hidden rows are this database's cleanup worker's to remove */
	es_cleanup_want(MyDatabaseId);
	return position;
}

PG_FUNCTION_INFO_V1(es_delete_stream);

/*
 * delete_stream(stream_id text, expected_version bigint,
 *				 hard boolean DEFAULT false) RETURNS bigint
 *
 * Soft delete: every version the stream has is hidden, it reads as absent,
 * and an append re-opens it after its last version.  Hard delete: the same,
 * and the stream can never be written again (ES003); a soft-deleted stream
 * may be hard-deleted.  Returns the position of the $StreamDeleted event.
 */
Datum
es_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		expected;
	bool		hard;
	EsStreamState st;
	EsOwnerCall owner;
	EsJson		details;
	int64		position;
	text	   *tenant;

	es_require_shmem("eventsource.delete_stream()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	expected = es_lifecycle_arg_expected(fcinfo, 1);
	es_arg_not_null(fcinfo, 2, "hard");
	hard = PG_GETARG_BOOL(2);
	es_require_writable("eventsource.delete_stream()");
	es_require_sql_version("1.1", "eventsource.delete_stream()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	lock_and_read_state(tenant, stream_id, &st);
	check_stream_present(stream_id, &st, hard);
	es_check_expected_version(stream_id, expected, es_visible_version(&st));

	es_json_object(&details);
	es_json_bool(&details, "hard", hard);
	es_json_int(&details, "last_version", st.last_version);
	es_json_int(&details, "hidden_through", st.last_version);

	position = record_operation(tenant, stream_id, &st, st.last_version, hard,
								"$StreamDeleted", &details);
	PopActiveSnapshot();
	es_owner_end(&owner);
	PG_RETURN_INT64(position);
}

PG_FUNCTION_INFO_V1(es_truncate_stream);

/*
 * truncate_stream(stream_id text, before_version bigint,
 *				   expected_version bigint DEFAULT -1) RETURNS bigint
 *
 * Hide the versions below before_version.  The stream keeps at least its
 * last version (hiding all of it is delete_stream()).  Returns the position
 * of the $StreamTruncated event.
 */
Datum
es_truncate_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		before;
	int64		expected;
	int64		visible;
	EsStreamState st;
	EsOwnerCall owner;
	EsJson		details;
	int64		position;
	text	   *tenant;

	es_require_shmem("eventsource.truncate_stream()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	es_arg_not_null(fcinfo, 1, "before_version");
	before = PG_GETARG_INT64(1);
	if (before < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version must be at least 1"),
				 errhint("Versions start at 1; truncate_stream(s, n) hides versions 1 to n - 1.")));
	expected = es_lifecycle_arg_expected(fcinfo, 2);
	es_require_writable("eventsource.truncate_stream()");
	es_require_sql_version("1.1", "eventsource.truncate_stream()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	lock_and_read_state(tenant, stream_id, &st);
	check_stream_present(stream_id, &st, false);
	visible = es_visible_version(&st);
	es_check_expected_version(stream_id, expected, visible);
	if (before > visible)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version " INT64_FORMAT " is beyond the last version of stream \"%s\"",
						before, text_to_cstring(stream_id)),
				 errdetail("The stream is at version " INT64_FORMAT "; truncation keeps at least that version.",
						   visible),
				 errhint("Use eventsource.delete_stream() to hide every version.")));
	if (before == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("truncating stream \"%s\" before version 1 hides nothing",
						text_to_cstring(stream_id)),
				 errhint("truncate_stream(s, n) hides versions 1 to n - 1.")));
	if (before - 1 <= st.hidden_through)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("versions before " INT64_FORMAT " of stream \"%s\" are already hidden",
						before, text_to_cstring(stream_id)),
				 errdetail("Versions 1 to " INT64_FORMAT " are hidden; hiding cannot be undone.",
						   st.hidden_through)));

	es_json_object(&details);
	es_json_int(&details, "before_version", before);
	es_json_int(&details, "hidden_through", before - 1);
	es_json_int(&details, "last_version", st.last_version);

	position = record_operation(tenant, stream_id, &st, before - 1, false,
								"$StreamTruncated", &details);
	PopActiveSnapshot();
	es_owner_end(&owner);
	PG_RETURN_INT64(position);
}
