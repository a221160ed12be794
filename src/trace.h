/*-------------------------------------------------------------------------
 *
 * trace.h
 *	  Tracing: W3C trace context (trace.c), the span queue in shared memory
 *	  (otlp_queue.c) and the OTLP/HTTP exporter process (otlp.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_TRACE_H
#define ES_TRACE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "eventsource.h"

#define ES_TRACE_ID_HEX			32
#define ES_SPAN_ID_HEX			16
#define ES_TRACEPARENT_LEN		55	/* version 00 */
#define ES_TRACESTATE_LEN		512
#define ES_TRACESTATE_MEMBERS	32

typedef struct EsTraceContext
{
	char		trace_id[ES_TRACE_ID_HEX + 1];
	char		span_id[ES_SPAN_ID_HEX + 1];
	char		flags[3];
} EsTraceContext;

/* OTLP span kinds and status codes (opentelemetry-proto trace.proto) */
#define ES_SPAN_KIND_CONSUMER	5
#define ES_SPAN_STATUS_UNSET	0
#define ES_SPAN_STATUS_ERROR	2

#define ES_SPAN_TEXT_LEN		256 /* error texts */

/* The strings of a span, packed one after the other into EsSpan.text */
typedef enum EsSpanText
{
	ES_SPAN_TRACESTATE,
	ES_SPAN_DATABASE,
	ES_SPAN_SUBSCRIPTION,
	ES_SPAN_EVENT_ID,
	ES_SPAN_EVENT_TYPE,
	ES_SPAN_STREAM_ID,
	ES_SPAN_OUTCOME,
	ES_SPAN_SQLSTATE,
	ES_SPAN_MESSAGE,
	ES_SPAN_NTEXTS
} EsSpanText;

#define ES_SPAN_TEXT_MAX		2048	/* > the sum of the strings' limits */

/*
 * One finished span, as it waits in the shared queue.  The ids and numbers
 * are fixed fields; the strings are packed into "text" (each NUL-terminated,
 * truncated to its limit), so that only es_span_size() bytes are copied in
 * and out of the queue.  Built by a worker (trace.c), encoded by the
 * exporter (otlp.c).
 */
typedef struct EsSpan
{
	char		trace_id[ES_TRACE_ID_HEX + 1];
	char		span_id[ES_SPAN_ID_HEX + 1];
	char		parent_id[ES_SPAN_ID_HEX + 1];	/* empty: a root span */
	char		link_trace_id[ES_TRACE_ID_HEX + 1]; /* empty: no link */
	char		link_span_id[ES_SPAN_ID_HEX + 1];
	bool		is_batch;		/* the batch span */
	bool		is_batch_call;	/* a batch handler's call (no single event) */
	int			kind;
	int			status;
	int			partition;
	int			batch_calls;
	int			batch_failed;
	int			retry;
	int64		position;
	TimestampTz start;
	TimestampTz end;
	uint16		text_off[ES_SPAN_NTEXTS];
	int			text_len;
	char		text[ES_SPAN_TEXT_MAX];
} EsSpan;

#define es_span_size(s)			(offsetof(EsSpan, text) + (s)->text_len)
#define es_span_text(s, k)		((s)->text + (s)->text_off[k])

/* trace.c */
extern bool es_traceparent_parse(const char *s, int len, EsTraceContext *out,
								 const char **why);
extern bool es_tracestate_valid(const char *s, int len, const char **why);
extern int	es_tracestate_trim(const char *s, int len);
extern void es_trace_define_gucs(void);
extern Jsonb *es_metadata_add(Jsonb *metadata, int n, const char *const *keys,
							  const char *const *values);
extern Jsonb *es_trace_metadata(Jsonb *metadata);
extern void es_trace_batch_begin(const char *subscription, int partition,
								 const char *database);
extern void es_trace_batch_end(void);
extern void es_trace_set_retry(int retries);
extern void es_trace_call_begin(HeapTuple event, TupleDesc desc,
								const char *event_id, const char *event_type,
								const char *stream_id, int64 position);
extern void es_trace_call_end(const char *outcome, const char *sqlstate,
							  const char *message);
extern const char *es_trace_log_fields(void);

/* otlp_queue.c: the bounded span queue and the exporter's counters */
typedef struct EsOtlpStats
{
	int			exporter_pid;
	bool		enabled;
	int			queued;
	int			capacity;
	int64		spans_queued;	/* accepted into the queue */
	int64		spans_exported;
	int64		spans_dropped_full; /* the queue was full */
	int64		spans_dropped_export;	/* their export failed */
	int64		exports;
	int64		export_errors;
	TimestampTz last_export_at; /* last successful export */
	TimestampTz last_error_at;
	char		last_error[ES_SPAN_TEXT_LEN];
} EsOtlpStats;

extern int	es_otlp_queue_size;
extern Size es_otlp_queue_shmem_size(void);
extern void es_otlp_queue_shmem_init(void *area, bool found);
extern bool es_otlp_enabled(void);
extern void es_otlp_enqueue_packed(const char *buf, int n);
extern int	es_otlp_dequeue(EsSpan *out, int max);
extern bool es_otlp_attach_exporter(void);
extern void es_otlp_set_exporter(bool enabled, int wake_at);
extern void es_otlp_note_export(int nspans, const char *error);
extern void es_otlp_discard(void);
extern void es_otlp_get_stats(EsOtlpStats *out);
extern const char *es_otlp_health(void);

/* otlp.c: the exporter process and its settings */
#define ES_OTLP_SUPERVISE_IDLE_MS	60000
extern void es_otlp_define_gucs(bool preloading);
extern bool es_otlp_endpoint_set(void);
extern int64 es_otlp_supervise(void);

#endif							/* ES_TRACE_H */
