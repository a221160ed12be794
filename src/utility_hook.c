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
 *	- CREATE TRIGGER on a relation of schema eventsource, and a foreign key
 *	  (CREATE TABLE, ALTER TABLE ADD) referencing one, are refused (42501)
 *	  to all but the relation's owner (and superusers): the privileges
 *	  TRIGGER and REFERENCES are not covered by row-level security.  A
 *	  trigger on eventsource.events runs as whoever writes it, which is the
 *	  store's owner inside append(), on every tenant's rows; a foreign
 *	  key's check reads the referenced table as its owner, past row-level
 *	  security, so a role could test whether another tenant's key exists.
 *	- DROP ROLE of a role bound to tenants is refused (2BP01) while a
 *	  binding names it, when this database has the 1.1 store: a dropped
 *	  role's OID left in eventsource.tenant_roles would bind whatever role
 *	  gets that OID next.  Roles are cluster-wide and only this database's
 *	  bindings can be seen (README "Multi-tenancy").
 *
 * Installed only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/condition_variable.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "eventsource.h"
#include "subscription.h"
#include "tenant.h"
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
 * Refuse "what" (a trigger, a foreign key) on relation "rv" unless it is
 * not the store's or the caller owns it (see the file header).  Only
 * relations of schema eventsource in a database that has the extension.
 */
static void
refuse_on_store_relation(RangeVar *rv, const char *what)
{
	Oid			nsp;
	Oid			relid;

	if (rv == NULL || !OidIsValid(get_extension_oid("eventsource", true)))
		return;
	nsp = get_namespace_oid("eventsource", true);
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(nsp) || !OidIsValid(relid) || get_rel_namespace(relid) != nsp ||
		pg_class_ownercheck(relid, GetUserId()))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to create %s on eventsource.%s", what, get_rel_name(relid)),
			 errdetail("Row-level security does not cover it: it would act on every tenant's rows with the rights of the store's owner."),
			 errhint("Only the owner of the store's tables may; never grant TRIGGER or REFERENCES on them (docs/privileges.md).")));
}

/* a foreign key among a ColumnDef's or a table's constraints */
static void
refuse_foreign_key(Node *node)
{
	if (node == NULL)
		return;
	if (IsA(node, ColumnDef))
	{
		ListCell   *lc;

		foreach(lc, ((ColumnDef *) node)->constraints)
			refuse_foreign_key(lfirst(lc));
	}
	else if (IsA(node, Constraint) && ((Constraint *) node)->contype == CONSTR_FOREIGN)
		refuse_on_store_relation(((Constraint *) node)->pktable, "a foreign key referencing");
}

/*
 * CREATE TRIGGER on, and foreign keys referencing, the store's relations
 * (see the file header).
 */
static void
check_trigger_or_foreign_key(Node *parsetree)
{
	ListCell   *lc;

	if (IsA(parsetree, CreateTrigStmt))
		refuse_on_store_relation(((CreateTrigStmt *) parsetree)->relation, "a trigger");
	else if (IsA(parsetree, CreateStmt))
	{
		foreach(lc, ((CreateStmt *) parsetree)->tableElts)
			refuse_foreign_key(lfirst(lc));
	}
	else if (IsA(parsetree, AlterTableStmt))
	{
		foreach(lc, ((AlterTableStmt *) parsetree)->cmds)
		{
			AlterTableCmd *cmd = lfirst(lc);

			if (cmd->subtype == AT_AddConstraint || cmd->subtype == AT_AddConstraintRecurse ||
				cmd->subtype == AT_AddColumn || cmd->subtype == AT_AddColumnRecurse)
				refuse_foreign_key(cmd->def);
		}
	}
}

/*
 * DROP ROLE of a role bound to tenants in this database (see the file
 * header).  Only for a caller that may drop roles at all (PostgreSQL
 * refuses the others itself): the role is locked as DROP ROLE will lock it,
 * so that no binding can be added before the drop commits
 * (bind_role_to_tenant() takes a share lock on the role), and the bindings
 * are read after the lock.
 */
static void
check_drop_role(DropRoleStmt *stmt)
{
	ListCell   *lc;

	if (!has_createrole_privilege(GetUserId()) ||
		!OidIsValid(get_extension_oid("eventsource", true)) ||
		es_sql_version() < ES_SQL_1_1)
		return;
	foreach(lc, stmt->roles)
	{
		RoleSpec   *spec = lfirst(lc);
		Oid			role;

		if (spec->roletype != ROLESPEC_CSTRING)
			continue;			/* PostgreSQL refuses it */
		role = get_role_oid(spec->rolename, true);
		if (!OidIsValid(role))
			continue;
		LockSharedObject(AuthIdRelationId, role, 0, AccessExclusiveLock);
		if (es_tenant_role_has_bindings(role))
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("role \"%s\" cannot be dropped because it is bound to tenants of the event store",
							spec->rolename),
					 errdetail("eventsource.tenant_roles names it; another role could get its OID and its tenants."),
					 errhint("Remove its bindings first with eventsource.unbind_role_from_tenant().")));
	}
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
	check_trigger_or_foreign_key(parsetree);
	if (IsA(parsetree, DropRoleStmt))
		check_drop_role((DropRoleStmt *) parsetree);

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
