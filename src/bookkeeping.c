/*-------------------------------------------------------------------------
 *
 * bookkeeping.c
 *	  What a subscription worker records about failures: the recent_errors
 *	  row, the notification on channel eventsource_errors, the dead letter,
 *	  the partition row that says "failed", and the structured fields of
 *	  its log lines.
 *
 * None of it may stop delivery.  Recording an error, notifying, parking a dead letter, writing a status:
 * each runs in a subtransaction of its own (es_run_bookkeeping), so that its
 * failure (a too-long value, a trigger someone put on our tables, a lock
 * timeout, ...) rolls back only itself.  The failure is logged with the
 * event's structured fields and counted in the slot; the event itself goes
 * on through the retry / dead-letter path like any handler failure.
 *
 * Erasure (erasure.c): a batch read before an erasure committed holds the
 * old values, and a handler's error message may quote them.  So before it
 * writes any copy of a failed event (its dead letter, its error text in
 * recent_errors, in the partition row, in the slot, in a notification, in
 * the log) the worker takes the event's stream's erasure lock in share mode
 * for the rest of its transaction and reads the event's row again with a
 * fresh snapshot (check_event_copy).  An erasure that committed before is
 * then seen: the copies take the row's current (redacted) values and the
 * text "(erased)"; one that comes later waits for our commit and redacts
 * what we wrote.  Only the failure path pays for this.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "schema.h"
#include "subscription.h"
#include "tenant.h"
#include "trace.h"
#include "worker.h"

static SPIPlanPtr dead_letter_plans[2] = {NULL, NULL};	/* 1.0 and 1.1 SQL */
static SPIPlanPtr error_plans[2] = {NULL, NULL};
static SPIPlanPtr error_prune_plan = NULL;
static SPIPlanPtr fail_plan = NULL;

/*
 * Notifications of the current transaction's failed calls, sent in a
 * transaction of their own once it committed (es_send_notices): a full NOTIFY
 * queue fails the commit that notifies, and that must never be a batch.
 * In TopMemoryContext; dropped when the transaction rolls back.
 */
typedef struct EsNotice
{
	char	   *payload;
	char	   *fields;			/* the failed event's log fields */
} EsNotice;
static List *pending_notices = NIL;

/* A column of the event being recorded (Anum_es_events_*). */
static Datum
event_column(EsEventRef *ev, int attno, bool *isnull)
{
	return heap_getattr(ev->tuple, attno, es_cfg.events_desc, isnull);
}

/*
 * The event's tenant, for the copies in recent_errors and dead_letters
 * (1.1: their tenant_id, which row-level security reads) and for its
 * erasure lock; 'default' when the row type has none (the 1.0 SQL, whose
 * rows are all the default tenant's).
 */
static Datum
event_tenant_column(EsEventRef *ev)
{
	bool		isnull = true;
	Datum		d = (Datum) 0;

	if (es_cfg.tenant_attno != 0)
		d = event_column(ev, es_cfg.tenant_attno, &isnull);
	return isnull ? CStringGetTextDatum(ES_DEFAULT_TENANT) : d;
}

static text *
event_tenant(EsEventRef *ev)
{
	return DatumGetTextPP(event_tenant_column(ev));
}

/*
 * The subscription_tenant column of the rows this worker writes about an
 * event (dead_letters, recent_errors): its subscription's tenant, null for
 * a cross-tenant one (and on the 1.0 SQL, which has no such column: the
 * parameter is unused there).  The policies of those tables show a role
 * bound to tenants only the rows of a subscription of its tenant.
 */
static void
subscription_tenant_column(Datum *value, char *null)
{
	*value = es_cfg.tenant ? CStringGetTextDatum(es_cfg.tenant) : (Datum) 0;
	*null = es_cfg.tenant ? ' ' : 'n';
}

