/*-------------------------------------------------------------------------
 *
 * wait_for_subscription.c
 *	  wait_for_subscription(): block until every partition of a
 *	  subscription has checkpointed at or past a position, or a timeout.
 *
 * The saved checkpoints (eventsource.subscription_partitions) are read
 * first, as the caller's transaction sees them; then the caller sleeps on
 * the condition variable of the partition furthest behind, which its
 * worker broadcasts after each checkpoint commit.  The slots are read under
 * the WORKERS LWLock (shared) and each slot's spinlock, both held only for
 * the copy.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "subscription.h"
#include "tenant.h"

/*
 * The lowest checkpoint over the subscription's partitions in shared
 * memory, and the condition variable of that partition.  Returns false when
 * the subscription has no slot.
 */
static bool
lowest_checkpoint(const char *name, int64 *lowest, ConditionVariable **cv)
{
	bool		found = false;

	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];
		int64		cp;

		if (!slot->in_use || slot->dboid != MyDatabaseId || strcmp(slot->name, name) != 0)
			continue;
		SpinLockAcquire(&slot->mutex);
		cp = slot->checkpoint;
		SpinLockRelease(&slot->mutex);
		if (!found || cp < *lowest)
		{
			*lowest = cp;
			*cv = &slot->progress_cv;
		}
		found = true;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return found;
}

PG_FUNCTION_INFO_V1(es_wait_for_subscription);

/*
 * wait_for_subscription(name, position, timeout) RETURNS boolean: true once
 * every partition's checkpoint is at or past "position", false when
 * "timeout" runs out first.  Sleeps on the partitions' condition variable,
 * which the workers broadcast after each checkpoint commit.  A role bound
 * to tenants may wait only for its tenants' subscriptions (42501).
 *
 * The saved checkpoints are looked at first: a slot starts at 0 after a
 * server restart and only learns its checkpoint when its worker runs, so a
 * paused or failed subscription would otherwise never be seen as there.
 */
Datum
es_wait_for_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = es_arg_name(fcinfo, 0, "subscription name", ES_MAX_SUBSCRIPTION_NAME_LEN);
	int64		position = es_arg_int64(fcinfo, 1, "position");
	Interval   *timeout;
	int64		timeout_us;
	TimestampTz deadline;
	bool		reached = false;
	static SPIPlanPtr plans[2] = {NULL, NULL};	/* 1.0 and 1.1 SQL */
	SPIPlanPtr	plan;
	Datum		values[2];
	EsOwnerCall owner;
	Oid			caller = GetUserId();
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *tenant = NULL;	/* NULL: cross-tenant */
	bool		exists;
	bool		saved_reached = false;

	es_require_shmem("eventsource.wait_for_subscription()");
	es_arg_not_null(fcinfo, 2, "timeout");
	timeout = PG_GETARG_INTERVAL_P(2);
	if (!es_interval_us(timeout, &timeout_us))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout is out of range")));
	if (timeout_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must not be negative")));

	/*
	 * The subscription must exist (as the caller's transaction sees it);
	 * and are its saved checkpoints already there?
	 */
	es_owner_begin(&owner);
	{
		Oid			types[2] = {TEXTOID, INT8OID};

#define ES_SAVED_QUERY(tenant) \
	"SELECT pg_catalog.bool_and(p.position OPERATOR(pg_catalog.>=) $2), " tenant \
	" FROM eventsource.subscriptions s" \
	" JOIN eventsource.subscription_partitions p" \
	"   ON p.subscription OPERATOR(pg_catalog.=) s.name" \
	" WHERE s.name OPERATOR(pg_catalog.=) $1" \
	" GROUP BY s.name, " tenant
		plan = es_prepare_versioned(plans, ES_SAVED_QUERY("NULL::pg_catalog.text"),
									ES_SAVED_QUERY("s.tenant"), 2, types);
#undef ES_SAVED_QUERY
	}
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(position);
	es_spi_read(plan, values, NULL, NULL, 1);
	exists = SPI_processed > 0;
	if (exists)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		saved_reached = !isnull && DatumGetBool(d);
		tenant = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		if (tenant != NULL)
			tenant = MemoryContextStrdup(caller_cxt, tenant);
	}
	es_owner_end(&owner);
	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));

	/*
	 * A role bound to tenants waits only for the subscriptions of its
	 * tenants (not for a cross-tenant one either): how far another
	 * tenant's subscription got is that tenant's business.
	 */
	if (es_sql_version() >= ES_SQL_1_1 && !es_tenant_caller_may_use(tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not wait for subscription \"%s\"",
						GetUserNameFromId(caller, false), name),
				 errdetail("The role, or the session's role, is bound to tenants (eventsource.tenant_roles); the subscription is not of one of them.")));
	if (saved_reached)
		PG_RETURN_BOOL(true);

	deadline = GetCurrentTimestamp() + Min(timeout_us, (int64) 365 * USECS_PER_DAY);
	for (;;)
	{
		int64		lowest = 0;
		ConditionVariable *cv = NULL;
		TimestampTz now;

		if (!lowest_checkpoint(name, &lowest, &cv))
			break;				/* not running here (e.g. dropped meanwhile) */
		if (lowest >= position)
		{
			reached = true;
			break;
		}
		now = GetCurrentTimestamp();
		if (now >= deadline)
			break;
		ConditionVariablePrepareToSleep(cv);
		if (lowest_checkpoint(name, &lowest, &cv) && lowest >= position)
		{
			reached = true;
			break;
		}
		(void) ConditionVariableTimedSleep(cv, Max((deadline - now) / 1000, 1),
										   PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
	ConditionVariableCancelSleep();
	PG_RETURN_BOOL(reached);
}
