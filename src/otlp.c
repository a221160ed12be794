/*-------------------------------------------------------------------------
 *
 * otlp.c
 *	  The OTLP exporter: a background process that sends the workers' spans
 *	  to an OpenTelemetry collector over OTLP/HTTP, and its settings.
 *
 * The launcher starts it while eventsource.otlp_endpoint is set
 * (es_otlp_supervise) and it exits when the endpoint is unset, so a server
 * that does not trace runs no exporter.  It wakes every
 * eventsource.otlp_flush_interval, or when a worker finds
 * eventsource.otlp_batch_size spans queued, takes up to that many spans out
 * of the shared queue (otlp_queue.c) and POSTs them as one
 * ExportTraceServiceRequest to the endpoint, with a timeout
 * (eventsource.otlp_timeout).  A failed export (connection refused, timeout,
 * any non-2xx status) drops its spans, counts them and keeps the error for
 * eventsource.tracing and health(); there is no retry, so a collector that
 * is down or slow costs the workers nothing: they only ever copy a span into
 * the ring, and drop it when the ring is full.
 *
 * Encoding: OTLP/HTTP with the JSON encoding (Content-Type
 * application/json), as the OTLP specification defines it: trace and span
 * ids as lower-case hex, 64-bit integers and nanosecond times as decimal
 * strings, enums as integers, attributes as KeyValue lists of AnyValue.  JSON
 * rather than protobuf because it needs no protobuf library or generated
 * code (nothing vendored), it is easy to write correctly (json_string), and
 * every collector accepts it; protobuf would be smaller on the wire, which
 * does not matter at the rate of one span per handler call.
 *
 * The HTTP client is libcurl (Debian's libcurl4-openssl-dev), used only in
 * this process, with CURLOPT_NOSIGNAL so that it leaves the process's
 * signal handlers alone; a shutdown request aborts a transfer in progress.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/pmsignal.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "mb/pg_wchar.h"

#include "trace.h"

/* the settings */
static char *otlp_endpoint = NULL;
static char *otlp_service_name = NULL;
static char *otlp_resource_attributes = NULL;
static int	otlp_timeout_ms = 5000;
static int	otlp_batch_size = 512;
static int	otlp_flush_interval_ms = 1000;
int			es_otlp_queue_size = 4096;

PGDLLEXPORT void es_otlp_main(Datum main_arg);

/*
 * resource_attributes: "key=value,key=value" (as OTEL_RESOURCE_ATTRIBUTES),
 * keys non-empty; surrounding spaces are ignored.
 */
static bool
check_resource_attributes(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	while (p && *p)
	{
		const char *end = strchr(p, ',');
		const char *eq;

		if (end == NULL)
			end = p + strlen(p);
		eq = memchr(p, '=', end - p);
		while (p < end && *p == ' ')
			p++;
		if (p < end && (eq == NULL || eq == p))
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errdetail("Resource attributes are a comma-separated list of key=value pairs.");
			return false;
		}
		p = *end ? end + 1 : end;
	}
	return true;
}

static bool
check_endpoint(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0' ||
		strncmp(*newval, "http://", 7) == 0 || strncmp(*newval, "https://", 8) == 0)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The OTLP endpoint is an http:// or https:// URL, e.g. http://localhost:4318/v1/traces.");
	return false;
}