/* What check_event_copy() found about an event the worker is to copy */
typedef enum EsCopyCheck
{
	ES_COPY_AS_READ,			/* the row still holds what we read */
	ES_COPY_ERASED,				/* erased since: ev now holds the current row */
	ES_COPY_UNKNOWN				/* an erasure in progress, or the row is gone */
} EsCopyCheck;

/*
 * The last event found as read, valid for the rest of its transaction (we
 * keep the lock); the last event found erased, for good (an erasure is never
 * undone, and its EsEventRef holds the current row since).
 */
static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
static int64 checked_position = 0;
static int64 erased_position = 0;

static SPIPlanPtr recheck_plan = NULL;

/*
 * Under the stream's erasure lock (share mode, not waiting), read the
 * event's row again with a fresh snapshot and compare its data and metadata
 * with what the batch read.  Erased since: the event in "ev" takes the
 * row's current values (in es_worker.batch_cxt).  In a subtransaction of
 * its own (check_event_copy), connected to SPI as the extension owner.
 */
static void
recheck_event(EsEventRef *ev, void *arg)
{
	EsCopyCheck *result = arg;
	bool		isnull;
	Datum		values[1];
	Datum		cur_data;
	Datum		cur_meta;
	bool		meta_null;
	bool		old_meta_null;
	Datum		old_meta;

	*result = ES_COPY_UNKNOWN;
	if (!es_erasure_lock_for_copy(event_tenant(ev),
								  DatumGetTextPP(event_column(ev, Anum_es_events_stream_id,
															  &isnull))))
		return;
	if (recheck_plan == NULL)
	{
		Oid			types[1] = {INT8OID};

		recheck_plan = es_prepare("SELECT data, metadata FROM eventsource.events"
								  " WHERE global_position OPERATOR(pg_catalog.=) $1",
								  1, types);
	}
	values[0] = Int64GetDatum(ev->position);
	es_spi_read_latest(recheck_plan, values, NULL, NULL, 1);
	if (SPI_processed == 0)
		return;					/* removed by the cleanup: not ours to copy */
	cur_data = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	cur_meta = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &meta_null);
	old_meta = event_column(ev, Anum_es_events_metadata, &old_meta_null);
	if (DatumGetBool(DirectFunctionCall2(jsonb_eq, cur_data,
										 event_column(ev, Anum_es_events_data, &isnull))) &&
		meta_null == old_meta_null &&
		(meta_null || DatumGetBool(DirectFunctionCall2(jsonb_eq, cur_meta, old_meta))))
	{
		*result = ES_COPY_AS_READ;
		return;
	}

	/* erased since the batch read it: copy the row as it is now */
	{
		int			natts = es_cfg.events_desc->natts;
		Datum	   *cols = palloc(natts * sizeof(Datum));
		bool	   *nulls = palloc(natts * sizeof(bool));
		MemoryContext old = MemoryContextSwitchTo(es_worker.batch_cxt);

		/* in-line copies: they outlive this SPI result and its snapshot */
		heap_deform_tuple(ev->tuple, es_cfg.events_desc, cols, nulls);
		cols[Anum_es_events_data - 1] = PointerGetDatum(PG_DETOAST_DATUM_COPY(cur_data));
		cols[Anum_es_events_metadata - 1] =
			meta_null ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(cur_meta));
		nulls[Anum_es_events_metadata - 1] = meta_null;
		ev->tuple = heap_form_tuple(es_cfg.events_desc, cols, nulls);
		MemoryContextSwitchTo(old);
	}
	*result = ES_COPY_ERASED;
}

/*
 * May the worker copy the event as it read it?  See the file header.  Once
 * per event and transaction: the lock, once granted, is held until the
 * transaction ends, so "as read" holds as long; "erased" holds for good
 * (and ev was replaced by the current row then).  A failure of the check
 * itself (a lock timeout, ...) counts as unknown.  Nothing to check on a
 * database still on the 1.0 SQL, which cannot erase.  Caller is connected
 * to SPI as the extension owner, in a transaction.
 */
