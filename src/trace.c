/*-------------------------------------------------------------------------
 *
 * trace.c
 *	  W3C trace context: validating it, keeping it in the log, and the spans
 *	  of the subscription workers.
 *
 * An append keeps the caller's trace context in the event's metadata
 * ("traceparent", "tracestate").  The keys of the metadata win; when it has
 * no "traceparent", the appended event gets the current context: inside a
 * subscription handler the handler's span (the triggering event's trace id,
 * the handler span as parent), elsewhere the settings eventsource.traceparent
 * and eventsource.tracestate, which an application sets per transaction with
 * SET LOCAL (so it works behind transaction pooling).  Invalid values are
 * refused with 22023, in the metadata and in the settings alike.
 *
 * Spans (built here, queued by otlp_queue.c, exported by otlp.c): a worker
 * calls es_trace_batch_begin/_end around a batch and handler.c calls
 * es_trace_call_begin/_end around each handler call.  A handler span is
 * parented on the event's traceparent when it has a valid one, else on the
 * batch span; it links to the batch span, so the batch span ("receive
 * <subscription>") and the calls it made ("process <subscription>") join in a
 * trace viewer even when the events come from many traces.  Finished spans
 * wait in this process's buffer and go to the queue a batch at a time (one
 * lock acquisition instead of one per span: what tracing costs a worker per
 * event is mostly this copy).  Nothing here blocks: a span that does not
 * fit in the queue is dropped and counted.
 * A handler span is exported only when the event's traceparent has the W3C
 * sampled flag (or when the event has none: then it hangs under the batch
 * span, a root, which is always exported); the context is passed on either
 * way, flags unchanged.  When no endpoint is configured no span is built
 * and no span id is made up: a handler whose event has a traceparent passes
 * that traceparent on unchanged to its appends (and its log lines name it),
 * so no event names a parent span that was never exported.
 *
 * Span strings go out in UTF-8, OTLP's encoding: the worker converts them
 * from the database encoding (text_utf8) before it cuts them to their limits.
 *
 * All state is process-local (the current call and batch of this worker).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "eventsource.h"
#include "schema.h"
#include "subscription.h"
#include "trace.h"

/* The settings (their check hooks validate; the show hook sees handlers) */
static char *guc_traceparent = NULL;
static char *guc_tracestate = NULL;

/* A span being built: the current batch, the current handler call. */
typedef struct EsTraceSpan
{
	bool		active;
	bool		traced;			/* has a trace context */
	bool		sampled;		/* exported: the parent's flags say sampled */
	EsTraceContext ctx;			/* trace id, own span id, flags */
	bool		has_parent;
	char		parent_id[ES_SPAN_ID_HEX + 1];
	char		tracestate[ES_TRACESTATE_LEN + 1];
	TimestampTz start;
} EsTraceSpan;

static EsTraceSpan batch;
static EsTraceSpan call;
static bool batch_exporting = false;	/* spans are exported this batch */
static char batch_subscription[ES_MAX_NAME_LEN + 1];
static int	batch_partition;
static char batch_database[NAMEDATALEN];

/* the batch's names in UTF-8, for its spans (made by the first call) */
static bool batch_names_utf8 = false;
static char batch_subscription_utf8[ES_MAX_NAME_LEN + 1];
static char batch_database_utf8[NAMEDATALEN];

/* the database encoding's conversion to UTF-8 (looked up once) */
static Oid	utf8_conversion = InvalidOid;
static int	batch_calls;
static int	batch_failed;
static int	call_retry;

/* The last call's ids, for the log lines written after it */
static bool last_known = false;
static char last_trace_id[ES_TRACE_ID_HEX + 1];
static char last_span_id[ES_SPAN_ID_HEX + 1];

static pg_prng_state trace_prng;
static bool prng_seeded = false;

/*
 * Finished spans not yet in the shared queue: packed one after the other
 * (es_span_size bytes each, MAXALIGN'd), handed over to the queue with one
 * lock acquisition (es_otlp_enqueue_packed) instead of one per span: when
 * the batch ends, when the buffer is full, or when a span is added
 * ES_TRACE_PENDING_MAX_MS or more after the first (a batch of slow handler
 * calls).  The age is only looked at when a span is added (no timer): a
 * call that runs long keeps the spans before it until it ends.
 */