void
es_otlp_define_gucs(bool preloading)
{
	DefineCustomStringVariable("eventsource.otlp_endpoint",
							   "OTLP/HTTP URL to which the subscription workers' spans are exported; empty: no spans.",
							   "The full URL, usually ending in /v1/traces.",
							   &otlp_endpoint, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_endpoint, NULL, NULL);
	DefineCustomStringVariable("eventsource.otlp_service_name",
							   "service.name resource attribute of the exported spans.",
							   NULL, &otlp_service_name, "eventsource", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("eventsource.otlp_resource_attributes",
							   "More resource attributes of the exported spans, as key=value,key=value.",
							   NULL, &otlp_resource_attributes, "", PGC_SIGHUP, 0,
							   check_resource_attributes, NULL, NULL);
	DefineCustomIntVariable("eventsource.otlp_timeout",
							"Time limit of one export request.",
							"A request that takes longer is abandoned and its spans dropped.",
							&otlp_timeout_ms, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.otlp_batch_size",
							"Spans sent in one export request at most.",
							NULL, &otlp_batch_size, 512, 1, 10000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.otlp_flush_interval",
							"Longest time a span waits in the queue before it is exported.",
							NULL, &otlp_flush_interval_ms, 1000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	if (preloading)
		DefineCustomIntVariable("eventsource.otlp_queue_size",
								"Spans that can wait for the exporter in shared memory; more are dropped.",
								NULL, &es_otlp_queue_size, 4096, 16, 1000000,
								PGC_POSTMASTER, 0, NULL, NULL, NULL);
}

/* Is an endpoint set (as this process last read its settings)? */
bool
es_otlp_endpoint_set(void)
{
	return otlp_endpoint != NULL && otlp_endpoint[0] != '\0';
}

/*
 * The launcher runs the exporter while an endpoint is set: called on every
 * launcher loop (after it reloaded its settings, and when the exporter
 * started or stopped: bgw_notify_pid), this starts it when it is wanted and
 * not running.  The exporter exits by itself when the endpoint is unset, so
 * a server that does not trace has no exporter and gives up no
 * max_worker_processes slot.  Returns how long (ms) the launcher may sleep
 * before the next call is due.
 */
int64
es_otlp_supervise(void)
{
	static BackgroundWorkerHandle *handle = NULL;
	static TimestampTz next_start = 0;
	static bool warned = false;
	BackgroundWorker worker;
	TimestampTz now;
	MemoryContext old;
	pid_t		pid;
	EsOtlpStats stats;

	if (handle != NULL)
	{
		BgwHandleStatus st = GetBackgroundWorkerPid(handle, &pid);

		if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED)
			return ES_OTLP_SUPERVISE_IDLE_MS;
		pfree(handle);
		handle = NULL;
		/* it stopped: not before a second, in case it keeps failing */
		next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
	if (!es_otlp_endpoint_set())
		return ES_OTLP_SUPERVISE_IDLE_MS;
	es_otlp_get_stats(&stats);
	if (stats.exporter_pid != 0)
		return ES_OTLP_SUPERVISE_IDLE_MS;	/* started by a previous launcher */
	now = GetCurrentTimestamp();
	if (now < next_start)
		return (next_start - now) / 1000 + 1;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eventsource");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_otlp_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eventsource otlp exporter");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eventsource otlp exporter");
	worker.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		handle = NULL;
		next_start = TimestampTzPlusMilliseconds(now, 5000);
		if (!warned)
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("eventsource: cannot start the OTLP exporter: no free background worker slot"),
					 errhint("Raise max_worker_processes (now %d): the exporter needs one while eventsource.otlp_endpoint is set.",
							 max_worker_processes)));
		warned = true;
	}
	else
		warned = false;
	MemoryContextSwitchTo(old);
	return handle ? ES_OTLP_SUPERVISE_IDLE_MS : 5000;
}

/* ---------------------------------------------------------------------
 * Encoding (OTLP JSON)
 * ---------------------------------------------------------------------
 */

/*
 * Append n bytes, inline (a request is built from a few thousand short
 * pieces per span; appendBinaryStringInfo's call and terminating NUL per
 * piece were most of the encoding's time).  Leaves room for the NUL but
 * does not write it: encode_request does, at the end.
 */
static inline void
append_bytes(StringInfo buf, const char *s, int n)
{
	if (buf->len + n >= buf->maxlen)
		enlargeStringInfo(buf, n);
	memcpy(buf->data + buf->len, s, n);
	buf->len += n;
}

/*
 * The text of a JSON string, without its quotes: the first "len" bytes of
 * "value" (or up to a NUL).  The workers hand over UTF-8 (trace.c converts
 * from the database encoding), but the settings' strings (service name,
 * resource attributes) are whatever bytes postgresql.conf holds, and one
 * invalid byte would make a strict collector refuse the whole request, with
 * the spans of every database in it: each byte that does not start a valid
 * UTF-8 sequence is written as U+FFFD.  Escaped as escape_json does: \" \\
 * and the control characters (\b \f \n \r \t, else \u00XX).  Runs of bytes
 * that need nothing (nearly all) are copied at once.
 */