static EsCopyCheck
check_event_copy(EsEventRef *ev)
{
	EsCopyCheck result = ES_COPY_UNKNOWN;
	ErrorData  *edata;

	if (!es_lifecycle_installed())
		return ES_COPY_AS_READ;
	if (ev->position == erased_position)
		return ES_COPY_ERASED;
	if (checked_lxid == MyProc->lxid && checked_position == ev->position)
		return ES_COPY_AS_READ;
	edata = es_worker_try_in_subxact(recheck_event, ev, &result);
	if (edata != NULL)
	{
		/* its message is about the check, never the event's data */
		ereport(WARNING,
				(errmsg("eventsource: subscription \"%s\" partition %d could not check whether the event at position " INT64_FORMAT " was erased: %s",
						es_worker.name, es_worker.partition, ev->position, edata->message),
				 errdetail("%s", es_log_fields(ev, unpack_sql_state(edata->sqlerrcode))),
				 errhint("Its error text is withheld from the copies.")));
		FreeErrorData(edata);
		result = ES_COPY_UNKNOWN;
	}
	if (result == ES_COPY_AS_READ)
	{
		checked_lxid = MyProc->lxid;
		checked_position = ev->position;
	}
	else if (result == ES_COPY_ERASED)
		erased_position = ev->position;
	return result;
}

/*
 * The error of a failed call on "ev" as the worker may copy it: the
 * handler's message, or "(erased)" when the event was erased since the
 * batch read it (its message may quote the old values), or a note that it
 * is withheld when that cannot be known (an erasure of the stream is in
 * progress).  "ev" takes the current row when erased.  Caller as for
 * check_event_copy().
 */
void
es_error_as_copied(EsEventRef *ev, const EsCallError *err, EsCallError *out)
{
	*out = *err;
	switch (check_event_copy(ev))
	{
		case ES_COPY_AS_READ:
			break;
		case ES_COPY_ERASED:
			out->message = ES_ERASED_ERROR_TEXT;
			break;
		case ES_COPY_UNKNOWN:
			out->message = ES_ERASURE_PENDING_NOTE;
			break;
	}
}

/*
 * A value for a key=value log field, quoted (logfmt style) when it holds a
 * space, a quote or an equals sign.
 */
char *
es_logfmt(const char *value)
{
	StringInfoData buf;

	if (value == NULL)
		value = "";
	if (value[0] != '\0' && strpbrk(value, " \"=\\") == NULL)
		return pstrdup(value);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	for (const char *p = value; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '"');
	return buf.data;
}

/*
 * The structured fields of a log line about an event: they go into
 * errdetail, which log_destination = 'jsonlog' keeps as "detail".
 */
char *
es_log_fields(EsEventRef *ev, const char *sqlstate)
{
	bool		isnull;

	/* no event: a failure of the subscription itself (its configuration) */
	if (ev == NULL)
		return psprintf("database=%s subscription=%s partition=%d sqlstate=%s category=%s severity=%s",
						es_logfmt(es_worker.dbname), es_logfmt(es_worker.name), es_worker.partition, sqlstate,
						es_error_category(sqlstate), es_error_severity(sqlstate));
	return psprintf("database=%s subscription=%s partition=%d event_id=%s position=" INT64_FORMAT
					" sqlstate=%s category=%s severity=%s%s",
					es_logfmt(es_worker.dbname), es_logfmt(es_worker.name), es_worker.partition,
					DatumGetCString(DirectFunctionCall1(uuid_out, event_column(ev, Anum_es_events_event_id, &isnull))),
					ev->position, sqlstate, es_error_category(sqlstate),
					es_error_severity(sqlstate), es_trace_log_fields());
}

