/*-------------------------------------------------------------------------
 *
 * otlp_queue.c
 *	  The bounded queue of finished spans in shared memory, between the
 *	  subscription workers (producers) and the OTLP exporter (consumer), and
 *	  the exporter's counters.
 *
 * A ring of eventsource.otlp_queue_size fixed-size slots (a span's used
 * bytes are copied, see es_span_size).  One LWLock of this file's own
 * tranche protects the indexes and the counters; a worker holds it while it
 * copies a batch's spans in (one acquisition for up to 32 kB of spans), the
 * exporter only while it reads or moves the indexes (es_otlp_dequeue says
 * why it may copy spans out without it), and never across network I/O,
 * which the exporter does on its private copy.  A worker never waits for
 * the exporter otherwise: when the ring is full, or no endpoint is set, the
 * span is dropped and counted.  A worker sets the exporter's latch when the
 * ring reaches the exporter's batch size; otherwise the exporter wakes on
 * its own flush interval.
 *
 * "enabled" and the wake-up threshold are published by the exporter after it
 * read its settings, so an endpoint set or changed with a reload takes
 * effect without the workers reloading theirs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/builtins.h"

#include "trace.h"

typedef struct EsOtlpQueue
{
	LWLock		lock;
	int			tranche_id;
	/* exporter: set by the exporter process */
	bool		enabled;
	int			wake_at;		/* set the latch when this many are queued */
	int			exporter_pid;
	Latch	   *exporter_latch;
	/* the ring */
	int			capacity;
	int			head;			/* next slot to read */
	int			count;
	/* counters */
	int64		spans_queued;
	int64		spans_exported;
	int64		spans_dropped_full;
	int64		spans_dropped_export;
	int64		exports;
	int64		export_errors;
	TimestampTz last_export_at;
	TimestampTz last_error_at;
	char		last_error[ES_SPAN_TEXT_LEN];
	EsSpan		spans[FLEXIBLE_ARRAY_MEMBER];
} EsOtlpQueue;

static EsOtlpQueue *queue = NULL;

Size
es_otlp_queue_shmem_size(void)
{
	return add_size(offsetof(EsOtlpQueue, spans),
					mul_size(sizeof(EsSpan), es_otlp_queue_size));
}

void
es_otlp_queue_shmem_init(void *area, bool found)
{
	queue = (EsOtlpQueue *) area;
	if (!found)
	{
		memset(queue, 0, offsetof(EsOtlpQueue, spans));
		queue->tranche_id = LWLockNewTrancheId();
		LWLockInitialize(&queue->lock, queue->tranche_id);
		queue->capacity = es_otlp_queue_size;
	}
	LWLockRegisterTranche(queue->tranche_id, "eventsource_otlp_queue");
}

/* Is an endpoint configured (as the exporter last read its settings)? */
bool
es_otlp_enabled(void)
{
	return queue != NULL && queue->enabled;
}

/*
 * Queue the n finished spans packed in "buf" (each es_span_size bytes,
 * MAXALIGN'd: trace.c's pending buffer), dropping (and counting) those that
 * do not fit, or all of them when no exporter wants spans any more.  Called
 * by workers, once per batch of spans rather than per span; holds the lock
 * only while it copies them in (at most trace.c's 32 kB), never waits for
 * anything else.  Wakes the exporter when the ring reaches its batch size.
 */
