/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  delete_stream() and truncate_stream(): hiding a stream's events, and
 *	  the one place that says which events are hidden.
 *
 * A lifecycle operation never touches the log's rows.  It records, under the
 * stream's lock (the one append() takes), a row of eventsource.stream_lifecycle
 * saying that versions 1 .. hidden_through of the stream are hidden (and, for
 * a hard delete, that the stream is tombstoned), and appends a system event
 * ($StreamDeleted, $StreamTruncated) to the stream itself at a negative
 * version (-n for the n-th operation), in the same transaction.  So:
 *
 *	- the hiding commits atomically with the system event, and is seen by
 *	  every reader whose snapshot sees that commit;
 *	- the system event is delivered in log order, to the same subscription
 *	  partition as the stream's own events, and passes the same category
 *	  filter; it never takes one of the stream's versions;
 *	- versions are never reused: appends continue after last_version, which
 *	  the row keeps even once a later cleanup removes the hidden rows.
 *
 * Which events are hidden is spelled once, in the view
 * eventsource.visible_events (eventsource--1.0--1.1.sql).  Every read path
 * over several streams builds its query over "@EVENTS@", which
 * es_visible_plan() replaces by that view, or by the table on a database
 * still on the 1.0 SQL (where nothing can be hidden).  The per-stream
 * readers (read_stream, load) read the table above "@FLOOR($n)@", the
 * stream's hidden_through in its tenant, in the same statement: for the versions >= 1 of one
 * stream that is exactly the view's predicate, because every hidden event
 * is older than the operation that hid it (the operation holds the
 * stream's lock, which appends hold until they commit) and hidden_through
 * only moves up.  read_all() reads the table as well and decides the view's
 * predicate here, with one lookup of the page's streams ("Hiding a page of
 * the log" below).  A change to the view must change @FLOOR($n)@ and
 * es_hiding_resolve() with it.
 *
 * The lifecycle state is per (tenant, stream): stream_lifecycle is keyed by
 * (tenant_id, stream_id), the view's probe, the floor and the page lookup
 * match both, and every operation runs in the caller's current tenant,
 * resolved once as the caller (es_current_tenant_text()) and passed to
 * every query.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/visibilitymap.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/bufmgr.h"
#include "storage/predicate.h"
#include "tcop/dest.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "eventsource.h"
#include "schema.h"
#include "tenant.h"

#define ES_EVENTS_TOKEN		"@EVENTS@"
#define ES_FLOOR_TOKEN		"@FLOOR("
#define ES_LAST_OP_TOKEN	"@LAST_OPERATION@"
#define ES_TENANT_TOKEN		"@TENANT_ID"

static SPIPlanPtr state_plans[2] = {NULL, NULL};
static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr drop_snapshots_plan = NULL;

/*
 * Is the lifecycle schema (1.1) installed in this database, as the data is
 * read (extversion.c: es_sql_version(), with the active snapshot; inside the
 * update script itself it is still 1.0)?
 */
bool
es_lifecycle_installed(void)
{
	return es_sql_version_at_least("1.1");
}

/* Replace every occurrence of "token" in "str" by "by" (palloc'd result). */
static char *
replace_token(const char *str, const char *token, const char *by)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;
	size_t		toklen = strlen(token);

	initStringInfo(&buf);
	while ((hit = strstr(p, token)) != NULL)
	{
		appendBinaryStringInfo(&buf, p, hit - p);
		appendStringInfoString(&buf, by);
		p = hit + toklen;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Replace every "@TENANT_ID@" (a row's tenant column) and "@TENANT_ID(a)@"
 * (alias a's) by the column, or, on the 1.0 SQL, which has no such column,
 * by the constant 'default' (every 1.0 row is the default tenant's, and
 * tenant.c allows no other there): "@TENANT_ID@ = $n" then reads the same
 * on both.
 */
static char *
replace_tenant_tokens(const char *str, bool have_column)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, ES_TENANT_TOKEN)) != NULL)
	{
		const char *q = hit + strlen(ES_TENANT_TOKEN);
		const char *alias = NULL;
		int			alias_len = 0;

		appendBinaryStringInfo(&buf, p, hit - p);
		if (*q == '(')
		{
			alias = q + 1;
			q = strchr(alias, ')');
			if (q == NULL)
				elog(ERROR, "eventsource: unterminated tenant token in \"%s\"", str);
			alias_len = q - alias;
			q++;
		}
		if (*q != '@')
			elog(ERROR, "eventsource: malformed tenant token in \"%s\"", str);
		if (!have_column)
			appendStringInfoString(&buf, "'" ES_DEFAULT_TENANT "'::pg_catalog.text");
		else
		{
			if (alias != NULL)
				appendStringInfo(&buf, "%.*s.", alias_len, alias);
			appendStringInfoString(&buf, "tenant_id");
		}
		p = q + 1;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * Replace every "@FLOOR($n)@" by the hidden_through of the stream $1 of the
 * tenant $n (0 when it has no lifecycle row), or by 0 on the 1.0 SQL, where
 * nothing is hidden.
 */
static char *
replace_floor_tokens(const char *str, bool lifecycle)
{
	StringInfoData buf;
	const char *p = str;
	const char *hit;

	initStringInfo(&buf);
	while ((hit = strstr(p, ES_FLOOR_TOKEN)) != NULL)
	{
		const char *param = hit + strlen(ES_FLOOR_TOKEN);
		const char *q = strchr(param, ')');

		if (q == NULL || q[1] != '@' || *param != '$')
			elog(ERROR, "eventsource: malformed floor token in \"%s\"", str);
		appendBinaryStringInfo(&buf, p, hit - p);
		if (lifecycle)
			appendStringInfo(&buf,
							 "(SELECT COALESCE(pg_catalog.max(l.hidden_through), 0)"
							 " FROM eventsource.stream_lifecycle l"
							 " WHERE l.tenant_id OPERATOR(pg_catalog.=) %.*s"
							 " AND l.stream_id OPERATOR(pg_catalog.=) $1)",
							 (int) (q - param), param);
		else
			appendStringInfoString(&buf, "0");
		p = q + 2;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * The kept plan of a read query, prepared on first use for the SQL version
 * of this database.  "query_fmt" reads @EVENTS@ wherever it reads the log,
 * and may use @FLOOR($n)@ (with the stream id as $1 and its tenant as $n)
 * as a lower bound of the stream's versions, and @LAST_OPERATION@ as the position above which no
 * event is hidden, and @TENANT_ID@ or @TENANT_ID(alias)@ for the tenant
 * column (replace_tenant_tokens).  "slots" holds the two variants (1.0 SQL, 1.1 SQL);
 * "generic" asks for a plan that is never replanned per call (see below);
 * plans are revalidated by the plan cache like any kept plan.  Caller is
 * connected to SPI.
 */
SPIPlanPtr
es_visible_plan(SPIPlanPtr *slots, const char *query_fmt, int nargs, Oid *argtypes,
				bool generic)
{
	int			v = es_lifecycle_installed() ? 1 : 0;

	if (slots[v] == NULL)
	{
		char	   *q;

		q = replace_token(query_fmt, ES_EVENTS_TOKEN,
						  v ? "eventsource.visible_events" : "eventsource.events");
		q = replace_floor_tokens(q, v);
		/*
		 * The position of the newest lifecycle operation: every event above
		 * it is visible (the first clause of visible_events, for queries
		 * that test rows one by one and want to skip the view's probe)
		 */
		q = replace_token(q, ES_LAST_OP_TOKEN,
						  v ? "(SELECT COALESCE(pg_catalog.max(l.last_position), 0)"
						  " FROM eventsource.stream_lifecycle l)" : "0");
		q = replace_tenant_tokens(q, v);
		if (v && generic)
		{
			/*
			 * A generic plan, always (for the read paths; monitoring asks for
			 * custom plans, status.c): planning the view's subqueries costs
			 * about half a millisecond, more than a batch of a subscription
			 * takes to read, and the plan cache would otherwise replan for
			 * every call (the custom plans of a range on global_position
			 * look cheaper than the generic one).  The generic plan is the
			 * same index scan.
			 */
			SPIPlanPtr	plan = SPI_prepare_cursor(q, nargs, argtypes,
												  CURSOR_OPT_GENERIC_PLAN);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare_cursor failed for \"%s\": %s",
					 q, SPI_result_code_string(SPI_result));
			if (SPI_keepplan(plan) != 0)
				elog(ERROR, "SPI_keepplan failed");
			slots[v] = plan;
		}
		else
			slots[v] = es_prepare(q, nargs, argtypes);
	}
	return slots[v];
}

/*
 * Hiding a page of the log read from the table (read_all).
 *
 * read_all() reads a page of the table in position order and leaves the
 * hiding to this code instead of reading the view: the view's third clause
 * is a correlated probe of stream_lifecycle's primary key for every event
 * older than the newest lifecycle operation, an executor subplan rescan per
 * row, which cost a page of 1,000 events about a quarter of its time with
 * lifecycle rows on 1% of the streams.  Here the page's events are noted
 * as they stream into the function's result (es_hiding_receiver), the
 * lifecycle rows of the distinct streams that could be hidden are read in
 * ONE statement (one primary-key probe per distinct stream, hiding_lookup),
 * and the caller drops the hidden rows (es_hiding_resolve).  The cost stays
 * proportional to the events read, never to the number of lifecycle rows:
 * no set of all lifecycle rows is built (README, "Lifecycle rows of other
 * streams").
 *
 * The decision is the view's predicate, row for row.  An event is hidden
 * exactly when it is at or below the newest operation's position (clause 1),
 * has a version >= 1 (clause 2) and its stream's row has hidden_through >=
 * its version (clause 3).  A row with hidden_through = 0 (an erasure of a
 * stream nothing else touched) hides nothing (no version >= 1 is <= 0).  This
 * holds only if the page, the newest operation's position and the lookup
 * are all read with ONE snapshot: the caller pushes one snapshot and runs
 * every statement of the read under it (es_spi_read with the active
 * snapshot, read.c).  With a later snapshot for the lookup than for the page
 * nothing would leak (hiding only grows), but with an earlier one — the
 * transaction's, say — an operation that committed in between would leave
 * its hidden events in the page.
 *
 * The lookup key is (tenant_id, stream_id), as stream_lifecycle's: the
 * same stream id in two tenants is two streams (a reader of several
 * tenants, such as a cross-tenant subscription, meets both).
 */

/*
 * A stream's lookup key: bytes of the stream id and of its tenant id (not
 * NUL-terminated).
 */
typedef struct EsHidingKey
{
	const char *data;
	int			len;
	const char *tenant;
	int			tenant_len;
} EsHidingKey;

typedef struct EsHidingStream
{
	EsHidingKey key;			/* must be first (dynahash) */
	int64		hidden_through; /* 0 until the lookup finds a row */
} EsHidingStream;

/* a row of the statement that could be hidden */
typedef struct EsHidingCandidate
{
	uint64		row;			/* its number in the statement's output, from 0 */
	int64		version;
	EsHidingStream *stream;
} EsHidingCandidate;

struct EsHiding
{
	int64		last_operation; /* position of the newest lifecycle operation */
	MemoryContext cxt;			/* what one statement noted; reset by each */
	HTAB	   *streams;		/* EsHidingStream by key, in cxt */
	EsHidingStream *previous;	/* the stream of the last row noted */
	EsHidingCandidate *candidates;
	int			ncandidates;
	int			maxcandidates;
	uint64		rows;			/* rows the statement returned */
	int64		last_position;	/* the position of its last row */
	uint64	   *hidden;			/* es_hiding_resolve's answer, in cxt */
};

typedef struct EsHidingReceiver
{
	DestReceiver pub;
	DestReceiver *inner;
	EsHiding   *hiding;
} EsHidingReceiver;

static SPIPlanPtr last_operation_plans[2] = {NULL, NULL};
static SPIPlanPtr hiding_lookup_plans[2] = {NULL, NULL};

static uint32
hiding_key_hash(const void *key, Size keysize)
{
	const EsHidingKey *k = (const EsHidingKey *) key;

	return hash_combine(hash_bytes((const unsigned char *) k->data, k->len),
						hash_bytes((const unsigned char *) k->tenant, k->tenant_len));
}

static int
hiding_key_match(const void *key1, const void *key2, Size keysize)
{
	const EsHidingKey *a = (const EsHidingKey *) key1;
	const EsHidingKey *b = (const EsHidingKey *) key2;

	if (a->len != b->len || a->tenant_len != b->tenant_len)
		return 1;
	if (memcmp(a->data, b->data, a->len) != 0)
		return 1;
	return memcmp(a->tenant, b->tenant, a->tenant_len);
}

/* Start a statement: forget what the previous one noted. */
static void
hiding_start_statement(EsHiding *h)
{
	HASHCTL		ctl;

	MemoryContextReset(h->cxt);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(EsHidingKey);
	ctl.entrysize = sizeof(EsHidingStream);
	ctl.hash = hiding_key_hash;
	ctl.match = hiding_key_match;
	ctl.hcxt = h->cxt;
	h->streams = hash_create("eventsource hidden streams", 64, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	h->maxcandidates = 64;
	h->ncandidates = 0;
	h->candidates = MemoryContextAlloc(h->cxt,
									   h->maxcandidates * sizeof(EsHidingCandidate));
	h->previous = NULL;
	h->rows = 0;
	h->hidden = NULL;
}

/*
 * Note a row of the log the statement returns: when it could be hidden
 * (clauses 1 and 2 of the view), its stream is added to the lookup.
 */
static void
hiding_note(EsHiding *h, TupleTableSlot *slot)
{
	bool		isnull;
	int64		position;
	int64		version;

	position = DatumGetInt64(slot_getattr(slot, Anum_es_events_global_position, &isnull));
	version = DatumGetInt64(slot_getattr(slot, Anum_es_events_stream_version, &isnull));
	if (version >= 1 && position <= h->last_operation)
	{
		struct varlena *id;
		struct varlena *tenant;
		EsHidingKey key;
		EsHidingStream *s;
		bool		found;
		MemoryContext old = MemoryContextSwitchTo(h->cxt);

		id = pg_detoast_datum_packed((struct varlena *)
									 DatumGetPointer(slot_getattr(slot, Anum_es_events_stream_id,
																  &isnull)));
		key.data = VARDATA_ANY(id);
		key.len = VARSIZE_ANY_EXHDR(id);
		/* the tenant column follows the frozen 1.0 columns (SELECT *) */
		tenant = pg_detoast_datum_packed((struct varlena *)
										 DatumGetPointer(slot_getattr(slot, Natts_es_events + 1,
																	  &isnull)));
		key.tenant = VARDATA_ANY(tenant);
		key.tenant_len = VARSIZE_ANY_EXHDR(tenant);
		/* a stream's events often come in runs (a batch appended at once) */
		s = h->previous;
		if (s == NULL || s->key.len != key.len ||
			s->key.tenant_len != key.tenant_len ||
			memcmp(s->key.data, key.data, key.len) != 0 ||
			memcmp(s->key.tenant, key.tenant, key.tenant_len) != 0)
		{
			s = hash_search(h->streams, &key, HASH_ENTER, &found);
			if (!found)
			{
				char	   *copy = palloc(key.len + key.tenant_len);

				memcpy(copy, key.data, key.len);
				memcpy(copy + key.len, key.tenant, key.tenant_len);
				s->key.data = copy;
				s->key.len = key.len;
				s->key.tenant = copy + key.len;
				s->key.tenant_len = key.tenant_len;
				s->hidden_through = 0;
			}
			h->previous = s;
		}
		if (h->ncandidates == h->maxcandidates)
		{
			h->maxcandidates *= 2;
			h->candidates = repalloc(h->candidates,
									 h->maxcandidates * sizeof(EsHidingCandidate));
		}
		h->candidates[h->ncandidates].row = h->rows;
		h->candidates[h->ncandidates].version = version;
		h->candidates[h->ncandidates].stream = s;
		h->ncandidates++;
		MemoryContextSwitchTo(old);
	}
	h->last_position = position;
	h->rows++;
}

/*
 * Read the lifecycle rows of the noted streams, in one statement with the
 * active snapshot (the page's), into their hidden_through.
 *
 * The statement probes stream_lifecycle's primary key once per distinct
 * stream, as a scalar subquery per element of the array: the planner cannot
 * turn that into a join, so no plan reads or hashes all lifecycle rows, and
 * nothing sorts the keys.  (stream_id = ANY ($1) was the first spelling: the
 * btree sorts its array keys with the column's collation, which took 4 ms
 * for a page of 1,000 distinct streams under C.UTF-8, more than the view's
 * probes.)  The answer comes back by ordinality, so no key is hashed again.
 */
static void
hiding_lookup(EsHiding *h)
{
	HASH_SEQ_STATUS seq;
	EsHidingStream *s;
	EsHidingStream **order;
	Datum	   *ids;
	Datum	   *tenants;
	int			n = 0;
	Datum		values[2];
	Oid			types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	SPIPlanPtr	plan;
	SPITupleTable *tt;
	MemoryContext old = MemoryContextSwitchTo(h->cxt);

	order = palloc(hash_get_num_entries(h->streams) * sizeof(EsHidingStream *));
	ids = palloc(hash_get_num_entries(h->streams) * sizeof(Datum));
	tenants = palloc(hash_get_num_entries(h->streams) * sizeof(Datum));
	hash_seq_init(&seq, h->streams);
	while ((s = hash_seq_search(&seq)) != NULL)
	{
		order[n] = s;
		tenants[n] = PointerGetDatum(cstring_to_text_with_len(s->key.tenant,
															  s->key.tenant_len));
		ids[n++] = PointerGetDatum(cstring_to_text_with_len(s->key.data, s->key.len));
	}
	values[0] = PointerGetDatum(construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(tenants, n, TEXTOID, -1, false, TYPALIGN_INT));
	MemoryContextSwitchTo(old);

	plan = es_visible_plan(hiding_lookup_plans,
						   "SELECT k.n, (SELECT l.hidden_through"
						   "   FROM eventsource.stream_lifecycle l"
						   "  WHERE l.tenant_id OPERATOR(pg_catalog.=) k.tenant"
						   "  AND l.stream_id OPERATOR(pg_catalog.=) k.id)"
						   " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2))"
						   "  WITH ORDINALITY AS k(id, tenant, n)",
						   2, types, true);
	es_spi_read(plan, values, NULL, NULL, 0);
	tt = SPI_tuptable;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		k;
		Datum		d;

		k = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		d = SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull);
		if (k < 1 || k > n)
			elog(ERROR, "eventsource: lifecycle lookup returned element " INT64_FORMAT " of %d",
				 k, n);
		/* no row, or hidden_through 0 (an erasure only): nothing hidden */
		if (!isnull)
			order[k - 1]->hidden_through = DatumGetInt64(d);
	}
	SPI_freetuptable(tt);
}

/*
 * Begin hiding the rows of a read of the log after position "after", with
 * the active snapshot.  NULL when no row after "after" can be hidden: the
 * database is on the 1.0 SQL, or no lifecycle operation is newer than
 * "after" (the tail of the log, where tailing readers read); the caller
 * then reads without noting.  Caller is connected to SPI and runs as the
 * owner; the result lives in the current memory context.
 */
EsHiding *
es_hiding_begin(int64 after)
{
	EsHiding   *h;
	SPIPlanPtr	plan;
	bool		isnull;
	int64		last_operation;

	if (!es_lifecycle_installed())
		return NULL;
	plan = es_visible_plan(last_operation_plans, "SELECT @LAST_OPERATION@",
						   0, NULL, true);
	es_spi_read(plan, NULL, NULL, NULL, 1);
	last_operation = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	if (last_operation <= after)
		return NULL;

	h = palloc0(sizeof(EsHiding));
	h->last_operation = last_operation;
	h->cxt = AllocSetContextCreate(CurrentMemoryContext, "eventsource hiding",
								   ALLOCSET_DEFAULT_SIZES);
	hiding_start_statement(h);
	return h;
}

static void
hiding_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	EsHidingReceiver *r = (EsHidingReceiver *) self;

	r->inner->rStartup(r->inner, operation, typeinfo);
}

static bool
hiding_receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	EsHidingReceiver *r = (EsHidingReceiver *) self;

	hiding_note(r->hiding, slot);
	return r->inner->receiveSlot(slot, r->inner);
}