#define ES_TRACE_PENDING_BYTES	(32 * 1024)
#define ES_TRACE_PENDING_MAX_MS	250
static char *pending = NULL;
static int	pending_used = 0;
static int	pending_count = 0;
static TimestampTz pending_since = 0;	/* the first span's end */

/* ---------------------------------------------------------------------
 * W3C trace context: parsing and validation
 * ---------------------------------------------------------------------
 */

static bool
is_lower_hex(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
all_zero(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] != '0')
			return false;
	return true;
}

/*
 * Parse a traceparent header value (W3C Trace Context, level 1):
 * version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex, 2, 32,
 * 16 and 2 digits.  Version ff is invalid; version 00 has exactly these four
 * fields; a later version may append "-" and more, which is ignored (as the
 * recommendation says).  Trace id and parent id must not be all zeros.  On
 * failure *why says what is wrong (for an errdetail).
 */
bool
es_traceparent_parse(const char *s, int len, EsTraceContext *out, const char **why)
{
	*why = NULL;
	if (len < 55)
		*why = "It must have the form 00-<32 hex digits>-<16 hex digits>-<2 hex digits>.";
	else if (!is_lower_hex(s, 2) || s[2] != '-' || s[35] != '-' || s[52] != '-')
		*why = "It must have the form 00-<32 hex digits>-<16 hex digits>-<2 hex digits>.";
	else if (memcmp(s, "ff", 2) == 0)
		*why = "Version ff is invalid.";
	else if (memcmp(s, "00", 2) == 0 && len != 55)
		*why = "A version 00 traceparent is exactly 55 characters long.";
	else if (len > 55 && s[55] != '-')
		*why = "It must have the form 00-<32 hex digits>-<16 hex digits>-<2 hex digits>.";
	else if (!is_lower_hex(s + 3, 32) || !is_lower_hex(s + 36, 16) ||
			 !is_lower_hex(s + 53, 2))
		*why = "Trace id, parent id and flags must be lower-case hexadecimal digits.";
	else if (all_zero(s + 3, 32))
		*why = "The trace id must not be all zeros.";
	else if (all_zero(s + 36, 16))
		*why = "The parent id must not be all zeros.";
	if (*why != NULL)
		return false;
	if (out)
	{
		memcpy(out->trace_id, s + 3, 32);
		out->trace_id[32] = '\0';
		memcpy(out->span_id, s + 36, 16);
		out->span_id[16] = '\0';
		memcpy(out->flags, s + 53, 2);
		out->flags[2] = '\0';
	}
	return true;
}

static bool
tracestate_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '_' || c == '-' || c == '*' || c == '/';
}

/*
 * Validate a tracestate value: at most 32 list members separated by commas
 * (optional spaces or tabs around them), each key=value.  A key is a
 * lower-case letter followed by up to 255 of [a-z0-9_-*&#47;], or
 * tenant@system (tenant up to 241 characters starting with a lower-case
 * letter or a digit, system up to 14 starting with a letter); a value is up
 * to 256 printable ASCII characters other than comma and equals sign, not
 * ending with a space.  Empty members are allowed and not counted; keys must
 * be unique.  Any length is valid here: es_tracestate_trim keeps what is
 * passed on within ES_TRACESTATE_LEN.
 */