/* A bookkeeping step failed: say so in the log and count it. */
static void
note_bookkeeping_failure(const char *what, const char *fields, ErrorData *edata)
{
	const char *sqlstate = unpack_sql_state(edata->sqlerrcode);
	int64		failures;
	char	   *message;

	failures = es_slot_bookkeeping_failed(es_worker.slot);
	message = psprintf("could not %s: %s", what, edata->message);
	es_slot_note_error(es_worker.slot, message, sqlstate, false);
	pfree(message);				/* the slot keeps a copy; the caller may be in TopMemoryContext */
	ereport(WARNING,
			(errmsg("eventsource: subscription \"%s\" partition %d could not %s: %s",
					es_worker.name, es_worker.partition, what, edata->message),
			 errdetail("%s bookkeeping_sqlstate=%s bookkeeping_failures=" INT64_FORMAT,
					   fields, sqlstate, failures),
			 errhint("Delivery goes on: the event is retried or dead-lettered as usual.")));
}

/*
 * Run fn(ev, arg) in a subtransaction of the current transaction (connected
 * to SPI, as the extension owner).  Returns false when it failed: then it
 * was rolled back alone, logged and counted.
 */
bool
es_run_bookkeeping(const char *what, EsEventRef *ev, EsBookkeepingFn fn, void *arg)
{
	ErrorData  *edata = es_worker_try_in_subxact(fn, ev, arg);

	if (edata == NULL)
		return true;
	note_bookkeeping_failure(what, es_log_fields(ev, unpack_sql_state(edata->sqlerrcode)),
							 edata);
	FreeErrorData(edata);
	return false;
}

/*
 * The payload of a notification about a failed call (a JSON object), cut to
 * fit NOTIFY's limit (async.c: payloads of BLCKSZ - NAMEDATALEN - 128 bytes
 * or more are refused): the message is shortened on a character boundary,
 * and "message_truncated" says whether it was.  With "withhold" the message
 * is null and "message_withheld" true (decide_withhold).
 */
#define ES_NOTIFY_PAYLOAD_MAX	(BLCKSZ - NAMEDATALEN - 128)

static char *
notify_payload(EsEventRef *ev, const char *event_id, EsCallError *err,
			   int attempt, bool will_retry, bool withhold)
{
	const char *message = err->message;
	int			len = strlen(message);
	int			keep = len;

	for (;;)
	{
		EsJson		json;
		char	   *text;
		int			over;

		es_json_object(&json);
		es_json_string(&json, "subscription", es_worker.name);
		es_json_int(&json, "partition", es_worker.partition);
		es_json_int(&json, "position", ev->position);
		es_json_string(&json, "event_id", event_id);
		es_json_string(&json, "sqlstate", err->sqlstate);
		es_json_string(&json, "category", es_error_category(err->sqlstate));
		es_json_string(&json, "severity", es_error_severity(err->sqlstate));
		es_json_int(&json, "attempt", attempt);
		es_json_bool(&json, "will_retry", will_retry);
		/* withheld: null, not cut */
		es_json_string(&json, "message",
					   withhold ? NULL : keep == len ? message : pnstrdup(message, keep));
		es_json_bool(&json, "message_truncated", !withhold && keep < len);
		es_json_int(&json, "message_bytes", len);
		if (withhold)
			es_json_bool(&json, "message_withheld", true);
		text = es_json_finish(&json);
		over = strlen(text) - (ES_NOTIFY_PAYLOAD_MAX - 1);
		if (over <= 0 || keep == 0 || withhold)
			return text;
		/* each byte cut shortens the escaped text by at least one */
		keep = pg_mbcliplen(message, keep, Max(keep - over, 0));
		pfree(text);
	}
}

/*
 * Whether a notification must leave the error text out: any role that can
 * connect may LISTEN on eventsource_errors (PostgreSQL has no privilege on
 * a channel), and the text may quote any tenant's event, so once a role is
 * bound to tenants (tenancy in use, docs/tenancy.md) the text stays in
 * recent_errors, the dead letters and the log, which row-level security
 * and the log's own access guard.  A store without bindings (every 1.0
 * store) keeps the text.  The caller starts from "withhold" and keeps it
 * when this fails.
 */
