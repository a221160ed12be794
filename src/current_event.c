/*-------------------------------------------------------------------------
 *
 * current_event.c
 *	  The event a subscription handler is processing right now, in this
 *	  process, and what it means for the appends the handler makes.
 *
 * handler.c publishes the event around each handler call
 * (es_current_event_set/_clear).  It is read by:
 *	- the read-only settings eventsource.subscription, .event_id,
 *	  .event_type, .stream_id and .position (guc.c), whose show hooks answer
 *	  from here, so publishing costs nothing per event;
 *	- append(), through es_inherit_causation(): an append made by the
 *	  handler gets causation_id (the event's id) and correlation_id (the
 *	  event's own, else its id) in its metadata unless the caller set them.
 *	  That call goes from the core into the subscription engine (upcalls.h);
 *	  outside a handler it returns at once.
 *
 * Backend-local state; no locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"

#include "eventsource.h"
#include "schema.h"
#include "trace.h"

static EsCurrentEvent current;

/* What is being handled now ("active" false: no single event). */
const EsCurrentEvent *
es_current_event(void)
{
	return &current;
}

/* A text column of a row into a buffer ("" when NULL), truncated to dstlen. */
static void
copy_text_column(char *dst, Size dstlen, HeapTuple tup, TupleDesc desc, int attno)
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
 * (its column order, schema.h), or NULL for a batch call (no single event).
 */
void
es_current_event_set(const char *subscription, HeapTuple event, TupleDesc desc)
{
	bool		isnull;

	strlcpy(current.subscription, subscription, sizeof(current.subscription));
	if (event == NULL)
	{
		current.active = false;
		return;
	}
	current.position = DatumGetInt64(heap_getattr(event, Anum_es_events_global_position,
												  desc, &isnull));
	snprintf(current.position_text, sizeof(current.position_text), INT64_FORMAT,
			 current.position);
	copy_text_column(current.stream_id, sizeof(current.stream_id), event, desc,
					 Anum_es_events_stream_id);
	strlcpy(current.event_id,
			DatumGetCString(DirectFunctionCall1(uuid_out,
												heap_getattr(event, Anum_es_events_event_id,
															 desc, &isnull))),
			sizeof(current.event_id));
	copy_text_column(current.event_type, sizeof(current.event_type), event, desc,
					 Anum_es_events_event_type);

	/* the correlation id to pass on: the event's own, else its id */
	strlcpy(current.correlation_id, current.event_id, sizeof(current.correlation_id));
	{
		Jsonb	   *meta = DatumGetJsonbP(heap_getattr(event, Anum_es_events_metadata,
													   desc, &isnull));
		JsonbValue *v = getKeyJsonValueFromContainer(&meta->root,
													 "correlation_id", 14, NULL);

		if (v && v->type == jbvString && v->val.string.len < sizeof(current.correlation_id))
		{
			memcpy(current.correlation_id, v->val.string.val, v->val.string.len);
			current.correlation_id[v->val.string.len] = '\0';
		}
	}
	current.active = true;
}

/* The handler call is over. */
void
es_current_event_clear(void)
{
	current.active = false;
	current.subscription[0] = '\0';
}

/*
 * Inside a handler, add causation_id and correlation_id to an appended
 * event's metadata unless it has them.  Elsewhere return it unchanged.
 * Called by append.c for every event it appends (an upcall): the test of
 * "active" is all it costs outside a handler.
 */
Jsonb *
es_inherit_causation(Jsonb *metadata)
{
	const char *keys[2] = {"causation_id", "correlation_id"};
	const char *values[2];

	if (!current.active)
		return metadata;
	values[0] = getKeyJsonValueFromContainer(&metadata->root, "causation_id", 12, NULL) ?
		NULL : current.event_id;
	values[1] = getKeyJsonValueFromContainer(&metadata->root, "correlation_id", 14, NULL) ?
		NULL : current.correlation_id;
	if (values[0] == NULL && values[1] == NULL)
		return metadata;
	return es_metadata_add(metadata, 2, keys, values);
}