static void
hiding_receiver_shutdown(DestReceiver *self)
{
	EsHidingReceiver *r = (EsHidingReceiver *) self;

	r->inner->rShutdown(r->inner);
}

static void
hiding_receiver_destroy(DestReceiver *self)
{
	EsHidingReceiver *r = (EsHidingReceiver *) self;

	r->inner->rDestroy(r->inner);
	pfree(r);
}

/*
 * A receiver for one statement that reads rows of the log (SELECT * of
 * eventsource.events): it passes every row on to "inner" and notes the rows
 * that could be hidden.  Forgets what an earlier statement noted.
 */
DestReceiver *
es_hiding_receiver(EsHiding *h, DestReceiver *inner)
{
	EsHidingReceiver *r = palloc0(sizeof(EsHidingReceiver));

	hiding_start_statement(h);
	r->pub.receiveSlot = hiding_receiver_receive;
	r->pub.rStartup = hiding_receiver_startup;
	r->pub.rShutdown = hiding_receiver_shutdown;
	r->pub.rDestroy = hiding_receiver_destroy;
	/* SPI answers SPI_OK_SELECT only when the rows are not discarded */
	r->pub.mydest = inner->mydest;
	r->inner = inner;
	r->hiding = h;
	return &r->pub;
}

/*
 * After the statement: which of its rows are hidden.  Returns their number
 * and sets *rows to their row numbers (ascending, from 0 for the
 * statement's first row), *scanned to the rows the statement returned and
 * *last_position to the position of its last row.  One lookup statement
 * when any row could be hidden, with the active snapshot.
 */