static void
decide_withhold(EsEventRef *ev, void *arg)
{
	bool	   *withhold = arg;

	*withhold = es_sql_version() >= ES_SQL_1_1 && es_tenant_any_binding();
}

/*
 * Send the notifications of the transaction that just committed, in a
 * transaction of their own.  A failure (e.g. the NOTIFY queue is full) is
 * logged and counted, and the notifications are lost: the errors are in
 * eventsource.recent_errors and the log.
 */
void
es_send_notices(void)
{
	ListCell   *lc;
	EsNotice   *failed_at = NULL;

	if (pending_notices == NIL)
		return;
	PG_TRY();
	{
		StartTransactionCommand();
		foreach(lc, pending_notices)
		{
			failed_at = lfirst(lc);
			Async_Notify("eventsource_errors", failed_at->payload);
		}
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		RESUME_INTERRUPTS();
		note_bookkeeping_failure("send a notification on channel eventsource_errors",
								 failed_at ? failed_at->fields : "", edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	es_drop_notices();
}

void
es_drop_notices(void)
{
	ListCell   *lc;

	foreach(lc, pending_notices)
	{
		EsNotice   *n = lfirst(lc);

		pfree(n->payload);
		pfree(n->fields);
	}
	list_free_deep(pending_notices);
	pending_notices = NIL;
}

/*
 * A failed call's error as the four text columns recent_errors and
 * dead_letters share, in their order: error_message, error_sqlstate,
 * error_category, error_severity.
 */
void
es_error_columns(Datum *values, const EsCallError *err)
{
	values[0] = CStringGetTextDatum(err->message);
	values[1] = CStringGetTextDatum(err->sqlstate);
	values[2] = CStringGetTextDatum(es_error_category(err->sqlstate));
	values[3] = CStringGetTextDatum(es_error_severity(err->sqlstate));
}

typedef struct EsErrorRow
{
	EsCallError *err;
	int			attempt;
} EsErrorRow;

/* The recent_errors row of a failed call, and the table's bound. */
static void
insert_error_row(EsEventRef *ev, void *arg)
{
	EsErrorRow *row = arg;
	Datum		values[12];
	char		nulls[12];
	bool		isnull;
	SPIPlanPtr	error_plan;
	Oid			types[12] = {TEXTOID, INT4OID, INT8OID, UUIDOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, TEXTOID};

#define ES_INSERT_ERROR(tenant_column, tenant_value) \
	"INSERT INTO eventsource.recent_errors (subscription, partition," \
	" global_position, event_id, event_type, error_message, error_sqlstate," \
	" error_category, error_severity, attempt" tenant_column ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10" tenant_value ")"
	/* 1.0 SQL: no tenant_id, subscription_tenant ($11, $12 unused) */
	error_plan = es_prepare_versioned(error_plans, ES_INSERT_ERROR("", ""),
									  ES_INSERT_ERROR(", tenant_id, subscription_tenant", ", $11, $12"),
									  12, types);
#undef ES_INSERT_ERROR
	if (error_prune_plan == NULL)
	{
		Oid			prune_types[1] = {INT4OID};

		error_prune_plan = es_prepare("DELETE FROM eventsource.recent_errors WHERE id OPERATOR(pg_catalog.<=)"
									  " ((SELECT pg_catalog.max(id) FROM eventsource.recent_errors)"
									  "  OPERATOR(pg_catalog.-) $1)",
									  1, prune_types);
	}
	values[0] = CStringGetTextDatum(es_worker.name);
	values[1] = Int32GetDatum(es_worker.partition);
	values[2] = Int64GetDatum(ev->position);
	values[3] = event_column(ev, Anum_es_events_event_id, &isnull);
	values[4] = event_column(ev, Anum_es_events_event_type, &isnull);
	es_error_columns(&values[5], row->err);
	values[9] = Int32GetDatum(row->attempt);
	values[10] = event_tenant_column(ev);
	memset(nulls, ' ', sizeof(nulls));
	subscription_tenant_column(&values[11], &nulls[11]);
	es_exec_plan(error_plan, values, nulls, SPI_OK_INSERT);
	values[0] = Int32GetDatum(es_recent_errors_kept);
	es_exec_plan(error_prune_plan, values, NULL, SPI_OK_DELETE);
}

/*
 * A batch handler failed on the whole batch (delivery.c delivers its events
 * one at a time next, and records the one that fails as usual): the slot's
 * statistics and last error.  Its message may quote any event of the batch,
 * read in the current transaction, and no erasure lock covers them all: the
 * text is withheld when an erasure committed since the transaction began.
 * Checked after the slot took the text, so an erasure published later is
 * the status's to withhold (its time is after the text's, status.c).
 */
void
es_note_batch_error(EsCallError *err)
{
	es_slot_note_error(es_worker.slot, err->message, err->sqlstate, true);
	if (es_erasure_committed_at() >= GetCurrentTransactionStartTimestamp())
		es_slot_withhold_error(es_worker.slot, ES_ERASED_ERROR_NOTE);
}

/*
 * Record one failed handler call: the slot's statistics, the bounded
 * recent_errors table, a notification when severe enough (sent once the
 * transaction commits), the log.  In the current transaction; none of it
 * can fail the transaction.
 */
void
es_record_error(EsEventRef *ev, EsCallError *handler_err, int attempt, bool will_retry)
{
	const char *severity = es_error_severity(handler_err->sqlstate);
	EsCallError shown;
	EsCallError *err = &shown;
	EsErrorRow	row = {err, attempt};
	bool		isnull;

	/* every copy below: the text as it may be copied (see the file header) */
	es_error_as_copied(ev, handler_err, &shown);
	es_slot_note_error(es_worker.slot, err->message, err->sqlstate, will_retry);
	(void) es_run_bookkeeping("record the error in eventsource.recent_errors", ev,
						   insert_error_row, &row);

	/* publish it, from the worker and never from appenders */
	if (es_severity_rank(severity) >= es_notify_min_severity)
	{
		char	   *event_id = DatumGetCString(DirectFunctionCall1(uuid_out,
																   event_column(ev, Anum_es_events_event_id, &isnull)));
		MemoryContext old;
		EsNotice   *notice;
		char	   *payload;
		char	   *fields;
		bool		withhold;

		/*
		 * Built in the current (batch) context, whose temporaries go with
		 * it; only the two kept strings and the list cell live in
		 * TopMemoryContext until es_drop_notices() frees them.
		 */
		withhold = true;
		(void) es_run_bookkeeping("decide whether a notification may carry the error text", ev,
								  decide_withhold, &withhold);
		payload = notify_payload(ev, event_id, err, attempt, will_retry, withhold);
		fields = es_log_fields(ev, err->sqlstate);
		old = MemoryContextSwitchTo(TopMemoryContext);
		notice = palloc(sizeof(EsNotice));
		notice->payload = pstrdup(payload);
		notice->fields = pstrdup(fields);
		pending_notices = lappend(pending_notices, notice);
		MemoryContextSwitchTo(old);
	}

	ereport(LOG,
			(errmsg("eventsource: subscription \"%s\" handler failed on event at position " INT64_FORMAT " (attempt %d%s): %s",
					es_worker.name, ev->position, attempt,
					will_retry ? ", will retry" : "", err->message),
			 errdetail("%s attempt=%d", es_log_fields(ev, err->sqlstate), attempt)));
}

typedef struct EsDeadLetter
{
	EsCallError *err;
	int			retries;
	TimestampTz first_failed_at;	/* 0: now */
} EsDeadLetter;

static void
insert_dead_letter(EsEventRef *ev, void *arg)
{
	EsDeadLetter *dl = arg;
	Datum		values[18];
	char		nulls[18];
	bool		isnull;
	EsCallError shown;
	SPIPlanPtr	dead_letter_plan;
	Oid			types[18] = {TEXTOID, INT4OID, INT8OID, TEXTOID, INT8OID, UUIDOID,
		TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, INT4OID, TIMESTAMPTZOID, TEXTOID, TEXTOID};

	/* the event's current row if it was erased since we read it */
	if (check_event_copy(ev) == ES_COPY_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("an erasure of the event's stream is in progress"),
				 errdetail("Parking the event now could keep data the erasure removes.")));
	es_error_as_copied(ev, dl->err, &shown);

#define ES_INSERT_DEAD_LETTER(tenant_column, tenant_value) \
	"INSERT INTO eventsource.dead_letters (subscription, partition," \
	" global_position, stream_id, stream_version, event_id, event_type," \
	" data, metadata, recorded_at, error_message, error_sqlstate," \
	" error_category, error_severity, retry_count, first_failed_at" tenant_column ")" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13," \
	" $14, $15, $16" tenant_value ")"
	/* 1.0 SQL: no tenant_id, subscription_tenant ($17, $18 unused) */
	dead_letter_plan = es_prepare_versioned(dead_letter_plans,
											ES_INSERT_DEAD_LETTER("", ""),
											ES_INSERT_DEAD_LETTER(", tenant_id, subscription_tenant",
																  ", $17, $18"),
											18, types);
