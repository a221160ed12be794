/*-------------------------------------------------------------------------
 *
 * read.c
 *	  read_stream(), read_all(), head_position(), stream_version().
 *
 * read_stream() reads with the caller's snapshot: a stream's versions are
 * dense and assigned under the stream's lock, so a reader never sees version
 * n+1 without version n.
 *
 * read_all() is the one that needs care: positions commit out of order, so
 * it returns only positions at or below the safe horizon (horizon.c), read
 * with a snapshot taken after the horizon was computed, so that every
 * position <= the horizon that committed is visible, whatever the caller's
 * isolation level.
 *
 * All of them read the caller's current tenant only (tenant.c, resolved
 * before becoming the owner, passed as a parameter).
 *
 * Both return the visible events only, and neither spells which events are
 * hidden: read_stream() reads the table above the stream's floor
 * (lifecycle.c, @FLOOR@), read_all() reads the table and drops the rows
 * lifecycle.c's es_hiding_resolve() finds hidden (read_all_hiding()), with
 * the page and the lifecycle rows read with one snapshot.
 *
 * The set-returning functions stream rows from SPI straight into the
 * function's tuplestore (no intermediate copy).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/tstoreReceiver.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "eventsource.h"
#include "schema.h"
#include "tenant.h"

/* two variants each: 1.0 and 1.1 SQL (lifecycle.c, es_visible_plan) */
static SPIPlanPtr stream_fwd_plans[2];
static SPIPlanPtr stream_bwd_plans[2];
static SPIPlanPtr all_plans[2];

/* Check a max_count argument. */
static int32
arg_max_count(FunctionCallInfo fcinfo, int argno)
{
	int32		n = es_arg_int32(fcinfo, argno, "max_count");

	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be at least 1")));
	if (n > ES_MAX_READ_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("max_count must be at most %d", ES_MAX_READ_COUNT),
				 errhint("Read in pages: pass the last position or version you got to the next call.")));
	return n;
}

/* A receiver that appends SPI's rows to the SRF's tuplestore. */
static DestReceiver *
srf_receiver(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DestReceiver *dest = CreateDestReceiver(DestTuplestore);

	SetTuplestoreDestReceiverParams(dest, rsinfo->setResult,
									rsinfo->econtext->ecxt_per_query_memory,
									false, NULL, NULL);
	return dest;
}

PG_FUNCTION_INFO_V1(es_read_stream);

/*
 * read_stream(stream_id text, from_version bigint DEFAULT NULL,
 *			   max_count integer DEFAULT 1000, backwards boolean DEFAULT false
 *			   [, tenant text])
 *	 RETURNS SETOF eventsource.events
 */
Datum
es_read_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_arg_stream_id(fcinfo, 0);
	int32		max_count = arg_max_count(fcinfo, 2);
	bool		backwards;
	int64		from;
	Datum		values[4];
	SPIPlanPtr	plan;
	EsOwnerCall owner;
	Oid			types[4] = {TEXTOID, INT8OID, INT4OID, TEXTOID};
	text	   *tenant;

	es_arg_not_null(fcinfo, 3, "backwards");
	backwards = PG_GETARG_BOOL(3);
	if (PG_ARGISNULL(1))
		from = backwards ? PG_INT64_MAX : 1;
	else
	{
		from = PG_GETARG_INT64(1);
		if (from < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_version must not be negative"),
					 errhint("Versions start at 1; pass NULL to start at the first (or, backwards, the last) event.")));
	}

	tenant = es_tenant_for_call(fcinfo, 4);
	InitMaterializedSRF(fcinfo, 0);
	es_owner_begin(&owner);

	/*
	 * One stream: the view's predicate (src/lifecycle.c) reduces, for the
	 * versions >= 1 of a single stream, to "above the stream's
	 * hidden_through", which is @FLOOR($4)@ (every hidden event is older than
	 * the operation that hid it, so the view's first clause never shows one
	 * of them, and its second clause only concerns negative versions).  The
	 * floor's subquery and the scan are one statement with one snapshot, so
	 * reading the table above the floor returns exactly the rows the view
	 * would, without the view's probe of stream_lifecycle for every event.
	 * The lower bound 1 keeps the system events (negative versions) out.
	 */
	if (backwards)
		plan = es_visible_plan(stream_bwd_plans,
							   "SELECT * FROM eventsource.events"
							   " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $4"
							   " AND stream_id OPERATOR(pg_catalog.=) $1"
							   " AND stream_version OPERATOR(pg_catalog.<=) $2"
							   " AND stream_version OPERATOR(pg_catalog.>) @FLOOR($4)@"
							   " AND stream_version OPERATOR(pg_catalog.>=) 1"
							   " ORDER BY stream_version DESC LIMIT $3",
							   4, types, true);
	else
		plan = es_visible_plan(stream_fwd_plans,
							   "SELECT * FROM eventsource.events"
							   " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $4"
							   " AND stream_id OPERATOR(pg_catalog.=) $1"
							   " AND stream_version OPERATOR(pg_catalog.>=) $2"
							   " AND stream_version OPERATOR(pg_catalog.>) @FLOOR($4)@"
							   " AND stream_version OPERATOR(pg_catalog.>=) 1"
							   " ORDER BY stream_version LIMIT $3",
							   4, types, true);
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(from);
	values[2] = Int32GetDatum(max_count);
	values[3] = PointerGetDatum(tenant);

	es_spi_read(plan, values, NULL, srf_receiver(fcinfo), 0);
	es_stats_count(tenant, ES_STAT_STREAM_READS, 1);
	es_stats_count(tenant, ES_STAT_EVENTS_READ, (int64) SPI_processed);

	es_owner_end(&owner);
	return (Datum) 0;
}