bool
es_tracestate_valid(const char *s, int len, const char **why)
{
	int			members = 0;
	int			pos = 0;
	const char *keys[ES_TRACESTATE_MEMBERS];
	int			keylens[ES_TRACESTATE_MEMBERS];

	*why = NULL;
	while (pos <= len)
	{
		int			end = pos;
		int			a,
					b,
					eq = -1,
					at = -1;

		while (end < len && s[end] != ',')
			end++;
		a = pos;
		b = end;
		while (a < b && (s[a] == ' ' || s[a] == '\t'))
			a++;
		while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
			b--;
		if (a < b)
		{
			for (int i = a; i < b; i++)
				if (s[i] == '=')
				{
					eq = i;
					break;
				}
			if (eq <= a || eq == b - 1 || eq - a > 256 || b - eq - 1 > 256)
			{
				*why = "Each tracestate member is key=value, with a key and a value of 1 to 256 characters.";
				return false;
			}
			if (!((s[a] >= 'a' && s[a] <= 'z') || (s[a] >= '0' && s[a] <= '9')))
			{
				*why = "A tracestate key starts with a lower-case letter or a digit.";
				return false;
			}
			for (int i = a; i < eq; i++)
			{
				if (s[i] == '@' && at < 0)
					at = i;
				else if (!tracestate_key_char(s[i]))
				{
					*why = "A tracestate key has only lower-case letters, digits and _ - * / (and one @).";
					return false;
				}
			}
			if (at >= 0 && (at - a > 241 || eq - at - 1 < 1 || eq - at - 1 > 14 ||
							!(s[at + 1] >= 'a' && s[at + 1] <= 'z')))
			{
				*why = "A multi-tenant tracestate key is tenant@system, with a system id of 1 to 14 characters starting with a letter.";
				return false;
			}
			if (at < 0 && !(s[a] >= 'a' && s[a] <= 'z'))
			{
				*why = "A tracestate key without @ starts with a lower-case letter.";
				return false;
			}
			for (int i = eq + 1; i < b; i++)
				if (s[i] < 0x20 || s[i] > 0x7e || s[i] == ',' || s[i] == '=')
				{
					*why = "A tracestate value has only printable ASCII characters other than , and =.";
					return false;
				}
			for (int k = 0; k < members; k++)
				if (keylens[k] == eq - a && memcmp(keys[k], s + a, eq - a) == 0)
				{
					*why = "A tracestate key appears only once.";
					return false;
				}
			if (members == ES_TRACESTATE_MEMBERS)
			{
				*why = "A tracestate has at most 32 list members.";
				return false;
			}
			keys[members] = s + a;
			keylens[members] = eq - a;
			members++;
		}
		pos = end + 1;
	}
	return true;
}

/*
 * The length of a valid tracestate "s" once list members are dropped from
 * its end until it fits in ES_TRACESTATE_LEN characters (the W3C's
 * propagation floor: a vendor truncates rather than refuses; the first
 * members are the most recent).  Cut before a comma, trailing spaces off.
 */
int
es_tracestate_trim(const char *s, int len)
{
	while (len > ES_TRACESTATE_LEN)
	{
		const char *comma = NULL;

		for (int i = Min(len, ES_TRACESTATE_LEN + 1) - 1; i >= 0; i--)
			if (s[i] == ',')
			{
				comma = s + i;
				break;
			}
		if (comma == NULL)
			return 0;			/* one member longer than the limit: none */
		len = comma - s;
		while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == ','))
			len--;
	}
	return len;
}

static bool
check_traceparent(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (es_traceparent_parse(*newval, strlen(*newval), NULL, &why))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid traceparent \"%s\"", *newval);
	GUC_check_errdetail("%s", why);
	return false;
}

static bool
check_tracestate(char **newval, void **extra, GucSource source)
{
	const char *why;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (es_tracestate_valid(*newval, strlen(*newval), &why))
	{
		int			keep = es_tracestate_trim(*newval, strlen(*newval));

		/* too long: the first members (GUC strings are malloc'd in 15) */
		if (keep < strlen(*newval))
		{
			char	   *trimmed = strndup(*newval, keep);

			if (trimmed == NULL)
				return false;
			free(*newval);
			*newval = trimmed;
		}
		return true;
	}
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errmsg("invalid tracestate \"%s\"", *newval);
	GUC_check_errdetail("%s", why);
	return false;
}

/* The context an append here would pass on, as a traceparent; or NULL. */
static const char *
current_traceparent(void)
{
	static char buf[ES_TRACEPARENT_LEN + 1];

	if (call.active)
	{
		/* in a handler: its span, or nothing (never the session's setting) */
		if (!call.traced)
			return NULL;
		snprintf(buf, sizeof(buf), "00-%s-%s-%s",
				 call.ctx.trace_id, call.ctx.span_id, call.ctx.flags);
		return buf;
	}
	if (guc_traceparent && guc_traceparent[0] != '\0')
		return guc_traceparent;
	return NULL;
}

static const char *
current_tracestate(void)
{
	if (call.active)
		return call.traced && call.tracestate[0] ? call.tracestate : NULL;
	if (guc_traceparent && guc_traceparent[0] != '\0' &&
		guc_tracestate && guc_tracestate[0] != '\0')
		return guc_tracestate;
	return NULL;
}

static const char *
show_traceparent(void)
{
	const char *v = current_traceparent();

	return v ? v : "";
}

