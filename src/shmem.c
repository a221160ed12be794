/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of the eventsource extension: requesting and attaching it.
 *
 * The extension keeps these kinds of state in shared memory: the position
 * reservations behind the safe horizon (horizon.c), the slots of the
 * subscription workers (registry.c), the store statistics (stats.c), the
 * per-tenant statistics (tenant_stats.c, with an LWLock of the tranche) and
 * the queue of finished spans for the OTLP exporter (otlp_queue.c, which has
 * its own LWLock tranche) and the cleanup workers' entries (cleanup.c).  Each owner file exports
 * a size function and an init function; this file adds them up in the
 * shmem_request_hook and carves the segment in the shmem_startup_hook, under
 * AddinShmemInitLock, as pg_stat_statements does.
 *
 * When the library was not loaded through shared_preload_libraries none of
 * this exists; es_require_shmem() turns that into a clear error for the
 * functions that need it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "eventsource.h"
#include "subscription.h"
#include "trace.h"

typedef struct EsShmemArea
{
	Size		(*size) (void);
	void		(*init) (void *area, bool found);
} EsShmemArea;

static const EsShmemArea es_areas[] = {
	{es_horizon_shmem_size, es_horizon_shmem_init},
	{es_workers_shmem_size, es_workers_shmem_init},
	{es_stats_shmem_size, es_stats_shmem_init},
	{es_tenant_stats_shmem_size, es_tenant_stats_shmem_init},
	{es_otlp_queue_shmem_size, es_otlp_queue_shmem_init},
	{es_erasure_shmem_size, es_erasure_shmem_init},
	{es_cleanup_shmem_size, es_cleanup_shmem_init},
};

#define ES_NUM_AREAS lengthof(es_areas)

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool es_shmem_attached = false;
static LWLockPadded *es_locks = NULL;

static Size
es_shmem_total_size(void)
{
	Size		total = 0;

	for (int i = 0; i < ES_NUM_AREAS; i++)
		total = add_size(total, MAXALIGN(es_areas[i].size()));
	return total;
}

static void
es_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(es_shmem_total_size());
	RequestNamedLWLockTranche(ES_LWLOCK_TRANCHE, ES_NUM_LWLOCKS);
}

/*
 * Create or attach the segment.  Runs in the postmaster at startup and after
 * a crash-restart (where the contents are rebuilt from scratch), and in
 * EXEC_BACKEND children.
 */
static void
es_shmem_startup(void)
{
	bool		found;
	char	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("eventsource", es_shmem_total_size(), &found);
	for (int i = 0; i < ES_NUM_AREAS; i++)
	{
		es_areas[i].init(base, found);
		base += MAXALIGN(es_areas[i].size());
	}
	LWLockRelease(AddinShmemInitLock);

	es_locks = GetNamedLWLockTranche(ES_LWLOCK_TRANCHE);
	es_shmem_attached = true;
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
es_shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = es_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = es_shmem_startup;
}

bool
es_shmem_available(void)
{
	return es_shmem_attached;
}

/*
 * Raise SQLSTATE 55000 unless the library was preloaded.  "what" names the
 * function or feature for the message.
 */
void
es_require_shmem(const char *what)
{
	if (!es_shmem_attached)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s requires the eventsource library to be preloaded", what),
				 errhint("Add eventsource to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* The LWLock that protects the named part of the segment. */
LWLock *
es_lwlock(int which)
{
	Assert(es_locks != NULL && which >= 0 && which < ES_NUM_LWLOCKS);
	return &es_locks[which].lock;
}
