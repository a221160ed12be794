/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  The delivery state machine of a subscription worker: delivers the
 *	  events of one subscription partition to its handler, in position
 *	  order, never skipping.  Owns the delivery state (EsDelivery, below);
 *	  the main loop (worker.c) asks it for batches and for how long to wait.
 *
 * Each batch is one transaction (every_batch): lock the partition's
 * checkpoint row, compute the safe horizon, read up to batch_size events
 * after the checkpoint and at or below the horizon, call the handler for
 * each in a subtransaction, move the checkpoint, commit.  The handler's
 * writes and the checkpoint commit together, so after any crash the read
 * model matches the checkpoint: nothing is applied twice, nothing is lost.
 * every_event commits after each event; periodic commits the handler's
 * writes every batch but the checkpoint only every checkpoint_interval
 * (at-least-once).  Events that the subscription's filters or partition
 * leave out still move the checkpoint.
 *
 * Failures: a failed call is retried after retry_backoff * 2^k (capped at
 * ES_MAX_BACKOFF_MS), waiting outside any transaction after committing the
 * events before it.  After max_retries the event goes to the dead letters
 * in the transaction that moves the checkpoint past it, or, with
 * continue_on_error off, the partition stops in state failed before it.
 * circuit_breaker_threshold consecutive failed events open the breaker for
 * circuit_breaker_reset; then the next event is a probe: delivered, the
 * breaker closes; failed again, it opens again.
 *
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "schema.h"
#include "subscription.h"
#include "trace.h"
#include "worker.h"

#define ES_MAX_BACKOFF_MS		(5 * 60 * 1000)

/*
 * The delivery state: where this partition is and what it waits for.  One
 * instance (dlv), private to this file: written by the checkpoint and
 * delivery functions below; the main loop (worker.c) sees it only through
 * es_delivery_wait_ms(), es_delivery_unsaved(), es_delivery_rolled_back()
 * and the stop paths (es_delivery_final_checkpoint, the getters for the
 * shutdown record); the dead letter gets first_failed_at as an argument.
 *
 * States and transitions:
 *
 *	 unsynced     position_known false: at start, after a batch rolled back
 *	   |          (an error of our own, a forced stop), after a reset seen
 *	   |          between two every_event commits.  The next batch takes
 *	   |          position from the checkpoint row (es_delivery_batch).
 *	   v
 *	 delivering   position_known; no event being retried; breaker closed.
 *	   |          Each batch moves position past what it delivered, and
 *	   |          saved_position when it writes the checkpoint (every batch,
 *	   |          every event, or every checkpoint_interval: checkpoint_due).
 *	   |          The row moving under us (reset_subscription: position or
 *	   |          resets differ from what we saved) puts us back in sync
 *	   |          with the row at the next batch.
 *	   |
 *	   +-- an event fails --> retrying: retry_position is the event,
 *	   |          retry_attempts its failed calls, first_failed_at the
 *	   |          first; no batch before retry_not_before (retry_backoff *
 *	   |          2^k, capped).  Delivered: back to delivering.  Retries
 *	   |          exhausted: continue_on_error off → failed (the worker
 *	   |          exits; the slot says failed); on → dead-lettered and
 *	   |          passed (position moves past it), or, should parking it
 *	   |          fail, retrying again.
 *	   |
 *	   +-- consecutive_failed dead letters reach circuit_breaker_threshold
 *	   |          --> breaker open: no batch before breaker_open_until.
 *	   |          Then half-open (breaker_probe): the next batch is one
 *	   |          event; delivered → closed (delivering), dead-lettered →
 *	   |          open again.
 *	   v
 *	 stopping     es_shutdown_requested: checkpoint_due() says every batch
 *	              writes its checkpoint (checkpoints_saved_in_drain counts
 *	              them), and the stop path writes a periodic subscription's
 *	              last position (es_delivery_final_checkpoint).
 *
 * resets_seen is the row's reset count when we last read it; position and
 * saved_position mean nothing while position_known is false.
 */