uint64
es_hiding_resolve(EsHiding *h, const uint64 **rows, uint64 *scanned,
				  int64 *last_position)
{
	uint64		nhidden = 0;

	*scanned = h->rows;
	*last_position = h->last_position;
	*rows = NULL;
	if (h->ncandidates == 0)
		return 0;
	hiding_lookup(h);
	h->hidden = MemoryContextAlloc(h->cxt, h->ncandidates * sizeof(uint64));
	for (int i = 0; i < h->ncandidates; i++)
	{
		EsHidingCandidate *c = &h->candidates[i];

		if (c->version <= c->stream->hidden_through)
			h->hidden[nhidden++] = c->row;
	}
	*rows = h->hidden;
	return nhidden;
}

/*
 * The stream's state read by two index probes instead of a statement.
 *
 * es_stream_state() runs on every append, and its statement cost an
 * append_event about a quarter of its time, most of it starting and ending
 * the executor for a plan of two index scans (test/bench/run_tenancy.sh,
 * perf).  On the 1.1 SQL the same two reads are made here directly: the
 * last row of the stream in events_pkey (tenant_id, stream_id,
 * stream_version), read backwards, and the stream's row in
 * stream_lifecycle_pkey (tenant_id, stream_id), each the first index entry
 * whose heap tuple the snapshot sees, which is what the statement's
 * "ORDER BY stream_version DESC LIMIT 1" and its primary-key join read.
 * Both relations are opened with AccessShareLock, as the executor would.
 * The primary keys are taken from the relcache and checked to begin with
 * (tenant_id, stream_id); anything else (a schema this code does not know)
 * takes the statement.
 */

