/*-------------------------------------------------------------------------
 *
 * tenant_stats.c
 *	  Per-tenant store statistics (eventsource.tenant_stats).
 *
 * A bounded table in shared memory keyed by (database, tenant), with the
 * counters of store_stats plus streams_created.  It is sized by
 * eventsource.max_tenant_stats (a restart setting) and never grows: when
 * every entry is taken, the counts of a tenant without an entry go to the
 * row "(other)" of its database (a name no tenant can have: tenant ids
 * are [A-Za-z0-9_.:-]).  The table holds eventsource.max_databases entries
 * more than the setting, kept for those "(other)" rows, so a database
 * always finds room for its own unless more than max_databases databases
 * count at once (then, as in stats.c, the extra ones are not counted).
 *
 * Counting takes no lock.  Each backend caches tenant -> entry pointer
 * with the entry's generation; the counters are atomics.  A lock is taken
 * only on a backend's first count for a tenant (shared, to find the entry;
 * exclusive, to claim one), and by the scrape (shared, to copy the rows).
 * Entries are recycled in two cases, both under the lock held exclusive
 * and each bumping the entry's generation, so that cached pointers go
 * stale and their owners look again:
 *  - stat_reset() frees every entry of its database (the rows start over
 *    when next counted, and a full table gets its room back);
 *  - a claim that finds the table full frees the entries of databases that
 *    have been dropped since (catalog lookups outside the lock).
 * A count that races a recycle can land in the old or the new row: these
 * are statistics, and a counter that must be exact is not kept here.  A
 * tenant mapped to "(other)" looks again once any entry has been freed
 * (the freed counter), so a reset gives overflowing tenants rows of their
 * own.
 *
 * Lock: ES_LWLOCK_TENANT_STATS protects the identity of every entry
 * (dboid, tenant, next), the hash buckets, the free list and the counts
 * of entries in use; generation and counters are atomics; reset_at is
 * written under the lock held exclusive and read under it held shared.
 *
 * The tenant a count belongs to is the one the call resolved once, as the
 * caller (tenant.c), passed down through es_stats_count.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "eventsource.h"
#include "tenant.h"

/* a tenant id (tenant.h) and its NUL */
#define ES_TENANT_ID_SIZE	(ES_MAX_TENANT_LEN + 1)

/* The name of each database's overflow row. */
#define ES_TENANT_OTHER		"(other)"

typedef struct EsTenantEntry
{
	pg_atomic_uint32 generation;	/* bumped when the entry is freed */
	Oid			dboid;			/* InvalidOid: free */
	int32		next;			/* hash chain or free list; -1 ends it */
	char		tenant[ES_TENANT_ID_SIZE];
	TimestampTz reset_at;		/* when this row started counting */
	pg_atomic_uint64 counters[ES_NUM_TENANT_STATS];
} EsTenantEntry;

typedef struct EsTenantStatsShared
{
	int			nentries;		/* max_tenant_stats + max_databases */
	int			nbuckets;		/* a power of two */
	int			ntenants;		/* entries in use by tenants */
	int			nother;			/* entries in use by "(other)" rows */
	int32		free_head;
	pg_atomic_uint64 freed;		/* entries freed since startup */
	/* entries[nentries], then buckets[nbuckets] (int32, -1: empty) */
	EsTenantEntry entries[FLEXIBLE_ARRAY_MEMBER];
} EsTenantStatsShared;

static EsTenantStatsShared *tstats = NULL;

/* A backend's cached entry for a tenant of its database. */
typedef struct EsTenantCacheEntry
{
	char		tenant[ES_TENANT_ID_SIZE];	/* hash key */
	EsTenantEntry *entry;
	uint32		generation;
	bool		overflow;		/* entry is the "(other)" row */
	uint64		freed;			/* tstats->freed when overflow was decided */
} EsTenantCacheEntry;

static HTAB *tenant_cache = NULL;
static EsTenantCacheEntry *last_used = NULL;	/* one-entry memo */

/* The cache is dropped when it holds more tenants than this. */
#define ES_TENANT_CACHE_MAX		65536

static int
bucket_count(void)
{
	int			n = 1;

	/* about two buckets per entry */
	while (n < es_max_tenant_stats + es_max_databases)
		n <<= 1;
	return n << 1;
}

static int32 *
buckets(void)
{
	return (int32 *) &tstats->entries[tstats->nentries];
}

Size
es_tenant_stats_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(EsTenantStatsShared, entries),
					mul_size(sizeof(EsTenantEntry),
							 es_max_tenant_stats + es_max_databases));
	return add_size(size, mul_size(sizeof(int32), bucket_count()));
}