typedef struct EsDelivery
{
	/* where we are */
	bool		position_known; /* false: take position from the row */
	int64		position;		/* everything <= position is done */
	int64		saved_position; /* what the checkpoint row says */
	TimestampTz saved_at;		/* when we last wrote it (periodic) */
	int64		resets_seen;	/* the row's "resets" when we last read it */

	/* the event being retried (0: none) */
	int64		retry_position;
	int			retry_attempts; /* failed calls of it so far */
	TimestampTz retry_not_before;	/* also: after an error of our own */
	TimestampTz first_failed_at;

	/* the circuit breaker */
	int64		consecutive_failed; /* dead-lettered events in a row */
	TimestampTz breaker_open_until; /* 0: closed */
	bool		breaker_probe;	/* half-open: the next batch is one event */

	/* a stop */
	int			checkpoints_saved_in_drain;
} EsDelivery;

static EsDelivery dlv = {.resets_seen = -1};

static SPIPlanPtr lock_plan = NULL;
static SPIPlanPtr read_plans[2];	/* 1.0 and 1.1 SQL (es_visible_plan) */
static SPIPlanPtr tenant_read_plans[2]; /* of a tenant-scoped subscription */
static SPIPlanPtr write_plan = NULL;

/* ---------------------------------------------------------------------
 * checkpoint
 * ---------------------------------------------------------------------
 */

static int64
col_int64(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;

	return DatumGetInt64(SPI_getbinval(tup, desc, col, &isnull));
}

/*
 * Read and lock this partition's row (its checkpoint) until the transaction
 * ends: reset_subscription() and drop_subscription() wait for the batch.
 * Returns false when the row is gone or belongs to a newer subscription of
 * the same name: ours was dropped.
 */