/* the lifecycle table's OID and columns, forgotten on its invalidation */
typedef struct EsStateRels
{
	bool		valid;
	Oid			lifecycle_oid;
	/* hidden_through, last_version, tombstoned, operations */
	AttrNumber	atts[4];
} EsStateRels;

static EsStateRels state_rels;
static bool state_rels_callback = false;

static void
state_rels_inval(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == state_rels.lifecycle_oid)
		state_rels.valid = false;
}

/* Attribute number of column "name" of "rel", InvalidAttrNumber if none. */
static AttrNumber
column_attnum(Relation rel, const char *name)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	return InvalidAttrNumber;
}

/* A bigint, integer or boolean datum of type "type" as int64. */
static int64
datum_as_int64(Datum d, Oid type)
{
	switch (type)
	{
		case INT8OID:
			return DatumGetInt64(d);
		case INT4OID:
			return DatumGetInt32(d);
		case BOOLOID:
			return DatumGetBool(d) ? 1 : 0;
		default:
			elog(ERROR, "eventsource: unexpected column type %u in a stream probe", type);
	}
	return 0;					/* keep compiler quiet */
}

/*
 * Probe the primary key of relation "relid" for the stream of the tenant:
 * the first row in direction "dir" among those with that (tenant_id,
 * stream_id) which "snapshot" sees.  Its columns "atts" (bigint, integer or
 * boolean) go to out[] as int64.  With "index_only", when the key holds
 * them all, they are read from the index entry and the heap is visited only
 * when the visibility map does not say the entry's page is all-visible (as
 * an index-only scan does, predicate lock included); otherwise from the
 * row.  Returns 1 when a row was found,
 * 0 when none, -1 (nothing read) when the primary key does not begin with
 * (tenant_id, stream_id) text columns.
 */