static void
json_escaped(StringInfo buf, const char *value, size_t len)
{
	const unsigned char *p = (const unsigned char *) value;
	const unsigned char *end = p + len;
	const unsigned char *run = p;	/* bytes copied as they are, from here */

	while (p < end && *p)
	{
		const char *esc = NULL;
		int			skip = 1;

		if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
		{
			p++;
			continue;
		}
		if (*p < 0x80)
		{
			if (*p == '"')
				esc = "\\\"";
			else if (*p == '\\')
				esc = "\\\\";
			else
				esc = "";		/* a control character: below */
		}
		else
		{
			int			n = pg_utf_mblen(p);
			int			have = 1;

			while (have < n && p + have < end && p[have] != '\0')
				have++;
			if (have == n && pg_utf8_islegal(p, n))
				skip = n;
			else
				esc = "\\ufffd";
		}
		if (esc == NULL)
		{
			p += skip;
			continue;
		}
		append_bytes(buf, (const char *) run, p - run);
		if (esc[0] != '\0')
			appendStringInfoString(buf, esc);
		else
			switch (*p)
			{
				case '\b':
					appendStringInfoString(buf, "\\b");
					break;
				case '\f':
					appendStringInfoString(buf, "\\f");
					break;
				case '\n':
					appendStringInfoString(buf, "\\n");
					break;
				case '\r':
					appendStringInfoString(buf, "\\r");
					break;
				case '\t':
					appendStringInfoString(buf, "\\t");
					break;
				default:
					appendStringInfo(buf, "\\u%04x", *p);
					break;
			}
		p += skip;
		run = p;
	}
	append_bytes(buf, (const char *) run, p - run);
}

/* A JSON string (json_escaped, in quotes). */
static void
json_string(StringInfo buf, const char *value)
{
	appendStringInfoCharMacro(buf, '"');
	json_escaped(buf, value, strlen(value));
	appendStringInfoCharMacro(buf, '"');
}

/* A string literal, appended without looking for its end. */
#define append_literal(buf, lit)	append_bytes(buf, lit, sizeof(lit) - 1)

/*
 * The start of a KeyValue whose key is a string literal of ours (plain
 * ASCII, nothing to escape), up to the AnyValue's member name; "kind" is
 * "stringValue" or "intValue".
 */
#define attr_begin(buf, first, key, kind) \
	do { \
		if (!*(first)) \
			appendStringInfoCharMacro(buf, ','); \
		append_literal(buf, "{\"key\":\"" key "\",\"value\":{\"" kind "\":"); \
		*(first) = false; \
	} while (0)

/* A KeyValue with a string AnyValue and a key of ours. */
#define attr_str(buf, first, key, value) \
	do { \
		attr_begin(buf, first, key, "stringValue"); \
		json_string(buf, value); \
		append_literal(buf, "}}"); \
	} while (0)

/* A KeyValue with an int AnyValue (a decimal string, as int64s are in JSON) */
#define attr_int(buf, first, key, value) \
	do { \
		attr_begin(buf, first, key, "intValue"); \
		append_int_string(buf, value); \
		append_literal(buf, "}}"); \
	} while (0)

/* A KeyValue with a string AnyValue and any key (the settings'). */
static void
attr_str_any(StringInfo buf, bool *first, const char *key, const char *value)
{
	appendStringInfoString(buf, *first ? "{\"key\":" : ",{\"key\":");
	json_string(buf, key);
	append_literal(buf, ",\"value\":{\"stringValue\":");
	json_string(buf, value);
	append_literal(buf, "}}");
	*first = false;
}

/* An int64 as a JSON string of decimal digits. */
static void
append_int_string(StringInfo buf, int64 value)
{
	char		num[MAXINT8LEN + 1];
	int			len = pg_lltoa(value, num);

	appendStringInfoCharMacro(buf, '"');
	append_bytes(buf, num, len);
	appendStringInfoCharMacro(buf, '"');
}

/* A JSON string of a hex id (trace.c's, lower-case hex: nothing to escape). */
static void
append_id(StringInfo buf, const char *id, int len)
{
	appendStringInfoCharMacro(buf, '"');
	append_bytes(buf, id, len);
	appendStringInfoCharMacro(buf, '"');
}

static int64
unix_nanos(TimestampTz t)
{
	return (t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC) * 1000;
}

