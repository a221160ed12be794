/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  save_snapshot(), load_snapshot() and load(): aggregates rebuilt from a
 *	  snapshot plus the events after it.
 *
 * Snapshots are kept per (stream, schema version).  Saving one never lets an
 * older snapshot replace a newer one: the new row is inserted, then all but
 * the newest eventsource.snapshots_to_keep of that stream and schema version
 * are deleted, so an old snapshot saved late is the one that goes.  A
 * snapshot of another schema version is ignored by the loaders, not deleted
 * (an application rolling back to the previous schema finds it again).
 *
 * Snapshots are per tenant, like the streams they summarise: every query
 * names the caller's current tenant (tenant.c, resolved before the function
 * becomes the owner).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "eventsource.h"
#include "tenant.h"

/* two variants each: 1.0 and 1.1 SQL (lifecycle.c, es_visible_plan) */
static SPIPlanPtr save_plans[2];
static SPIPlanPtr prune_plans[2];
static SPIPlanPtr load_snapshot_plans[2];
static SPIPlanPtr load_plans[2];

/*
 * A snapshot counts only while the version it was taken of is visible: a
 * snapshot must never bring back the state of hidden events (lifecycle.c).
 */
#define SNAPSHOT_VISIBLE(alias) \
	" EXISTS (SELECT FROM @EVENTS@ v" \
	"  WHERE @TENANT_ID(v)@ OPERATOR(pg_catalog.=) @TENANT_ID(" alias ")@" \
	"  AND v.stream_id OPERATOR(pg_catalog.=) " alias ".stream_id" \
	"  AND v.stream_version OPERATOR(pg_catalog.=) " alias ".stream_version)"


static int32
arg_schema_version(FunctionCallInfo fcinfo, int argno)
{
	int32		v = es_arg_int32(fcinfo, argno, "schema_version");

	if (v < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema_version must be at least 1")));
	return v;
}

PG_FUNCTION_INFO_V1(es_save_snapshot);

/*
 * save_snapshot(stream_id text, stream_version bigint, state jsonb,
 *				 schema_version integer DEFAULT 1 [, tenant text]) RETURNS void
 */
Datum
es_save_snapshot(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_arg_stream_id(fcinfo, 0);
	int64		version = es_arg_int64(fcinfo, 1, "stream_version");
	int32		schema_version = arg_schema_version(fcinfo, 3);
	Jsonb	   *state;
	int64		current;
	Datum		values[5];
	EsOwnerCall owner;
	EsStreamState st;
	text	   *tenant;
	SPIPlanPtr	save_plan;
	SPIPlanPtr	prune_plan;
	Oid			types[5] = {TEXTOID, INT4OID, INT8OID, JSONBOID, TEXTOID};
	Oid			prune_types[4] = {TEXTOID, INT4OID, INT4OID, TEXTOID};

	es_arg_not_null(fcinfo, 2, "state");
	state = PG_GETARG_JSONB_P(2);
	PreventCommandIfReadOnly("eventsource.save_snapshot()");
	tenant = es_tenant_for_call(fcinfo, 4);

	es_owner_begin(&owner);
	/* never a snapshot of erased data (erasure.c) */
	es_erasure_before_snapshot_save(tenant, stream_id);

	es_stream_state(tenant, stream_id, false, &st);
	current = es_visible_version(&st);
	if (version < 1 || version > current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("snapshot version " INT64_FORMAT " is out of range for stream \"%s\"",
						version, text_to_cstring(stream_id)),
				 current == 0 ?
				 errdetail("The stream has no events.") :
				 errdetail("The stream is at version " INT64_FORMAT "; a snapshot must be of a version from 1 to " INT64_FORMAT ".",
						   current, current)));

	if (version <= st.hidden_through)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("snapshot version " INT64_FORMAT " of stream \"%s\" is hidden",
						version, text_to_cstring(stream_id)),
				 errdetail("Versions 1 to " INT64_FORMAT " of the stream are truncated.",
						   st.hidden_through)));

#define SNAPSHOT_UPSERT(cols, vals, key) \
	"INSERT INTO eventsource.snapshots AS s" \
	" (stream_id, schema_version, stream_version, state, created_at" cols ")" \
	" VALUES ($1, $2, $3, $4, pg_catalog.now()" vals ")" \
	" ON CONFLICT (" key "stream_id, schema_version, stream_version)" \
	" DO UPDATE SET state = excluded.state, created_at = excluded.created_at"

	save_plan = es_prepare_versioned(save_plans,
									 SNAPSHOT_UPSERT("", "", ""),
									 SNAPSHOT_UPSERT(", tenant_id", ", $5", "tenant_id, "),
									 5, types);
	prune_plan = es_visible_plan(prune_plans,
								 "DELETE FROM eventsource.snapshots"
								 " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $4"
								 " AND stream_id OPERATOR(pg_catalog.=) $1"
								 " AND schema_version OPERATOR(pg_catalog.=) $2"
								 " AND stream_version OPERATOR(pg_catalog.<)"
								 "  (SELECT stream_version FROM eventsource.snapshots"
								 "   WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $4"
								 "   AND stream_id OPERATOR(pg_catalog.=) $1"
								 "   AND schema_version OPERATOR(pg_catalog.=) $2"
								 "   ORDER BY stream_version DESC"
								 "   OFFSET $3 OPERATOR(pg_catalog.-) 1 LIMIT 1)",
								 4, prune_types, false);
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int32GetDatum(schema_version);
	values[2] = Int64GetDatum(version);
	values[3] = JsonbPGetDatum(state);
	values[4] = PointerGetDatum(tenant);
	es_exec_plan(save_plan, values, NULL, SPI_OK_INSERT);

	values[2] = Int32GetDatum(es_snapshots_to_keep);
	values[3] = PointerGetDatum(tenant);
	es_exec_plan(prune_plan, values, NULL, SPI_OK_DELETE);

	es_owner_end(&owner);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_load_snapshot);