void
es_tenant_stats_shmem_init(void *area, bool found)
{
	tstats = (EsTenantStatsShared *) area;
	if (found)
		return;
	memset(area, 0, es_tenant_stats_shmem_size());
	tstats->nentries = es_max_tenant_stats + es_max_databases;
	tstats->nbuckets = bucket_count();
	pg_atomic_init_u64(&tstats->freed, 0);
	for (int i = 0; i < tstats->nentries; i++)
	{
		EsTenantEntry *e = &tstats->entries[i];

		pg_atomic_init_u32(&e->generation, 0);
		for (int c = 0; c < ES_NUM_TENANT_STATS; c++)
			pg_atomic_init_u64(&e->counters[c], 0);
		e->next = (i + 1 < tstats->nentries) ? i + 1 : -1;
	}
	tstats->free_head = 0;
	for (int b = 0; b < tstats->nbuckets; b++)
		buckets()[b] = -1;
}

static uint32
key_hash(Oid dboid, const char *tenant)
{
	return hash_combine(murmurhash32((uint32) dboid),
						hash_bytes((const unsigned char *) tenant, strlen(tenant)));
}

/* The entry of (dboid, tenant), or NULL.  Caller holds the lock. */
static EsTenantEntry *
find_locked(Oid dboid, const char *tenant)
{
	int32		i;

	Assert(LWLockHeldByMe(es_lwlock(ES_LWLOCK_TENANT_STATS)));
	i = buckets()[key_hash(dboid, tenant) & (tstats->nbuckets - 1)];
	for (; i >= 0; i = tstats->entries[i].next)
	{
		EsTenantEntry *e = &tstats->entries[i];

		if (e->dboid == dboid && strcmp(e->tenant, tenant) == 0)
			return e;
	}
	return NULL;
}

/*
 * Claim a free entry for (dboid, tenant), counters at zero.  NULL when the
 * tenant's share of the table is used up (or, for "(other)", the whole
 * table).  Caller holds the lock exclusive.
 */
static EsTenantEntry *
claim_locked(Oid dboid, const char *tenant, bool other)
{
	EsTenantEntry *e;
	int32		i;
	int32	   *bucket;

	Assert(LWLockHeldByMeInMode(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_EXCLUSIVE));
	if (tstats->free_head < 0 ||
		(!other && tstats->ntenants >= es_max_tenant_stats))
		return NULL;
	i = tstats->free_head;
	e = &tstats->entries[i];
	tstats->free_head = e->next;
	e->dboid = dboid;
	strlcpy(e->tenant, tenant, sizeof(e->tenant));
	for (int c = 0; c < ES_NUM_TENANT_STATS; c++)
		pg_atomic_write_u64(&e->counters[c], 0);
	e->reset_at = GetCurrentTimestamp();
	bucket = &buckets()[key_hash(dboid, tenant) & (tstats->nbuckets - 1)];
	e->next = *bucket;
	*bucket = i;
	if (other)
		tstats->nother++;
	else
		tstats->ntenants++;
	return e;
}

/*
 * Free every entry of database dboid.  Their generations move on, so
 * cached pointers go stale.  Caller holds the lock exclusive.
 */
static void
free_database_locked(Oid dboid)
{
	int32	   *bkt = buckets();
	uint64		freed = 0;

	Assert(LWLockHeldByMeInMode(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_EXCLUSIVE));
	for (int b = 0; b < tstats->nbuckets; b++)
	{
		int32	   *link = &bkt[b];

		while (*link >= 0)
		{
			int32		i = *link;
			EsTenantEntry *e = &tstats->entries[i];

			if (e->dboid != dboid)
			{
				link = &e->next;
				continue;
			}
			*link = e->next;
			pg_atomic_fetch_add_u32(&e->generation, 1);
			if (strcmp(e->tenant, ES_TENANT_OTHER) == 0)
				tstats->nother--;
			else
				tstats->ntenants--;
			e->dboid = InvalidOid;
			e->tenant[0] = '\0';
			e->next = tstats->free_head;
			tstats->free_head = i;
			freed++;
		}
	}
	if (freed > 0)
		pg_atomic_fetch_add_u64(&tstats->freed, freed);
}

/*
 * The table is full: free the entries of databases dropped since they
 * counted.  Needs a transaction (catalog lookups, done without the lock).
 * Returns whether anything was freed.
 */
static bool
reclaim_dropped_databases(void)
{
	Oid		   *dbs;
	int			ndbs = 0;
	bool		any = false;

	if (!IsTransactionState())
		return false;
	dbs = palloc(sizeof(Oid) * tstats->nentries);
	LWLockAcquire(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_SHARED);
	for (int i = 0; i < tstats->nentries; i++)
	{
		Oid			db = tstats->entries[i].dboid;

		if (OidIsValid(db) && db != MyDatabaseId)
			dbs[ndbs++] = db;
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_TENANT_STATS));
	qsort(dbs, ndbs, sizeof(Oid), oid_cmp);

	for (int i = 0; i < ndbs; i++)
	{
		if ((i > 0 && dbs[i] == dbs[i - 1]) ||
			SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbs[i])))
			continue;
		LWLockAcquire(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_EXCLUSIVE);
		free_database_locked(dbs[i]);
		LWLockRelease(es_lwlock(ES_LWLOCK_TENANT_STATS));
		any = true;
	}
	pfree(dbs);
	return any;
}