static const char *
show_tracestate(void)
{
	if (call.active)
		return call.traced ? call.tracestate : "";
	return guc_tracestate ? guc_tracestate : "";
}

void
es_trace_define_gucs(void)
{
	DefineCustomStringVariable("eventsource.traceparent",
							   "W3C traceparent that appends in this session or transaction record in event metadata.",
							   "Set it with SET LOCAL per transaction.  Inside a subscription handler it reads as the handler's span.",
							   &guc_traceparent, "", PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_traceparent, NULL, show_traceparent);
	DefineCustomStringVariable("eventsource.tracestate",
							   "W3C tracestate recorded with eventsource.traceparent.",
							   NULL,
							   &guc_tracestate, "", PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   check_tracestate, NULL, show_tracestate);
}

/* ---------------------------------------------------------------------
 * Metadata of appended events
 * ---------------------------------------------------------------------
 */

static void
push_string_pair(JsonbParseState **state, const char *key, const char *value)
{
	JsonbValue	k;
	JsonbValue	v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	pushJsonbValue(state, WJB_KEY, &k);
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * A copy of the metadata object with the n string pairs keys[i]: values[i]
 * added, or replacing a top-level key of the same name whose value is a
 * string (NULL values are skipped).
 */
Jsonb *
es_metadata_add(Jsonb *metadata, int n, const char *const *keys,
				const char *const *values)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	JsonbValue *res = NULL;
	int			depth = 0;

	it = JsonbIteratorInit(&metadata->root);
	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY && depth == 1)
		{
			bool		replaced = false;

			for (int i = 0; i < n && !replaced; i++)
				replaced = values[i] != NULL && v.val.string.len == strlen(keys[i]) &&
					memcmp(v.val.string.val, keys[i], v.val.string.len) == 0;
			if (replaced)
			{
				/* its value: a string (the callers' keys), one token */
				tok = JsonbIteratorNext(&it, &v, false);
				Assert(tok == WJB_VALUE);
				continue;
			}
		}
		if (tok == WJB_BEGIN_ARRAY || tok == WJB_BEGIN_OBJECT)
			depth++;
		else if (tok == WJB_END_ARRAY || tok == WJB_END_OBJECT)
			depth--;
		if (tok == WJB_END_OBJECT && depth == 0)
		{
			for (int i = 0; i < n; i++)
				if (values[i] != NULL)
					push_string_pair(&state, keys[i], values[i]);
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	return JsonbValueToJsonb(res);
}

/* A metadata key's value if it is there: string, or 22023 */
static JsonbValue *
metadata_string(Jsonb *metadata, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&metadata->root, key, strlen(key), NULL);

	if (v != NULL && v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event metadata key \"%s\" must be a string", key)));
	return v;
}

/*
 * The trace context of an event about to be appended: validate the
 * metadata's traceparent and tracestate (22023), or, when it has no
 * traceparent nor tracestate, add the current context's.  Returns the
 * metadata to store.
 *
 * Only in a database with the 1.1 SQL objects: with 1.0's, append() keeps
 * 1.0's meaning (the metadata is stored as given, whatever its
 * "traceparent" holds, and the settings add nothing), so installing the
 * 1.1 library cannot make an application's appends fail before the
 * database is updated.  es_sql_version() is cached per snapshot, so this
 * costs a catalog read once per statement at most.
 */
Jsonb *
es_trace_metadata(Jsonb *metadata)
{
	JsonbValue *tp;
	JsonbValue *ts;
	const char *why;
	const char *keys[2] = {"traceparent", "tracestate"};
	const char *values[2];

	if (es_sql_version() < ES_SQL_1_1)
		return metadata;
	tp = metadata_string(metadata, "traceparent");
	ts = metadata_string(metadata, "tracestate");
	if (tp != NULL &&
		!es_traceparent_parse(tp->val.string.val, tp->val.string.len, NULL, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid traceparent \"%s\" in event metadata",
						pnstrdup(tp->val.string.val,
								 pg_mbcliplen(tp->val.string.val, tp->val.string.len, 100))),
				 errdetail("%s", why)));
	if (ts != NULL &&
		!es_tracestate_valid(ts->val.string.val, ts->val.string.len, &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tracestate in event metadata"),
				 errdetail("%s", why)));
	if (ts != NULL && ts->val.string.len > ES_TRACESTATE_LEN)
	{
		/* too long: stored with its first members only */
		const char *key[1] = {"tracestate"};
		const char *value[1];

		value[0] = pnstrdup(ts->val.string.val,
							es_tracestate_trim(ts->val.string.val, ts->val.string.len));
		metadata = es_metadata_add(metadata, 1, key, value);
	}
	/*
	 * The metadata's context wins, whole: a tracestate of the metadata
	 * without a traceparent belongs to no trace we know, and is never paired
	 * with the current context's traceparent (another trace's vendor data).
	 */
	if (tp != NULL || ts != NULL)
		return metadata;
	values[0] = current_traceparent();
	if (values[0] == NULL)
		return metadata;
	values[1] = current_tracestate();
	return es_metadata_add(metadata, 2, keys, values);
}

