/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Keep eventsource.events append-only and reachable only through append().
 *
 * A statement-level trigger refuses UPDATE, DELETE and TRUNCATE of the log,
 * and an INSERT that does not come from append(): such a row would carry a
 * position the horizon never reserved, and a reader could pass it before it
 * commits.  append() sets es_append_in_progress just before its own INSERT;
 * the trigger consumes it, so only that one statement passes.
 *
 * The one other way in is a restore: pg_dump writes the log as
 * "COPY eventsource.events FROM stdin" right after CREATE EXTENSION.  The
 * ProcessUtility hook (utility_hook.c) marks such a COPY, and the trigger
 * lets it through when
 * the log is empty, holding the horizon at 0 until the restoring transaction
 * ends (horizon.c, es_reserve_for_restore).  The hook exists only when the
 * library is preloaded, as the rest of the store requires anyway.
 *
 * Since 1.1 the same trigger function guards eventsource.stream_lifecycle
 * (which events are hidden): only delete_stream(), truncate_stream() and
 * the erasure functions write it (lifecycle.c and erasure.c run their one
 * statement each through es_exec_guarded(ES_GUARDED_LIFECYCLE), an
 * INSERT ... ON CONFLICT DO UPDATE, which fires both the
 * INSERT and the UPDATE statement triggers), and a restore's COPY into an
 * empty table.  A direct write would change what is hidden: a deleted row
 * brings hidden events back, a lowered last_version lets versions be reused.
 * The retention rules (eventsource.stream_retention, retention.c) are
 * guarded the same way, with the same flag: a direct write would hide events.
 *
 * The cleanup worker (cleanup.c) removes hidden rows of the log: its own
 * DELETE runs through es_exec_guarded(ES_GUARDED_CLEANUP_DELETE), whose
 * flag the trigger consumes, as it does append()'s.
 *
 * Since 1.1 it also guards the tenant registry, eventsource.tenants and
 * tenant_roles: only create_tenant(), bind_role_to_tenant() and
 * unbind_role_from_tenant() write them (tenant_admin.c sets
 * es_tenant_write_in_progress around its one statement each), and a
 * restore's COPY.  For every write it lets through, the guard registers a
 * relcache invalidation of the table, so that every backend drops its cache
 * of tenants and bindings (tenant.c) when the write commits.  A direct write
 * would bypass the checks of those functions (an unregistered tenant, a
 * role that does not exist).
 *
 * Since 1.1 it also refuses TRUNCATE of eventsource.snapshots and
 * checkpoints to every role but the exempt ones (superusers, BYPASSRLS, the
 * owner's privileges: tenant.c): row-level security does not apply to
 * TRUNCATE, so a tenant's role holding that privilege would empty every
 * tenant's rows.  Their other writes are the policies' business.
 *
 * Since 1.1 the log takes one kind of UPDATE: erasure.c redacts personal
 * data in place, its own UPDATE statement through
 * es_exec_guarded(ES_GUARDED_ERASE), whose flag the trigger consumes as it
 * does append()'s.  Every other UPDATE, DELETE and TRUNCATE stays refused.
 *
 * es_exec_guarded() is the one place that sets those three flags: for one
 * statement, reset whether it succeeds or fails (a flag left set would let
 * the next statement of the session through).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "eventsource.h"
#include "tenant.h"

bool		es_append_in_progress = false;
static bool lifecycle_write_in_progress = false;
static bool erase_in_progress = false;
static bool cleanup_delete_in_progress = false;
static bool restore_copy_in_progress = false;

/*
 * Is this statement a COPY FROM into eventsource.events or
 * eventsource.stream_lifecycle (the two tables a restore fills through the
 * guard)?  (Called by the ProcessUtility hook, utility_hook.c, which
 * brackets such a COPY with es_guard_restore_copy().)
 */
bool
es_guard_is_copy_into_events(Node *parsetree)
{
	CopyStmt   *stmt;
	Oid			nsp;
	Oid			relid;

	if (!IsA(parsetree, CopyStmt))
		return false;
	stmt = (CopyStmt *) parsetree;
	if (!stmt->is_from || stmt->relation == NULL ||
		(strcmp(stmt->relation->relname, "events") != 0 &&
		 strcmp(stmt->relation->relname, "stream_lifecycle") != 0 &&
		 strcmp(stmt->relation->relname, "stream_retention") != 0 &&
		 strcmp(stmt->relation->relname, "tenants") != 0 &&
		 strcmp(stmt->relation->relname, "tenant_roles") != 0))
		return false;
	nsp = get_namespace_oid("eventsource", true);
	if (!OidIsValid(nsp))
		return false;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	return OidIsValid(relid) &&
		(relid == get_relname_relid("events", nsp) ||
		 relid == get_relname_relid("stream_lifecycle", nsp) ||
		 relid == get_relname_relid("stream_retention", nsp) ||
		 relid == get_relname_relid("tenants", nsp) ||
		 relid == get_relname_relid("tenant_roles", nsp));
}

void
es_guard_restore_copy(bool on)
{
	restore_copy_in_progress = on;
}

/* The guarded tables, as table_empty() knows them */
#define GUARDED_EVENTS		0
#define GUARDED_LIFECYCLE	1
#define GUARDED_RETENTION	2

/* Does the table hold no row?  Runs as the owner. */
static bool
table_empty(int which)
{
	static SPIPlanPtr plans[3] = {NULL, NULL, NULL};
	static const char *const queries[3] = {
		"SELECT 1 FROM eventsource.events LIMIT 1",
		"SELECT 1 FROM eventsource.stream_lifecycle LIMIT 1",
		"SELECT 1 FROM eventsource.stream_retention LIMIT 1",
	};
	EsOwnerCall owner;
	bool		empty;

	es_owner_begin(&owner);
	if (plans[which] == NULL)
		plans[which] = es_prepare(queries[which], 0, NULL);
	es_spi_read_latest(plans[which], NULL, NULL, NULL, 1);
	empty = (SPI_processed == 0);
	es_owner_end(&owner);
	return empty;
}

/* "insert into", "update", ... for the message of a refused direct write */
static const char *
direct_write_verb(TriggerData *trigdata)
{
	return TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ? "insert into" :
		TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? "update" :
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ? "delete from" :
		"truncate";
}

/*
 * The trigger on eventsource.stream_lifecycle and eventsource.stream_retention
 * (see the file header).
 */
static Datum
lifecycle_guard(TriggerData *trigdata, bool retention)
{
	const char *table = retention ? "stream_retention" : "stream_lifecycle";

	if (lifecycle_write_in_progress)
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && restore_copy_in_progress)
	{
		if (!table_empty(retention ? GUARDED_RETENTION : GUARDED_LIFECYCLE))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("COPY into eventsource.%s is only allowed into an empty table", table),
					 errdetail("COPY is accepted to restore a dump; this store already has rows there.")));
		return PointerGetDatum(NULL);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s eventsource.%s directly",
					direct_write_verb(trigdata), table),
			 retention ?
			 errdetail("The table says which events expire; a direct write could hide events.") :
			 errdetail("The table says which events are hidden; a direct write could bring hidden events back or let versions be reused."),
			 retention ?
			 errhint("Use eventsource.set_retention(), eventsource.set_category_retention() or the clear functions.") :
			 errhint("Use eventsource.delete_stream() or eventsource.truncate_stream().")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/*
 * The trigger on eventsource.tenants and eventsource.tenant_roles (see the
 * file header).  A restore's COPY is let through whatever the table holds:
 * tenants already has the 'default' row that CREATE EXTENSION made (the
 * dump leaves it out), and the primary keys refuse a duplicate.
 */
