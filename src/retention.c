/*-------------------------------------------------------------------------
 *
 * retention.c
 *	  Max age / max count retention: the rules (eventsource.stream_retention,
 *	  set and cleared by the SQL functions below) and their enforcement, a
 *	  pass of the cleanup worker (cleanup.c) that turns expiry into
 *	  truncations.
 *
 * A rule belongs to a tenant (the caller's current tenant when it is set)
 * and to a stream of it (its id, which need not exist yet: a rule may
 * be set before the first append) or to a category (the part of stream ids
 * before the first '-', as everywhere in the store).  A stream's own rule
 * replaces its category's, as a whole.  max_count n keeps the stream's n
 * newest versions; max_age a hides the versions recorded longer ago than a
 * (the oldest ones, up to the first version recorded within a).  Both: the
 * larger truncation wins.  Retention never hides a stream's last version:
 * the stream stays present (use delete_stream() to remove it all).
 *
 * Enforcement never changes the hiding predicate (the view visible_events):
 * a pass computes, for each stream with a rule, the version before which
 * its events have expired, and calls eventsource.truncate_stream() for it
 * (lifecycle.c: $StreamTruncated in the log, hidden_through moves up), each
 * call its own transaction, in the order of the log positions of the newest
 * event each truncation hides: so subscriptions receive the expiries in log
 * order.  Expiry thus takes effect when a pass runs (every
 * eventsource.cleanup_naptime), not at the instant an event ages out; the
 * cleanup_status view says when the last pass ran and when the next is due.
 *
 * Cost of a pass: for stream rules, a few primary-key probes per stream;
 * for category rules, one probe per distinct stream id of each tenant that
 * has one (a skip scan of the primary key), then the same per stream of
 * the category.
 * A pass never scans the log's rows beyond the expired prefix of a stream.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "eventsource.h"
#include "tenant.h"

/*
 * The rules of every stream that has one (its own, else its category's,
 * both of the stream's tenant), and for each (tenant, stream) whose expired prefix is not hidden yet, the version
 * to truncate before and the position of the newest event that hides, in
 * log order.  "before" is capped at the stream's last version (retention
 * keeps it).  $1: whether any category rule exists (else no skip scan is
 * run).  The skip scan over the primary key visits the stream ids of the
 * tenants that have a category rule only: one probe per distinct stream
 * id of those tenants, never the other tenants' streams.
 */
