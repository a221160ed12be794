/*-------------------------------------------------------------------------
 *
 * status.c
 *	  Health and monitoring of subscriptions: the rows behind the
 *	  eventsource.subscription_status view, health(), readiness(),
 *	  liveness() and error_stats().
 *
 * A status row joins what the tables say (definition, checkpoint, dead
 * letters, lag computed against the safe horizon) with what the worker slot
 * in shared memory says (process, state, counters, rolling error rate,
 * heartbeat).  The slot is copied under its spinlock and the lock released
 * before anything else is done with the copy.
 *
 * Health of a partition is the worst of these, each with its reason
 * (thresholds are the eventsource.max_* settings, compared with >=):
 *
 *	state failed                                          critical
 *	state circuit_open or stopped; stale heartbeat        unhealthy
 *	state starting or paused                              degraded
 *	error_rate_per_minute >= max_error_rate_per_minute    degraded
 *	events_failed >= max_errors_critical / _warning       critical / degraded
 *	lag >= max_lag_events_critical / _warning             critical / degraded
 *	dead_letters >= max_dead_letters_critical / _warning  critical / degraded
 *
 * "lag" is lag_events_estimate, the figure the view shows (see "Lag"
 * below).  A subscription's health is its worst partition's.  The
 * error text of a subscription owned by another role is shown only to
 * members of that role or of pg_read_all_stats, as pg_stat_statements does
 * with query text.
 *
 * Cost.  These are probes and scrape targets, called every few seconds for
 * ever, so none of them may cost more as the log grows or as a partition
 * falls behind:
 *
 *	- readiness() and liveness() read shared memory and the two small
 *	  subscription tables only, never eventsource.events nor dead_letters.
 *	- health() and the status view add, per partition, a count of its dead
 *	  letters (index on dead_letters; grows with the dead letters waiting,
 *	  not with the log) and the lag, which looks at no more than
 *	  eventsource.lag_count_limit index entries of eventsource.events.
 *	- On a standby the head is max(global_position): one index probe.
 *
 * Lag.  The partition's position is its checkpoint row's, or the position
 * its running worker published in its slot after its last batch when that
 * is further and was reached from the same row (same incarnation and reset
 * count): a periodic subscription writes its row only every
 * checkpoint_interval.  lag_positions = head_position - that position,
 * O(1): the positions the partition has still to walk, an upper bound of
 * its events (it includes other partitions' events, events its filters
 * skip, and the gaps aborted appends leave).  lag_events counts this
 * partition's events that pass the filters among the first lag_count_limit
 * events after its position (in position order, up to the head): exact
 * (lag_events_exact) when those reach the head, otherwise a lower bound.  lag_seconds is the age of the oldest
 * of the counted events; when the count is not exact and found none, the age
 * of the last event looked at (the partition has not walked past it yet); 0
 * when nothing is left.  lag_events_estimate is lag_events when that is
 * exact; otherwise the window's share of this partition's pending events
 * extrapolated over the positions still to walk: lag_events *
 * lag_positions / (the positions the window spans, gaps included), which is
 * at least lag_events and at most lag_positions.  The health thresholds
 * compare with lag_events_estimate: a filtered or partitioned subscription
 * far behind is judged by about the events it has to deliver, not by the
 * positions (which overstate them by the share its filters and partition
 * leave out).  The window walks index entries, so entries of aborted appends
 * that vacuum has not removed yet count against lag_count_limit too.
 *
 * Plans.  The status queries run with jit = off and plan_cache_mode =
 * force_custom_plan in a GUC nest level of their own: a monitoring call must
 * not spend 100+ ms compiling because the planner, before autovacuum has
 * analysed the tiny subscription tables, guessed hundreds of rows there; and
 * a plan kept from when the log was small must not survive its growth
 * (a custom plan is made with the table's current size every call).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "postmaster/postmaster.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "schema.h"
#include "subscription.h"
#include "tenant.h"
#include "trace.h"

typedef enum EsHealth
{
	ES_HEALTHY,
	ES_DEGRADED,
	ES_UNHEALTHY,
	ES_CRITICAL
} EsHealth;

static const char *const health_names[] = {"healthy", "degraded", "unhealthy", "critical"};

#define HIDDEN_ERROR "<insufficient privilege>"

typedef struct EsStatusRow
{
	char	   *name;
	int			partition;
	int			partitions;
	Oid			owner;
	char	   *tenant;			/* NULL: cross-tenant */
	int			pid;
	EsWorkerState state;
	int64		checkpoint;
	int64		last_position;
	int64		head;
	int64		lag_events;
	bool		lag_events_exact;
	int64		lag_positions;
	int64		lag_events_estimate;
	double		lag_seconds;
	int64		processed;
	int64		failed;
	int64		retried;
	int64		dead_letters;
	int64		consecutive_failures;
	int64		error_rate;
	char	   *last_error;		/* NULL: none */
	char	   *last_sqlstate;
	TimestampTz last_error_at;
	TimestampTz started_at;
	TimestampTz last_activity_at;
	TimestampTz heartbeat_at;
	TimestampTz circuit_open_until;
	int			crash_count;
	EsDesired	desired;
	bool		registered;
	char	   *last_shutdown;	/* JSON text or NULL */
	EsHealth	health;
	const char *health_reason;
} EsStatusRow;

/* ---------------------------------------------------------------------
 * building the rows
 * ---------------------------------------------------------------------
 */

/* May "viewer" see the error text of a subscription owned by "owner"? */
static bool
may_see_errors(Oid viewer, Oid owner)
{
	return has_privs_of_role(viewer, owner) ||
		has_privs_of_role(viewer, ROLE_PG_READ_ALL_STATS);
}

static void
worse(EsStatusRow *row, EsHealth level, const char *reason)
{
	if (level > row->health)
	{
		row->health = level;
		row->health_reason = reason;
	}
}

static void
threshold(EsStatusRow *row, int64 value, int critical, int warning,
		  const char *critical_reason, const char *warning_reason)
{
	if (value >= critical)
		worse(row, ES_CRITICAL, critical_reason);
	else if (value >= warning)
		worse(row, ES_DEGRADED, warning_reason);
}