/* The resource: service.name, then the resource_attributes setting's pairs. */
static void
encode_resource(StringInfo buf)
{
	bool		first = true;
	char	   *list = pstrdup(otlp_resource_attributes ? otlp_resource_attributes : "");
	char	   *item;
	char	   *save = NULL;

	appendStringInfoString(buf, "{\"attributes\":[");
	attr_str_any(buf, &first, "service.name", otlp_service_name ? otlp_service_name : "eventsource");
	for (item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *eq = strchr(item, '=');
		char	   *k = item;
		char	   *v;

		if (eq == NULL)
			continue;
		*eq = '\0';
		v = eq + 1;
		while (*k == ' ')
			k++;
		for (char *e = eq - 1; e >= k && *e == ' '; e--)
			*e = '\0';
		while (*v == ' ')
			v++;
		if (*k && strcmp(k, "service.name") != 0)
			attr_str_any(buf, &first, k, v);
	}
	appendStringInfoString(buf, "]}");
}

static void
encode_span(StringInfo buf, const EsSpan *s)
{
	bool		first = true;
	const char *stream = es_span_text(s, ES_SPAN_STREAM_ID);

	append_literal(buf, "{\"traceId\":");
	append_id(buf, s->trace_id, ES_TRACE_ID_HEX);
	append_literal(buf, ",\"spanId\":");
	append_id(buf, s->span_id, ES_SPAN_ID_HEX);
	if (s->parent_id[0])
	{
		append_literal(buf, ",\"parentSpanId\":");
		append_id(buf, s->parent_id, ES_SPAN_ID_HEX);
	}
	if (es_span_text(s, ES_SPAN_TRACESTATE)[0])
	{
		append_literal(buf, ",\"traceState\":");
		json_string(buf, es_span_text(s, ES_SPAN_TRACESTATE));
	}
	if (s->is_batch)
		append_literal(buf, ",\"name\":\"receive ");
	else
		append_literal(buf, ",\"name\":\"process ");
	json_escaped(buf, es_span_text(s, ES_SPAN_SUBSCRIPTION),
				 strlen(es_span_text(s, ES_SPAN_SUBSCRIPTION)));
	append_literal(buf, "\",\"kind\":");
	appendStringInfoCharMacro(buf, '0' + s->kind);	/* (one digit: 0-5) */
	append_literal(buf, ",\"startTimeUnixNano\":");
	append_int_string(buf, unix_nanos(s->start));
	append_literal(buf, ",\"endTimeUnixNano\":");
	append_int_string(buf, unix_nanos(s->end));
	append_literal(buf, ",\"attributes\":[");

	/* OpenTelemetry messaging conventions, then the store's own */
	attr_str(buf, &first, "messaging.system", "eventsource");
	attr_str(buf, &first, "messaging.operation.type", s->is_batch ? "receive" : "process");
	attr_str(buf, &first, "messaging.destination.name", es_span_text(s, ES_SPAN_SUBSCRIPTION));
	attr_str(buf, &first, "db.namespace", es_span_text(s, ES_SPAN_DATABASE));
	attr_str(buf, &first, "eventsource.subscription.name", es_span_text(s, ES_SPAN_SUBSCRIPTION));
	attr_int(buf, &first, "eventsource.subscription.partition", s->partition);
	attr_str(buf, &first, "eventsource.outcome", es_span_text(s, ES_SPAN_OUTCOME));
	if (s->is_batch)
	{
		attr_int(buf, &first, "messaging.batch.message_count", s->batch_calls);
		attr_int(buf, &first, "eventsource.batch.failed_calls", s->batch_failed);
	}
	else if (!s->is_batch_call)
	{
		attr_str(buf, &first, "messaging.message.id", es_span_text(s, ES_SPAN_EVENT_ID));
		attr_str(buf, &first, "eventsource.event.id", es_span_text(s, ES_SPAN_EVENT_ID));
		attr_str(buf, &first, "eventsource.event.type", es_span_text(s, ES_SPAN_EVENT_TYPE));
		attr_str(buf, &first, "eventsource.stream.id", stream);
		/* the aggregate type: the stream's category (eventsource.category()) */
		attr_begin(buf, &first, "eventsource.stream.category", "stringValue");
		appendStringInfoCharMacro(buf, '"');
		json_escaped(buf, stream, strcspn(stream, "-"));
		append_literal(buf, "\"}}");
		attr_int(buf, &first, "eventsource.position", s->position);
		attr_int(buf, &first, "eventsource.retry_count", s->retry);
	}
	else
		attr_int(buf, &first, "eventsource.retry_count", s->retry);
	if (es_span_text(s, ES_SPAN_SQLSTATE)[0])
		attr_str(buf, &first, "db.response.status_code", es_span_text(s, ES_SPAN_SQLSTATE));
	appendStringInfoCharMacro(buf, ']');

	/* an error: span status and an exception event with the SQLSTATE */
	if (s->status == ES_SPAN_STATUS_ERROR && es_span_text(s, ES_SPAN_SQLSTATE)[0])
	{
		first = true;
		append_literal(buf, ",\"events\":[{\"timeUnixNano\":");
		append_int_string(buf, unix_nanos(s->end));
		append_literal(buf, ",\"name\":\"exception\",\"attributes\":[");
		attr_str(buf, &first, "exception.type", es_span_text(s, ES_SPAN_SQLSTATE));
		attr_str(buf, &first, "exception.message", es_span_text(s, ES_SPAN_MESSAGE));
		append_literal(buf, "]}]");
	}
	if (s->link_span_id[0])
	{
		append_literal(buf, ",\"links\":[{\"traceId\":");
		append_id(buf, s->link_trace_id, ES_TRACE_ID_HEX);
		append_literal(buf, ",\"spanId\":");
		append_id(buf, s->link_span_id, ES_SPAN_ID_HEX);
		append_literal(buf, "}]");
	}
	append_literal(buf, ",\"status\":{\"code\":");
	appendStringInfoCharMacro(buf, '0' + s->status);	/* (one digit: 0-2) */
	if (s->status == ES_SPAN_STATUS_ERROR)
	{
		append_literal(buf, ",\"message\":");
		json_string(buf, es_span_text(s, ES_SPAN_MESSAGE)[0] ? es_span_text(s, ES_SPAN_MESSAGE) :
					es_span_text(s, ES_SPAN_OUTCOME));
	}
	append_literal(buf, "}}");
}