static const char *const candidates_query =
"WITH RECURSIVE ctenants(tenant_id) AS ("
"   SELECT DISTINCT r.tenant_id FROM eventsource.stream_retention r"
"    WHERE $1 AND r.scope OPERATOR(pg_catalog.=) 'category'),"
" ids(tenant_id, id) AS ("
"   SELECT f.tenant_id, f.stream_id"
"     FROM ctenants t CROSS JOIN LATERAL"
"          (SELECT e.tenant_id, e.stream_id FROM eventsource.events e"
"            WHERE e.tenant_id OPERATOR(pg_catalog.=) t.tenant_id"
"            ORDER BY e.stream_id LIMIT 1) f"
"   UNION ALL"
"   SELECT n.tenant_id, n.stream_id"
"     FROM ids CROSS JOIN LATERAL"
"          (SELECT e.tenant_id, e.stream_id FROM eventsource.events e"
"            WHERE e.tenant_id OPERATOR(pg_catalog.=) ids.tenant_id"
"              AND e.stream_id OPERATOR(pg_catalog.>) ids.id"
"            ORDER BY e.stream_id LIMIT 1) n),"
" rules(tenant_id, stream_id, max_age, max_count) AS ("
"   SELECT r.tenant_id, r.name, r.max_age, r.max_count FROM eventsource.stream_retention r"
"    WHERE r.scope OPERATOR(pg_catalog.=) 'stream'"
"   UNION ALL"
"   SELECT ids.tenant_id, ids.id, c.max_age, c.max_count"
"     FROM ids JOIN eventsource.stream_retention c"
"       ON c.tenant_id OPERATOR(pg_catalog.=) ids.tenant_id"
"      AND c.scope OPERATOR(pg_catalog.=) 'category'"
"      AND c.name OPERATOR(pg_catalog.=) pg_catalog.split_part(ids.id, '-', 1)"
"    WHERE NOT EXISTS (SELECT FROM eventsource.stream_retention s"
"                       WHERE s.tenant_id OPERATOR(pg_catalog.=) ids.tenant_id"
"                         AND s.scope OPERATOR(pg_catalog.=) 'stream'"
"                         AND s.name OPERATOR(pg_catalog.=) ids.id)),"
" targets AS ("
"   SELECT x.tenant_id, x.stream_id, lv.v AS last_version,"
"          COALESCE(l.hidden_through, 0) AS hidden_through,"
"          LEAST(lv.v, GREATEST("
"            CASE WHEN x.max_count IS NULL THEN 0"
"                 ELSE lv.v OPERATOR(pg_catalog.-) x.max_count OPERATOR(pg_catalog.+) 1 END,"
"            CASE WHEN x.max_age IS NULL THEN 0"
"                 ELSE COALESCE((SELECT pg_catalog.min(e.stream_version)"
"                                  FROM eventsource.events e"
"                                 WHERE e.tenant_id OPERATOR(pg_catalog.=) x.tenant_id"
"                                   AND e.stream_id OPERATOR(pg_catalog.=) x.stream_id"
"                                   AND e.stream_version OPERATOR(pg_catalog.>)"
"                                       COALESCE(l.hidden_through, 0)"
"                                   AND e.recorded_at OPERATOR(pg_catalog.>=)"
"                                       (pg_catalog.now() OPERATOR(pg_catalog.-) x.max_age)),"
"                               lv.v) END)) AS before_version"
"     FROM rules x"
"     CROSS JOIN LATERAL (SELECT e.stream_version AS v FROM eventsource.events e"
"                          WHERE e.tenant_id OPERATOR(pg_catalog.=) x.tenant_id"
"                            AND e.stream_id OPERATOR(pg_catalog.=) x.stream_id"
"                          ORDER BY e.stream_version DESC LIMIT 1) lv"
"     LEFT JOIN eventsource.stream_lifecycle l"
"       ON l.tenant_id OPERATOR(pg_catalog.=) x.tenant_id"
"      AND l.stream_id OPERATOR(pg_catalog.=) x.stream_id"
"    WHERE NOT COALESCE(l.tombstoned, false)"
"      AND lv.v OPERATOR(pg_catalog.>) COALESCE(l.hidden_through, 0))"
" SELECT t.stream_id, t.before_version,"
"        (SELECT e.global_position FROM eventsource.events e"
"          WHERE e.tenant_id OPERATOR(pg_catalog.=) t.tenant_id"
"            AND e.stream_id OPERATOR(pg_catalog.=) t.stream_id"
"            AND e.stream_version OPERATOR(pg_catalog.<) t.before_version"
"          ORDER BY e.stream_version DESC LIMIT 1) AS position,"
"        t.tenant_id"
"   FROM targets t"
"  WHERE t.before_version OPERATOR(pg_catalog.-) 1 OPERATOR(pg_catalog.>) t.hidden_through"
"  ORDER BY 3, 4, 1";

/* the largest max_age (1000 years of 12 30-day months; the table's CHECK) */
#define ES_RETENTION_MAX_AGE_US	(INT64CONST(1000) * 12 * 30 * USECS_PER_DAY)

typedef struct RetentionCandidate
{
	char	   *tenant_id;
	char	   *stream_id;
	int64		before_version;
} RetentionCandidate;

/*
 * What became of one candidate.
 */
typedef enum RetentionOutcome
{
	RETENTION_TRUNCATED,
	RETENTION_GONE,				/* changed since the candidates were read */
	RETENTION_LOCKED			/* its lock not had within lock_timeout */
} RetentionOutcome;