/* ---------------------------------------------------------------------
 * Spans of the worker
 * ---------------------------------------------------------------------
 */

static void
random_hex(char *out, int bytes)
{
	static const char hex[] = "0123456789abcdef";

	if (!prng_seeded)
	{
		uint64		seed;

		if (!pg_strong_random(&seed, sizeof(seed)))
			seed = (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp();
		pg_prng_seed(&trace_prng, seed);
		prng_seeded = true;
	}
	for (;;)
	{
		bool		nonzero = false;

		for (int i = 0; i < bytes; i += 8)
		{
			uint64		r = pg_prng_uint64(&trace_prng);

			for (int j = 0; j < 8 && i + j < bytes; j++)
			{
				uint8		b = (uint8) (r >> (8 * j));

				nonzero |= (b != 0);
				out[2 * (i + j)] = hex[b >> 4];
				out[2 * (i + j) + 1] = hex[b & 15];
			}
		}
		out[2 * bytes] = '\0';
		if (nonzero)
			return;
	}
}

/*
 * The W3C "sampled" flag (bit 0 of trace-flags): the caller may have
 * recorded its span, so ours are worth exporting; without it they are not
 * (the context is still passed on, flags unchanged).
 */
static bool
flags_sampled(const char *flags)
{
	char		c = flags[1];
	int			low = (c >= '0' && c <= '9') ? c - '0' : c - 'a' + 10;

	return (low & 1) != 0;
}

/* Hand the pending spans over to the shared queue. */
static void
pending_flush(void)
{
	if (pending_count > 0)
		es_otlp_enqueue_packed(pending, pending_count);
	pending_used = 0;
	pending_count = 0;
}

/*
 * Room for one more span at the end of the pending buffer (flushing it
 * first when a span of the largest size might not fit).  The span is kept
 * by pending_add once it is built.
 */
static EsSpan *
pending_reserve(void)
{
	if (pending == NULL)
		pending = MemoryContextAlloc(TopMemoryContext, ES_TRACE_PENDING_BYTES);
	if (pending_used + sizeof(EsSpan) > ES_TRACE_PENDING_BYTES)
		pending_flush();
	return (EsSpan *) (pending + pending_used);
}

static void
pending_add(const EsSpan *span)
{
	Assert((const char *) span == pending + pending_used);
	pending_used += MAXALIGN(es_span_size(span));
	if (pending_count++ == 0)
		pending_since = span->end;
	else if (span->end - pending_since >= ES_TRACE_PENDING_MAX_MS * 1000)
		pending_flush();
}

/* The batch span's ids, made when its first call needs them. */
static void
batch_ids(void)
{
	if (batch.traced)
		return;
	random_hex(batch.ctx.trace_id, 16);
	random_hex(batch.ctx.span_id, 8);
	strcpy(batch.ctx.flags, "01");
	batch.traced = true;
}

/*
 * A worker starts a batch.  Spans are built only when the exporter has an
 * endpoint (looked at once per batch).
 */
void
es_trace_batch_begin(const char *subscription, int partition, const char *database)
{
	pending_flush();			/* (a batch that never ended: none are lost) */
	memset(&batch, 0, sizeof(batch));
	batch.active = true;
	batch.start = GetCurrentTimestamp();
	batch_exporting = es_otlp_enabled();
	strlcpy(batch_subscription, subscription, sizeof(batch_subscription));
	batch_partition = partition;
	strlcpy(batch_database, database ? database : "", sizeof(batch_database));
	batch_names_utf8 = false;
	batch_calls = 0;
	batch_failed = 0;
	call_retry = 0;
}

/*
 * Start a span record for the span "s": its ids, kind and times; no strings
 * yet (span_text adds them, in EsSpanText order).
 */
static void
span_init(EsSpan *span, const EsTraceSpan *s)
{
	memcpy(span->trace_id, s->ctx.trace_id, sizeof(span->trace_id));
	memcpy(span->span_id, s->ctx.span_id, sizeof(span->span_id));
	if (s->has_parent)
		memcpy(span->parent_id, s->parent_id, sizeof(span->parent_id));
	else
		span->parent_id[0] = '\0';
	span->link_trace_id[0] = '\0';
	span->link_span_id[0] = '\0';
	span->is_batch = false;
	span->is_batch_call = false;
	span->kind = ES_SPAN_KIND_CONSUMER;
	span->status = ES_SPAN_STATUS_UNSET;
	span->partition = batch_partition;
	span->batch_calls = 0;
	span->batch_failed = 0;
	span->retry = 0;
	span->position = 0;
	span->start = s->start;
	span->end = GetCurrentTimestamp();
	span->text_len = 0;
}

/*
 * "value", a string in the database encoding, as UTF-8 (OTLP's encoding)
 * into "out" (maxlen + 1 bytes), cut to at most maxlen bytes on a character
 * boundary; returns its length.  In a UTF-8 database the string is copied.
 * In a SQL_ASCII database its bytes have no known encoding: ASCII is kept
 * and every other byte becomes '?'.  Otherwise it is converted with the
 * encoding's default conversion, without raising an error: a character
 * that has no UTF-8 counterpart becomes '?'.  Needs a transaction unless the
 * database is UTF-8 or SQL_ASCII, or the conversion was looked up before.
 */
static int
text_utf8(const char *value, int maxlen, char *out)
{
	int			enc = GetDatabaseEncoding();
	int			len = value ? strlen(value) : 0;

	if (len == 0)
		len = 0;
	else if (enc == PG_UTF8)
	{
		if (len > maxlen)
			len = pg_encoding_mbcliplen(PG_UTF8, value, len, maxlen);
		memcpy(out, value, len);
	}
	else if (enc == PG_SQL_ASCII)
	{
		len = Min(len, maxlen);
		for (int i = 0; i < len; i++)
			out[i] = IS_HIGHBIT_SET(value[i]) ? '?' : value[i];
	}
	else
	{
		/* the source cut first: a character never shrinks into UTF-8 */
		const unsigned char *src = (const unsigned char *) value;
		int			srclen = len > maxlen ? pg_mbcliplen(value, len, maxlen) : len;
		int			cap = srclen * MAX_CONVERSION_GROWTH + 1;
		unsigned char *dst = palloc(cap);
		int			dlen = 0;

		if (!OidIsValid(utf8_conversion))
			utf8_conversion = FindDefaultConversionProc(enc, PG_UTF8);
		dst[0] = '\0';
		while (srclen > 0)
		{
			int			done = 0;

			if (OidIsValid(utf8_conversion))
				done = pg_do_encoding_conversion_buf(utf8_conversion, enc, PG_UTF8,
													 (unsigned char *) src, srclen,
													 dst + dlen, cap - dlen, true);
			dlen += strlen((char *) dst + dlen);
			src += done;
			srclen -= done;
			if (srclen > 0)
			{
				/* no UTF-8 counterpart: one '?' for the character */
				int			skip = Min(pg_encoding_mblen(enc, (const char *) src), srclen);

				dst[dlen++] = '?';
				dst[dlen] = '\0';
				src += skip;
				srclen -= skip;
			}
		}
		len = dlen > maxlen ? pg_encoding_mbcliplen(PG_UTF8, (char *) dst, dlen, maxlen) : dlen;
		memcpy(out, dst, len);
		pfree(dst);
	}
	out[len] = '\0';
	return len;
}

/*
 * Append string "k" (the next in EsSpanText order), already UTF-8, cut to
 * maxlen bytes on a character boundary.
 */
static void
span_text(EsSpan *span, EsSpanText k, const char *value, int maxlen)
{
	int			len = value ? strlen(value) : 0;

	if (len > maxlen)
		len = pg_encoding_mbcliplen(PG_UTF8, value, len, maxlen);
	Assert(span->text_len + len + 1 <= ES_SPAN_TEXT_MAX);
	span->text_off[k] = span->text_len;
	if (len > 0)
		memcpy(span->text + span->text_len, value, len);
	span->text[span->text_len + len] = '\0';
	span->text_len += len + 1;
}

/*
 * Append string "k", in the database encoding: converted to UTF-8 and cut
 * to maxlen bytes (text_utf8).  In a transaction.
 */
static void
span_text_db(EsSpan *span, EsSpanText k, const char *value, int maxlen)
{
	Assert(span->text_len + maxlen + 1 <= ES_SPAN_TEXT_MAX);
	span->text_off[k] = span->text_len;
	span->text_len += text_utf8(value, maxlen, span->text + span->text_len) + 1;
}

/*
 * The batch's subscription and database names in UTF-8, made by its first
 * call (in a transaction) for all its spans, the batch span included, which
 * is built outside one.
 */
static void
batch_names(void)
{
	if (batch_names_utf8)
		return;
	(void) text_utf8(batch_subscription, ES_MAX_NAME_LEN, batch_subscription_utf8);
	(void) text_utf8(batch_database, NAMEDATALEN - 1, batch_database_utf8);
	batch_names_utf8 = true;
}

/* The strings every span has, up to the subscription (all UTF-8). */
static void
span_common_text(EsSpan *span, const EsTraceSpan *s)
{
	span_text(span, ES_SPAN_TRACESTATE, s->tracestate, ES_TRACESTATE_LEN);
	span_text(span, ES_SPAN_DATABASE, batch_database_utf8, NAMEDATALEN - 1);
	span_text(span, ES_SPAN_SUBSCRIPTION, batch_subscription_utf8, ES_MAX_NAME_LEN);
}

/*
 * The batch ends: its span, when it called a handler and is exported; then
 * the batch's spans go to the shared queue.
 */
void
es_trace_batch_end(void)
{
	EsSpan	   *span;

	if (batch.active && batch_exporting && batch.traced && batch_calls > 0 &&
		batch_names_utf8)
	{
		span = pending_reserve();
		span_init(span, &batch);
		span->is_batch = true;
		span->batch_calls = batch_calls;
		span->batch_failed = batch_failed;
		span->status = batch_failed > 0 ? ES_SPAN_STATUS_ERROR : ES_SPAN_STATUS_UNSET;
		span_common_text(span, &batch);
		span_text(span, ES_SPAN_EVENT_ID, NULL, 0);
		span_text(span, ES_SPAN_EVENT_TYPE, NULL, 0);
		span_text(span, ES_SPAN_STREAM_ID, NULL, 0);
		span_text(span, ES_SPAN_OUTCOME, batch_failed > 0 ? "error" : "ok", 15);
		span_text(span, ES_SPAN_SQLSTATE, NULL, 0);
		span_text(span, ES_SPAN_MESSAGE, NULL, 0);
		pending_add(span);
	}
	pending_flush();
	batch.active = false;
}

/* The worker tells how many times the next event has failed before. */
void
es_trace_set_retry(int retries)
{
	call_retry = retries;
}

/*
 * What the current call is about, for its span (no event: a batch call).
 * The strings are handler.c's, valid until the call ends.
 */
static bool call_has_event;
static const char *call_event_id;
static const char *call_event_type;
static const char *call_stream_id;
static int64 call_position;

/*
 * A handler call starts.  "event" is a row of eventsource.events, or NULL
 * for a batch handler's call; its id, type, stream and position come as
 * strings that stay valid until the call ends.  Sets up the handler span's
 * context: the event's traceparent's trace, else the batch span's (only
 * when exporting).
 */
void
es_trace_call_begin(HeapTuple event, TupleDesc desc, const char *event_id,
					const char *event_type, const char *stream_id, int64 position)
{
	bool		isnull;
	bool		exporting;

	call.active = true;
	call.traced = false;
	call.has_parent = false;
	call.tracestate[0] = '\0';
	call_has_event = (event != NULL);
	call_event_id = event_id;
	call_event_type = event_type;
	call_stream_id = stream_id;
	call_position = position;

	call.sampled = true;
	exporting = batch.active && batch_exporting;
	if (exporting)
	{
		/* (the start time is only ever a span's) */
		call.start = GetCurrentTimestamp();
		batch_names();
	}

	if (event != NULL)
	{
		Jsonb	   *meta = DatumGetJsonbP(heap_getattr(event, Anum_es_events_metadata, desc, &isnull));
		JsonbValue *tp = getKeyJsonValueFromContainer(&meta->root, "traceparent", 11, NULL);
		const char *why;

		if (tp && tp->type == jbvString &&
			es_traceparent_parse(tp->val.string.val, tp->val.string.len, &call.ctx, &why))
		{
			JsonbValue *ts = getKeyJsonValueFromContainer(&meta->root, "tracestate", 10, NULL);

			call.traced = true;
			call.sampled = flags_sampled(call.ctx.flags);
			if (exporting)
			{
				/* the handler span, a child of the event's */
				call.has_parent = true;
				strlcpy(call.parent_id, call.ctx.span_id, sizeof(call.parent_id));
				random_hex(call.ctx.span_id, 8);
			}
			/* (a 1.0 database stores any tracestate: only a valid one goes on) */
			if (ts && ts->type == jbvString &&
				es_tracestate_valid(ts->val.string.val, ts->val.string.len, &why))
			{
				int			keep = es_tracestate_trim(ts->val.string.val, ts->val.string.len);

				memcpy(call.tracestate, ts->val.string.val, keep);
				call.tracestate[keep] = '\0';
			}
		}
	}
	if (!call.traced && exporting)
	{
		batch_ids();
		call.traced = true;
		call.has_parent = true;
		strlcpy(call.ctx.trace_id, batch.ctx.trace_id, sizeof(call.ctx.trace_id));
		strlcpy(call.ctx.flags, batch.ctx.flags, sizeof(call.ctx.flags));
		strlcpy(call.parent_id, batch.ctx.span_id, sizeof(call.parent_id));
		random_hex(call.ctx.span_id, 8);
	}
	last_known = call.traced;
	if (call.traced)
	{
		strlcpy(last_trace_id, call.ctx.trace_id, sizeof(last_trace_id));
		strlcpy(last_span_id, call.ctx.span_id, sizeof(last_span_id));
	}
}

/*
 * The handler call ended: "outcome" is "ok", "error", "timeout" or
 * "cancelled"; sqlstate and message describe an error (else NULL).  Queues
 * the handler span when spans are exported.
 */
void
es_trace_call_end(const char *outcome, const char *sqlstate, const char *message)
{
	EsSpan	   *span;
	int			retry = call_retry;

	call_retry = 0;
	if (!call.active)
		return;
	call.active = false;
	if (!batch.active)
		return;
	batch_calls++;
	if (sqlstate != NULL)
		batch_failed++;
	if (!batch_exporting || !call.traced || !call.sampled)
		return;

	batch_ids();
	span = pending_reserve();
	span_init(span, &call);
	memcpy(span->link_trace_id, batch.ctx.trace_id, sizeof(span->link_trace_id));
	memcpy(span->link_span_id, batch.ctx.span_id, sizeof(span->link_span_id));
	span->retry = retry;
	span->is_batch_call = !call_has_event;
	span->position = call_position;
	span_common_text(span, &call);
	span_text(span, ES_SPAN_EVENT_ID, call_has_event ? call_event_id : NULL, 36);
	span_text_db(span, ES_SPAN_EVENT_TYPE, call_has_event ? call_event_type : NULL, ES_MAX_EVENT_TYPE_LEN);
	span_text_db(span, ES_SPAN_STREAM_ID, call_has_event ? call_stream_id : NULL, ES_SPAN_TEXT_LEN - 1);
	span_text(span, ES_SPAN_OUTCOME, outcome, 15);
	span_text(span, ES_SPAN_SQLSTATE, sqlstate, 5);
	span_text_db(span, ES_SPAN_MESSAGE, sqlstate ? message : NULL, ES_SPAN_TEXT_LEN - 1);
	if (sqlstate != NULL)
		span->status = ES_SPAN_STATUS_ERROR;
	pending_add(span);
}

/*
 * " trace_id=... span_id=..." for a log line about the event of the current
 * or last handler call, or "" when it had no trace context.
 */
const char *
es_trace_log_fields(void)
{
	if (!last_known)
		return "";
	return psprintf(" trace_id=%s span_id=%s", last_trace_id, last_span_id);
}
