/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  Cumulative store statistics (eventsource.store_stats, stat_reset()).
 *
 * One entry per database in shared memory, found by database OID; the
 * counters are atomics, so the append and read paths count without taking
 * a lock.  An entry's OID is claimed under the STATS spinlock.  When every
 * entry is taken, the entry of a database that has been dropped since is
 * taken over (its counters start from zero); only when more than
 * eventsource.max_databases existing databases count at once are the extra
 * ones not counted (the view then shows zeros and a NULL stats_reset).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "access/xact.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "eventsource.h"

typedef struct EsStoreStats
{
	Oid			dboid;
	pg_atomic_uint64 counters[ES_NUM_STATS];
	TimestampTz reset_at;
} EsStoreStats;

typedef struct EsStatsShared
{
	slock_t		mutex;
	int			nentries;
	EsStoreStats entries[FLEXIBLE_ARRAY_MEMBER];
} EsStatsShared;

static EsStatsShared *stats = NULL;
static EsStoreStats *my_stats = NULL;

Size
es_stats_shmem_size(void)
{
	return add_size(offsetof(EsStatsShared, entries),
					mul_size(sizeof(EsStoreStats), es_max_databases));
}

void
es_stats_shmem_init(void *area, bool found)
{
	stats = (EsStatsShared *) area;
	if (found)
		return;
	memset(area, 0, es_stats_shmem_size());
	SpinLockInit(&stats->mutex);
	stats->nentries = es_max_databases;
	for (int i = 0; i < stats->nentries; i++)
		for (int c = 0; c < ES_NUM_STATS; c++)
			pg_atomic_init_u64(&stats->entries[i].counters[c], 0);
}

/* Start an entry over for this database.  Caller holds the spinlock. */
static void
claim_entry_locked(EsStoreStats *e, TimestampTz now)
{
	e->dboid = MyDatabaseId;
	for (int c = 0; c < ES_NUM_STATS; c++)
		pg_atomic_write_u64(&e->counters[c], 0);
	e->reset_at = now;
}

/* This database's entry, if it has one.  Caller holds the spinlock. */
static EsStoreStats *
find_entry_locked(void)
{
	for (int i = 0; i < stats->nentries; i++)
		if (stats->entries[i].dboid == MyDatabaseId)
			return &stats->entries[i];
	return NULL;
}

/*
 * This database's entry, claimed on first use: a free one, else one of a
 * database that no longer exists (entries are not given back at DROP
 * DATABASE, so without this the store of every database created after the
 * first max_databases ones would never be counted).  NULL when none can be
 * had.
 */
static EsStoreStats *
my_entry(void)
{
	TimestampTz now;

	if (my_stats != NULL && my_stats->dboid == MyDatabaseId)
		return my_stats;
	if (stats == NULL || !OidIsValid(MyDatabaseId))
		return NULL;
	my_stats = NULL;
	now = GetCurrentTimestamp();
	SpinLockAcquire(&stats->mutex);
	my_stats = find_entry_locked();
	for (int i = 0; my_stats == NULL && i < stats->nentries; i++)
	{
		if (stats->entries[i].dboid == InvalidOid)
		{
			my_stats = &stats->entries[i];
			claim_entry_locked(my_stats, now);
		}
	}
	SpinLockRelease(&stats->mutex);
	if (my_stats != NULL || !IsTransactionState())
		return my_stats;

	/* all taken: look for an entry of a dropped database (catalog lookups) */
	for (int i = 0; my_stats == NULL && i < stats->nentries; i++)
	{
		Oid			other;

		SpinLockAcquire(&stats->mutex);
		other = stats->entries[i].dboid;
		SpinLockRelease(&stats->mutex);
		if (!OidIsValid(other) || other == MyDatabaseId ||
			SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(other)))
			continue;
		SpinLockAcquire(&stats->mutex);
		/* another backend of this database may have been quicker */
		my_stats = find_entry_locked();
		if (my_stats == NULL && stats->entries[i].dboid == other)
		{
			my_stats = &stats->entries[i];
			claim_entry_locked(my_stats, now);
		}
		SpinLockRelease(&stats->mutex);
	}
	return my_stats;
}

/*
 * Count n of kind: in this database's entry (the counters of store_stats),
 * and for "tenant", the tenant the call resolved (tenant_stats.c).
 */
void
es_stats_count(text *tenant, EsStatKind kind, int64 n)
{
	if (kind < ES_NUM_STATS)
	{
		EsStoreStats *e = my_entry();

		if (e != NULL)
			pg_atomic_fetch_add_u64(&e->counters[kind], (uint64) n);
	}
	es_tenant_stats_count(tenant, kind, n);
}

PG_FUNCTION_INFO_V1(es_store_stats);

/*
 * store_stats_row() RETURNS record: appends, events_appended,
 * expected_version_conflicts, idempotent_retries, duplicate_event_ids,
 * stream_reads, global_reads, events_read, stats_reset.
 */
Datum
es_store_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[ES_NUM_STATS + 1];
	bool		nulls[ES_NUM_STATS + 1];
	EsStoreStats *e;

	es_require_shmem("eventsource.store_stats");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	e = my_entry();
	memset(nulls, 0, sizeof(nulls));
	for (int c = 0; c < ES_NUM_STATS; c++)
		values[c] = Int64GetDatum(e ? (int64) pg_atomic_read_u64(&e->counters[c]) : 0);
	values[ES_NUM_STATS] = TimestampTzGetDatum(e ? e->reset_at : 0);
	nulls[ES_NUM_STATS] = (e == NULL);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

PG_FUNCTION_INFO_V1(es_stat_reset);

/*
 * stat_reset() RETURNS void: this database's counters start over, and so do
 * its tenants' rows (es_tenant_stats_reset).
 */
Datum
es_stat_reset(PG_FUNCTION_ARGS)
{
	EsStoreStats *e;

	es_require_shmem("eventsource.stat_reset()");
	e = my_entry();
	if (e != NULL)
	{
		for (int c = 0; c < ES_NUM_STATS; c++)
			pg_atomic_write_u64(&e->counters[c], 0);
		e->reset_at = GetCurrentTimestamp();
	}
	es_tenant_stats_reset();
	PG_RETURN_VOID();
}