static int
probe_stream_row(Oid relid, text *tenant, text *stream_id, Snapshot snapshot,
				 ScanDirection dir, bool index_only, int natts, const AttrNumber *atts,
				 int64 *out)
{
	Relation	rel = table_open(relid, AccessShareLock);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	AttrNumber	tenant_att = column_attnum(rel, "tenant_id");
	AttrNumber	stream_att = column_attnum(rel, "stream_id");
	Relation	index;
	ScanKeyData keys[2];
	IndexScanDesc scan;
	TupleTableSlot *slot;
	int			found;
	AttrNumber	key_cols[4];

	Assert(natts <= lengthof(key_cols));
	if (!OidIsValid(pk) || tenant_att == InvalidAttrNumber ||
		stream_att == InvalidAttrNumber)
	{
		table_close(rel, AccessShareLock);
		return -1;
	}
	index = index_open(pk, AccessShareLock);
	if (index->rd_index->indnkeyatts < 2 ||
		index->rd_index->indkey.values[0] != tenant_att ||
		index->rd_index->indkey.values[1] != stream_att ||
		index->rd_opcintype[0] != TEXTOID || index->rd_opcintype[1] != TEXTOID)
	{
		index_close(index, AccessShareLock);
		table_close(rel, AccessShareLock);
		return -1;
	}
	/* index_only: the key's columns that hold atts, else read the row */
	for (int i = 0; index_only && i < natts; i++)
	{
		int			k;

		for (k = 0; k < index->rd_index->indnkeyatts; k++)
			if (index->rd_index->indkey.values[k] == atts[i])
				break;
		if (k < index->rd_index->indnkeyatts)
			key_cols[i] = k + 1;
		else
			index_only = false;
	}
	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(tenant));
	keys[0].sk_collation = index->rd_indcollation[0];
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, PointerGetDatum(stream_id));
	keys[1].sk_collation = index->rd_indcollation[1];

	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 2, 0);
	scan->xs_want_itup = index_only;
	index_rescan(scan, keys, 2, NULL, 0);
	if (index_only)
	{
		Buffer		vmbuffer = InvalidBuffer;
		ItemPointer tid;

		found = 0;
		while ((tid = index_getnext_tid(scan, dir)) != NULL)
		{
			bool		all_visible = VM_ALL_VISIBLE(rel, ItemPointerGetBlockNumber(tid),
													 &vmbuffer);

			if (!all_visible && !index_fetch_heap(scan, slot))
				continue;		/* not visible: the next entry */
			for (int i = 0; i < natts; i++)
			{
				bool		isnull;
				Datum		d = index_getattr(scan->xs_itup, key_cols[i], scan->xs_itupdesc,
											  &isnull);

				out[i] = datum_as_int64(d, TupleDescAttr(scan->xs_itupdesc,
														 key_cols[i] - 1)->atttypid);
			}
			if (all_visible)
				PredicateLockPage(rel, ItemPointerGetBlockNumber(tid), snapshot);
			found = 1;
			break;
		}
		if (BufferIsValid(vmbuffer))
			ReleaseBuffer(vmbuffer);
	}
	else
	{
		found = index_getnext_slot(scan, dir, slot) ? 1 : 0;
		for (int i = 0; found && i < natts; i++)
		{
			bool		isnull;
			Datum		d = slot_getattr(slot, atts[i], &isnull);

			out[i] = datum_as_int64(d, TupleDescAttr(RelationGetDescr(rel), atts[i] - 1)->atttypid);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * es_stream_state() on the 1.1 SQL by the two probes; false (nothing read)
 * when the keys are not the ones expected.
 */
static bool
stream_state_direct(text *tenant, text *stream_id, Snapshot snapshot, EsStreamState *st)
{
	const EsCatalog *cat = es_catalog();
	AttrNumber	version_att = Anum_es_events_stream_version;
	int64		version;
	int64		row[4];
	int			found;

	if (!state_rels.valid)
	{
		Relation	lifecycle;

		if (!state_rels_callback)
		{
			CacheRegisterRelcacheCallback(state_rels_inval, (Datum) 0);
			state_rels_callback = true;
		}
		state_rels.lifecycle_oid = es_lookup_relation("stream_lifecycle", cat->namespace_oid);
		lifecycle = table_open(state_rels.lifecycle_oid, AccessShareLock);
		state_rels.atts[0] = column_attnum(lifecycle, "hidden_through");
		state_rels.atts[1] = column_attnum(lifecycle, "last_version");
		state_rels.atts[2] = column_attnum(lifecycle, "tombstoned");
		state_rels.atts[3] = column_attnum(lifecycle, "operations");
		table_close(lifecycle, NoLock);
		for (int i = 0; i < 4; i++)
			if (state_rels.atts[i] == InvalidAttrNumber)
				return false;
		state_rels.valid = true;
	}

	memset(st, 0, sizeof(EsStreamState));

	/* the physical last version: numbering never reuses a version */
	found = probe_stream_row(cat->events_oid, tenant, stream_id, snapshot,
							 BackwardScanDirection, true, 1, &version_att, &version);
	if (found < 0)
		return false;
	if (found)
		st->last_version = Max(version, 0);

	found = probe_stream_row(state_rels.lifecycle_oid, tenant, stream_id, snapshot,
							 ForwardScanDirection, false, 4, state_rels.atts, row);
	if (found < 0)
		return false;
	if (found)
	{
		st->has_row = true;
		st->hidden_through = row[0];
		st->last_version = Max(st->last_version, row[1]);
		st->tombstoned = (row[2] != 0);
		st->operations = (int32) row[3];
	}
	return true;
}

/*
 * The state of a stream of a tenant, read with a snapshot taken now (the caller holds
 * the stream's lock, so this is the state its writes build on) — or, when
 * "latest" is false, with the caller's snapshot.  Caller is connected to SPI
 * and runs as the owner.  On the 1.1 SQL by two index probes
 * (stream_state_direct), else, or when its keys are not the expected ones,
 * by a statement.
 */
void
es_stream_state(text *tenant, text *stream_id, bool latest, EsStreamState *st)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	SPIPlanPtr	plan;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	int			v = es_lifecycle_installed() ? 1 : 0;

	if (v)
	{
		Snapshot	snapshot = RegisterSnapshot(latest ? GetLatestSnapshot() :
												GetActiveSnapshot());
		bool		done = stream_state_direct(tenant, stream_id, snapshot, st);

		UnregisterSnapshot(snapshot);
		if (done)
			return;
	}

	if (state_plans[v] == NULL)
	{
		/* the physical last version: numbering never reuses a version */
		if (v)
			state_plans[v] = es_prepare(
										"SELECT (SELECT e.stream_version FROM eventsource.events e"
										"   WHERE e.tenant_id OPERATOR(pg_catalog.=) $2"
										"   AND e.stream_id OPERATOR(pg_catalog.=) $1"
										"   ORDER BY e.stream_version DESC LIMIT 1),"
										" l.hidden_through, l.last_version, l.tombstoned, l.operations"
										" FROM (VALUES (1)) AS d(x)"
										" LEFT JOIN eventsource.stream_lifecycle l"
										"   ON l.tenant_id OPERATOR(pg_catalog.=) $2"
										"   AND l.stream_id OPERATOR(pg_catalog.=) $1",
										2, types);
		else
			state_plans[v] = es_prepare(
										"SELECT (SELECT e.stream_version FROM eventsource.events e"
										"   WHERE e.stream_id OPERATOR(pg_catalog.=) $1"
										"   ORDER BY e.stream_version DESC LIMIT 1),"
										" NULL::bigint, NULL::bigint, NULL::boolean, NULL::integer",
										1, types);	/* 1.0: every row is 'default' */
	}
	plan = state_plans[v];
	values[0] = PointerGetDatum(stream_id);
	values[1] = PointerGetDatum(tenant);
	if (latest)
		es_spi_read_latest(plan, values, NULL, NULL, 1);
	else
		es_spi_read(plan, values, NULL, NULL, 1);
	Assert(SPI_processed == 1);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	memset(st, 0, sizeof(EsStreamState));
	d = SPI_getbinval(tup, desc, 1, &isnull);
	st->last_version = isnull ? 0 : Max(DatumGetInt64(d), 0);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	if (!isnull)
	{
		st->has_row = true;
		st->hidden_through = DatumGetInt64(d);
		st->last_version = Max(st->last_version,
							   DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull)));
		st->tombstoned = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		st->operations = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
	}
}