/*
 * Keep the visible rows of the function's result: the "stored" rows before
 * the last statement's (all visible), then that statement's rows but those
 * numbered in "hidden" (ascending, counted from its first row), up to
 * "max_count" rows.  The result's tuplestore is replaced by one holding
 * them.  Returns the rows kept.
 */
static uint64
keep_visible(FunctionCallInfo fcinfo, uint64 stored, const uint64 *hidden,
			 uint64 nhidden, int32 max_count)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *old = rsinfo->setResult;
	Tuplestorestate *kept;
	TupleTableSlot *slot;
	MemoryContext oldcxt;
	uint64		row = 0;
	uint64		h = 0;
	uint64		nkept = 0;

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	kept = tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
								 false, work_mem);
	MemoryContextSwitchTo(oldcxt);
	slot = MakeSingleTupleTableSlot(rsinfo->setDesc, &TTSOpsMinimalTuple);
	while (nkept < (uint64) max_count &&
		   tuplestore_gettupleslot(old, true, false, slot))
	{
		if (row >= stored && h < nhidden && hidden[h] == row - stored)
			h++;
		else
		{
			tuplestore_puttupleslot(kept, slot);
			nkept++;
		}
		row++;
	}
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(old);
	rsinfo->setResult = kept;
	return nkept;
}

/*
 * read_all() when lifecycle operations may hide rows of the page: read the
 * table in position order (the same statement as without hiding) while
 * es_hiding_receiver() notes the rows that could be hidden, look their
 * streams' lifecycle rows up in one statement (es_hiding_resolve), drop the
 * hidden rows.  See lifecycle.c, "Hiding a page of the log", for why this is
 * exactly the view's predicate.
 *
 * Every statement runs with the active snapshot, which the caller pushed
 * once for the whole read: the page and the lifecycle rows that hide its
 * events are read with the SAME snapshot.  A lifecycle operation commits its
 * hiding row and its system event together; with one snapshot the read
 * either sees both (the hidden events are dropped) or neither (the events
 * are returned as they were before it, and its system event, whose position
 * held the horizon back while it was in progress, comes after them).  Two
 * snapshots could see the events with the older one and miss the row that
 * hides them (test/isolation/specs/lifecycle_reader.spec, permutations with
 * "rhide").
 *
 * Never a short page while visible rows remain below the horizon: when
 * hidden rows made the page short and the statement returned all it was
 * asked for (so the table may hold more rows up to the horizon), the read
 * goes on after the last row scanned, until the page is full or the table
 * has no more rows up to the horizon.  A client that gets fewer rows than it
 * asked for may take it as having caught up.  Each further statement asks
 * for the rows still missing, or for twice the rows the previous one found
 * hidden when that is more, so a long run of hidden rows (a truncated
 * stream the cleanup has not removed yet) takes a few statements, not one
 * per missing row; a statement asks for at most ES_MAX_READ_COUNT rows.
 * Rows read beyond max_count are dropped.
 *
 * The rows go straight into the function's result; only a statement that
 * found hidden rows (or read more than the page needs) costs a copy of the
 * page (keep_visible).
 */