/* about the size of a handler span in JSON, for the request buffer */
#define ES_OTLP_SPAN_JSON_BYTES	1536

/* One ExportTraceServiceRequest with the n spans. */
static void
encode_request(StringInfo buf, const EsSpan *spans, int n)
{
	appendStringInfoString(buf, "{\"resourceSpans\":[{\"resource\":");
	encode_resource(buf);
	appendStringInfoString(buf, ",\"scopeSpans\":[{\"scope\":{\"name\":\"eventsource\",\"version\":\"1.1\"},\"spans\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		encode_span(buf, &spans[i]);
	}
	appendStringInfoString(buf, "]}]}]}");	/* (and the NUL) */
}

/* ---------------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------------
 */

static CURL *curl = NULL;
static struct curl_slist *headers = NULL;
static char response[ES_SPAN_TEXT_LEN];
static size_t response_len;

/* keep the start of the response body, for the error message */
static size_t
on_response(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	size_t		n = size * nmemb;
	size_t		room = sizeof(response) - 1 - response_len;

	memcpy(response + response_len, ptr, Min(n, room));
	response_len += Min(n, room);
	response[response_len] = '\0';
	return n;
}

/*
 * Abort a transfer (libcurl calls this about once a second, and on every
 * bit of progress) when the process is asked to stop, when the postmaster
 * is gone, or when the settings are to be reloaded: a reload that moves the
 * endpoint away from a hung collector takes effect at once, not after
 * eventsource.otlp_timeout (the aborted request's spans are dropped).
 */
static int
on_progress(void *p, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
			curl_off_t ulnow)
{
	return (ShutdownRequestPending || ProcDiePending || ConfigReloadPending ||
			!PostmasterIsAlive()) ? 1 : 0;
}

/*
 * The endpoint for the server log: user and password of the URL
 * ("http://user:secret@host/...") shown as "***".
 */
static const char *
endpoint_for_log(void)
{
	const char *url = otlp_endpoint ? otlp_endpoint : "";
	const char *host = strstr(url, "://");
	const char *at;
	const char *end;

	if (host == NULL)
		return url;
	host += 3;
	end = host + strcspn(host, "/?#");
	at = memchr(host, '@', end - host);
	if (at == NULL)
		return url;
	/* the last '@' before the path ends the userinfo */
	while (memchr(at + 1, '@', end - at - 1) != NULL)
		at = memchr(at + 1, '@', end - at - 1);
	return psprintf("%.*s***%s", (int) (host - url), url, at);
}