/*
 * The version a reader sees: the last version, or 0 when the stream is
 * absent (never written, deleted, tombstoned).  A stream is deleted exactly
 * when every version it has is hidden; an append re-opens it by adding a
 * version above hidden_through.
 */
int64
es_visible_version(const EsStreamState *st)
{
	if (st->tombstoned || st->last_version <= st->hidden_through)
		return 0;
	return st->last_version;
}

/*
 * The current version of a stream as a reader sees it (0 when absent), with
 * the caller's snapshot or, with "latest", as of now.  Caller is connected
 * to SPI and runs as the owner.
 */
int64
es_stream_version(text *tenant, text *stream_id, bool latest)
{
	EsStreamState st;

	es_stream_state(tenant, stream_id, latest, &st);
	return es_visible_version(&st);
}

void
es_check_not_tombstoned(text *stream_id, const EsStreamState *st)
{
	if (st->tombstoned)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_DELETED),
				 errmsg("stream \"%s\" is deleted for good", text_to_cstring(stream_id)),
				 errdetail("It was hard-deleted (tombstoned) after version " INT64_FORMAT ".",
						   st->last_version),
				 errhint("A tombstoned stream id can never be written again; use a new stream id.")));
}

/*
 * The expected_version argument of a lifecycle function (erasure.c's too):
 * required.
 */
