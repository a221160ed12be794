/*-------------------------------------------------------------------------
 *
 * utility_hook.c
 *	  The ProcessUtility hook: the few utility commands the extension must
 *	  see.
 *
 *	- COPY ... FROM into eventsource.events: marked as a restore for the
 *	  events table's guard trigger (guard.c), and the database's cleanup
 *	  worker is asked for (cleanup.c).
 *	- DROP DATABASE: the subscription workers connected to that database
 *	  are asked to stop (they drain) and waited for, so that the drop is
 *	  never refused because of them.  Only once the checks PostgreSQL makes
 *	  first have passed (not in a transaction block, not the current
 *	  database, not a template, the owner); if the drop fails anyway, the
 *	  launcher discovers the database's subscriptions again.
 *	- DROP EXTENSION eventsource: the database's workers are stopped and
 *	  waited for in the same way before the drop takes its locks (a worker
 *	  mid-batch holds locks on the extension's tables in another order: a
 *	  deadlock).  If the drop does not commit, the launcher discovers the
 *	  subscriptions again (subscription.c).
 *	- COPY ... FROM into eventsource.subscriptions (pg_restore): the launcher
 *	  discovers the restored subscriptions when the transaction commits.
 *
 * Installed only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "subscription.h"
#include "upcalls.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Does this DROP name the extension eventsource? */
static bool
drops_our_extension(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;

	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), "eventsource") == 0)
			return true;
	}
	return false;
}

/* Is this a COPY FROM into eventsource.subscriptions (a restore)? */
static bool
copies_into_subscriptions(Node *parsetree)
{
	CopyStmt   *stmt;

	if (!IsA(parsetree, CopyStmt))
		return false;
	stmt = (CopyStmt *) parsetree;
	return stmt->is_from && stmt->relation != NULL &&
		stmt->relation->schemaname != NULL &&
		strcmp(stmt->relation->schemaname, "eventsource") == 0 &&
		strcmp(stmt->relation->relname, "subscriptions") == 0;
}

/*
 * Stop the workers of a database about to be dropped, and wait (at most
 * drain_timeout plus a margin) for them to disconnect.
 */
static void
stop_database_workers(Oid dboid)
{
	TimestampTz deadline;

	es_registry_drop_database(dboid);
	es_cleanup_stop(dboid);		/* and its cleanup worker (cleanup.c) */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   (int64) es_drain_timeout_ms_guc + 10000);
	/* a worker broadcasts its slot's condition variable as it exits */
	for (;;)
	{
		ConditionVariable *busy = NULL;
		TimestampTz now;

		LWLockAcquire(es_lwlock(ES_LWLOCK_WORKERS), LW_SHARED);
		/* (not ourselves: a handler that drops the extension) */
		for (int i = 0; i < es_workers->nslots && busy == NULL; i++)
			if (es_workers->slots[i].in_use && es_workers->slots[i].dboid == dboid &&
				es_workers->slots[i].pid != 0 && es_workers->slots[i].pid != MyProcPid)
				busy = &es_workers->slots[i].progress_cv;
		LWLockRelease(es_lwlock(ES_LWLOCK_WORKERS));
		now = GetCurrentTimestamp();
		if (busy == NULL || now >= deadline)
			break;
		/* the timeout covers an exit between the scan and the sleep */
		(void) ConditionVariableTimedSleep(busy, Min((deadline - now) / 1000 + 1, 1000),
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/*
 * Would PostgreSQL get as far as dropping database "dboid" (whose owner we
 * checked)?  Its own checks that come before the drop, made here first, so
 * that a refused DROP DATABASE leaves the workers alone.  Raises
 * PostgreSQL's own error for a transaction block.
 */
static bool
dropdb_would_proceed(Oid dboid, bool top_level)
{
	HeapTuple	tup;
	bool		template;

	PreventInTransactionBlock(top_level, "DROP DATABASE");
	if (dboid == MyDatabaseId)
		return false;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (!HeapTupleIsValid(tup))
		return false;
	template = ((Form_pg_database) GETSTRUCT(tup))->datistemplate;
	ReleaseSysCache(tup);
	return !template;
}

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		restore = es_guard_is_copy_into_events(parsetree);
	Oid			dropped_db = InvalidOid;

	if (IsA(parsetree, DropdbStmt))
	{
		DropdbStmt *stmt = (DropdbStmt *) parsetree;

		/* only for whoever may drop it: nobody else may stop its workers */
		dropped_db = get_database_oid(stmt->dbname, true);
		if (OidIsValid(dropped_db) && pg_database_ownercheck(dropped_db, GetUserId()) &&
			dropdb_would_proceed(dropped_db, context == PROCESS_UTILITY_TOPLEVEL))
		{
			PG_TRY();
			{
				stop_database_workers(dropped_db);
			}
			PG_CATCH();
			{
				/* cancelled while draining: the database stays, so do they */
				es_registry_rediscover();
				PG_RE_THROW();
			}
			PG_END_TRY();
		}
		else
			dropped_db = InvalidOid;
	}
	if (drops_our_extension(parsetree))
	{
		Oid			ext = get_extension_oid("eventsource", true);

		/* only for whoever may drop it; the rest is PostgreSQL's to refuse */
		if (OidIsValid(ext) && pg_extension_ownercheck(ext, GetUserId()))
		{
			/*
			 * Recorded first: a DROP cancelled while it waits for the workers
			 * (statement_timeout, Ctrl-C) must have its rollback rediscover
			 * them, or they stay stopped.
			 */
			es_subscriptions_workers_stopped();
			stop_database_workers(MyDatabaseId);
		}
		es_subscriptions_extension_dropped();
	}
	if (copies_into_subscriptions(parsetree))
		es_subscriptions_restored();

	if (restore)
	{
		es_guard_restore_copy(true);
		/* restored lifecycle rows may have hidden rows to clean (cleanup.c) */
		es_cleanup_want(MyDatabaseId);
	}
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		if (restore)
			es_guard_restore_copy(false);
		if (OidIsValid(dropped_db))
		{
			/* the database stays: let its subscriptions run again */
			es_registry_rediscover();
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (restore)
		es_guard_restore_copy(false);
}

void
es_utility_install_hook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
}