/*
 * Truncate one stream through truncate_stream(), in a subtransaction:
 * a lifecycle operation that committed since the candidates were read
 * (the stream deleted, truncated further) makes the call fail with one of
 * the documented errors, and that candidate is simply skipped.  So is a
 * stream whose lock a user's transaction holds for longer than the
 * worker's lock_timeout (an append or a lifecycle operation left open):
 * failing the pass there would stop retention for the whole database at
 * that stream, pass after pass; the next pass tries it again.  Caller is
 * in a transaction, connected to SPI.
 */
static RetentionOutcome
truncate_one(const RetentionCandidate *c)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile RetentionOutcome outcome = RETENTION_TRUNCATED;

	if (plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		plan = es_prepare("SELECT eventsource.truncate_stream($1, $2, -1)", 2, types);
	}
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		values[2];

		/*
		 * In the stream's tenant: truncate_stream() acts in the current
		 * tenant, which the worker (the owner, bound to no tenant) may
		 * choose.  Local to the transaction, which is this candidate's.
		 */
		(void) set_config_option("eventsource.tenant", c->tenant_id,
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
								 true, 0, false);
		values[0] = CStringGetTextDatum(c->stream_id);
		values[1] = Int64GetDatum(c->before_version);
		es_exec_plan(plan, values, NULL, SPI_OK_SELECT);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			outcome = RETENTION_LOCKED;
		else if (edata->sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||
				 edata->sqlerrcode == ERRCODE_ES_STREAM_DELETED ||
				 edata->sqlerrcode == ERRCODE_ES_STREAM_NOT_FOUND)
			outcome = RETENTION_GONE;
		else
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return outcome;
}

/*
 * One retention pass (see the file header).  Runs in the cleanup worker,
 * outside a transaction: the candidates are read in one transaction, then
 * each truncation commits on its own (a long pass never holds back the
 * others' work, and a stop request is honoured between two).  Returns the
 * number of truncations made.  Streams skipped because a user held their
 * lock longer than lock_timeout are said once in the log, and in "note"
 * (notelen bytes, for cleanup_status; empty when none was skipped).
 */