static Datum
tenant_guard(TriggerData *trigdata)
{
	const char *table = RelationGetRelationName(trigdata->tg_relation);

	if (es_tenant_write_in_progress ||
		(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && restore_copy_in_progress))
	{
		CacheInvalidateRelcache(trigdata->tg_relation);
		return PointerGetDatum(NULL);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot %s eventsource.%s directly",
					direct_write_verb(trigdata), table),
			 errdetail("The table says which tenants exist and which roles may use them."),
			 errhint("Use eventsource.create_tenant(), eventsource.bind_role_to_tenant() or eventsource.unbind_role_from_tenant().")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/*
 * The TRUNCATE trigger on eventsource.snapshots and checkpoints (see the
 * file header), as the role that truncates.
 */
static Datum
tenant_truncate_guard(TriggerData *trigdata)
{
	if (es_tenant_role_exempt(GetUserId()))
		return PointerGetDatum(NULL);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("cannot truncate eventsource.%s", RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("It holds every tenant's rows, and row-level security does not apply to TRUNCATE."),
			 errhint("Delete the current tenant's rows with DELETE; only the store's owner may truncate.")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

PG_FUNCTION_INFO_V1(es_events_guard);

/* The statement-level trigger on eventsource.events. */
Datum
es_events_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("events_guard() must be called as a trigger")));
	if (RelationGetNamespace(trigdata->tg_relation) == get_namespace_oid("eventsource", true))
	{
		if (strcmp(RelationGetRelationName(trigdata->tg_relation), "stream_lifecycle") == 0)
			return lifecycle_guard(trigdata, false);
		if (strcmp(RelationGetRelationName(trigdata->tg_relation), "stream_retention") == 0)
			return lifecycle_guard(trigdata, true);
		if (strcmp(RelationGetRelationName(trigdata->tg_relation), "tenants") == 0 ||
			strcmp(RelationGetRelationName(trigdata->tg_relation), "tenant_roles") == 0)
			return tenant_guard(trigdata);
		if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) &&
			(strcmp(RelationGetRelationName(trigdata->tg_relation), "snapshots") == 0 ||
			 strcmp(RelationGetRelationName(trigdata->tg_relation), "checkpoints") == 0))
			return tenant_truncate_guard(trigdata);
	}

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (es_append_in_progress)
		{
			es_append_in_progress = false;
			return PointerGetDatum(NULL);
		}
		if (restore_copy_in_progress)
		{
			es_require_shmem("restoring eventsource.events");
			if (!table_empty(GUARDED_EVENTS))
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("COPY into eventsource.events is only allowed into an empty event store"),
						 errdetail("COPY is accepted to restore a dump; this store already holds events."),
						 errhint("Use eventsource.append() to add events.")));
			es_reserve_for_restore();
			return PointerGetDatum(NULL);
		}
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot insert into eventsource.events directly"),
				 errdetail("Rows inserted outside eventsource.append() would get positions that readers of the global log could skip."),
				 errhint("Use eventsource.append() or eventsource.append_event().")));
	}

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) && erase_in_progress)
	{
		/* the erasure's own UPDATE (erasure.c) */
		erase_in_progress = false;
		return PointerGetDatum(NULL);
	}

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) && cleanup_delete_in_progress)
	{
		/* the cleanup's own DELETE of hidden rows (cleanup.c) */
		cleanup_delete_in_progress = false;
		return PointerGetDatum(NULL);
	}

	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("events are immutable: cannot %s eventsource.events",
					TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? "update" :
					TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ? "delete from" :
					"truncate"),
			 errhint("An event store only grows; record a new event that corrects or compensates the old one.")));
	return PointerGetDatum(NULL);	/* keep compiler quiet */
}

/*
 * Run one of the extension's own writes of a guarded table (see the file
 * header): the guard lets this statement through, and no other.  snapshot
 * and expected as for es_exec_plan_snapshot() (spi.c).  Returns
 * SPI_processed.  Caller is connected to SPI, as the extension's owner.
 */
uint64
es_exec_guarded(EsGuardedWrite write, SPIPlanPtr plan, Datum *values,
				const char *nulls, Snapshot snapshot, int expected)
{
	bool	   *flag;
	uint64		n = 0;

	switch (write)
	{
		case ES_GUARDED_LIFECYCLE:
			flag = &lifecycle_write_in_progress;
			break;
		case ES_GUARDED_ERASE:
			flag = &erase_in_progress;
			break;
		case ES_GUARDED_CLEANUP_DELETE:
			flag = &cleanup_delete_in_progress;
			break;
		default:
			elog(ERROR, "unknown guarded write %d", (int) write);
	}
	*flag = true;
	PG_TRY();
	{
		n = es_exec_plan_snapshot(plan, values, nulls, snapshot, expected);
	}
	PG_FINALLY();
	{
		*flag = false;
	}
	PG_END_TRY();
	return n;
}