static uint64
read_all_hiding(FunctionCallInfo fcinfo, SPIPlanPtr plan, Datum *values,
				const char *nulls, int32 max_count, EsHiding *hiding)
{
	uint64		stored = 0;
	int64		fetch = max_count;

	for (;;)
	{
		DestReceiver *dest = es_hiding_receiver(hiding, srf_receiver(fcinfo));
		const uint64 *hidden;
		uint64		nhidden;
		uint64		scanned;
		int64		last_position;

		values[4] = Int32GetDatum((int32) fetch);
		es_spi_read(plan, values, nulls, dest, 0);
		dest->rDestroy(dest);
		nhidden = es_hiding_resolve(hiding, &hidden, &scanned, &last_position);
		if (nhidden > 0 || stored + scanned > (uint64) max_count)
			stored = keep_visible(fcinfo, stored, hidden, nhidden, max_count);
		else
			stored += scanned;
		if (stored >= (uint64) max_count || scanned < (uint64) fetch)
			break;
		values[0] = Int64GetDatum(last_position);
		fetch = Min(Max((int64) max_count - (int64) stored, 2 * (int64) nhidden),
					ES_MAX_READ_COUNT);
	}
	return stored;
}

PG_FUNCTION_INFO_V1(es_read_all);

/*
 * read_all(after_position bigint DEFAULT 0, max_count integer DEFAULT 1000,
 *			event_types text[] DEFAULT NULL, categories text[] DEFAULT NULL
 *			[, tenant text])
 *	 RETURNS SETOF eventsource.events
 */
Datum
es_read_all(PG_FUNCTION_ARGS)
{
	int64		after;
	int32		max_count;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	int64		head;
	EsOwnerCall owner;
	text	   *tenant;

	es_require_shmem("eventsource.read_all()");
	after = es_arg_int64(fcinfo, 0, "after_position");
	if (after < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_position must not be negative")));
	max_count = arg_max_count(fcinfo, 1);
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';
	else
		es_check_text_array(PG_GETARG_ARRAYTYPE_P(2), "event_types");
	if (PG_ARGISNULL(3))
		nulls[3] = 'n';
	else
		es_check_text_array(PG_GETARG_ARRAYTYPE_P(3), "categories");

	tenant = es_tenant_for_call(fcinfo, 4);
	InitMaterializedSRF(fcinfo, 0);
	es_owner_begin(&owner);

	head = es_horizon();
	if (after < head)
	{
		Oid			types[6] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, INT4OID,
		TEXTOID};
		SPIPlanPtr	plan;
		EsHiding   *hiding;
		uint64		returned;

		/*
		 * One snapshot, taken after the horizon was computed, for every
		 * statement of the read: the SQL version, the page and the lifecycle
		 * rows that hide its events (read_all_hiding).  The page is the
		 * tenant's: index (tenant_id, global_position).
		 */
		PushActiveSnapshot(GetLatestSnapshot());
		plan = es_visible_plan(all_plans,
							   "SELECT * FROM eventsource.events"
							   " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $6"
							   " AND global_position OPERATOR(pg_catalog.>) $1"
							   " AND global_position OPERATOR(pg_catalog.<=) $2"
							   " AND " ES_SQL_EVENT_FILTER(ES_SQL_ANY_PARAM, "", "$3", "$4")
							   " ORDER BY global_position LIMIT $5",
							   6, types, true);
		values[0] = Int64GetDatum(after);
		values[1] = Int64GetDatum(head);
		values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
		values[3] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
		values[4] = Int32GetDatum(max_count);
		values[5] = PointerGetDatum(tenant);
		hiding = es_hiding_begin(after);
		if (hiding == NULL)
		{
			/* nothing after "after" can be hidden: the table is the view */
			es_spi_read(plan, values, nulls, srf_receiver(fcinfo), 0);
			returned = SPI_processed;
		}
		else
			returned = read_all_hiding(fcinfo, plan, values, nulls, max_count, hiding);
		PopActiveSnapshot();
		es_stats_count(tenant, ES_STAT_EVENTS_READ, (int64) returned);
	}
	es_stats_count(tenant, ES_STAT_GLOBAL_READS, 1);

	es_owner_end(&owner);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_head_position);

/* head_position() RETURNS bigint: the safe horizon */
Datum
es_head_position(PG_FUNCTION_ARGS)
{
	EsOwnerCall owner;
	int64		head;

	es_require_shmem("eventsource.head_position()");
	es_become_owner(&owner.save_userid, &owner.save_sec_context);
	head = es_horizon();
	es_restore_user(owner.save_userid, owner.save_sec_context);
	PG_RETURN_INT64(head);
}

PG_FUNCTION_INFO_V1(es_stream_version_sql);

/* stream_version(stream_id text [, tenant text]) RETURNS bigint */
Datum
es_stream_version_sql(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_arg_stream_id(fcinfo, 0);
	text	   *tenant = es_tenant_for_call(fcinfo, 1);
	EsOwnerCall owner;
	int64		version;

	es_owner_begin(&owner);
	version = es_stream_version(tenant, stream_id, false);
	es_owner_end(&owner);
	PG_RETURN_INT64(version);
}