void
es_otlp_enqueue_packed(const char *buf, int n)
{
	Latch	   *wake = NULL;

	if (queue == NULL)
		return;
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	if (!queue->enabled)
	{
		/*
		 * The endpoint was unset (or the exporter stopped) after these spans
		 * were made: they will not be exported, and are counted as the
		 * spans es_otlp_discard drops for the same reason are.  (They may
		 * have waited in the worker for a whole batch.)
		 */
		queue->spans_dropped_export += n;
	}
	else
	{
		int			before = queue->count;

		for (int i = 0; i < n; i++)
		{
			const EsSpan *span = (const EsSpan *) buf;

			if (queue->count >= queue->capacity)
			{
				queue->spans_dropped_full += n - i;
				break;
			}
			memcpy(&queue->spans[(queue->head + queue->count) % queue->capacity],
				   span, es_span_size(span));
			queue->count++;
			queue->spans_queued++;
			buf += MAXALIGN(es_span_size(span));
		}
		if (before < queue->wake_at && queue->count >= queue->wake_at)
			wake = queue->exporter_latch;
	}
	LWLockRelease(&queue->lock);
	if (wake)
		SetLatch(wake);
}

/*
 * The exporter takes up to "max" spans out of the ring, in order, into its
 * own memory.  Only the exporter ever advances "head" or lowers "count",
 * and workers only write into slots past head + count, so the spans it has
 * seen queued stay put until it releases them: it copies them without the
 * lock, which it holds only to read and then to move the indexes.
 */
int
es_otlp_dequeue(EsSpan *out, int max)
{
	int			head;
	int			n;

	LWLockAcquire(&queue->lock, LW_SHARED);
	head = queue->head;
	n = Min(queue->count, max);
	LWLockRelease(&queue->lock);

	for (int i = 0; i < n; i++)
	{
		EsSpan	   *slot = &queue->spans[(head + i) % queue->capacity];

		memcpy(&out[i], slot, es_span_size(slot));
	}

	if (n > 0)
	{
		LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
		queue->head = (queue->head + n) % queue->capacity;
		queue->count -= n;
		LWLockRelease(&queue->lock);
	}
	return n;
}

/* The exporter stops: nobody consumes the ring until one is back. */
static void
exporter_gone(int code, Datum arg)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	if (queue->exporter_pid == MyProcPid)
	{
		queue->enabled = false;
		queue->exporter_pid = 0;
		queue->exporter_latch = NULL;
	}
	LWLockRelease(&queue->lock);
}

/*
 * An exporter process starts: it becomes the queue's only consumer, unless
 * another one is (es_otlp_dequeue relies on there being one), and drops the
 * spans its predecessor left (stale).  Returns false when another exporter
 * runs: the caller exits.
 */
bool
es_otlp_attach_exporter(void)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	if (queue->exporter_pid != 0 && queue->exporter_pid != MyProcPid)
	{
		LWLockRelease(&queue->lock);
		return false;
	}
	queue->exporter_pid = MyProcPid;
	queue->exporter_latch = MyLatch;
	queue->spans_dropped_export += queue->count;
	queue->head = 0;
	queue->count = 0;
	LWLockRelease(&queue->lock);
	before_shmem_exit(exporter_gone, 0);
	return true;
}

/*
 * The exporter (re)read its settings: spans are wanted when it has an
 * endpoint; wake it when wake_at spans are waiting.
 */
void
es_otlp_set_exporter(bool enabled, int wake_at)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	queue->enabled = enabled;
	queue->wake_at = Max(1, Min(wake_at, queue->capacity / 2));
	LWLockRelease(&queue->lock);
}

/* Drop what is queued (counted as not exported): the endpoint was unset. */
void
es_otlp_discard(void)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	queue->spans_dropped_export += queue->count;
	queue->head = 0;
	queue->count = 0;
	LWLockRelease(&queue->lock);
}

/*
 * Copy "src" into "dst" (size bytes) as printable ASCII: the error may
 * quote the collector's response, any bytes in any encoding, and it is
 * shown as text in every database (eventsource.tracing, health()).  Every
 * other byte becomes '?', so the cut at size - 1 bytes is on a character
 * boundary.
 */
static void
printable_ascii(char *dst, const char *src, size_t size)
{
	size_t		i;

	for (i = 0; i + 1 < size && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 0x20 && src[i] <= 0x7e) ? src[i] : '?';
	dst[i] = '\0';
}