/*
 * load_snapshot(stream_id text, schema_version integer DEFAULT 1 [, tenant text])
 *	 RETURNS TABLE (stream_version bigint, state jsonb, schema_version integer,
 *					created_at timestamptz)
 */
Datum
es_load_snapshot(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_arg_stream_id(fcinfo, 0);
	int32		schema_version = arg_schema_version(fcinfo, 1);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[3];
	EsOwnerCall owner;
	Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
	SPIPlanPtr	plan;
	text	   *tenant = es_tenant_for_call(fcinfo, 2);

	InitMaterializedSRF(fcinfo, 0);
	es_owner_begin(&owner);

	plan = es_visible_plan(load_snapshot_plans,
						   "SELECT s.stream_version, s.state, s.schema_version, s.created_at"
						   " FROM eventsource.snapshots s"
						   " WHERE @TENANT_ID(s)@ OPERATOR(pg_catalog.=) $3"
						   " AND s.stream_id OPERATOR(pg_catalog.=) $1"
						   " AND s.schema_version OPERATOR(pg_catalog.=) $2"
						   " AND" SNAPSHOT_VISIBLE("s")
						   " ORDER BY s.stream_version DESC LIMIT 1",
						   3, types, true);
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int32GetDatum(schema_version);
	values[2] = PointerGetDatum(tenant);
	es_spi_read(plan, values, NULL, NULL, 1);
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);

	es_owner_end(&owner);
	return (Datum) 0;
}

PG_FUNCTION_INFO_V1(es_load);

/*
 * load(stream_id text, schema_version integer DEFAULT 1 [, tenant text])
 *	 RETURNS jsonb
 *
 * One round trip to rebuild an aggregate: the newest snapshot of that schema
 * version (or null) and the events after it, read with one snapshot so the
 * two agree.
 */
Datum
es_load(PG_FUNCTION_ARGS)
{
	text	   *stream_id = es_arg_stream_id(fcinfo, 0);
	int32		schema_version = arg_schema_version(fcinfo, 1);
	Datum		values[3];
	Datum		result;
	bool		isnull;
	EsOwnerCall owner;
	Oid			types[3] = {TEXTOID, INT4OID, TEXTOID};
	SPIPlanPtr	plan;
	text	   *tenant = es_tenant_for_call(fcinfo, 2);

	es_owner_begin(&owner);

	plan = es_visible_plan(load_plans,
						   "WITH s AS ("
						   "  SELECT s.stream_version, s.schema_version, s.state FROM eventsource.snapshots s"
						   "  WHERE @TENANT_ID(s)@ OPERATOR(pg_catalog.=) $3"
						   "  AND s.stream_id OPERATOR(pg_catalog.=) $1"
						   "  AND s.schema_version OPERATOR(pg_catalog.=) $2"
						   "  AND" SNAPSHOT_VISIBLE("s")
						   "  ORDER BY s.stream_version DESC LIMIT 1),"
						   " e AS ("
						   "  SELECT global_position, stream_version, event_id, event_type, data,"
						   "   metadata, recorded_at FROM eventsource.events"
						   "  WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $3"
						   "  AND stream_id OPERATOR(pg_catalog.=) $1"
						   "  AND stream_version OPERATOR(pg_catalog.>) @FLOOR($3)@"
						   "  AND stream_version OPERATOR(pg_catalog.>)"
						   "   COALESCE((SELECT stream_version FROM s), 0))"
						   " SELECT pg_catalog.jsonb_build_object("
						   "  'stream_id', $1,"
						   "  'version', COALESCE((SELECT pg_catalog.max(stream_version) FROM e),"
						   "                      (SELECT stream_version FROM s), 0),"
						   "  'snapshot', (SELECT pg_catalog.jsonb_build_object("
						   "     'version', stream_version, 'schema_version', schema_version,"
						   "     'state', state) FROM s),"
						   "  'events', COALESCE((SELECT pg_catalog.jsonb_agg("
						   "     pg_catalog.jsonb_build_object('position', global_position,"
						   "      'version', stream_version, 'id', event_id, 'type', event_type,"
						   "      'data', data, 'metadata', metadata, 'recorded_at', recorded_at)"
						   "     ORDER BY stream_version) FROM e), '[]'::pg_catalog.jsonb))",
						   3, types, true);
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int32GetDatum(schema_version);
	values[2] = PointerGetDatum(tenant);
	es_spi_read(plan, values, NULL, NULL, 1);
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	result = SPI_datumTransfer(result, false, -1);

	es_owner_end(&owner);
	PG_RETURN_DATUM(result);
}