static void
evaluate_health(EsStatusRow *row, TimestampTz now)
{
	row->health = ES_HEALTHY;
	row->health_reason = NULL;

	switch (row->state)
	{
		case ES_STATE_FAILED:
			worse(row, ES_CRITICAL, "stopped at a failed event");
			break;
		case ES_STATE_CIRCUIT_OPEN:
			worse(row, ES_UNHEALTHY, "circuit breaker open");
			break;
		case ES_STATE_STOPPED:
			worse(row, ES_UNHEALTHY, "not running");
			break;
		case ES_STATE_STARTING:
			worse(row, ES_DEGRADED, "starting");
			break;
		case ES_STATE_PAUSED:
			worse(row, ES_DEGRADED, "paused");
			break;
		default:
			break;
	}
	if (row->pid != 0 && row->heartbeat_at != 0 &&
		now - row->heartbeat_at > (int64) es_liveness_timeout_ms * 1000)
		worse(row, ES_UNHEALTHY, "no heartbeat: the worker is stuck");
	if (row->error_rate >= es_max_error_rate_per_minute)
		worse(row, ES_DEGRADED, "error rate");
	threshold(row, row->failed, es_max_errors_critical, es_max_errors_warning,
			  "failed events", "failed events");
	threshold(row, row->lag_events_estimate,
			  es_max_lag_events_critical, es_max_lag_events_warning, "lag", "lag");
	threshold(row, row->dead_letters, es_max_dead_letters_critical, es_max_dead_letters_warning,
			  "dead letters", "dead letters");
}

/* The state a partition shows when no slot describes it. */
static EsWorkerState
state_without_slot(const char *sub_state, const char *part_state)
{
	if (strcmp(part_state, "failed") == 0)
		return ES_STATE_FAILED;
	if (strcmp(sub_state, "paused") == 0)
		return ES_STATE_PAUSED;
	return ES_STATE_STOPPED;
}

/* Copy the slot of (current database, name, partition) into the row. */
static void
merge_slot(EsStatusRow *row, TimestampTz now)
{
	EsWorkerSlot copy;
	bool		found = false;

	if (!es_shmem_available())
		return;
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	for (int i = 0; i < es_workers->nslots; i++)
	{
		EsWorkerSlot *slot = &es_workers->slots[i];

		if (!slot->in_use || slot->dboid != MyDatabaseId ||
			slot->partition != row->partition || strcmp(slot->name, row->name) != 0)
			continue;
		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(EsWorkerSlot));
		copy.errors_by_second[0] = es_slot_error_rate(slot, now);
		SpinLockRelease(&slot->mutex);
		found = true;
		break;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	if (!found)
		return;

	row->registered = true;
	row->pid = copy.pid;
	row->state = copy.state;
	row->desired = copy.desired;
	if (copy.pid == 0 && copy.desired == ES_DESIRED_RUN && copy.state != ES_STATE_FAILED)
		row->state = ES_STATE_STARTING;
	row->last_position = copy.last_position;
	row->processed = copy.events_processed;
	row->failed = copy.events_failed;
	row->retried = copy.events_retried;
	row->consecutive_failures = copy.consecutive_failures;
	row->error_rate = copy.errors_by_second[0];
	if (copy.last_error_at != 0)
	{
		/* the message may quote an event erased since (erasure.c) */
		row->last_error = copy.last_error_at <= es_erasure_committed_at() ?
			ES_ERASED_ERROR_NOTE : pstrdup(copy.last_error);
		row->last_sqlstate = pstrdup(copy.last_sqlstate);
		row->last_error_at = copy.last_error_at;
	}
	row->started_at = copy.started_at;
	row->last_activity_at = copy.last_activity_at;
	row->heartbeat_at = copy.heartbeat_at;
	row->circuit_open_until = copy.circuit_open_until;
	row->crash_count = copy.crash_count;
}

/*
 * On a standby there is no safe horizon: lag is measured against the highest
 * position replayed so far.  Caller is connected to SPI as the owner.
 */
static int64
standby_head(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	Datum		d;

	if (plan == NULL)
		plan = es_prepare("SELECT COALESCE(pg_catalog.max(global_position), 0) FROM eventsource.events",
						  0, NULL);
	es_spi_read(plan, NULL, NULL, NULL, 1);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return DatumGetInt64(d);
}

/*
 * Enter a GUC nest level with the settings the status queries are planned
 * under (see "Plans" in the file header); AtEOXact_GUC(true, level) leaves
 * it and gives the caller back its own values.  GUC_ACTION_SAVE, as
 * ri_triggers.c does: a GUC_ACTION_LOCAL setting would be handed on to the
 * enclosing level when this one is left with isCommit true, and stay in the
 * caller's transaction block until its end.  An error unwinds it with the
 * transaction.
 */