/*
 * Find or claim the entry of (this database, tenant); when the table has
 * no room for it, this database's "(other)" row (*overflow set).  NULL
 * when not even that can be had.  *generation is the entry's, read under
 * the lock (so that it belongs to this tenant's use of the entry).
 */
static EsTenantEntry *
lookup_or_claim(const char *tenant, bool *overflow, uint32 *generation)
{
	LWLock	   *lock = es_lwlock(ES_LWLOCK_TENANT_STATS);
	EsTenantEntry *e;
	bool		reclaimed = false;
	bool		is_other = strcmp(tenant, ES_TENANT_OTHER) == 0;

	*overflow = is_other;
	LWLockAcquire(lock, LW_SHARED);
	e = find_locked(MyDatabaseId, tenant);
	if (e != NULL)
		*generation = pg_atomic_read_u32(&e->generation);
	LWLockRelease(lock);
	if (e != NULL)
		return e;

	for (;;)
	{
		LWLockAcquire(lock, LW_EXCLUSIVE);
		e = find_locked(MyDatabaseId, tenant);
		if (e == NULL)
			e = claim_locked(MyDatabaseId, tenant, is_other);
		if (e == NULL && !reclaimed)
		{
			LWLockRelease(lock);
			reclaimed = true;
			if (reclaim_dropped_databases())
				continue;
			LWLockAcquire(lock, LW_EXCLUSIVE);
		}
		if (e == NULL)
		{
			*overflow = true;
			e = find_locked(MyDatabaseId, ES_TENANT_OTHER);
			if (e == NULL)
				e = claim_locked(MyDatabaseId, ES_TENANT_OTHER, true);
		}
		if (e != NULL)
			*generation = pg_atomic_read_u32(&e->generation);
		LWLockRelease(lock);
		return e;
	}
}

