/*-------------------------------------------------------------------------
 *
 * checkpoint.c
 *	  save_checkpoint(), get_checkpoint(), reset_checkpoint(): named reader
 *	  positions in the global log.
 *
 * A checkpoint only moves forward through save_checkpoint(): a reader that
 * saved position n has processed everything up to n, and going back would
 * replay events it has already applied.  reset_checkpoint() is the explicit
 * way back (a rebuild).
 *
 * Checkpoints are per tenant: the same name in two tenants is two
 * checkpoints (the caller's current tenant, tenant.c, resolved before the
 * function becomes the owner).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "eventsource.h"
#include "tenant.h"

/* two variants each: 1.0 and 1.1 SQL (spi.c, lifecycle.c) */
static SPIPlanPtr save_plans[2];
static SPIPlanPtr get_plans[2];
static SPIPlanPtr reset_plans[2];

static int64
arg_position(FunctionCallInfo fcinfo, int argno)
{
	int64		position = es_arg_int64(fcinfo, argno, "position");

	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must not be negative")));
	return position;
}

/*
 * Read a checkpoint of the tenant; *found says whether it exists.  Caller
 * is connected to SPI and runs as the owner.
 */
static int64
lookup_checkpoint(text *tenant, text *name, bool *found)
{
	Datum		values[2];
	bool		isnull;
	Oid			types[2] = {TEXTOID, TEXTOID};
	SPIPlanPtr	plan;

	plan = es_visible_plan(get_plans,
						   "SELECT position FROM eventsource.checkpoints"
						   " WHERE @TENANT_ID@ OPERATOR(pg_catalog.=) $2"
						   " AND name OPERATOR(pg_catalog.=) $1",
						   2, types, false);
	values[0] = PointerGetDatum(name);
	values[1] = PointerGetDatum(tenant);
	es_spi_read(plan, values, NULL, NULL, 1);
	*found = (SPI_processed > 0);
	if (!*found)
		return 0;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Insert or move a checkpoint.  With "forward_only", a checkpoint is never
 * moved back: 22023 names where it is.
 */
static void
upsert_checkpoint(FunctionCallInfo fcinfo, const char *what, bool forward_only)
{
	char	   *name = es_arg_name(fcinfo, 0, "checkpoint name", ES_MAX_NAME_LEN);
	int64		position = arg_position(fcinfo, 1);
	Datum		values[3];
	EsOwnerCall owner;
	SPIPlanPtr	plan;
	Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};
	text	   *tenant;

	PreventCommandIfReadOnly(what);
	tenant = es_tenant_for_call(fcinfo, 2);
	es_owner_begin(&owner);

#define CHECKPOINT_UPSERT(cols, vals, key) \
	"INSERT INTO eventsource.checkpoints AS c (name, position, updated_at" cols ")" \
	" VALUES ($1, $2, pg_catalog.now()" vals ")" \
	" ON CONFLICT (" key ") DO UPDATE" \
	" SET position = excluded.position, updated_at = excluded.updated_at"
#define CHECKPOINT_FORWARD_ONLY \
	" WHERE c.position OPERATOR(pg_catalog.<=) excluded.position"

	if (forward_only)
		plan = es_prepare_versioned(save_plans,
									CHECKPOINT_UPSERT("", "", "name") CHECKPOINT_FORWARD_ONLY,
									CHECKPOINT_UPSERT(", tenant_id", ", $3", "tenant_id, name")
									CHECKPOINT_FORWARD_ONLY,
									3, types);
	else
		plan = es_prepare_versioned(reset_plans,
									CHECKPOINT_UPSERT("", "", "name"),
									CHECKPOINT_UPSERT(", tenant_id", ", $3", "tenant_id, name"),
									3, types);
	values[0] = PointerGetDatum(cstring_to_text(name));
	values[1] = Int64GetDatum(position);
	values[2] = PointerGetDatum(tenant);
	es_exec_plan(plan, values, NULL, SPI_OK_INSERT);
	if (SPI_processed == 0)
	{
		bool		found;
		int64		current = lookup_checkpoint(tenant, (text *) DatumGetPointer(values[0]),
												&found);

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("checkpoint \"%s\" cannot move backwards", name),
				 errdetail("It is at " INT64_FORMAT "; the new position is " INT64_FORMAT ".",
						   current, position),
				 errhint("Use eventsource.reset_checkpoint() to move a checkpoint back on purpose.")));
	}
	es_owner_end(&owner);
}

PG_FUNCTION_INFO_V1(es_save_checkpoint);

/* save_checkpoint(name text, position bigint [, tenant text]) RETURNS void */
Datum
es_save_checkpoint(PG_FUNCTION_ARGS)
{
	upsert_checkpoint(fcinfo, "eventsource.save_checkpoint()", true);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_get_checkpoint);

/* get_checkpoint(name text [, tenant text]) RETURNS bigint, NULL when there is none */
Datum
es_get_checkpoint(PG_FUNCTION_ARGS)
{
	char	   *name = es_arg_name(fcinfo, 0, "checkpoint name", ES_MAX_NAME_LEN);
	text	   *tenant = es_tenant_for_call(fcinfo, 1);
	EsOwnerCall owner;
	bool		found;
	int64		position;

	es_owner_begin(&owner);
	position = lookup_checkpoint(tenant, cstring_to_text(name), &found);
	es_owner_end(&owner);
	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_INT64(position);
}

PG_FUNCTION_INFO_V1(es_reset_checkpoint);

/* reset_checkpoint(name text, position bigint DEFAULT 0 [, tenant text]) RETURNS void */
Datum
es_reset_checkpoint(PG_FUNCTION_ARGS)
{
	upsert_checkpoint(fcinfo, "eventsource.reset_checkpoint()", false);
	PG_RETURN_VOID();
}