#undef ES_INSERT_DEAD_LETTER
	values[0] = CStringGetTextDatum(es_worker.name);
	values[1] = Int32GetDatum(es_worker.partition);
	/* $3..$10: the event's columns, in their order */
	for (int attno = Anum_es_events_global_position; attno <= Natts_es_events; attno++)
		values[1 + attno] = event_column(ev, attno, &isnull);
	es_error_columns(&values[10], &shown);
	values[14] = Int32GetDatum(dl->retries);
	values[15] = TimestampTzGetDatum(dl->first_failed_at ? dl->first_failed_at : GetCurrentTimestamp());
	values[16] = event_tenant_column(ev);
	memset(nulls, ' ', sizeof(nulls));
	subscription_tenant_column(&values[17], &nulls[17]);
	es_exec_plan(dead_letter_plan, values, nulls, SPI_OK_INSERT);
}

/*
 * Park an event in the dead letters, in the transaction that passes it.
 * False when that failed: the event must not be passed (it would be lost);
 * it is retried later.
 */
bool
es_dead_letter(EsEventRef *ev, EsCallError *err, int retries, TimestampTz first_failed_at)
{
	EsDeadLetter dl = {err, retries, first_failed_at};

	if (!es_run_bookkeeping("park the event in eventsource.dead_letters", ev,
						 insert_dead_letter, &dl))
		return false;
	es_slot_event_failed(es_worker.slot, true);
	return true;
}

