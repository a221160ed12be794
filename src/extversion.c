/*-------------------------------------------------------------------------
 *
 * extversion.c
 *	  The version of the extension's SQL objects in the current database
 *	  (pg_extension.extversion), as of the caller's snapshot.
 *
 * One library serves every SQL version it can be updated from: a database
 * stays on 1.0 until someone runs ALTER EXTENSION eventsource UPDATE, and
 * the C paths that need newer objects ask es_require_sql_version() first
 * (see CONTRIBUTING.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"

#include "eventsource.h"

/*
 * What the current database's pg_extension row said, and as of which
 * snapshot.
 *
 * The version is read with the snapshot the caller reads its data with, so
 * that the two always agree: es_sql_version() uses the active snapshot (the
 * statement's in READ COMMITTED, the transaction's in REPEATABLE READ and
 * SERIALIZABLE); a path that reads with another snapshot (GetLatestSnapshot(),
 * es_spi_read_latest()) pushes it and asks while it is active, or calls
 * es_sql_version_as_of().  An update another session commits is then seen by
 * the next statement in READ COMMITTED and by the next transaction otherwise,
 * exactly when its objects and data are; one run in our own transaction is
 * seen by the next command and forgotten when its subtransaction rolls back.
 *
 * PostgreSQL 15 has no syscache on pg_extension in every minor release, so
 * no invalidation callback tells us about an update; instead the answer is
 * kept while a new read of the row would see what the last one saw, and
 * that is decided from the snapshot alone.  (Not from its
 * snapXactCompletionCount: the active snapshot is a copy, and CopySnapshot()
 * zeroes that field, so a cache keyed on it never hit and every call read
 * the catalog, a fifth of an append's time.)  The key:
 *
 *	- the same local transaction (lxid), subtransaction (subxid) and command
 *	  (curcid): our own changes, an ALTER EXTENSION run earlier in this
 *	  transaction included, are visible to a snapshot exactly when they were
 *	  made by a subtransaction that has not rolled back and a command before
 *	  curcid.  SubTransactionIds are never reused within a transaction and
 *	  ROLLBACK TO starts a new one, so a rolled back update is never served
 *	  from the cache; the command counter only grows.  The transaction is
 *	  in the key although the fields below can match across transactions:
 *	  an update of ours rolled back with our transaction, whose xid is below
 *	  one that committed meanwhile, leaves xmax and xcnt as they were.  So
 *	  a transaction reads the row once (an append in its own transaction:
 *	  one probe instead of three).
 *	- the same xmin, xmax, xcnt, subxcnt, suboverflowed and
 *	  takenDuringRecovery: the other transactions.  Every snapshot in
 *	  progress set lists only xids below its xmax (latestCompletedXid + 1
 *	  when it was taken, so all of them had been assigned by then: an xid
 *	  assigned later is at least xmax and counts as running anyway), and
 *	  completion only ever removes an xid from that set.  So of two
 *	  snapshots with the same xmax, whichever was taken later has an xip
 *	  that is a subset of the other's, and with the same xcnt the two are
 *	  equal: the same transactions below xmax are complete.  A commit of an
 *	  xid at or above xmax moves latestCompletedXid, hence xmax.  subxip can
 *	  differ between two such snapshots only by subtransactions that
 *	  aborted (invisible whether listed or not) and by new ones (at or above
 *	  xmax): what they see is the same; a standby's snapshots list every
 *	  xid in subxip, filtered by xmax, so the same argument holds with
 *	  subxcnt.  (PostgreSQL's own reuse of a snapshot,
 *	  GetSnapshotDataReuse(), rests on the same fact, counted differently:
 *	  no completion in between, no difference.)
 *
 * Only plain MVCC snapshots are kept (a historic snapshot of logical
 * decoding lists committed xids).  Anything else reads the row again: one
 * index probe of a catalog of a few rows.
 */
typedef struct EsSqlVersionCache
{
	bool		valid;
	LocalTransactionId lxid;
	SubTransactionId subxid;
	CommandId	curcid;
	TransactionId xmin;
	TransactionId xmax;
	uint32		xcnt;
	int32		subxcnt;
	bool		suboverflowed;
	bool		in_recovery;	/* takenDuringRecovery */
	int			num;			/* ES_VERSION_NUM(), 0 = not installed */
	bool		in_script;		/* read inside our own CREATE/UPDATE script */
	char		text[NAMEDATALEN];	/* extversion, "" = not installed */
} EsSqlVersionCache;

