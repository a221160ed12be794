/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Calling a subscription's handler: in a subtransaction, as the
 *	  subscription's owner, under processing_timeout, with the current event
 *	  visible to the handler.
 *
 * The current event is published through read-only settings
 * (eventsource.subscription, .event_id, .event_type, .stream_id, .position)
 * whose show hooks read this file's static state, so setting them costs
 * nothing per event.  An append made by the handler gets causation_id (the
 * event's id) and correlation_id (the event's, or its id) in its metadata
 * unless the caller set them (es_inherit_causation, called by append.c).
 * Each call is also a span (trace.c: es_trace_call_begin/_end), whose
 * context the handler reads as eventsource.traceparent.
 *
 * Time limits: a SIGALRM timer ticks every 100 ms while a batch is being
 * processed.  Its handler (signal context: it only reads plain variables and
 * sets the same flags as a query cancel) cancels the running handler call
 * when it has outlived processing_timeout, or when a stop was requested more
 * than eventsource.drain_timeout ago.  PostgreSQL then raises 57014 inside
 * the handler at its next interrupt check, and the subtransaction rolls back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timeout.h"
#include "utils/uuid.h"

#include "subscription.h"
#include "trace.h"

#define ES_TICK_MS 100

typedef enum CancelReason
{
	CANCEL_NONE,
	CANCEL_TIMEOUT,
	CANCEL_DRAIN
} CancelReason;

/* Stop requests: set by the worker's SIGTERM handler. */
volatile sig_atomic_t es_shutdown_requested = false;
volatile TimestampTz es_shutdown_requested_at = 0;

/* Read by the timer's handler. */
static volatile sig_atomic_t in_handler = false;
static volatile TimestampTz call_deadline = 0;
static volatile sig_atomic_t cancel_reason = CANCEL_NONE;
static TimeoutId tick_timeout = MAX_TIMEOUTS;
static bool timer_armed = false;

/* The event being handled, for the settings and for causation. */
static bool cur_active = false;
static char cur_subscription[ES_MAX_NAME_LEN + 1];
static char cur_event_id[UUID_LEN * 2 + 5];
static char cur_event_type[ES_MAX_EVENT_TYPE_LEN + 1];
static char cur_stream_id[ES_MAX_STREAM_ID_LEN + 1];
static char cur_position[32];
static char cur_correlation_id[ES_MAX_NAME_LEN + 1];

/* GUC variables: never read (the show hooks answer), but GUC wants them. */
static char *guc_subscription;
static char *guc_event_id;
static char *guc_event_type;
static char *guc_stream_id;
static char *guc_position;

static const char *
show_subscription(void)
{
	return cur_subscription;
}

static const char *
show_event_id(void)
{
	return cur_active ? cur_event_id : "";
}

static const char *
show_event_type(void)
{
	return cur_active ? cur_event_type : "";
}

static const char *
show_stream_id(void)
{
	return cur_active ? cur_stream_id : "";
}

static const char *
show_position(void)
{
	return cur_active ? cur_position : "";
}

static void
define_context_guc(const char *name, const char *desc, char **var,
				   GucShowHook hook)
{
	DefineCustomStringVariable(name, desc,
							   "Set by the subscription worker while a handler runs; empty elsewhere.",
							   var, "", PGC_INTERNAL,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, hook);
}

void
es_handler_define_gucs(void)
{
	define_context_guc("eventsource.subscription",
					   "Subscription whose handler is running.",
					   &guc_subscription, show_subscription);
	define_context_guc("eventsource.event_id",
					   "Id of the event the handler is processing.",
					   &guc_event_id, show_event_id);
	define_context_guc("eventsource.event_type",
					   "Type of the event the handler is processing.",
					   &guc_event_type, show_event_type);
	define_context_guc("eventsource.stream_id",
					   "Stream of the event the handler is processing.",
					   &guc_stream_id, show_stream_id);
	define_context_guc("eventsource.position",
					   "Global position of the event the handler is processing.",
					   &guc_position, show_position);
}

/*
 * Timer handler (signal context).  Only plain loads and the stores a query
 * cancel makes.
 */
static void
tick_handler(void)
{
	TimestampTz now;

	if (!in_handler)
		return;
	now = GetCurrentTimestamp();
	if (es_shutdown_requested_at != 0 &&
		now >= es_shutdown_requested_at + (int64) es_drain_timeout_ms_guc * 1000)
		cancel_reason = CANCEL_DRAIN;
	else if (now >= call_deadline)
		cancel_reason = CANCEL_TIMEOUT;
	else
		return;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

void
es_handler_init_timer(void)
{
	tick_timeout = RegisterTimeout(USER_TIMEOUT, tick_handler);
}

/* Start ticking (at the start of a batch). */
void
es_handler_arm_timer(void)
{
	if (timer_armed)
		return;
	enable_timeout_every(tick_timeout,
						 TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ES_TICK_MS),
						 ES_TICK_MS);
	timer_armed = true;
}

void
es_handler_disarm_timer(void)
{
	if (!timer_armed)
		return;
	disable_timeout(tick_timeout, false);
	timer_armed = false;
}

/* Is the timer ticking?  Never outside a batch (worker.c asserts it). */
bool
es_handler_timer_armed(void)
{
	return timer_armed;
}

/* Has a stop request's drain time run out? */
bool
es_drain_expired(void)
{
	return es_shutdown_requested_at != 0 &&
		GetCurrentTimestamp() >= es_shutdown_requested_at +
		(int64) es_drain_timeout_ms_guc * 1000;
}

