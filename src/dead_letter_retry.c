/*-------------------------------------------------------------------------
 *
 * dead_letter_retry.c
 *	  es_worker_retry_dead_letters() as the worker does it: the parked events of its
 *	  partition that were asked for are delivered again, one attempt each,
 *	  in a transaction of their own before the next batch.  Delivered ones
 *	  leave eventsource.dead_letters; the others stay, with the new error.
 *	  Events a lifecycle operation has hidden since they failed are dropped
 *	  instead of retried; the others are delivered as the log holds them
 *	  now (an event erased since it failed goes out redacted), not as the
 *	  dead letter copied them, each in its own tenant (es_deliver_one: the
 *	  handler runs with eventsource.tenant set to the event's).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lmgr.h"
#include "utils/builtins.h"

#include "subscription.h"
#include "worker.h"

static SPIPlanPtr retry_select_plans[2];	/* 1.0 and 1.1 SQL (es_visible_plan) */
static SPIPlanPtr retry_done_plan = NULL;
static SPIPlanPtr retry_again_plan = NULL;

typedef struct EsRetriedLetter
{
	Datum		id;
	EsCallError *err;
} EsRetriedLetter;

/* A dead letter failed again: its new error, and one more retry. */
static void
update_dead_letter(EsEventRef *ev, void *arg)
{
	EsRetriedLetter *r = arg;
	Datum		again[5];
	EsCallError shown;

	again[0] = r->id;
	es_error_as_copied(ev, r->err, &shown);
	es_error_columns(&again[1], &shown);
	es_exec_plan(retry_again_plan, again, NULL, SPI_OK_UPDATE);
}

/*
 * A row of the retry query (the dead letter's id and its event's row as the
 * log holds it now, described by "desc") as a row of eventsource.events:
 * each column of events takes the row's column of the same name, null if it
 * has none.  By name, not by position, so a column a release adds cannot
 * land in another's place.
 */
static HeapTuple
dead_letter_as_event(HeapTuple row, TupleDesc desc)
{
	int			natts = es_cfg.events_desc->natts;
	Datum	   *values = palloc0(natts * sizeof(Datum));
	bool	   *nulls = palloc(natts * sizeof(bool));

	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(es_cfg.events_desc, i);
		int			col;

		nulls[i] = true;
		if (att->attisdropped)
			continue;
		col = SPI_fnumber(desc, NameStr(att->attname));
		if (col <= 0)
			continue;
		if (SPI_gettypeid(desc, col) != att->atttypid)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of the retried event is of type %s, of eventsource.events %s",
							NameStr(att->attname), format_type_be(SPI_gettypeid(desc, col)),
							format_type_be(att->atttypid))));
		values[i] = SPI_getbinval(row, desc, col, &nulls[i]);
	}
	return heap_form_tuple(es_cfg.events_desc, values, nulls);
}

/*
 * Before a retry: drop the dead letters (of this partition, asked to be
 * retried) whose event a lifecycle operation has hidden since it failed.
 * Every read path skips a hidden event, so a retry must not hand it to the
 * handler again (after the stream's $StreamDeleted it would re-create what
 * the handler just removed).  On a database still on the 1.0 SQL nothing
 * can be hidden and nothing is dropped.  "values" are the subscription's
 * name and partition.  Caller is in the retry's transaction, in SPI.
 */
static void
drop_hidden_dead_letters(Datum *values)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			types[2] = {TEXTOID, INT4OID};
	SPIPlanPtr	plan;
	uint64		n;

	if (!es_lifecycle_installed())
		return;
	/* the visible events: lifecycle.c, es_visible_plan() */
	plan = es_visible_plan(plans,
						   "DELETE FROM eventsource.dead_letters d"
						   " WHERE d.id OPERATOR(pg_catalog.=) ANY (ARRAY("
						   "   SELECT x.id FROM eventsource.dead_letters x"
						   "   WHERE x.subscription OPERATOR(pg_catalog.=) $1"
						   "   AND x.partition OPERATOR(pg_catalog.=) $2 AND x.retry_requested"
						   "   AND NOT EXISTS (SELECT FROM @EVENTS@ v"
						   "     WHERE v.global_position OPERATOR(pg_catalog.=) x.global_position)"
						   "   FOR UPDATE SKIP LOCKED))",
						   2, types, true);
	es_exec_plan(plan, values, NULL, SPI_OK_DELETE);
	n = SPI_processed;
	if (n == 0)
		return;
	es_slot_dead_letters_gone(es_worker.slot, 0, (int64) n);
	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" partition %d: dropped " UINT64_FORMAT " dead letters of events hidden by a lifecycle operation instead of retrying them",
					es_worker.name, es_worker.partition, n)));
}