static EsSqlVersionCache sql_version;

/*
 * "1.1" -> ES_VERSION_NUM(1, 1).  Returns false for anything that is not
 * "major.minor" with numbers below 1000.
 */
bool
es_parse_version(const char *str, int *num)
{
	int			major = 0;
	int			minor = 0;
	const char *p = str;

	if (!isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p) && major < 1000)
		major = major * 10 + (*p++ - '0');
	if (*p++ != '.' || !isdigit((unsigned char) *p))
		return false;
	while (isdigit((unsigned char) *p) && minor < 1000)
		minor = minor * 10 + (*p++ - '0');
	if (*p != '\0' || major >= 1000 || minor >= 1000)
		return false;
	*num = ES_VERSION_NUM(major, minor);
	return true;
}

/* extversion of a pg_extension tuple into sql_version.text ("" if null) */
static void
copy_extversion(HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion, desc, &isnull);

	sql_version.text[0] = '\0';
	if (!isnull)
	{
		char	   *v = TextDatumGetCString(d);

		strlcpy(sql_version.text, v, sizeof(sql_version.text));
		pfree(v);
	}
}

/*
 * Inside the script of our own CREATE or ALTER EXTENSION: PostgreSQL writes
 * the new extversion before it runs the script, so the row names a version
 * whose objects do not exist yet.  What counts is the version this
 * transaction updated from: the row version it replaced (its xmax is ours,
 * its xmin is not), found among all versions of the row.  None (a CREATE
 * EXTENSION) leaves "", not installed.  A catalog of a few rows, read only
 * while the script runs.
 */
static void
copy_extversion_before_update(Relation rel, Oid extoid)
{
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	sql_version.text[0] = '\0';
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("eventsource"));
	scan = systable_beginscan(rel, InvalidOid, false, SnapshotAny, 1, &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		HeapTupleHeader htup = tuple->t_data;

		if (((Form_pg_extension) GETSTRUCT(tuple))->oid != extoid ||
			(htup->t_infomask & HEAP_XMAX_INVALID) ||
			HEAP_XMAX_IS_LOCKED_ONLY(htup->t_infomask) ||
			TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(htup)) ||
			!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(htup)))
			continue;
		copy_extversion(tuple, RelationGetDescr(rel));
		break;
	}
	systable_endscan(scan);
}