int64
es_lifecycle_arg_expected(FunctionCallInfo fcinfo, int argno)
{
	int64		expected;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("expected_version must not be null"),
				 errhint("Pass the stream's current version, or -1 for whatever version it has.")));
	expected = PG_GETARG_INT64(argno);
	if (expected < ES_EXPECT_STREAM_EXISTS || expected == ES_EXPECT_NO_STREAM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid expected_version " INT64_FORMAT, expected),
				 errhint("Use -1 for any version, -2 for an existing stream, or the stream's current version.")));
	return expected;
}

/* Refuse an operation on a stream that has nothing to hide. */
static void
check_stream_present(text *stream_id, const EsStreamState *st, bool allow_deleted)
{
	if (st->last_version == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_NOT_FOUND),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(stream_id)),
				 errdetail("The stream has no events.")));
	es_check_not_tombstoned(stream_id, st);
	if (!allow_deleted && es_visible_version(st) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ES_STREAM_DELETED),
				 errmsg("stream \"%s\" is deleted", text_to_cstring(stream_id)),
				 errdetail("It was deleted at version " INT64_FORMAT ".", st->hidden_through),
				 errhint("Appending to it again re-opens it.")));
}

/*
 * Run a writing plan with the active snapshot (the one the operation read
 * the stream's state with, see lock_and_read_state()), not the transaction
 * snapshot SPI would take: under REPEATABLE READ or SERIALIZABLE the
 * transaction snapshot may predate another session's operation on the same
 * stream, and the upsert of its lifecycle row (ON CONFLICT DO UPDATE) or the
 * DELETE of a snapshot row would then fail with 40001 although the stream's
 * lock already orders the two operations.
 */
uint64
es_exec_with_active_snapshot(SPIPlanPtr plan, Datum *values, int expected)
{
	return es_exec_plan_snapshot(plan, values, NULL, GetActiveSnapshot(), expected);
}

/*
 * Lock the stream and read its state with a snapshot taken now, which stays
 * the active snapshot until the caller pops it: the state and the writes
 * based on it (record_operation()) use the same snapshot, taken after the
 * lock was granted, as append() does for its version check.  Caller runs as
 * the owner inside SPI.
 */
static void
lock_and_read_state(text *tenant, text *stream_id, EsStreamState *st)
{
	es_lock_stream(tenant, stream_id);
	PushActiveSnapshot(GetLatestSnapshot());
	es_stream_state(tenant, stream_id, false, st);
}

/*
 * Record a lifecycle operation on a stream of a tenant: append its system
 * event at the stream's next negative version (-(st->operations + 1)) and
 * upsert the stream's lifecycle row -- the one writer of stream_lifecycle
 * for delete_stream(), truncate_stream() and the erasures (erasure.c).
 * Hiding and the tombstone only grow: the row keeps the larger
 * hidden_through and last_version and stays tombstoned, so an erasure
 * passes hidden_through 0 and tombstone false and changes neither.
 * Returns the system event's position.  Caller holds the stream's lock,
 * runs as the owner inside SPI, with a snapshot taken after the lock
 * active.
 */
