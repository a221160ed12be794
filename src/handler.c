/*-------------------------------------------------------------------------
 *
 * handler.c
 *	  Calling a subscription's handler: in a subtransaction, as the
 *	  subscription's owner, under processing_timeout, with the current event
 *	  visible to the handler.
 *
 * The current event is published for the duration of the call
 * (current_event.c): the read-only settings eventsource.subscription,
 * .event_id, .event_type, .stream_id and .position (guc.c) show it, and an
 * append made by the handler inherits causation from it.
 * Each call is also a span (trace.c: es_trace_call_begin/_end), whose
 * context the handler reads as eventsource.traceparent.
 *
 * Time limits: a SIGALRM timer ticks every 100 ms while a batch is being
 * processed.  Its handler (signal context: it only reads plain variables and
 * sets the same flags as a query cancel) cancels the running handler call
 * when it has outlived processing_timeout, or when a stop was requested more
 * than eventsource.drain_timeout ago (the stop request is worker.c's:
 * es_drain_expired_at).  PostgreSQL then raises 57014 inside
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

#include "subscription.h"
#include "tenant.h"
#include "trace.h"

#define ES_TICK_MS 100

typedef enum CancelReason
{
	CANCEL_NONE,
	CANCEL_TIMEOUT,
	CANCEL_DRAIN
} CancelReason;

/* Read by the timer's handler. */
static volatile sig_atomic_t in_handler = false;
static volatile TimestampTz call_deadline = 0;
static volatile sig_atomic_t cancel_reason = CANCEL_NONE;
static TimeoutId tick_timeout = MAX_TIMEOUTS;
static bool timer_armed = false;

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
	if (es_drain_expired_at(now))
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

/*
 * The subscription whose handler this process is running right now, or
 * NULL (subscription.c refuses lifecycle calls on it).
 */
const char *
es_handler_subscription(void)
{
	return in_handler ? es_current_event()->subscription : NULL;
}

/*
 * Call the handler once, with "arg" (an event or an array of events), in a
 * subtransaction, as "owner", with eventsource.tenant set to "tenant" (the
 * events' tenant; NULL: left as it is) for the call only: a GUC nest level
 * of the subtransaction, popped when the call returns or its
 * subtransaction aborts, so the worker's own transactions never run in it.
 * So the handler's appends, reads and checkpoints are the tenant's, and a
 * handler owned by a bound role passes current_tenant()'s check in it.
 * For the tenant rules the owner counts as the session's role during the
 * call (tenant.c, es_tenant_session_override): the handler has the rights
 * of a session its owner logged into, no more.  On
 * failure the subtransaction is rolled back and *err describes the error.
 * The caller is in a transaction with the timer armed.
 */
EsCallResult
es_call_handler(FmgrInfo *flinfo, Datum arg, Oid owner, const char *tenant, int64 timeout_ms,
				const char *subscription, HeapTuple event, TupleDesc desc,
				EsCallError *err)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile EsCallResult result = ES_CALL_OK;
	volatile Oid save_session;
	const EsCurrentEvent *cur;

	es_current_event_set(subscription, event, desc);
	cur = es_current_event();
	es_trace_call_begin(event, desc, cur->event_id, cur->event_type, cur->stream_id,
						event ? cur->position : 0);
	cancel_reason = CANCEL_NONE;
	call_deadline = GetCurrentTimestamp() + timeout_ms * 1000;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	save_session = es_tenant_session_override(owner);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 1);
		Oid			save_userid;
		int			save_sec_context;
		int			guc_level = NewGUCNestLevel();

		if (tenant != NULL)
			(void) set_config_option("eventsource.tenant", tenant, PGC_USERSET,
									 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

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
		(void) es_tenant_session_override(save_session);
		/* false: also a plain SET the handler made ends with its call */
		AtEOXact_GUC(false, guc_level);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		in_handler = false;
		(void) es_tenant_session_override(save_session);
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
	es_current_event_clear();
	return result;
}