/* Read pg_extension.extversion of eventsource as of "snap" into the cache. */
static void
read_sql_version(Snapshot snap)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;

	sql_version.num = 0;
	sql_version.text[0] = '\0';
	sql_version.in_script = false;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("eventsource"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, snap, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Oid			extoid = ((Form_pg_extension) GETSTRUCT(tuple))->oid;

		if (creating_extension && CurrentExtensionObject == extoid)
		{
			sql_version.in_script = true;
			copy_extversion_before_update(rel, extoid);
		}
		else
			copy_extversion(tuple, RelationGetDescr(rel));

		/*
		 * A version we cannot read ("2.0.1", from a release we do not know)
		 * is newer than anything this library knows, never taken for ours.
		 */
		if (sql_version.text[0] == '\0')
			sql_version.num = 0;
		else if (!es_parse_version(sql_version.text, &sql_version.num))
			sql_version.num = ES_SQL_UNKNOWN;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * The version of eventsource's SQL objects in the current database as
 * ES_VERSION_NUM(major, minor), as of "snap" (an MVCC snapshot the caller
 * keeps valid): 0 when the extension is not installed (or is being
 * created), ES_SQL_UNKNOWN when extversion is not a version this library
 * can read.  Inside a transaction.
 */
static int
es_sql_version_as_of(Snapshot snap)
{
	LocalTransactionId lxid = MyProc->lxid;
	SubTransactionId subxid = GetCurrentSubTransactionId();

	if (!IsTransactionState())
		elog(ERROR, "eventsource: es_sql_version() called outside a transaction");
	if (snap == NULL || !IsMVCCSnapshot(snap))
		elog(ERROR, "eventsource: es_sql_version() needs an MVCC snapshot");
	if (sql_version.valid && sql_version.lxid == lxid &&
		sql_version.subxid == subxid && sql_version.curcid == snap->curcid &&
		sql_version.xmin == snap->xmin && sql_version.xmax == snap->xmax &&
		sql_version.xcnt == snap->xcnt && sql_version.subxcnt == snap->subxcnt &&
		sql_version.suboverflowed == snap->suboverflowed &&
		sql_version.in_recovery == snap->takenDuringRecovery &&
		snap->snapshot_type == SNAPSHOT_MVCC)
		return sql_version.num;

	sql_version.valid = false;
	read_sql_version(snap);
	/* a historic snapshot, or our script: no reuse */
	if (snap->snapshot_type == SNAPSHOT_MVCC && !sql_version.in_script)
	{
		sql_version.lxid = lxid;
		sql_version.subxid = subxid;
		sql_version.curcid = snap->curcid;
		sql_version.xmin = snap->xmin;
		sql_version.xmax = snap->xmax;
		sql_version.xcnt = snap->xcnt;
		sql_version.subxcnt = snap->subxcnt;
		sql_version.suboverflowed = snap->suboverflowed;
		sql_version.in_recovery = snap->takenDuringRecovery;
		sql_version.valid = true;
	}
	return sql_version.num;
}

/*
 * The same as of the active snapshot, the one the caller's queries read
 * with (es_spi_read(), and SPI in general).
 */
int
es_sql_version(void)
{
	if (!IsTransactionState())
		elog(ERROR, "eventsource: es_sql_version() called outside a transaction");
	return es_sql_version_as_of(ActiveSnapshotSet() ? GetActiveSnapshot() :
								GetTransactionSnapshot());
}

/* The same as text ("1.0"), "" when not installed. */
const char *
es_sql_version_text(void)
{
	(void) es_sql_version();
	return sql_version.text;
}

/* Does the current database have at least version "min" of the SQL objects? */
bool
es_sql_version_at_least(const char *min)
{
	int			need;

	if (!es_parse_version(min, &need))
		elog(ERROR, "eventsource: bad version literal \"%s\"", min);
	return es_sql_version() >= need;
}

/*
 * Refuse to go on unless the current database has at least version "min" of
 * the SQL objects: for the C paths that need objects a 1.0 database does not
 * have.  "what" names the caller for the message, e.g.
 * "eventsource.foo()".  Raises 55000 with a hint to update.
 */
void
es_require_sql_version(const char *min, const char *what)
{
	if (es_sql_version_at_least(min))
		return;
	if (sql_version.in_script)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s needs the eventsource %s SQL objects, which are still being created", what, min),
				 errdetail("It was called from inside the script of CREATE EXTENSION or ALTER EXTENSION UPDATE of eventsource (updating from version %s).",
						   sql_version.text[0] ? sql_version.text : "none"),
				 errhint("Call it once the command has completed.")));
	if (es_sql_version() == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"eventsource\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION eventsource.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("%s needs the eventsource %s SQL objects", what, min),
			 errdetail("This database has version %s of the extension's SQL objects; the library is version %s.",
					   sql_version.text, ES_LIBRARY_VERSION),
			 errhint("Run ALTER EXTENSION eventsource UPDATE.")));
}

PG_FUNCTION_INFO_V1(es_require_sql_version_sql);

/*
 * es_require_sql_version(min text, what text) as a C function.  No SQL
 * script declares it: test/t/040_upgrade.pl declares it in a 1.0 database,
 * where it stands for a 1.1 C path reached with the 1.0 objects, and calls
 * it from inside the extension's own script.  Kept in the library because
 * no released SQL reaches es_require_sql_version() yet and its refusals
 * must be tested; declaring a C function takes superuser.
 */
Datum
es_require_sql_version_sql(PG_FUNCTION_ARGS)
{
	char	   *min;
	char	   *what;
	int			num;

	/* whoever declares it may leave out STRICT */
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the version and the caller's name must not be null")));
	min = text_to_cstring(PG_GETARG_TEXT_PP(0));
	what = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!es_parse_version(min, &num))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid eventsource version \"%s\"", min),
				 errhint("A version is major.minor, e.g. 1.1.")));
	es_require_sql_version(min, what);
	PG_RETURN_VOID();
}