/*
 * es_worker_retry_dead_letters(): deliver the parked events that were asked for, one
 * attempt each.  Delivered ones leave the table; the others stay, with the
 * new error.
 */
void
es_worker_retry_dead_letters(void)
{
	Datum		values[2];
	Oid			select_types[2] = {TEXTOID, INT4OID};
	SPIPlanPtr	retry_select_plan;
	int			n;

	if (!es_slot_take_retry_request(es_worker.slot))
		return;

	es_worker_tx_begin("eventsource: retrying dead letters");
	/* the events we build below must have the row type the handler takes */
	LockRelationOid(es_catalog()->events_oid, AccessShareLock);
	if (!es_worker_follow_sql_version())
	{
		es_worker_tx_commit();			/* gone: the next batch says so */
		return;
	}
	if (!es_worker_tenant_still_allowed())
	{
		es_worker_tx_commit();
		es_fail_invalid_config();
	}
	if (retry_again_plan == NULL)
	{
		Oid			done_types[1] = {INT8OID};
		Oid			again_types[5] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

		/* both or none: the last assignment marks them ready */
		retry_done_plan = es_prepare("DELETE FROM eventsource.dead_letters WHERE id OPERATOR(pg_catalog.=) $1",
									 1, done_types);
		retry_again_plan = es_prepare("UPDATE eventsource.dead_letters SET retry_requested = false,"
									  " retry_count = retry_count OPERATOR(pg_catalog.+) 1,"
									  " error_message = $2, error_sqlstate = $3, error_category = $4,"
									  " error_severity = $5, last_failed_at = pg_catalog.now()"
									  " WHERE id OPERATOR(pg_catalog.=) $1",
									  5, again_types);
	}
	values[0] = CStringGetTextDatum(es_worker.name);
	values[1] = Int32GetDatum(es_worker.partition);
	drop_hidden_dead_letters(values);

	/*
	 * The event as the log holds it now, not the copy the dead letter kept:
	 * an erasure since it failed redacted the row (and the copy), and the
	 * handler must get the redacted event.  A dead letter whose event is
	 * hidden (since the DELETE above) is not retried now.
	 */
	retry_select_plan = es_visible_plan(retry_select_plans,
										"SELECT d.id, v.* FROM eventsource.dead_letters d"
										" JOIN @EVENTS@ v"
										"  ON v.global_position OPERATOR(pg_catalog.=) d.global_position"
										" WHERE d.subscription OPERATOR(pg_catalog.=) $1"
										" AND d.partition OPERATOR(pg_catalog.=) $2 AND d.retry_requested"
										" ORDER BY d.id FOR UPDATE OF d SKIP LOCKED",
										2, select_types, true);
	es_exec_plan(retry_select_plan, values, NULL, SPI_OK_SELECT);
	n = (int) SPI_processed;
	if (n > 0)
	{
		SPITupleTable *tab = SPI_tuptable;

		es_handler_arm_timer();
		for (int i = 0; i < n; i++)
		{
			HeapTuple	row = tab->vals[i];
			bool		isnull;
			Datum		id = SPI_getbinval(row, tab->tupdesc, SPI_fnumber(tab->tupdesc, "id"), &isnull);
			EsEventRef	ev;
			EsCallError err;

			ev.tuple = dead_letter_as_event(row, tab->tupdesc);
			ev.position = DatumGetInt64(SPI_getbinval(row, tab->tupdesc,
													  SPI_fnumber(tab->tupdesc, "global_position"), &isnull));
			ev.recorded_at = DatumGetTimestampTz(SPI_getbinval(row, tab->tupdesc,
															   SPI_fnumber(tab->tupdesc, "recorded_at"), &isnull));
			values[0] = id;
			if (es_deliver_one(&ev, &err) == ES_CALL_OK)
			{
				es_exec_plan(retry_done_plan, values, NULL, SPI_OK_DELETE);
				es_slot_dead_letters_gone(es_worker.slot, 1, 0);
			}
			else
			{
				EsRetriedLetter again = {id, &err};

				es_record_error(&ev, &err, 1, false);
				(void) es_run_bookkeeping("record the new error of a dead letter", &ev,
									   update_dead_letter, &again);
			}
		}
		es_handler_disarm_timer();
	}
	es_worker_tx_commit();
}