/* This backend's cache entry for tenant, made valid; NULL: not counted. */
static EsTenantCacheEntry *
cached_entry(const char *tenant)
{
	EsTenantCacheEntry *c;
	bool		found;
	bool		overflow;

	if (last_used != NULL && strcmp(last_used->tenant, tenant) == 0)
		c = last_used;
	else
	{
		if (tenant_cache == NULL ||
			hash_get_num_entries(tenant_cache) >= ES_TENANT_CACHE_MAX)
		{
			HASHCTL		ctl;

			if (tenant_cache != NULL)
				hash_destroy(tenant_cache);
			last_used = NULL;
			ctl.keysize = ES_TENANT_ID_SIZE;
			ctl.entrysize = sizeof(EsTenantCacheEntry);
			ctl.hcxt = TopMemoryContext;
			tenant_cache = hash_create("eventsource tenant stats", 64, &ctl,
									   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		}
		c = hash_search(tenant_cache, tenant, HASH_ENTER, &found);
		if (!found)
			c->entry = NULL;
		last_used = c;
	}

	if (c->entry != NULL &&
		pg_atomic_read_u32(&c->entry->generation) == c->generation &&
		(!c->overflow || pg_atomic_read_u64(&tstats->freed) == c->freed))
		return c;

	c->freed = pg_atomic_read_u64(&tstats->freed);
	c->entry = lookup_or_claim(tenant, &overflow, &c->generation);
	if (c->entry == NULL)
		return NULL;
	c->overflow = overflow;
	return c;
}

/*
 * Whether the caller sees every tenant's row: the roles tenant.c exempts
 * from tenants (the store's owner and roles with its privileges,
 * superusers, BYPASSRLS roles), who also see every tenant's rows in the
 * tables.
 */
static bool
sees_all_tenants(void)
{
	Oid			user = GetUserId();

	return superuser_arg(user) || has_bypassrls_privilege(user) ||
		has_privs_of_role(user, es_catalog()->owner_oid);
}

/*
 * Count n of kind for "tenant" (the tenant the call resolved, as the
 * caller, tenant.c) in this database; called by es_stats_count.  No lock
 * once this backend has seen the tenant (see the header).  A tenant id that
 * does not fit an entry (longer than any valid one) counts under "(other)".
 */
void
es_tenant_stats_count(text *tenant, EsStatKind kind, int64 n)
{
	EsTenantCacheEntry *c;
	char		id[ES_TENANT_ID_SIZE];
	int			len;

	if (tstats == NULL || !OidIsValid(MyDatabaseId) || tenant == NULL)
		return;
	len = VARSIZE_ANY_EXHDR(tenant);
	if (len >= ES_TENANT_ID_SIZE)
		strlcpy(id, ES_TENANT_OTHER, sizeof(id));
	else
	{
		memcpy(id, VARDATA_ANY(tenant), len);
		id[len] = '\0';
	}
	c = cached_entry(id);
	if (c != NULL)
		pg_atomic_fetch_add_u64(&c->entry->counters[kind], (uint64) n);
}

/* stat_reset(): every tenant row of this database starts over. */
void
es_tenant_stats_reset(void)
{
	if (tstats == NULL || !OidIsValid(MyDatabaseId))
		return;
	LWLockAcquire(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_EXCLUSIVE);
	free_database_locked(MyDatabaseId);
	LWLockRelease(es_lwlock(ES_LWLOCK_TENANT_STATS));
}

/* The columns of tenant_stats_rows() after tenant_id, in order. */
static const EsStatKind column_kinds[] = {
	ES_STAT_APPENDS,
	ES_STAT_EVENTS_APPENDED,
	ES_STAT_STREAMS_CREATED,
	ES_STAT_CONFLICTS,
	ES_STAT_IDEMPOTENT_RETRIES,
	ES_STAT_DUPLICATE_IDS,
	ES_STAT_STREAM_READS,
	ES_STAT_GLOBAL_READS,
	ES_STAT_EVENTS_READ,
};

StaticAssertDecl(lengthof(column_kinds) == ES_NUM_TENANT_STATS,
				 "every tenant counter has a column");

typedef struct EsTenantRow
{
	char		tenant[ES_TENANT_ID_SIZE];
	uint64		counters[ES_NUM_TENANT_STATS];
	TimestampTz reset_at;
} EsTenantRow;

PG_FUNCTION_INFO_V1(es_tenant_stats_rows);

/*
 * tenant_stats_rows() RETURNS SETOF record: tenant_id, the counters in
 * column_kinds' order, stats_reset.  The rows of this database; a caller
 * who may not see every tenant (sees_all_tenants) gets only the row of its
 * current tenant (es_current_tenant(): the errors of a bound role naming
 * another tenant are its).  The rows are copied under the lock held shared and
 * returned after it is released; the cost is one pass over the table
 * (max_tenant_stats + max_databases entries), whatever the store holds.
 */
Datum
es_tenant_stats_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsTenantRow *rows;
	int			nrows = 0;
	const char *only = NULL;

	es_require_shmem("eventsource.tenant_stats");
	/* only 1.1's SQL declares it; declared by hand in a 1.0 database: refuse */
	es_require_sql_version("1.1", "eventsource.tenant_stats");
	InitMaterializedSRF(fcinfo, 0);
	if (!sees_all_tenants())
		only = es_current_tenant();

	rows = palloc(sizeof(EsTenantRow) * (only ? 1 : tstats->nentries));
	LWLockAcquire(es_lwlock(ES_LWLOCK_TENANT_STATS), LW_SHARED);
	if (only != NULL)
	{
		EsTenantEntry *e = find_locked(MyDatabaseId, only);

		if (e != NULL)
		{
			strlcpy(rows[0].tenant, e->tenant, sizeof(rows[0].tenant));
			for (int c = 0; c < ES_NUM_TENANT_STATS; c++)
				rows[0].counters[c] = pg_atomic_read_u64(&e->counters[c]);
			rows[0].reset_at = e->reset_at;
			nrows = 1;
		}
	}
	else
	{
		for (int i = 0; i < tstats->nentries; i++)
		{
			EsTenantEntry *e = &tstats->entries[i];

			if (e->dboid != MyDatabaseId)
				continue;
			strlcpy(rows[nrows].tenant, e->tenant, sizeof(rows[nrows].tenant));
			for (int c = 0; c < ES_NUM_TENANT_STATS; c++)
				rows[nrows].counters[c] = pg_atomic_read_u64(&e->counters[c]);
			rows[nrows].reset_at = e->reset_at;
			nrows++;
		}
	}
	LWLockRelease(es_lwlock(ES_LWLOCK_TENANT_STATS));

	for (int r = 0; r < nrows; r++)
	{
		Datum		v[ES_NUM_TENANT_STATS + 2];
		bool		nulls[ES_NUM_TENANT_STATS + 2];

		memset(nulls, 0, sizeof(nulls));
		v[0] = CStringGetTextDatum(rows[r].tenant);
		for (int c = 0; c < ES_NUM_TENANT_STATS; c++)
			v[c + 1] = Int64GetDatum((int64) rows[r].counters[column_kinds[c]]);
		v[ES_NUM_TENANT_STATS + 1] = TimestampTzGetDatum(rows[r].reset_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