static bool
read_checkpoint(int64 *pos, int64 *resets)
{
	Datum		values[3];
	Oid			types[3] = {TEXTOID, INT4OID, INT8OID};

	if (!es_worker_extension_is_ours())
		return false;
	if (lock_plan == NULL)
		lock_plan = es_prepare("SELECT position, resets FROM eventsource.subscription_partitions"
							   " WHERE subscription OPERATOR(pg_catalog.=) $1"
							   " AND partition OPERATOR(pg_catalog.=) $2"
							   " AND subscription_id OPERATOR(pg_catalog.=) $3 FOR UPDATE",
							   3, types);
	es_worker_row_key(values);
	es_exec_plan(lock_plan, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	/*
	 * Again after the row lock: a DROP EXTENSION and CREATE EXTENSION in one
	 * transaction that committed while we waited for the lock replaced the
	 * table under our saved plan, which then found the new store's row of
	 * the same name, partition and id (ids start again at 1).  The lock wait
	 * processed the invalidations, so the catalog lookup now sees the new
	 * extension.
	 */
	if (!es_worker_extension_is_ours())
		return false;
	*pos = col_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	*resets = col_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/*
 * Write the checkpoint in the current transaction, which holds the row's
 * lock (read_checkpoint).
 */
static void
write_checkpoint(int64 pos)
{
	Datum		values[4];
	Oid			types[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};

	if (write_plan == NULL)
		write_plan = es_prepare("UPDATE eventsource.subscription_partitions SET position = $4,"
								" checkpointed_at = pg_catalog.now()"
								" WHERE subscription OPERATOR(pg_catalog.=) $1"
								" AND partition OPERATOR(pg_catalog.=) $2"
								" AND subscription_id OPERATOR(pg_catalog.=) $3",
								4, types);
	es_worker_row_key(values);
	values[3] = Int64GetDatum(pos);
	es_exec_plan(write_plan, values, NULL, SPI_OK_UPDATE);
	dlv.saved_position = pos;
	dlv.saved_at = GetCurrentTimestamp();
	if (es_shutdown_requested)
		dlv.checkpoints_saved_in_drain++;
}

/* Is a checkpoint write due (the strategy says when)? */
static bool
checkpoint_due(void)
{
	if (dlv.position == dlv.saved_position)
		return false;
	if (es_cfg.strategy != ES_PERIODIC || es_shutdown_requested)
		return true;
	return GetCurrentTimestamp() >= dlv.saved_at + es_cfg.checkpoint_interval_ms * 1000;
}

/* ---------------------------------------------------------------------
 * delivery
 * ---------------------------------------------------------------------
 */

static int64
backoff_ms(int attempts)
{
	int64		ms = es_cfg.retry_backoff_ms;

	for (int i = 1; i < attempts && ms < ES_MAX_BACKOFF_MS; i++)
		ms *= 2;
	return Min(ms, (int64) ES_MAX_BACKOFF_MS);
}

/*
 * The tenant a handler call for this event runs in: the event's own (for
 * a tenant-scoped subscription, its tenant), palloc'd; NULL on the 1.0 SQL,
 * which has no tenant but the default (the setting is then left alone).
 */
static const char *
event_tenant(EsEventRef *ev)
{
	bool		isnull;
	Datum		d;

	if (es_cfg.tenant != NULL)
		return es_cfg.tenant;
	if (es_cfg.tenant_attno == 0)
		return NULL;
	d = heap_getattr(ev->tuple, es_cfg.tenant_attno, es_cfg.events_desc, &isnull);
	return isnull ? NULL : TextDatumGetCString(d);
}

/* Call the handler for one event (a 1-element array for batch handlers). */
EsCallResult
es_deliver_one(EsEventRef *ev, EsCallError *err)
{
	Datum		arg = heap_copy_tuple_as_datum(ev->tuple, es_cfg.events_desc);

	if (es_cfg.batch_handler)
		arg = PointerGetDatum(construct_array(&arg, 1, es_cfg.events_type, -1, false, TYPALIGN_DOUBLE));
	es_trace_set_retry(ev->position == dlv.retry_position ? dlv.retry_attempts : 0);
	return es_call_handler(&es_cfg.handler_finfo, arg, es_cfg.owner, event_tenant(ev),
						   es_cfg.processing_timeout_ms,
						   es_worker.name, ev->tuple, es_cfg.events_desc, err);
}

/*
 * How many events from events[0] on (at most n) a batch handler gets in
 * one call: all of them, but a cross-tenant subscription's call holds one
 * tenant's events only, since the call runs in one tenant (its appends land
 * there).  The batch is cut where the tenant changes.
 */
static int
same_tenant_run(EsEventRef *events, int n)
{
	const char *first;

	if (es_cfg.tenant != NULL || es_cfg.tenant_attno == 0 || n <= 1)
		return n;
	first = event_tenant(&events[0]);
	for (int i = 1; i < n; i++)
	{
		const char *t = event_tenant(&events[i]);

		if (first == NULL || t == NULL || strcmp(first, t) != 0)
			return i;
	}
	return n;
}

/* Call a batch handler once with events[0 .. n-1], all of one tenant. */
static EsCallResult
deliver_all(EsEventRef *events, int n, EsCallError *err)
{
	Datum	   *elems = palloc(sizeof(Datum) * n);

	for (int i = 0; i < n; i++)
		elems[i] = heap_copy_tuple_as_datum(events[i].tuple, es_cfg.events_desc);
	return es_call_handler(&es_cfg.handler_finfo,
						   PointerGetDatum(construct_array(elems, n, es_cfg.events_type, -1,
														   false, TYPALIGN_DOUBLE)),
						   es_cfg.owner, event_tenant(&events[0]),
						   es_cfg.processing_timeout_ms, es_worker.name, NULL, NULL, err);
}

/*
 * Read the next events: after the checkpoint, at or below the horizon, in
 * this partition, passing the filters.  Copies them into es_worker.batch_cxt.  Sets
 * *scanned_to to the position up to which everything was looked at.
 */
static int
fetch_events(int64 after, int64 head, int limit, EsEventRef **out, int64 *scanned_to)
{
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	MemoryContext old;
	int			n;
	SPIPlanPtr	read_plan;
	Oid			types[8] = {INT8OID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, INT4OID, INT4OID,
	INT4OID, TEXTOID};

	/*
	 * The visible events only: lifecycle.c, es_visible_plan().  A
	 * tenant-scoped subscription reads its tenant's key (tenant_id,
	 * global_position): its cost does not grow with the other tenants'
	 * events.  A cross-tenant one reads the log's.
	 */
#define ES_SQL_FETCH(tenant_first, tenant) \
	"SELECT * FROM @EVENTS@ WHERE " tenant_first \
	" global_position OPERATOR(pg_catalog.>) $1" \
	" AND global_position OPERATOR(pg_catalog.<=) $2" \
	" AND " ES_SQL_SUBSCRIPTION_EVENTS(ES_SQL_ANY_PARAM, "", "$3", "$4", "$5", "$6", \
									   "@TENANT_ID@", tenant) \
	" ORDER BY global_position LIMIT $7"
	if (es_cfg.tenant != NULL)
		read_plan = es_visible_plan(tenant_read_plans,
									ES_SQL_FETCH("@TENANT_ID@ OPERATOR(pg_catalog.=) $8 AND", "$8"),
									8, types, true);
	else
		read_plan = es_visible_plan(read_plans, ES_SQL_FETCH("", "NULL::pg_catalog.text"),
									7, types, true);
#undef ES_SQL_FETCH
	values[0] = Int64GetDatum(after);
	values[1] = Int64GetDatum(head);
	values[2] = es_cfg.event_types;
	nulls[2] = es_cfg.event_types ? ' ' : 'n';
	values[3] = es_cfg.categories;
	nulls[3] = es_cfg.categories ? ' ' : 'n';
	values[4] = Int32GetDatum(es_worker.partitions);
	values[5] = Int32GetDatum(es_worker.partition);
	values[6] = Int32GetDatum(limit);
	values[7] = es_cfg.tenant ? CStringGetTextDatum(es_cfg.tenant) : (Datum) 0;
	nulls[7] = es_cfg.tenant ? ' ' : 'n';
	es_spi_read_latest(read_plan, values, nulls, NULL, 0);

	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(es_worker.batch_cxt);
	*out = palloc(sizeof(EsEventRef) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		(*out)[i].tuple = heap_copytuple(tup);
		(*out)[i].position = DatumGetInt64(heap_getattr(tup, Anum_es_events_global_position, SPI_tuptable->tupdesc, &isnull));
		(*out)[i].recorded_at = DatumGetTimestampTz(heap_getattr(tup, Anum_es_events_recorded_at, SPI_tuptable->tupdesc, &isnull));
	}
	MemoryContextSwitchTo(old);

	/* fewer than asked: everything up to the horizon was looked at */
	*scanned_to = (n < limit) ? head : (*out)[n - 1].position;
	return n;
}

/* After a success: the breaker closes, counters move. */
static void
note_success(EsEventRef *ev, int n)
{
	dlv.position = ev->position;
	dlv.consecutive_failed = 0;
	dlv.breaker_probe = false;
	if (dlv.retry_position != 0 && ev->position >= dlv.retry_position)
	{
		dlv.retry_position = 0;
		dlv.retry_attempts = 0;
		dlv.first_failed_at = 0;
	}
	es_slot_delivered(es_worker.slot, ev->position, ev->recorded_at, n);
}

/* The event at "position" is retried after its "attempt"-th failed call. */
static void
retry_later(int64 position, int attempt)
{
	dlv.retry_position = position;
	dlv.retry_attempts = attempt;
	dlv.retry_not_before = GetCurrentTimestamp() + backoff_ms(attempt) * 1000;
}

/*
 * An event failed.  Returns the batch outcome to stop with, or BATCH_DONE to
 * go on with the next event (it was dead-lettered).  In the batch's
 * transaction.
 */
static EsBatchOutcome
handle_failure(EsEventRef *ev, EsCallError *err)
{
	int			attempt = (ev->position == dlv.retry_position ? dlv.retry_attempts : 0) + 1;
	bool		will_retry = attempt <= es_cfg.max_retries;

	if (dlv.first_failed_at == 0 || ev->position != dlv.retry_position)
		dlv.first_failed_at = GetCurrentTimestamp();
	es_record_error(ev, err, attempt, will_retry);

	if (will_retry)
	{
		retry_later(ev->position, attempt);
		return BATCH_RETRY_WAIT;
	}

	/* retries exhausted */
	dlv.retry_position = 0;
	dlv.retry_attempts = 0;
	if (!es_cfg.continue_on_error)
		return BATCH_FAILED;

	if (!es_dead_letter(ev, err, attempt - 1, dlv.first_failed_at))
	{
		/* not parked, so not passed: try it again later */
		retry_later(ev->position, attempt);
		return BATCH_RETRY_WAIT;
	}
	dlv.first_failed_at = 0;
	dlv.position = ev->position;
	dlv.consecutive_failed++;
	if (dlv.breaker_probe ||
		(es_cfg.breaker_threshold > 0 && dlv.consecutive_failed >= es_cfg.breaker_threshold))
	{
		dlv.breaker_probe = false;
		dlv.breaker_open_until = GetCurrentTimestamp() + es_cfg.breaker_reset_ms * 1000;
		es_slot_set_circuit_open_until(es_worker.slot, dlv.breaker_open_until);
		ereport(LOG,
				(errmsg("eventsource: subscription \"%s\" partition %d: circuit breaker open for " INT64_FORMAT " ms after " INT64_FORMAT " consecutive failed events",
						es_worker.name, es_worker.partition, es_cfg.breaker_reset_ms, dlv.consecutive_failed)));
		return BATCH_BREAKER_OPEN;
	}
	return BATCH_DONE;
}

/* Commit what the batch did: checkpoint (if due), then the transaction. */
static void
finish_batch(void)
{
	if (checkpoint_due())
		write_checkpoint(dlv.position);
	es_worker_tx_commit();
	es_slot_checkpointed(es_worker.slot, dlv.saved_position);
	es_slot_set_progress(es_worker.slot, dlv.position, dlv.resets_seen);	/* for the status */
}

/*
 * Lock eventsource.events and our checkpoint row for this transaction, and
 * read the row: false when it is gone (the subscription was dropped).
 * *moved says whether the row is not where we left it: reset_subscription()
 * moved it (its reset count changed, even when it names the very position
 * we last saved).  We hold the row's lock until the transaction ends, so no
 * reset lands between this read and our write.  Lock order
 * (CONTRIBUTING.md): eventsource.events, then our row.
 */
static bool
lock_checkpoint(int64 *row_position, bool *moved)
{
	int64		resets;

	LockRelationOid(es_catalog()->events_oid, AccessShareLock);
	if (!read_checkpoint(row_position, &resets))
		return false;
	*moved = !dlv.position_known || *row_position != dlv.saved_position ||
		resets != dlv.resets_seen;
	dlv.resets_seen = resets;
	return true;
}

/*
 * every_event: commit the event just delivered (its effects and its
 * checkpoint), and open the next event's transaction.  BATCH_DONE to go on;
 * BATCH_GONE; or BATCH_ENDED_EARLY when the rest of the batch must be read
 * again: reset_subscription() moved our row in between (the next batch
 * follows it), or an update of the SQL objects committed (the rest was read
 * with the old row type; the next batch follows the update).  Leaves a
 * transaction open whatever it returns.
 */
static EsBatchOutcome
next_event_transaction(void)
{
	int64		row_position;
	bool		moved;

	finish_batch();
	es_worker_tx_begin("eventsource: delivering events");
	if (!lock_checkpoint(&row_position, &moved))
		return BATCH_GONE;
	if (moved)
	{
		dlv.position_known = false;
		return BATCH_ENDED_EARLY;
	}
	if (es_worker_sql_version_moved())
		return BATCH_ENDED_EARLY;
	return BATCH_DONE;
}

/*
 * Deliver the batch's events in order, in the open transaction; the one
 * delivery loop.  A batch handler gets them all in one call unless an event
 * is being retried or the breaker probes; should that call fail, they are
 * delivered again one at a time to find the event that fails.  Sets
 * *delivered (events delivered and committed or to be committed), and
 * *failed and *err for the event a BATCH_FAILED stops at.  Returns with a
 * transaction open and the handler timer armed.
 */
static EsBatchOutcome
deliver_batch(EsEventRef *events, int n, int *delivered, int *failed,
			  EsCallError *err)
{
	bool		whole = es_cfg.batch_handler && dlv.retry_position == 0 &&
		!dlv.breaker_probe && n > 0;
	int			i = 0;

	while (i < n)
	{
		int			count = whole ? same_tenant_run(&events[i], n - i) : 1;
		EsCallResult r;
		EsBatchOutcome outcome = BATCH_DONE;

		if (es_drain_expired())
			return BATCH_FORCED;
		r = whole ? deliver_all(&events[i], count, err) : es_deliver_one(&events[i], err);
		if (r == ES_CALL_DRAIN_EXPIRED)
			return BATCH_FORCED;
		if (r == ES_CALL_OK)
		{
			note_success(&events[i + count - 1], count);
			*delivered += count;
		}
		else if (whole)
		{
			/* find the poison event: deliver them one at a time */
			es_note_batch_error(err);
			whole = false;
			continue;
		}
		else
		{
			*failed = i;
			outcome = handle_failure(&events[i], err);
			if (outcome != BATCH_DONE)
				return outcome;
		}
		i += count;

		/* every_event: this event's effects and checkpoint commit now */
		if (es_cfg.strategy == ES_EVERY_EVENT && i < n)
		{
			outcome = next_event_transaction();
			if (outcome != BATCH_DONE)
				return outcome;
		}
	}
	return BATCH_DONE;
}

/*
 * One batch, in one transaction (every_event: one per event).  See the file
 * header and the delivery state above.  Every path disarms the handler
 * timer, armed only around deliver_batch().
 */
EsBatchOutcome
es_delivery_batch(void)
{
	EsEventRef *events;
	int64		head;
	int64		scanned_to;
	int64		row_position;
	bool		moved;
	int			n;
	int			delivered = 0;
	int			failed = -1;
	EsCallError err;
	EsBatchOutcome outcome;

	MemoryContextReset(es_worker.batch_cxt);
	es_worker_tx_begin("eventsource: reading events");
	if (!lock_checkpoint(&row_position, &moved) || !es_worker_follow_sql_version())
	{
		es_worker_tx_commit();
		return BATCH_GONE;
	}
	if (!es_worker_tenant_still_allowed())
	{
		/* the owner lost its tenant: never deliver another event */
		es_worker_tx_commit();
		es_fail_invalid_config();
	}

	/*
	 * Where are we?  The row says, unless we are ahead of it (periodic keeps
	 * its position in memory between checkpoints) and nobody moved it.
	 */
	if (moved)
	{
		dlv.position = row_position;
		dlv.retry_position = 0;
		dlv.retry_attempts = 0;
	}
	dlv.saved_position = row_position;
	dlv.position_known = true;
	if (dlv.saved_at == 0)
		dlv.saved_at = GetCurrentTimestamp();

	head = es_horizon();
	if (dlv.position >= head)
	{
		finish_batch();
		return BATCH_IDLE;
	}

	n = fetch_events(dlv.position, head, dlv.breaker_probe ? 1 : es_cfg.batch_size,
					 &events, &scanned_to);
	es_slot_set_state(es_worker.slot, ES_STATE_CATCHING_UP);
	es_handler_arm_timer();
	outcome = deliver_batch(events, n, &delivered, &failed, &err);
	es_handler_disarm_timer();

	switch (outcome)
	{
		case BATCH_FORCED:
			es_worker_tx_abort();
			dlv.position_known = false; /* reload: the batch was rolled back */
			es_slot_set_in_flight(es_worker.slot, n - (es_cfg.strategy == ES_EVERY_EVENT ? delivered : 0));
			return BATCH_FORCED;
		case BATCH_GONE:
		case BATCH_ENDED_EARLY:
			es_worker_tx_commit();		/* nothing done in it yet */
			return outcome;
		case BATCH_FAILED:
			/* commit the events before it, then stop at it (err outlives it) */
			err.message = MemoryContextStrdup(es_worker.batch_cxt, err.message);
			finish_batch();
			es_stop_at_event(&events[failed], &err);
			return BATCH_FAILED;
		case BATCH_DONE:
			/* filtered-out events after the last delivered one count as done */
			if (scanned_to > dlv.position)
				dlv.position = scanned_to;
			finish_batch();
			if (dlv.position >= head)
				es_slot_set_state(es_worker.slot, ES_STATE_LIVE);	/* caught up with this horizon */
			return n == 0 ? BATCH_IDLE : BATCH_DONE;
		case BATCH_IDLE:
		case BATCH_RETRY_WAIT:
		case BATCH_BREAKER_OPEN:
			break;
	}
	finish_batch();
	return outcome;
}

/* ---------------------------------------------------------------------
 * The delivery state as the main loop and the stop path see it
 * ---------------------------------------------------------------------
 */

/*
 * How long before the next batch may run (0: now): the breaker is open, or
 * an event waits for its retry (or we for ours after an error).  An open
 * breaker whose time is up turns half-open: the next batch is its probe.
 */
int64
es_delivery_wait_ms(TimestampTz now)
{
	if (dlv.breaker_open_until != 0)
	{
		if (now < dlv.breaker_open_until)
		{
			es_slot_set_state(es_worker.slot, ES_STATE_CIRCUIT_OPEN);
			return (dlv.breaker_open_until - now) / 1000 + 1;
		}
		dlv.breaker_open_until = 0;
		dlv.breaker_probe = true;
	}
	if (dlv.retry_not_before > now)
		return (dlv.retry_not_before - now) / 1000 + 1;
	return 0;
}

/* Delivered but not yet in the checkpoint row (periodic)? */
bool
es_delivery_unsaved(void)
{
	return dlv.position_known && dlv.position != dlv.saved_position;
}

/*
 * A batch failed by an error of our own and was rolled back: take the
 * position from the row again, and run no batch before "retry_at".
 */
void
es_delivery_rolled_back(TimestampTz retry_at)
{
	dlv.position_known = false;
	dlv.retry_not_before = retry_at;
}

/*
 * The stop path of a periodic subscription: save what was delivered since
 * the last checkpoint, in our own row only, and only if nobody reset it
 * meanwhile.  A failure is logged: the events are delivered again after the
 * restart (at-least-once).
 */
static void
final_checkpoint(void *arg)
{
	int64		row;
	int64		resets;

	if (read_checkpoint(&row, &resets) && row == dlv.saved_position &&
		resets == dlv.resets_seen)
		write_checkpoint(dlv.position);
}

void
es_delivery_final_checkpoint(void)
{
	if (es_cfg.strategy == ES_PERIODIC && es_delivery_unsaved())
		es_worker_try_transaction("eventsource: final checkpoint", final_checkpoint, NULL);
}

/* What the checkpoint row says, as far as we know (the shutdown record). */
int64
es_delivery_saved_position(void)
{
	return dlv.saved_position;
}

/* Checkpoints written since the stop request (the shutdown record). */
int
es_delivery_checkpoints_saved_in_drain(void)
{
	return dlv.checkpoints_saved_in_drain;
}