int64
es_record_operation(text *tenant, text *stream_id, const EsStreamState *st,
					int64 hidden_through, bool tombstone, const char *event_type,
					Jsonb *details)
{
	Datum		values[7];
	int64		position;
	int32		operations = st->operations + 1;

	position = es_append_system_event(tenant, stream_id, -(int64) operations, event_type,
									  details);
	if (upsert_plan == NULL)
	{
		Oid			types[7] = {TEXTOID, INT8OID, INT8OID, BOOLOID, INT4OID, INT8OID, TEXTOID};

		upsert_plan = es_prepare(
								 "INSERT INTO eventsource.stream_lifecycle AS l (tenant_id, stream_id,"
								 " hidden_through, last_version, tombstoned, operations, last_position)"
								 " VALUES ($7, $1, $2, $3, $4, $5, $6)"
								 " ON CONFLICT (tenant_id, stream_id) DO UPDATE SET"
								 " hidden_through = pg_catalog.int8larger(l.hidden_through,"
								 "  excluded.hidden_through),"
								 " last_version = pg_catalog.int8larger(l.last_version,"
								 "  excluded.last_version),"
								 " tombstoned = l.tombstoned OR excluded.tombstoned,"
								 " operations = excluded.operations,"
								 " last_position = excluded.last_position,"
								 " updated_at = pg_catalog.now()",
								 7, types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(hidden_through);
	values[2] = Int64GetDatum(st->last_version);
	values[3] = BoolGetDatum(tombstone);
	values[4] = Int32GetDatum(operations);
	values[5] = Int64GetDatum(position);
	values[6] = PointerGetDatum(tenant);
	/* the guard on stream_lifecycle lets this one statement through */
	es_exec_guarded(ES_GUARDED_LIFECYCLE, upsert_plan, values, NULL,
					GetActiveSnapshot(), SPI_OK_INSERT);
	return position;
}

/*
 * Record a delete or truncate (es_record_operation), and drop the
 * snapshots that summarise hidden versions.  Caller as for
 * es_record_operation(), with the snapshot of lock_and_read_state()
 * active.  Returns the system event's position.
 */
static int64
record_operation(text *tenant, text *stream_id, const EsStreamState *st, int64 hidden_through,
				 bool tombstone, const char *event_type, EsJson *details)
{
	Datum		values[3];
	int64		position;

	position = es_record_operation(tenant, stream_id, st, hidden_through, tombstone,
								   event_type, DatumGetJsonbP(es_json_jsonb(details)));
	if (drop_snapshots_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, INT8OID, TEXTOID};

		drop_snapshots_plan = es_prepare(
										 "DELETE FROM eventsource.snapshots"
										 " WHERE tenant_id OPERATOR(pg_catalog.=) $3"
										 " AND stream_id OPERATOR(pg_catalog.=) $1"
										 " AND stream_version OPERATOR(pg_catalog.<=) $2",
										 3, types);
	}
	values[0] = PointerGetDatum(stream_id);
	values[1] = Int64GetDatum(hidden_through);
	values[2] = PointerGetDatum(tenant);
	es_exec_with_active_snapshot(drop_snapshots_plan, values, SPI_OK_DELETE);
	/* the hidden rows are this database's cleanup worker's to remove */
	es_cleanup_want(MyDatabaseId);
	return position;
}

PG_FUNCTION_INFO_V1(es_delete_stream);

/*
 * delete_stream(stream_id text, expected_version bigint,
 *				 hard boolean DEFAULT false) RETURNS bigint
 *
 * Soft delete: every version the stream has is hidden, it reads as absent,
 * and an append re-opens it after its last version.  Hard delete: the same,
 * and the stream can never be written again (ES003); a soft-deleted stream
 * may be hard-deleted.  Returns the position of the $StreamDeleted event.
 */
Datum
es_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		expected;
	bool		hard;
	EsStreamState st;
	EsOwnerCall owner;
	EsJson		details;
	int64		position;
	text	   *tenant;

	es_require_shmem("eventsource.delete_stream()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	expected = es_lifecycle_arg_expected(fcinfo, 1);
	es_arg_not_null(fcinfo, 2, "hard");
	hard = PG_GETARG_BOOL(2);
	es_require_writable("eventsource.delete_stream()");
	es_require_sql_version("1.1", "eventsource.delete_stream()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	lock_and_read_state(tenant, stream_id, &st);
	check_stream_present(stream_id, &st, hard);
	es_check_expected_version(tenant, stream_id, expected, es_visible_version(&st));

	es_json_object(&details);
	es_json_bool(&details, "hard", hard);
	es_json_int(&details, "last_version", st.last_version);
	es_json_int(&details, "hidden_through", st.last_version);

	position = record_operation(tenant, stream_id, &st, st.last_version, hard,
								"$StreamDeleted", &details);
	PopActiveSnapshot();
	es_owner_end(&owner);
	PG_RETURN_INT64(position);
}

PG_FUNCTION_INFO_V1(es_truncate_stream);

/*
 * truncate_stream(stream_id text, before_version bigint,
 *				   expected_version bigint DEFAULT -1) RETURNS bigint
 *
 * Hide the versions below before_version.  The stream keeps at least its
 * last version (hiding all of it is delete_stream()).  Returns the position
 * of the $StreamTruncated event.
 */
Datum
es_truncate_stream(PG_FUNCTION_ARGS)
{
	text	   *stream_id;
	int64		before;
	int64		expected;
	int64		visible;
	EsStreamState st;
	EsOwnerCall owner;
	EsJson		details;
	int64		position;
	text	   *tenant;

	es_require_shmem("eventsource.truncate_stream()");
	stream_id = es_arg_stream_id(fcinfo, 0);
	es_arg_not_null(fcinfo, 1, "before_version");
	before = PG_GETARG_INT64(1);
	if (before < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version must be at least 1"),
				 errhint("Versions start at 1; truncate_stream(s, n) hides versions 1 to n - 1.")));
	expected = es_lifecycle_arg_expected(fcinfo, 2);
	es_require_writable("eventsource.truncate_stream()");
	es_require_sql_version("1.1", "eventsource.truncate_stream()");
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	lock_and_read_state(tenant, stream_id, &st);
	check_stream_present(stream_id, &st, false);
	visible = es_visible_version(&st);
	es_check_expected_version(tenant, stream_id, expected, visible);
	if (before > visible)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("before_version " INT64_FORMAT " is beyond the last version of stream \"%s\"",
						before, text_to_cstring(stream_id)),
				 errdetail("The stream is at version " INT64_FORMAT "; truncation keeps at least that version.",
						   visible),
				 errhint("Use eventsource.delete_stream() to hide every version.")));
	if (before == 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("truncating stream \"%s\" before version 1 hides nothing",
						text_to_cstring(stream_id)),
				 errhint("truncate_stream(s, n) hides versions 1 to n - 1.")));
	if (before - 1 <= st.hidden_through)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("versions before " INT64_FORMAT " of stream \"%s\" are already hidden",
						before, text_to_cstring(stream_id)),
				 errdetail("Versions 1 to " INT64_FORMAT " are hidden; hiding cannot be undone.",
						   st.hidden_through)));

	es_json_object(&details);
	es_json_int(&details, "before_version", before);
	es_json_int(&details, "hidden_through", before - 1);
	es_json_int(&details, "last_version", st.last_version);

	position = record_operation(tenant, stream_id, &st, before - 1, false,
								"$StreamTruncated", &details);
	PopActiveSnapshot();
	es_owner_end(&owner);
	PG_RETURN_INT64(position);
}