/* POST the request; NULL on success, else what went wrong. */
static const char *
send_request(const char *body, size_t len)
{
	CURLcode	rc;
	long		status = 0;

	/*
	 * The header list is built once for the life of the process: the handle
	 * is made again after every reload, the list is not (appending to it
	 * with each new handle sent Content-Type once more per reload).
	 */
	if (headers == NULL)
	{
		struct curl_slist *list;

		list = curl_slist_append(NULL, "Content-Type: application/json");
		/* no "Expect: 100-continue" round trip before large bodies */
		if (list != NULL && (headers = curl_slist_append(list, "Expect:")) == NULL)
			curl_slist_free_all(list);
		if (headers == NULL)
			return "could not build the HTTP headers";
	}
	if (curl == NULL)
	{
		curl = curl_easy_init();
		if (curl == NULL)
			return "could not create an HTTP client";
	}
	response_len = 0;
	response[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, otlp_endpoint);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POST, 1L);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) otlp_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) otlp_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_response);
	curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "eventsource-otlp/1.1");

	rc = curl_easy_perform(curl);
	if (rc != CURLE_OK)
		return psprintf("%s", curl_easy_strerror(rc));
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299)
		return psprintf("HTTP status %ld%s%s", status, response_len ? ": " : "", response);
	return NULL;
}

/* Publish the settings to the queue (after start and every reload). */
static void
publish_settings(void)
{
	bool		enabled = otlp_endpoint != NULL && otlp_endpoint[0] != '\0';

	es_otlp_set_exporter(enabled, otlp_batch_size);
	if (!enabled)
		es_otlp_discard();
}

/* Export everything queued, a batch at a time. */
static void
export_queued(MemoryContext cxt)
{
	EsSpan	   *spans = MemoryContextAlloc(cxt, sizeof(EsSpan) * otlp_batch_size);
	MemoryContext request_cxt = AllocSetContextCreate(cxt, "eventsource otlp request",
													  ALLOCSET_DEFAULT_SIZES);

	/* a pending reload is applied before the next request */
	while (!ShutdownRequestPending && !ConfigReloadPending)
	{
		int			n = es_otlp_dequeue(spans, otlp_batch_size);
		StringInfoData body;
		const char *error;

		if (n == 0)
			break;
		/* what one request allocates is freed before the next */
		MemoryContextReset(request_cxt);
		MemoryContextSwitchTo(request_cxt);
		initStringInfo(&body);
		/* (room for a typical request: no copying as it grows) */
		enlargeStringInfo(&body, n * ES_OTLP_SPAN_JSON_BYTES);
		encode_request(&body, spans, n);
		error = send_request(body.data, body.len);
		es_otlp_note_export(n, error);
		if (error)
			ereport(DEBUG1,
					(errmsg("eventsource: OTLP export of %d spans to %s failed: %s",
							n, endpoint_for_log(), error)));
		MemoryContextSwitchTo(cxt);
		if (n < otlp_batch_size)
			break;
	}
}

void
es_otlp_main(Datum main_arg)
{
	MemoryContext cxt;
	TimestampTz last_flush = GetCurrentTimestamp();

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	pgstat_report_appname("eventsource otlp exporter");

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		ereport(ERROR,
				(errmsg("eventsource: could not initialise libcurl for the OTLP exporter")));
	cxt = AllocSetContextCreate(TopMemoryContext, "eventsource otlp", ALLOCSET_DEFAULT_SIZES);

	if (!es_otlp_attach_exporter())
	{
		ereport(LOG,
				(errmsg("eventsource: another OTLP exporter is running; this one exits")));
		proc_exit(0);
	}
	publish_settings();
	ereport(LOG,
			(errmsg("eventsource: OTLP exporter started, sending spans to %s", endpoint_for_log())));

	while (!ShutdownRequestPending)
	{
		int64		wait_ms;

		wait_ms = otlp_flush_interval_ms -
			(GetCurrentTimestamp() - last_flush) / 1000;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(wait_ms, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			publish_settings();
			if (curl != NULL)
			{
				/* a new endpoint gets a new connection */
				curl_easy_cleanup(curl);
				curl = NULL;
			}
		}
		if (!es_otlp_endpoint_set())
			break;				/* unset: the launcher starts us when it is set again */
		MemoryContextReset(cxt);
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			export_queued(cxt);
			MemoryContextSwitchTo(old);
		}
		last_flush = GetCurrentTimestamp();
	}
	proc_exit(0);
}