int64
es_retention_enforce(char *note, size_t notelen)
{
	static SPIPlanPtr candidates_plan = NULL;
	static SPIPlanPtr any_category_plan = NULL;
	MemoryContext pass_cxt;
	MemoryContext old;
	RetentionCandidate *cands = NULL;
	int64		ncands = 0;
	int64		truncations = 0;
	int64		locked = 0;
	const RetentionCandidate *first_locked = NULL;
	EsOwnerCall owner;

	note[0] = '\0';
	pass_cxt = AllocSetContextCreate(CurrentMemoryContext, "eventsource retention pass",
									 ALLOCSET_DEFAULT_SIZES);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	es_owner_begin(&owner);		/* (connects to SPI) */
	if (candidates_plan == NULL)
	{
		Oid			types[1] = {BOOLOID};

		any_category_plan = es_prepare("SELECT EXISTS (SELECT FROM eventsource.stream_retention r"
									   " WHERE r.scope OPERATOR(pg_catalog.=) 'category')",
									   0, NULL);
		candidates_plan = es_prepare(candidates_query, 1, types);
	}
	{
		Datum		values[1];
		bool		isnull;

		es_exec_plan(any_category_plan, NULL, NULL, SPI_OK_SELECT);
		values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		es_exec_plan(candidates_plan, values, NULL, SPI_OK_SELECT);
	}
	old = MemoryContextSwitchTo(pass_cxt);
	if (SPI_processed > 0)
		cands = palloc(sizeof(RetentionCandidate) * SPI_processed);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		cands[ncands].stream_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		cands[ncands].tenant_id = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4);
		cands[ncands].before_version =
			DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		ncands++;
	}
	MemoryContextSwitchTo(old);
	es_owner_end(&owner);
	PopActiveSnapshot();
	CommitTransactionCommand();

	/* in log order, one transaction each */
	for (int64 i = 0; i < ncands; i++)
	{
		/*
		 * A stop request ends the worker here between two truncations, and
		 * inside a query or a lock wait too (cleanup.c: SIGTERM is die()).
		 */
		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		switch (truncate_one(&cands[i]))
		{
			case RETENTION_TRUNCATED:
				truncations++;
				break;
			case RETENTION_GONE:
				break;
			case RETENTION_LOCKED:
				if (locked++ == 0)
					first_locked = &cands[i];
				break;
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	if (locked > 0)
	{
		StringInfoData quoted;

		/*
		 * The tenant first (its id is [A-Za-z0-9_.:-]), then the stream id
		 * JSON-escaped: a stream id may hold quotes and newlines, which
		 * must not forge a log line or another tenant's name.
		 */
		initStringInfo(&quoted);
		escape_json(&quoted, first_locked->stream_id);
		snprintf(note, notelen,
				 "retention skipped " INT64_FORMAT " stream(s) whose lock was held longer than lock_timeout, the first of tenant \"%s\": %s; the next pass retries them",
				 locked, first_locked->tenant_id, quoted.data);
		ereport(LOG,
				(errmsg("eventsource cleanup: %s", note)));
	}
	MemoryContextDelete(pass_cxt);
	return truncations;
}

/* ---------------------------------------------------------------------
 * The SQL functions
 * ---------------------------------------------------------------------
 */

/* The category argument: like a stream id, and without a '-'. */
static text *
arg_category(FunctionCallInfo fcinfo, int argno)
{
	char	   *category = es_arg_name(fcinfo, argno, "category", ES_MAX_STREAM_ID_LEN);

	if (strchr(category, '-') != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("category \"%s\" must not contain '-'", category),
				 errdetail("A stream's category is the part of its id before the first '-'.")));
	return cstring_to_text(category);
}

static void
check_writable(const char *what)
{
	PreventCommandIfReadOnly(what);
	PreventCommandIfParallelMode(what);
	es_require_sql_version("1.1", what);
}

/* set_retention() and set_category_retention(): validate and upsert. */
static void
set_rule(FunctionCallInfo fcinfo, bool category, const char *what)
{
	static SPIPlanPtr plan = NULL;
	text	   *name;
	text	   *tenant;
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	EsOwnerCall owner;

	name = category ? arg_category(fcinfo, 0) : es_arg_stream_id(fcinfo, 0);
	if (PG_ARGISNULL(1) && PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_age and max_count must not both be null"),
				 errhint("To remove a rule use eventsource.%s().",
						 category ? "clear_category_retention" : "clear_retention")));
	if (!PG_ARGISNULL(1))
	{
		Interval   *age = PG_GETARG_INTERVAL_P(1);
		int64		us;

		if (!es_interval_us(age, &us) || us <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_age must be a positive interval"),
					 errhint("Months count as 30 days.")));
		/*
		 * A pass subtracts max_age from now() on the calendar: with a
		 * negative part ('1 month -29 days') the cutoff depends on the
		 * month's length and can even lie in the future, expiring
		 * everything but the last version.
		 */
		if (age->month < 0 || age->day < 0 || age->time < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_age must be a positive interval"),
					 errdetail("No part of it may be negative: interval '%s'.",
							   DatumGetCString(DirectFunctionCall1(interval_out,
																   IntervalPGetDatum(age))))));
		/*
		 * A pass computes now() - max_age: an age beyond the timestamp range
		 * would make every pass of this database fail ("timestamp out of
		 * range"), so the ages a pass can compute are the only ones taken.
		 */
		if (us > ES_RETENTION_MAX_AGE_US)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_age must be at most 1000 years"),
					 errhint("Months count as 30 days; to keep events for good, clear the rule.")));
		values[2] = IntervalPGetDatum(age);
	}
	else
		nulls[2] = 'n';
	if (!PG_ARGISNULL(2))
	{
		int64		count = PG_GETARG_INT64(2);

		if (count < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_count must be at least 1"),
					 errdetail("Retention always keeps a stream's last version."),
					 errhint("Use eventsource.delete_stream() to hide a whole stream.")));
		values[3] = Int64GetDatum(count);
	}
	else
		nulls[3] = 'n';
	check_writable(what);
	/* the caller's tenant, as the caller: the rule is that tenant's */
	tenant = es_current_tenant_text();

	es_owner_begin(&owner);
	if (plan == NULL)
	{
		Oid			types[5] = {TEXTOID, TEXTOID, INTERVALOID, INT8OID, TEXTOID};

		plan = es_prepare("INSERT INTO eventsource.stream_retention AS r"
						  " (tenant_id, scope, name, max_age, max_count) VALUES ($5, $1, $2, $3, $4)"
						  " ON CONFLICT (tenant_id, scope, name) DO UPDATE SET"
						  " max_age = excluded.max_age, max_count = excluded.max_count,"
						  " updated_at = pg_catalog.now()", 5, types);
	}
	values[0] = CStringGetTextDatum(category ? "category" : "stream");
	values[1] = PointerGetDatum(name);
	values[4] = PointerGetDatum(tenant);
	/* the guard on stream_retention lets this one statement through */
	es_exec_guarded(ES_GUARDED_LIFECYCLE, plan, values, nulls, InvalidSnapshot,
					SPI_OK_INSERT);
	es_owner_end(&owner);
	/* the cleanup worker of this database enforces it */
	es_cleanup_want(MyDatabaseId);
}