static int
status_plan_settings(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("plan_cache_mode", "force_custom_plan", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * The columns of STATE_QUERY and LAG_QUERY below, by number (the two share
 * them; STATE_QUERY stops after SC_EXAMINED).
 */
typedef enum StatusColumn
{
	SC_NAME = 1,
	SC_PARTITION,
	SC_PARTITIONS,
	SC_OWNER,
	SC_TENANT,					/* 1.1: NULL = cross-tenant */
	SC_SUB_STATE,
	SC_PART_STATE,
	SC_POSITION,				/* the checkpoint row's */
	SC_DEAD_LETTERS,
	SC_PENDING,					/* lag_events: pending events in the window */
	SC_OLDEST_PENDING,
	SC_NEWEST,					/* newest recorded_at looked at */
	SC_LAST_SHUTDOWN,
	SC_ERROR_MESSAGE,
	SC_ERROR_SQLSTATE,
	SC_FAILED_AT,
	SC_EXAMINED,				/* events the window looked at */
	SC_WINDOW_START,			/* the position the window starts after */
	SC_WINDOW_LAST				/* the last position it looked at */
} StatusColumn;

/*
 * Which subscriptions the caller's status shows ("tenant": the
 * subscription's tenant column, or NULL on the 1.0 SQL): every one to the
 * store's owner, superusers and BYPASSRLS roles ("all"); to any other role
 * those of its current tenant ("current"), and the cross-tenant ones unless
 * it is bound to tenants ("cross"): a bound role never learns of another
 * tenant's subscriptions, nor of one that sees every tenant (its errors
 * quote any tenant's events); a role that may choose any tenant keeps
 * seeing what it saw on 1.0, where every subscription was cross-tenant.
 * The parameters are status_visibility()'s.
 */
#define ES_STATUS_VISIBLE(tenant, all, cross, current) \
	"(" all " OR (" tenant " IS NULL AND " cross ")" \
	" OR " tenant " OPERATOR(pg_catalog.=) " current ")"

/*
 * The partitions with their definition and saved state: the two small
 * subscription tables only.  The columns of LAG_QUERY below, without dead
 * letters (0) and lag (NULL).  $1..$3: the visibility.
 */
#define STATE_QUERY(tenant) \
	"SELECT s.name, p.partition, s.partitions, s.owner::pg_catalog.oid, " tenant "," \
	" s.state, p.state, p.position, 0::pg_catalog.int8," \
	" NULL::pg_catalog.int8, NULL::pg_catalog.timestamptz, NULL::pg_catalog.timestamptz," \
	" p.last_shutdown::pg_catalog.text, p.error_message, p.error_sqlstate, p.failed_at," \
	" NULL::pg_catalog.int8" \
	" FROM eventsource.subscriptions s" \
	" JOIN eventsource.subscription_partitions p" \
	"   ON p.subscription OPERATOR(pg_catalog.=) s.name" \
	" WHERE " ES_STATUS_VISIBLE(tenant, "$1", "$2", "$3") \
	" ORDER BY s.name, p.partition"

/*
 * The same with the dead letters and the lag ($1 the head, $2 the events to
 * look at, $3..$7 the running workers' progress: see worker_progress()):
 * the window is the first $2 events after the partition's position in
 * position order (an index range scan of at most $2 entries of
 * events_global_position_key, whatever the filters match); of those it
 * counts the ones the partition has to deliver ("pending": it matches the
 * filters and no lifecycle operation hid it, one probe of the view
 * eventsource.visible_events per entry), and takes the
 * oldest recorded_at of those and the newest of all.  SC_EXAMINED is how
 * many it looked at, SC_WINDOW_START the position the window starts after:
 * the greater of the checkpoint and the progress its worker published for
 * the same incarnation and reset count; SC_WINDOW_LAST the last position it
 * looked at.  $8..$10: the visibility.  A tenant-scoped subscription's
 * pending events are its tenant's; the window is the log's, so
 * lag_events_estimate extrapolates the tenant's share of it.
 */
#define LAG_QUERY(tenant) \
	"SELECT s.name, p.partition, s.partitions, s.owner::pg_catalog.oid, " tenant "," \
	" s.state, p.state, p.position," \
	" (SELECT pg_catalog.count(*) FROM eventsource.dead_letters d" \
	"   WHERE d.subscription OPERATOR(pg_catalog.=) s.name" \
	"   AND d.partition OPERATOR(pg_catalog.=) p.partition)," \
	" w.pending, w.oldest, w.newest," \
	" p.last_shutdown::pg_catalog.text, p.error_message, p.error_sqlstate, p.failed_at," \
	" w.examined, GREATEST(p.position, m.position), w.last" \
	" FROM eventsource.subscriptions s" \
	" JOIN eventsource.subscription_partitions p" \
	"   ON p.subscription OPERATOR(pg_catalog.=) s.name" \
	" LEFT JOIN ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[])," \
	"   pg_catalog.unnest($4::pg_catalog.int4[]), pg_catalog.unnest($5::pg_catalog.int8[])," \
	"   pg_catalog.unnest($6::pg_catalog.int8[]), pg_catalog.unnest($7::pg_catalog.int8[]))" \
	"   AS m(name, partition, id, resets, position)" \
	"   ON m.name OPERATOR(pg_catalog.=) s.name" \
	"   AND m.partition OPERATOR(pg_catalog.=) p.partition" \
	"   AND m.id OPERATOR(pg_catalog.=) p.subscription_id" \
	"   AND m.resets OPERATOR(pg_catalog.=) p.resets" \
	" CROSS JOIN LATERAL (SELECT pg_catalog.count(*) AS examined," \
	"   pg_catalog.count(*) FILTER (WHERE e.pending) AS pending," \
	"   pg_catalog.min(e.recorded_at) FILTER (WHERE e.pending) AS oldest," \
	"   pg_catalog.max(e.recorded_at) AS newest," \
	"   pg_catalog.max(e.global_position) AS last" \
	"   FROM (SELECT e.recorded_at, e.global_position," \
	"     " ES_SQL_SUBSCRIPTION_EVENTS(ES_SQL_ANY_COLUMN, "e.", "s.event_types", \
									   "s.categories", "s.partitions", "p.partition", \
									   "@TENANT_ID(e)@", tenant) \
	"     AND (e.global_position OPERATOR(pg_catalog.>) @LAST_OPERATION@ OR EXISTS (SELECT FROM @EVENTS@ v" \
	"          WHERE v.global_position OPERATOR(pg_catalog.=) e.global_position))" \
	"     AS pending" \
	"     FROM eventsource.events e" \
	"     WHERE e.global_position OPERATOR(pg_catalog.>) GREATEST(p.position, m.position)" \
	"     AND e.global_position OPERATOR(pg_catalog.<=) $1" \
	"     ORDER BY e.global_position LIMIT $2) e" \
	" ) w" \
	" WHERE " ES_STATUS_VISIBLE(tenant, "$8", "$9", "$10") \
	" ORDER BY s.name, p.partition"

/*
 * lag_events, lag_events_exact, lag_positions, lag_events_estimate and
 * lag_seconds of a row (see "Lag" in the file header)
 */
static void
set_lag(EsStatusRow *row, HeapTuple tup, TupleDesc desc, TimestampTz now)
{
	bool		isnull;
	int64		examined;
	Datum		d;
	TimestampTz seen = 0;

	row->lag_positions = Max(row->head - DatumGetInt64(SPI_getbinval(tup, desc, SC_WINDOW_START, &isnull)), 0);
	row->lag_events = DatumGetInt64(SPI_getbinval(tup, desc, SC_PENDING, &isnull));
	examined = DatumGetInt64(SPI_getbinval(tup, desc, SC_EXAMINED, &isnull));
	row->lag_events_exact = (row->lag_positions <= examined || examined < es_lag_count_limit);
	row->lag_events_estimate = row->lag_events;
	if (!row->lag_events_exact)
	{
		int64		start = DatumGetInt64(SPI_getbinval(tup, desc, SC_WINDOW_START, &isnull));
		int64		last = DatumGetInt64(SPI_getbinval(tup, desc, SC_WINDOW_LAST, &isnull));
		double		share = (double) row->lag_events / (double) Max(last - start, 1);
		double		estimate = rint(share * (double) row->lag_positions);

		row->lag_events_estimate = Max(row->lag_events,
									   (int64) Min(estimate, (double) row->lag_positions));
	}

	d = SPI_getbinval(tup, desc, SC_OLDEST_PENDING, &isnull);
	if (!isnull)
		seen = DatumGetTimestampTz(d);
	else if (!row->lag_events_exact)
	{
		d = SPI_getbinval(tup, desc, SC_NEWEST, &isnull);
		if (!isnull)
			seen = DatumGetTimestampTz(d);
	}
	row->lag_seconds = (seen != 0 && now > seen) ? (double) (now - seen) / USECS_PER_SEC : 0;
}

/*
 * The progress the running workers of this database published
 * (es_slot_set_progress): five arrays for LAG_QUERY's $3..$7 (name,
 * partition, incarnation, reset count, position).  Only a slot whose
 * publisher still runs it counts: a worker that exited saved its position,
 * and one started after a crash begins again from the checkpoint row.
 */
static void
worker_progress(Datum *values)
{
	int			max = es_shmem_available() ? es_workers->nslots : 0;
	Datum	   *names = palloc(sizeof(Datum) * Max(max, 1));
	Datum	   *parts = palloc(sizeof(Datum) * Max(max, 1));
	Datum	   *ids = palloc(sizeof(Datum) * Max(max, 1));
	Datum	   *resets = palloc(sizeof(Datum) * Max(max, 1));
	Datum	   *positions = palloc(sizeof(Datum) * Max(max, 1));
	char	  (*name_copies)[ES_MAX_NAME_LEN + 1] = palloc(sizeof(*name_copies) * Max(max, 1));
	int			n = 0;

	if (max > 0)
	{
		LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
		for (int i = 0; i < max; i++)
		{
			EsWorkerSlot *slot = &es_workers->slots[i];
			bool		published;

			if (!slot->in_use || slot->dboid != MyDatabaseId || slot->pid == 0)
				continue;
			SpinLockAcquire(&slot->mutex);
			published = slot->progress_pid == slot->pid;
			resets[n] = Int64GetDatum(slot->progress_resets);
			positions[n] = Int64GetDatum(slot->progress_position);
			SpinLockRelease(&slot->mutex);
			if (!published)
				continue;
			strlcpy(name_copies[n], slot->name, sizeof(name_copies[n]));
			parts[n] = Int32GetDatum(slot->partition);
			ids[n] = Int64GetDatum(slot->incarnation);
			n++;
		}
		LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	}
	for (int i = 0; i < n; i++)
		names[i] = CStringGetTextDatum(name_copies[i]);
	values[0] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(parts, n, INT4OID, 4, true, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[3] = PointerGetDatum(construct_array(resets, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_array(positions, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The caller's visibility parameters of ES_STATUS_VISIBLE (three: all,
 * cross, current), decided as the caller (before es_owner_begin).  On the
 * 1.0 SQL every subscription is shown, as 1.0 did.
 */
static void
status_visibility(Datum *values, char *nulls)
{
	Oid			user = GetUserId();
	bool		all = es_sql_version() < ES_SQL_1_1 || es_tenant_role_exempt(user);

	values[0] = BoolGetDatum(all);
	values[1] = BoolGetDatum(all || es_tenant_caller_may_use(NULL));
	values[2] = all ? (Datum) 0 : CStringGetTextDatum(es_current_tenant());
	nulls[0] = nulls[1] = ' ';
	nulls[2] = all ? 'n' : ' ';
}

/*
 * All status rows of the current database, one per subscription partition,
 * ordered by name and partition.  Without with_lag (readiness, liveness),
 * only the subscription tables and shared memory are read: the rows have no
 * head, lag, dead letters nor health.
 */
static EsStatusRow *
collect_status(int *nrows, bool with_lag)
{
	static SPIPlanPtr state_plans[2] = {NULL, NULL};
	static SPIPlanPtr lag_plans[2] = {NULL, NULL};
	EsStatusRow *rows;
	EsOwnerCall owner;
	Datum		values[10];
	char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		head = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			n;
	int			level;
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext spi_cxt;

	status_visibility(&values[7], &nulls[7]);	/* as the caller */
	es_owner_begin(&owner);
	level = status_plan_settings();
	if (!with_lag)
	{
		Oid			types[3] = {BOOLOID, BOOLOID, TEXTOID};
		SPIPlanPtr	state_plan = es_prepare_versioned(state_plans,
													  STATE_QUERY("NULL::pg_catalog.text"),
													  STATE_QUERY("s.tenant"), 3, types);

		es_spi_read(state_plan, &values[7], &nulls[7], NULL, 0);
	}
	else
	{
		SPIPlanPtr	lag_plan;
		Oid			types[10] = {INT8OID, INT8OID, TEXTARRAYOID, INT4ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, BOOLOID, BOOLOID,
		TEXTOID};

		if (RecoveryInProgress())
			head = standby_head();
		else if (es_shmem_available())
			head = es_horizon();

		/* custom plans, as said above; pending counts visible events only */
		lag_plan = es_visible_plan(lag_plans,
								   es_sql_version() >= ES_SQL_1_1 ? LAG_QUERY("s.tenant") :
								   LAG_QUERY("NULL::pg_catalog.text"),
								   10, types, false);
		values[0] = Int64GetDatum(head);
		values[1] = Int64GetDatum(es_lag_count_limit);
		worker_progress(&values[2]);
		es_spi_read(lag_plan, values, nulls, NULL, 0);
	}

	/*
	 * The rows outlive the SPI connection: build them (strings included,
	 * SPI_getvalue() allocates in the current context) in the caller's.
	 */
	n = (int) SPI_processed;
	spi_cxt = MemoryContextSwitchTo(caller_cxt);
	rows = palloc0(sizeof(EsStatusRow) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		EsStatusRow *row = &rows[i];
		bool		isnull;
		char	   *sub_state;
		char	   *part_state;
		char	   *failed_error;

		row->name = SPI_getvalue(tup, desc, SC_NAME);
		row->partition = DatumGetInt32(SPI_getbinval(tup, desc, SC_PARTITION, &isnull));
		row->partitions = DatumGetInt32(SPI_getbinval(tup, desc, SC_PARTITIONS, &isnull));
		row->owner = DatumGetObjectId(SPI_getbinval(tup, desc, SC_OWNER, &isnull));
		row->tenant = SPI_getvalue(tup, desc, SC_TENANT);
		sub_state = SPI_getvalue(tup, desc, SC_SUB_STATE);
		part_state = SPI_getvalue(tup, desc, SC_PART_STATE);
		row->checkpoint = DatumGetInt64(SPI_getbinval(tup, desc, SC_POSITION, &isnull));
		row->dead_letters = DatumGetInt64(SPI_getbinval(tup, desc, SC_DEAD_LETTERS, &isnull));
		row->head = head;
		if (with_lag)
			set_lag(row, tup, desc, now);
		row->last_shutdown = SPI_getvalue(tup, desc, SC_LAST_SHUTDOWN);
		row->state = state_without_slot(sub_state, part_state);
		row->desired = strcmp(sub_state, "paused") == 0 ? ES_DESIRED_PAUSE : ES_DESIRED_RUN;

		/* a partition stopped at an event keeps its error in the table */
		failed_error = SPI_getvalue(tup, desc, SC_ERROR_MESSAGE);
		if (failed_error != NULL)
		{
			row->last_error = failed_error;
			row->last_sqlstate = SPI_getvalue(tup, desc, SC_ERROR_SQLSTATE);
			row->last_error_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, SC_FAILED_AT, &isnull));
		}

		merge_slot(row, now);
		if (row->last_position == 0)
			row->last_position = row->checkpoint;
		if (row->last_error && !may_see_errors(owner.save_userid, row->owner))
			row->last_error = HIDDEN_ERROR;
		if (with_lag)
			evaluate_health(row, now);
	}
	MemoryContextSwitchTo(spi_cxt);
	AtEOXact_GUC(true, level);
	es_owner_end(&owner);
	*nrows = n;
	return rows;
}

/* ---------------------------------------------------------------------
 * the status view
 * ---------------------------------------------------------------------
 */

PG_FUNCTION_INFO_V1(es_subscription_status);

/*
 * subscription_status_rows() and, since 1.1, subscription_status_rows_v2()
 * RETURNS SETOF record (the view's columns): the first 26 columns through
 * 1.0's function, all 29 through the new one (the output columns declared
 * decide).
 */
#define STATUS_COLUMNS_1_0	26
#define STATUS_COLUMNS_1_1_V2	29	/* issue 10's function, before tenants */
#define STATUS_COLUMNS		30

/*
 * Who may read the status: those who may EXECUTE 1.0's
 * subscription_status_rows(), whichever of the two functions they call.
 * The 1.1 function is EXECUTE for PUBLIC on purpose: the update script
 * grants nothing (pg_dump would leave such grants out, see the issue 10
 * section of eventsource--1.0--1.1.sql), so the grants users made on the
 * 1.0 function stay the ones that count, through updates, dumps and
 * restores.
 */
static void
check_status_privilege(void)
{
	Oid			fn = LookupFuncName(list_make2(makeString("eventsource"),
											   makeString("subscription_status_rows")),
									0, NULL, false);

	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, "subscription_status_rows");
}

Datum
es_subscription_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsStatusRow *rows;
	int			n;
	int			natts;

	InitMaterializedSRF(fcinfo, 0);
	natts = rsinfo->setDesc->natts;
	if (natts != STATUS_COLUMNS_1_0 && natts != STATUS_COLUMNS_1_1_V2 && natts != STATUS_COLUMNS)
		elog(ERROR, "eventsource: subscription_status_rows() returns %d columns, expected %d, %d or %d",
			 natts, STATUS_COLUMNS_1_0, STATUS_COLUMNS_1_1_V2, STATUS_COLUMNS);
	if (natts != STATUS_COLUMNS_1_0)
		check_status_privilege();
	rows = collect_status(&n, true);
	for (int i = 0; i < n; i++)
	{
		EsStatusRow *r = &rows[i];
		Datum		v[STATUS_COLUMNS];
		bool		nulls[STATUS_COLUMNS];

		memset(nulls, 0, sizeof(nulls));
		v[0] = CStringGetTextDatum(r->name);
		v[1] = Int32GetDatum(r->partition);
		v[2] = Int32GetDatum(r->pid);
		nulls[2] = (r->pid == 0);
		v[3] = CStringGetTextDatum(es_state_name(r->state));
		v[4] = Int64GetDatum(r->checkpoint);
		v[5] = Int64GetDatum(r->last_position);
		v[6] = Int64GetDatum(r->head);
		v[7] = Int64GetDatum(r->lag_events);
		v[8] = Float8GetDatum(r->lag_seconds);
		v[9] = Int64GetDatum(r->processed);
		v[10] = Int64GetDatum(r->failed);
		v[11] = Int64GetDatum(r->retried);
		v[12] = Int64GetDatum(r->dead_letters);
		v[13] = Int64GetDatum(r->consecutive_failures);
		v[14] = Int64GetDatum(r->error_rate);
		v[15] = r->last_error ? CStringGetTextDatum(r->last_error) : (Datum) 0;
		nulls[15] = (r->last_error == NULL);
		v[16] = TimestampTzGetDatum(r->last_error_at);
		nulls[16] = (r->last_error_at == 0);
		v[17] = TimestampTzGetDatum(r->started_at);
		nulls[17] = (r->started_at == 0);
		v[18] = TimestampTzGetDatum(r->last_activity_at);
		nulls[18] = (r->last_activity_at == 0);
		v[19] = CStringGetTextDatum(health_names[r->health]);
		v[20] = r->health_reason ? CStringGetTextDatum(r->health_reason) : (Datum) 0;
		nulls[20] = (r->health_reason == NULL);
		v[21] = r->last_sqlstate ? CStringGetTextDatum(r->last_sqlstate) : (Datum) 0;
		nulls[21] = (r->last_sqlstate == NULL);
		v[22] = TimestampTzGetDatum(r->heartbeat_at);
		nulls[22] = (r->heartbeat_at == 0);
		v[23] = TimestampTzGetDatum(r->circuit_open_until);
		nulls[23] = (r->circuit_open_until == 0 || r->state != ES_STATE_CIRCUIT_OPEN);
		v[24] = r->last_shutdown ? DirectFunctionCall1(jsonb_in, CStringGetDatum(r->last_shutdown)) : (Datum) 0;
		nulls[24] = (r->last_shutdown == NULL);
		v[25] = Int32GetDatum(r->partitions);
		/* 1.1 */
		v[26] = Int64GetDatum(r->lag_positions);
		v[27] = BoolGetDatum(r->lag_events_exact);
		v[28] = Int64GetDatum(r->lag_events_estimate);
		/* 1.1, tenants */
		v[29] = r->tenant ? CStringGetTextDatum(r->tenant) : (Datum) 0;
		nulls[29] = (r->tenant == NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * the launcher and liveness
 * ---------------------------------------------------------------------
 */

typedef struct EsLauncherInfo
{
	bool		running;
	bool		shutting_down;
	TimestampTz started_at;
	TimestampTz heartbeat_at;
} EsLauncherInfo;

static EsLauncherInfo
launcher_info(void)
{
	EsLauncherInfo info;

	memset(&info, 0, sizeof(info));
	if (!es_shmem_available())
		return info;
	LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
	info.running = es_workers->launcher_pid != 0;
	info.shutting_down = es_workers->shutting_down;
	info.started_at = es_workers->launcher_started_at;
	info.heartbeat_at = es_workers->launcher_heartbeat_at;
	LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
	return info;
}

/*
 * Has the partition's worker been up for a whole liveness_timeout?  The
 * crash count is only cleared when a worker exits after a good run (or by a
 * resume), so a worker that came through a crash loop and now runs well
 * still carries it: it is alive.
 */
static bool
running_steadily(EsStatusRow *r, TimestampTz now)
{
	return r->pid != 0 && r->started_at != 0 &&
		now - r->started_at >= (int64) es_liveness_timeout_ms * 1000;
}

/*
 * Why the machinery is not alive, or NULL: the launcher's heartbeat, and
 * each worker of this database that should be running (stuck: stale
 * heartbeat; crash-looping: three failed starts in a row, and not up for a
 * liveness_timeout since).
 */
static const char *
not_alive_reason(EsStatusRow *rows, int n, TimestampTz now)
{
	EsLauncherInfo l = launcher_info();
	int64		limit = (int64) es_liveness_timeout_ms * 1000;

	if (!es_shmem_available())
		return "the eventsource library is not preloaded";
	if (!l.running)
		return "the launcher is not running";
	if (now - l.heartbeat_at > limit)
		return psprintf("the launcher has not written a heartbeat for %ld s",
						(long) ((now - l.heartbeat_at) / USECS_PER_SEC));
	for (int i = 0; i < n; i++)
	{
		EsStatusRow *r = &rows[i];

		if (r->pid != 0 && r->heartbeat_at != 0 && now - r->heartbeat_at > limit)
			return psprintf("worker %s/%d has not written a heartbeat for %ld s",
							r->name, r->partition,
							(long) ((now - r->heartbeat_at) / USECS_PER_SEC));
		if (r->desired == ES_DESIRED_RUN && r->crash_count >= 3 && !running_steadily(r, now))
			return psprintf("worker %s/%d is crash-looping (%d failed starts)",
							r->name, r->partition, r->crash_count);
	}
	return NULL;
}

PG_FUNCTION_INFO_V1(es_liveness);

/* liveness() RETURNS jsonb: {"alive", "reason"} */
Datum
es_liveness(PG_FUNCTION_ARGS)
{
	int			n;
	EsStatusRow *rows = collect_status(&n, false);
	const char *reason = not_alive_reason(rows, n, GetCurrentTimestamp());
	EsJson		buf;

	es_json_object(&buf);
	es_json_bool(&buf, "alive", reason == NULL);
	es_json_string(&buf, "reason", reason);
	es_json_time(&buf, "timestamp", GetCurrentTimestamp());
	PG_RETURN_DATUM(es_json_jsonb(&buf));
}

PG_FUNCTION_INFO_V1(es_readiness);

/*
 * readiness() RETURNS jsonb: {"ready", "reason"}.  Not ready while the
 * machinery is not running or shutting down, or a subscription partition is
 * failed or still starting.
 */
Datum
es_readiness(PG_FUNCTION_ARGS)
{
	int			n;
	EsStatusRow *rows = collect_status(&n, false);
	EsLauncherInfo l = launcher_info();
	const char *reason = NULL;
	EsJson		buf;

	if (!es_shmem_available())
		reason = "the eventsource library is not preloaded";
	else if (l.shutting_down)
		reason = "shutting down";
	else if (!l.running)
		reason = "the launcher is not running";
	for (int i = 0; reason == NULL && i < n; i++)
	{
		if (rows[i].state == ES_STATE_FAILED)
			reason = psprintf("subscription %s partition %d is failed", rows[i].name, rows[i].partition);
		else if (rows[i].state == ES_STATE_STARTING)
			reason = psprintf("subscription %s partition %d is starting", rows[i].name, rows[i].partition);
	}

	es_json_object(&buf);
	es_json_bool(&buf, "ready", reason == NULL);
	es_json_string(&buf, "reason", reason);
	es_json_time(&buf, "timestamp", GetCurrentTimestamp());
	PG_RETURN_DATUM(es_json_jsonb(&buf));
}

/*
 * The "sql_version" check of health(): are this database's SQL objects the
 * version the library is built for?  Older ones still work (the library
 * serves them) but miss what the release added, and a feature that needs
 * them waits or refuses: degraded until ALTER EXTENSION eventsource UPDATE.
 * Newer ones than the library knows mean the library was downgraded.
 * Returns false when not healthy.
 */
static bool
sql_version_check(EsJson *checks)
{
	int			library;
	int			installed = es_sql_version();

	if (!es_parse_version(ES_LIBRARY_VERSION, &library))
		elog(ERROR, "eventsource: bad library version \"%s\"", ES_LIBRARY_VERSION);
	/* as the subscription checks: "unhealthy: reason (level)" */
	if (installed < library)
		es_json_string(checks, "sql_version",
				 psprintf("unhealthy: the SQL objects are version %s, the library %s: run ALTER EXTENSION eventsource UPDATE (degraded)",
						  es_sql_version_text(), ES_LIBRARY_VERSION));
	else if (installed > library)
		es_json_string(checks, "sql_version",
				 psprintf("unhealthy: the SQL objects are version %s, newer than the library (%s): install the eventsource %s library (degraded)",
						  es_sql_version_text(), ES_LIBRARY_VERSION, es_sql_version_text()));
	else
		es_json_string(checks, "sql_version", "healthy");
	return installed == library;
}

PG_FUNCTION_INFO_V1(es_health);

/*
 * health() RETURNS jsonb: the overall status (the worst subscription's),
 * counts per level, totals, the subscriptions, and a "checks" map naming
 * every dependency looked at, each "healthy" or "unhealthy: reason".
 */
Datum
es_health(PG_FUNCTION_ARGS)
{
	int			n;
	EsStatusRow *rows = collect_status(&n, true);
	EsLauncherInfo l = launcher_info();
	TimestampTz now = GetCurrentTimestamp();
	const char *dead_reason = not_alive_reason(rows, n, now);
	EsHealth	overall = ES_HEALTHY;
	int			counts[4] = {0, 0, 0, 0};
	int			nsubs = 0;
	int64		processed = 0;
	int64		failed = 0;
	int64		lag = 0;
	int64		dead = 0;
	EsJson		buf;
	EsJson		subs;
	EsJson		checks;
	const char *tracing;

	es_json_array(&subs);
	es_json_object(&checks);

	/* the machinery */
	if (!es_shmem_available())
		es_json_string(&checks, "launcher", "unhealthy: the library is not preloaded");
	else if (!l.running)
		es_json_string(&checks, "launcher", "unhealthy: not running");
	else
		es_json_string(&checks, "launcher", "healthy");
	es_json_string(&checks, "heartbeats",
			 dead_reason ? psprintf("unhealthy: %s", dead_reason) : "healthy");
	if (!l.running || dead_reason)
		overall = ES_UNHEALTHY;
	if (!sql_version_check(&checks))
		overall = Max(overall, ES_DEGRADED);

	/* one entry per subscription: its worst partition */
	for (int i = 0; i < n;)
	{
		int			j = i;
		EsHealth	h = ES_HEALTHY;
		const char *reason = NULL;
		int64		sub_processed = 0;
		int64		sub_failed = 0;
		int64		sub_lag = 0;
		int64		sub_lag_positions = 0;
		int64		sub_lag_estimate = 0;
		bool		sub_lag_exact = true;
		int64		sub_dead = 0;
		int64		sub_rate = 0;
		EsJson		sub;
		const char *state = es_state_name(rows[i].state);

		for (; j < n && strcmp(rows[j].name, rows[i].name) == 0; j++)
		{
			if (rows[j].health > h || reason == NULL)
			{
				if (rows[j].health >= h)
					state = es_state_name(rows[j].state);
				if (rows[j].health > h)
				{
					h = rows[j].health;
					reason = rows[j].health_reason;
				}
			}
			sub_processed += rows[j].processed;
			sub_failed += rows[j].failed;
			sub_lag += rows[j].lag_events;
			sub_lag_positions = Max(sub_lag_positions, rows[j].lag_positions);
			sub_lag_estimate += rows[j].lag_events_estimate;
			sub_lag_exact = sub_lag_exact && rows[j].lag_events_exact;
			sub_dead += rows[j].dead_letters;
			sub_rate += rows[j].error_rate;
		}
		es_json_object(&sub);
		es_json_string(&sub, "name", rows[i].name);
		es_json_string(&sub, "status", health_names[h]);
		es_json_string(&sub, "reason", reason);
		es_json_string(&sub, "state", state);
		es_json_int(&sub, "partitions", j - i);
		es_json_int(&sub, "events_processed", sub_processed);
		es_json_int(&sub, "events_failed", sub_failed);
		es_json_int(&sub, "lag_events", sub_lag);
		es_json_bool(&sub, "lag_events_exact", sub_lag_exact);
		es_json_int(&sub, "lag_positions", sub_lag_positions);
		es_json_int(&sub, "lag_events_estimate", sub_lag_estimate);
		es_json_int(&sub, "dead_letters", sub_dead);
		es_json_int(&sub, "error_rate_per_minute", sub_rate);
		es_json_nested(&subs, NULL, &sub);

		/* every check reads "healthy" or "unhealthy: reason"; the level follows */
		es_json_string(&checks, psprintf("subscription:%s", rows[i].name),
				 h == ES_HEALTHY ? "healthy" :
				 psprintf("unhealthy: %s (%s)", reason ? reason : health_names[h],
						  health_names[h]));
		counts[h]++;
		nsubs++;
		overall = Max(overall, h);
		processed += sub_processed;
		failed += sub_failed;
		lag += sub_lag;
		dead += sub_dead;
		i = j;
	}
	es_json_string(&checks, "dead_letters",
			 dead >= es_max_dead_letters_warning ?
			 psprintf("unhealthy: " INT64_FORMAT " dead letters waiting", dead) : "healthy");
	/* span export (issue 13): reported, never a reason to be unhealthy */
	tracing = es_otlp_health();
	if (tracing != NULL)
		es_json_string(&checks, "tracing", tracing);

	es_json_object(&buf);
	es_json_string(&buf, "status", health_names[overall]);
	es_json_bool(&buf, "running", l.running && !l.shutting_down);
	es_json_int(&buf, "subscription_count", nsubs);
	es_json_int(&buf, "healthy_count", counts[ES_HEALTHY]);
	es_json_int(&buf, "degraded_count", counts[ES_DEGRADED]);
	es_json_int(&buf, "unhealthy_count", counts[ES_UNHEALTHY]);
	es_json_int(&buf, "critical_count", counts[ES_CRITICAL]);
	es_json_int(&buf, "total_events_processed", processed);
	es_json_int(&buf, "total_events_failed", failed);
	es_json_int(&buf, "total_lag_events", lag);
	es_json_int(&buf, "total_dead_letters", dead);
	es_json_int(&buf, "uptime_seconds",
			 l.started_at ? (now - l.started_at) / USECS_PER_SEC : 0);
	es_json_time(&buf, "timestamp", now);
	es_json_nested(&buf, "checks", &checks);
	es_json_nested(&buf, "subscriptions", &subs);
	PG_RETURN_DATUM(es_json_jsonb(&buf));
}

/*
 * Counts by name (error categories, severities: a handful of each, so a
 * linear search).
 */
typedef struct EsCounts
{
	int			n;
	int			size;
	const char **names;
	int64	   *counts;
} EsCounts;

static void
count_into(EsCounts *c, const char *name, int64 n)
{
	int			i;

	for (i = 0; i < c->n; i++)
		if (strcmp(c->names[i], name) == 0)
			break;
	if (i == c->n)
	{
		if (c->n == c->size)
		{
			c->size = Max(c->size * 2, 8);
			c->names = c->names ? repalloc(c->names, sizeof(char *) * c->size) :
				palloc(sizeof(char *) * c->size);
			c->counts = c->counts ? repalloc(c->counts, sizeof(int64) * c->size) :
				palloc(sizeof(int64) * c->size);
		}
		c->names[i] = name;
		c->counts[i] = 0;
		c->n++;
	}
	c->counts[i] += n;
}

/* {"name": n, ...} */
static void
counts_json(EsJson *j, const EsCounts *c)
{
	es_json_object(j);
	for (int i = 0; i < c->n; i++)
		es_json_int(j, c->names[i], c->counts[i]);
}

PG_FUNCTION_INFO_V1(es_error_stats);

/*
 * error_stats() RETURNS jsonb: totals by category and severity over the
 * recent errors kept, and per subscription; plus the live counters.  Its
 * cost is bounded by eventsource.recent_errors_kept and the dead letters
 * waiting (counted on their index), not by the log.
 */
Datum
es_error_stats(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr errors_plans[2] = {NULL, NULL};	/* 1.0 and 1.1 SQL */
	static SPIPlanPtr dead_plans[2] = {NULL, NULL};
	SPIPlanPtr	errors_plan;
	SPIPlanPtr	dead_plan;
	MemoryContext caller = CurrentMemoryContext;
	MemoryContext old;
	EsOwnerCall owner;
	bool		isnull;
	int			level;
	int64		dead_letters;
	EsCounts	categories = {0};
	EsCounts	severities = {0};
	int64		total = 0;
	TimestampTz oldest = 0;
	bool		have_oldest = false;
	EsJson		result;
	EsJson		by_subscription;
	Datum		d;

	Datum		values[3];
	char		nulls[3];
	Oid			types[3] = {BOOLOID, BOOLOID, TEXTOID};

	status_visibility(values, nulls);	/* as the caller */
	es_owner_begin(&owner);
	level = status_plan_settings();

	/*
	 * The errors of the subscriptions the caller's status shows; for a
	 * caller bound to tenants ($2 false), only the rows a subscription of
	 * its current tenant ($3) wrote (subscription_tenant, as the tables'
	 * policies): not those of a subscription dropped since, cross-tenant or
	 * of another tenant, whose name a subscription of its tenant took.
	 */
#define ES_VISIBLE_SUBSCRIPTION(tenant, row_scoped) \
	" WHERE $1 OR (EXISTS (SELECT FROM eventsource.subscriptions s" \
	"   WHERE s.name OPERATOR(pg_catalog.=) x.subscription" \
	"   AND " ES_STATUS_VISIBLE(tenant, "$1", "$2", "$3") ")" \
	"  AND ($2 OR " row_scoped "))"
#define ES_ROW_SCOPED \
	"x.subscription_tenant OPERATOR(pg_catalog.=) $3"
#define ES_ERRORS_QUERY(tenant, row_scoped) \
	"SELECT subscription, error_category, error_severity," \
	" pg_catalog.count(*), pg_catalog.max(occurred_at)," \
	" pg_catalog.min(occurred_at)" \
	" FROM eventsource.recent_errors x" \
	ES_VISIBLE_SUBSCRIPTION(tenant, row_scoped) \
	" GROUP BY subscription, error_category, error_severity" \
	" ORDER BY subscription, error_category, error_severity"
#define ES_DEAD_QUERY(tenant, row_scoped) \
	"SELECT pg_catalog.count(*) FROM eventsource.dead_letters x" \
	ES_VISIBLE_SUBSCRIPTION(tenant, row_scoped)
	errors_plan = es_prepare_versioned(errors_plans, ES_ERRORS_QUERY("NULL::pg_catalog.text", "true"),
									   ES_ERRORS_QUERY("s.tenant", ES_ROW_SCOPED), 3, types);
	dead_plan = es_prepare_versioned(dead_plans, ES_DEAD_QUERY("NULL::pg_catalog.text", "true"),
									 ES_DEAD_QUERY("s.tenant", ES_ROW_SCOPED), 3, types);
#undef ES_ERRORS_QUERY
#undef ES_DEAD_QUERY
#undef ES_VISIBLE_SUBSCRIPTION
#undef ES_ROW_SCOPED
	es_spi_read(dead_plan, values, nulls, NULL, 1);
	dead_letters = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	es_spi_read(errors_plan, values, nulls, NULL, 0);

	/*
	 * One row per (subscription, category, severity), at most
	 * recent_errors_kept; the JSON is built in the caller's context from
	 * the rows, which live until es_owner_end().
	 */
	old = MemoryContextSwitchTo(caller);
	es_json_object(&by_subscription);
	for (uint64 r = 0; r < SPI_processed;)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *sub = SPI_getvalue(SPI_tuptable->vals[r], desc, 1);
		EsCounts	sub_categories = {0};
		int64		errors = 0;
		TimestampTz last = 0;
		bool		have_last = false;
		EsJson		entry;
		EsJson		entry_categories;

		for (; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			char	   *category;
			char	   *severity;
			int64		n;
			TimestampTz t;

			if (strcmp(SPI_getvalue(tup, desc, 1), sub) != 0)
				break;
			category = SPI_getvalue(tup, desc, 2);
			severity = SPI_getvalue(tup, desc, 3);
			n = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
			count_into(&sub_categories, category, n);
			count_into(&categories, category, n);
			count_into(&severities, severity, n);
			errors += n;
			/* any timestamp, also 0 and before (no "none" value here) */
			t = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
			last = have_last ? Max(last, t) : t;
			have_last = true;
			t = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
			oldest = have_oldest ? Min(oldest, t) : t;
			have_oldest = true;
		}
		total += errors;
		es_json_object(&entry);
		es_json_int(&entry, "errors", errors);
		es_json_timestamp(&entry, "last_error_at", last);
		counts_json(&entry_categories, &sub_categories);
		es_json_nested(&entry, "by_category", &entry_categories);
		es_json_nested(&by_subscription, sub, &entry);
	}

	es_json_object(&result);
	es_json_int(&result, "total_errors", total);
	{
		EsJson		by_category;
		EsJson		by_severity;

		counts_json(&by_category, &categories);
		es_json_nested(&result, "by_category", &by_category);
		counts_json(&by_severity, &severities);
		es_json_nested(&result, "by_severity", &by_severity);
	}
	es_json_nested(&result, "by_subscription", &by_subscription);
	es_json_int(&result, "dead_letters", dead_letters);
	es_json_int(&result, "kept", es_recent_errors_kept);
	if (have_oldest)
		es_json_timestamp(&result, "oldest", oldest);
	else
		es_json_string(&result, "oldest", NULL);
	d = es_json_jsonb(&result);
	MemoryContextSwitchTo(old);

	AtEOXact_GUC(true, level);
	es_owner_end(&owner);
	PG_RETURN_DATUM(d);
}