typedef struct EsFailedRow
{
	const char *message;
	const char *sqlstate;
} EsFailedRow;

/*
 * Our partition row says: stopped, at event "ev" (NULL: at no event, the
 * configuration is invalid), with this error.
 */
static void
write_failed_row(EsEventRef *ev, void *arg)
{
	EsFailedRow *f = arg;
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	Oid			types[7] = {TEXTOID, INT4OID, INT8OID, INT8OID, UUIDOID, TEXTOID, TEXTOID};

	if (fail_plan == NULL)
		fail_plan = es_prepare("UPDATE eventsource.subscription_partitions SET state = 'failed',"
							   " failed_position = $4, failed_event_id = $5, error_message = $6,"
							   " error_sqlstate = $7, failed_at = pg_catalog.now()"
							   " WHERE subscription OPERATOR(pg_catalog.=) $1"
							   " AND partition OPERATOR(pg_catalog.=) $2"
							   " AND subscription_id OPERATOR(pg_catalog.=) $3",
							   7, types);
	es_worker_row_key(values);
	if (ev != NULL)
	{
		values[3] = Int64GetDatum(ev->position);
		values[4] = event_column(ev, Anum_es_events_event_id, &isnull);
	}
	else
		nulls[3] = nulls[4] = 'n';
	values[5] = CStringGetTextDatum(f->message);
	values[6] = CStringGetTextDatum(f->sqlstate);
	es_exec_plan(fail_plan, values, nulls, SPI_OK_UPDATE);
}