/* The outcome of one export of nspans spans: error NULL means success. */
void
es_otlp_note_export(int nspans, const char *error)
{
	LWLockAcquire(&queue->lock, LW_EXCLUSIVE);
	queue->exports++;
	if (error == NULL)
	{
		queue->spans_exported += nspans;
		queue->last_export_at = GetCurrentTimestamp();
	}
	else
	{
		queue->export_errors++;
		queue->spans_dropped_export += nspans;
		queue->last_error_at = GetCurrentTimestamp();
		printable_ascii(queue->last_error, error, sizeof(queue->last_error));
	}
	LWLockRelease(&queue->lock);
}

void
es_otlp_get_stats(EsOtlpStats *out)
{
	memset(out, 0, sizeof(*out));
	if (queue == NULL)
		return;
	LWLockAcquire(&queue->lock, LW_SHARED);
	out->exporter_pid = queue->exporter_pid;
	out->enabled = queue->enabled;
	out->queued = queue->count;
	out->capacity = queue->capacity;
	out->spans_queued = queue->spans_queued;
	out->spans_exported = queue->spans_exported;
	out->spans_dropped_full = queue->spans_dropped_full;
	out->spans_dropped_export = queue->spans_dropped_export;
	out->exports = queue->exports;
	out->export_errors = queue->export_errors;
	out->last_export_at = queue->last_export_at;
	out->last_error_at = queue->last_error_at;
	strlcpy(out->last_error, queue->last_error, sizeof(out->last_error));
	LWLockRelease(&queue->lock);
}

/*
 * The "tracing" check of health(): NULL when tracing is off (no check),
 * "healthy", or "unhealthy: ..." when the last export failed (since the last
 * success) or the exporter does not run although an endpoint is set (the
 * launcher starts it within a moment of a reload; it may lack a
 * max_worker_processes slot).
 */
const char *
es_otlp_health(void)
{
	EsOtlpStats s;

	es_otlp_get_stats(&s);
	if (!s.enabled)
		return es_otlp_endpoint_set() ?
			"unhealthy: eventsource.otlp_endpoint is set but the OTLP exporter is not running" : NULL;
	if (s.last_error_at != 0 && s.last_error_at > s.last_export_at)
		return psprintf("unhealthy: export failing (%s), " INT64_FORMAT " spans dropped",
						s.last_error, s.spans_dropped_full + s.spans_dropped_export);
	return "healthy";
}

PG_FUNCTION_INFO_V1(es_tracing_stats);

/*
 * tracing_stats() RETURNS record: the exporter and its queue (one for the
 * whole server).
 */
Datum
es_tracing_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13];
	EsOtlpStats s;

	es_require_shmem("eventsource.tracing");
	/* only 1.1's SQL declares it; declared by hand in a 1.0 database: refuse */
	es_require_sql_version("1.1", "eventsource.tracing_stats()");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	es_otlp_get_stats(&s);
	memset(nulls, 0, sizeof(nulls));
	values[0] = BoolGetDatum(s.enabled);
	values[1] = Int32GetDatum(s.exporter_pid);
	nulls[1] = (s.exporter_pid == 0);
	values[2] = Int32GetDatum(s.queued);
	values[3] = Int32GetDatum(s.capacity);
	values[4] = Int64GetDatum(s.spans_queued);
	values[5] = Int64GetDatum(s.spans_exported);
	values[6] = Int64GetDatum(s.spans_dropped_full + s.spans_dropped_export);
	values[7] = Int64GetDatum(s.spans_dropped_full);
	values[8] = Int64GetDatum(s.exports);
	values[9] = Int64GetDatum(s.export_errors);
	values[10] = TimestampTzGetDatum(s.last_export_at);
	nulls[10] = (s.last_export_at == 0);
	values[11] = CStringGetTextDatum(s.last_error);
	nulls[11] = (s.last_error_at == 0);
	values[12] = TimestampTzGetDatum(s.last_error_at);
	nulls[12] = (s.last_error_at == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