/* A text column of a row into a buffer ("" when NULL), truncated to dstlen. */
void
es_copy_text_column(char *dst, Size dstlen, HeapTuple tup, TupleDesc desc, int attno)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, attno, desc, &isnull);

	if (isnull)
		dst[0] = '\0';
	else
		text_to_cstring_buffer(DatumGetTextPP(d), dst, dstlen);
}

/*
 * Publish the event being handled.  "event" is a row of eventsource.events
 * (its column order), or NULL for a batch call (no single event).
 */
static void
set_current_event(const char *subscription, HeapTuple event, TupleDesc desc)
{
	bool		isnull;

	strlcpy(cur_subscription, subscription, sizeof(cur_subscription));
	if (event == NULL)
	{
		cur_active = false;
		return;
	}
	snprintf(cur_position, sizeof(cur_position), INT64_FORMAT,
			 DatumGetInt64(heap_getattr(event, 1, desc, &isnull)));
	es_copy_text_column(cur_stream_id, sizeof(cur_stream_id), event, desc, 2);
	strlcpy(cur_event_id,
			DatumGetCString(DirectFunctionCall1(uuid_out, heap_getattr(event, 4, desc, &isnull))),
			sizeof(cur_event_id));
	es_copy_text_column(cur_event_type, sizeof(cur_event_type), event, desc, 5);

	/* the correlation id to pass on: the event's own, else its id */
	strlcpy(cur_correlation_id, cur_event_id, sizeof(cur_correlation_id));
	{
		Jsonb	   *meta = DatumGetJsonbP(heap_getattr(event, 7, desc, &isnull));
		JsonbValue *v = getKeyJsonValueFromContainer(&meta->root,
													 "correlation_id", 14, NULL);

		if (v && v->type == jbvString && v->val.string.len < sizeof(cur_correlation_id))
		{
			memcpy(cur_correlation_id, v->val.string.val, v->val.string.len);
			cur_correlation_id[v->val.string.len] = '\0';
		}
	}
	cur_active = true;
}

/*
 * The subscription whose handler this process is running right now, or
 * NULL (subscription.c refuses lifecycle calls on it).
 */
const char *
es_handler_subscription(void)
{
	return in_handler ? cur_subscription : NULL;
}

static void
clear_current_event(void)
{
	cur_active = false;
	cur_subscription[0] = '\0';
}

/*
 * Inside a handler, add causation_id and correlation_id to an appended
 * event's metadata unless it has them.  Elsewhere return it unchanged.
 */
Jsonb *
es_inherit_causation(Jsonb *metadata)
{
	const char *keys[2] = {"causation_id", "correlation_id"};
	const char *values[2];

	if (!cur_active)
		return metadata;
	values[0] = getKeyJsonValueFromContainer(&metadata->root, "causation_id", 12, NULL) ? NULL : cur_event_id;
	values[1] = getKeyJsonValueFromContainer(&metadata->root, "correlation_id", 14, NULL) ? NULL : cur_correlation_id;
	if (values[0] == NULL && values[1] == NULL)
		return metadata;
	return es_metadata_add(metadata, 2, keys, values);
}

/*
 * Call the handler once, with "arg" (an event or an array of events), in a
 * subtransaction, as "owner".  On failure the subtransaction is rolled back
 * and *err describes the error.  The caller is in a transaction with the
 * timer armed.
 */
EsCallResult
es_call_handler(FmgrInfo *flinfo, Datum arg, Oid owner, int64 timeout_ms,
				const char *subscription, HeapTuple event, TupleDesc desc,
				EsCallError *err)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile EsCallResult result = ES_CALL_OK;

	set_current_event(subscription, event, desc);
	es_trace_call_begin(event, desc, cur_event_id, cur_event_type, cur_stream_id,
						event ? strtoi64(cur_position, NULL, 10) : 0);
	cancel_reason = CANCEL_NONE;
	call_deadline = GetCurrentTimestamp() + timeout_ms * 1000;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 1);
		Oid			save_userid;
		int			save_sec_context;

		/*
		 * As the owner, in a security-restricted operation: the handler can
		 * neither use the worker's superuser rights nor SET ROLE back to
		 * them.  The subtransaction's abort restores the user on error.
		 */
		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(owner, save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = arg;
		fcinfo->args[0].isnull = false;
		in_handler = true;
		(void) FunctionCallInvoke(fcinfo);
		in_handler = false;
		/* a tick that fired after the handler's last interrupt check */
		if (cancel_reason != CANCEL_NONE)
			QueryCancelPending = false;
		SetUserIdAndSecContext(save_userid, save_sec_context);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		in_handler = false;
		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		strlcpy(err->sqlstate, unpack_sql_state(edata->sqlerrcode), sizeof(err->sqlstate));
		err->timed_out = (cancel_reason == CANCEL_TIMEOUT);
		if (cancel_reason == CANCEL_TIMEOUT)
			err->message = psprintf("handler exceeded processing_timeout (" INT64_FORMAT " ms)",
									timeout_ms);
		else if (cancel_reason == CANCEL_DRAIN)
			err->message = psprintf("handler cancelled: the stop request's drain_timeout (%d ms) ran out",
									es_drain_timeout_ms_guc);
		else
			err->message = pstrdup(edata->message ? edata->message : "unknown error");
		result = (cancel_reason == CANCEL_DRAIN) ? ES_CALL_DRAIN_EXPIRED : ES_CALL_FAILED;
		FreeErrorData(edata);
		es_trace_call_end(err->timed_out ? "timeout" :
						  cancel_reason == CANCEL_DRAIN ? "cancelled" : "error",
						  err->sqlstate, err->message);
	}
	PG_END_TRY();
	if (result == ES_CALL_OK)
		es_trace_call_end("ok", NULL, NULL);

	cancel_reason = CANCEL_NONE;
	clear_current_event();
	return result;
}