/*
 * Commit the transaction that wrote our partition row as failed.  The slot
 * says "failed" before the row does: a resume_subscription() waits for our
 * row lock, so it commits, and sets the slot back to run, only after this
 * (the other order could lose that resume).  A failed commit undoes it.
 */
static void
commit_as_failed(void)
{
	es_slot_set_desired_if(es_worker.slot, ES_DESIRED_RUN, ES_DESIRED_FAILED);
	PG_TRY();
	{
		es_worker_tx_commit();
	}
	PG_CATCH();
	{
		es_slot_set_desired_if(es_worker.slot, ES_DESIRED_FAILED, ES_DESIRED_RUN);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Stop this partition at an event (continue_on_error off).  Own
 * transaction.  Should the row not take the record, the slot still says
 * failed (until a restart, which then retries the event).
 */
void
es_stop_at_event(EsEventRef *ev, EsCallError *handler_err)
{
	EsCallError shown;
	EsCallError *err = &shown;
	EsFailedRow f;

	es_worker_tx_begin("eventsource: stopping at a failed event");
	if (!es_worker_extension_is_ours())
	{
		es_worker_tx_commit();			/* the next batch finds us gone */
		return;
	}
	/* in this transaction: its erasure lock is held until the row commits */
	es_error_as_copied(ev, handler_err, &shown);
	f.message = shown.message;
	f.sqlstate = shown.sqlstate;
	(void) es_run_bookkeeping("record that the partition stopped", ev, write_failed_row, &f);

	commit_as_failed();
	es_slot_event_failed(es_worker.slot, false);
	es_slot_set_state(es_worker.slot, ES_STATE_FAILED);
	ereport(WARNING,
			(errmsg("eventsource: subscription \"%s\" partition %d stopped at the event at position " INT64_FORMAT " after %d failed attempts (continue_on_error is off): %s",
					es_worker.name, es_worker.partition, ev->position, es_cfg.max_retries + 1, err->message),
			 errdetail("%s", es_log_fields(ev, err->sqlstate)),
			 errhint("Fix the cause, then call eventsource.resume_subscription('%s') to retry the event.",
					 es_worker.name)));
}

/*
 * The configuration we loaded breaks a rule (es_cfg.error): never run it.
 * The partition goes to failed, with the reason in its row and slot (the
 * status view's last_error), and the worker exits.  resume_subscription()
 * after the row is corrected starts it again (and it checks again).
 */
void
es_fail_invalid_config(void)
{
	EsFailedRow f;
	char	   *message = psprintf("invalid configuration: %s", es_cfg.error->message);

	f.message = message;
	f.sqlstate = unpack_sql_state(es_cfg.error->sqlerrcode);
	es_worker_tx_begin("eventsource: refusing an invalid configuration");
	if (es_worker.dbname == NULL)
		es_worker.dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
	if (es_worker_extension_is_ours())
		(void) es_run_bookkeeping("record that the partition stopped", NULL, write_failed_row, &f);
	commit_as_failed();
	es_slot_note_error(es_worker.slot, message, f.sqlstate, false);
	es_slot_set_state(es_worker.slot, ES_STATE_FAILED);
	ereport(WARNING,
			(errcode(es_cfg.error->sqlerrcode),
			 errmsg("eventsource: subscription \"%s\" partition %d does not run: %s",
					es_worker.name, es_worker.partition, message),
			 errdetail("%s", es_log_fields(NULL, f.sqlstate)),
			 errhint("Correct its row in eventsource.subscriptions, then call eventsource.resume_subscription('%s').",
					 es_worker.name)));
	proc_exit(0);
}