/* clear_retention() and clear_category_retention() */
static bool
clear_rule(FunctionCallInfo fcinfo, bool category, const char *what)
{
	static SPIPlanPtr plan = NULL;
	text	   *name;
	text	   *tenant;
	Datum		values[3];
	EsOwnerCall owner;
	bool		found;

	name = category ? arg_category(fcinfo, 0) : es_arg_stream_id(fcinfo, 0);
	check_writable(what);
	tenant = es_current_tenant_text();
	es_owner_begin(&owner);
	if (plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};

		plan = es_prepare("DELETE FROM eventsource.stream_retention"
						  " WHERE tenant_id OPERATOR(pg_catalog.=) $3"
						  " AND scope OPERATOR(pg_catalog.=) $1"
						  " AND name OPERATOR(pg_catalog.=) $2", 3, types);
	}
	values[0] = CStringGetTextDatum(category ? "category" : "stream");
	values[1] = PointerGetDatum(name);
	values[2] = PointerGetDatum(tenant);
	found = es_exec_guarded(ES_GUARDED_LIFECYCLE, plan, values, NULL, InvalidSnapshot,
							SPI_OK_DELETE) > 0;
	es_owner_end(&owner);
	return found;
}

PG_FUNCTION_INFO_V1(es_set_stream_retention);

/*
 * set_retention(stream_id text, max_age interval DEFAULT NULL,
 *				 max_count bigint DEFAULT NULL) RETURNS void
 */
Datum
es_set_stream_retention(PG_FUNCTION_ARGS)
{
	set_rule(fcinfo, false, "eventsource.set_retention()");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_set_category_retention);

/*
 * set_category_retention(category text, max_age interval DEFAULT NULL,
 *						  max_count bigint DEFAULT NULL) RETURNS void
 */
Datum
es_set_category_retention(PG_FUNCTION_ARGS)
{
	set_rule(fcinfo, true, "eventsource.set_category_retention()");
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_clear_stream_retention);

/* clear_retention(stream_id text) RETURNS boolean */
Datum
es_clear_stream_retention(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(clear_rule(fcinfo, false, "eventsource.clear_retention()"));
}

PG_FUNCTION_INFO_V1(es_clear_category_retention);

/* clear_category_retention(category text) RETURNS boolean */
Datum
es_clear_category_retention(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(clear_rule(fcinfo, true, "eventsource.clear_category_retention()"));
}
