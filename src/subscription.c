/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  The SQL API of subscriptions: create, drop, pause, resume, reset,
 *	  retry_dead_letters.
 *
 * Each function changes the subscription's rows in its transaction and
 * queues what the workers must learn (start, stop, reload, retry).  The queue
 * is applied to the worker registry in the commit callback, after the rows
 * are visible, and discarded on abort (also of a subtransaction), so a worker
 * never acts on a change that did not commit.  PREPARE TRANSACTION of such a
 * transaction is refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "subscription.h"
#include "subscription_rules.h"
#include "tenant.h"

typedef enum PendingKind
{
	PENDING_REGISTER,
	PENDING_DESIRED,
	PENDING_REQUEST_RESET,
	PENDING_REQUEST_RETRY,
	PENDING_DROP_DATABASE,
	PENDING_REDISCOVER
} PendingKind;

typedef struct PendingOp
{
	PendingKind kind;
	SubTransactionId subid;
	Oid			dboid;
	char		name[ES_MAX_NAME_LEN + 1];
	int			partitions;
	EsDesired	desired;
	int64		position;		/* PENDING_REQUEST_RESET */
	int64		incarnation;	/* PENDING_REGISTER: subscriptions.id */
	bool		frees_slots;	/* PENDING_REGISTER: counted on slots this
								 * transaction frees */
} PendingOp;

static List *pending = NIL;		/* in TopMemoryContext */
static bool callbacks_registered = false;

/*
 * DROP EXTENSION stopped this database's workers before it ran
 * (utility_hook.c), in this subtransaction: should the drop not commit, the
 * launcher must find the subscriptions again.  Invalid: nothing stopped.
 */
static SubTransactionId stopped_in = InvalidSubTransactionId;

static void rediscover_stopped(SubTransactionId subid);

static void
clear_pending(void)
{
	list_free_deep(pending);
	pending = NIL;
}

/*
 * The desired state a subscription registered by "op" ends the transaction
 * with: its own, or that of the last pause/resume/drop queued after it.  So
 * a subscription created and paused in one transaction never starts a
 * worker, even for a moment.
 */
static EsDesired
final_desired(ListCell *from, PendingOp *op)
{
	EsDesired	desired = op->desired;
	ListCell   *lc;

	for_each_cell(lc, pending, lnext(pending, from))
	{
		PendingOp  *later = lfirst(lc);

		if (later->kind == PENDING_DESIRED && later->dboid == op->dboid &&
			strcmp(later->name, op->name) == 0)
			desired = later->desired;
	}
	return desired;
}

static void
apply_pending(void)
{
	ListCell   *lc;

	/*
	 * First: rows read before our commit are now out of date, if we change
	 * what slots exist or should do (a reset or a retry does neither).
	 */
	foreach(lc, pending)
	{
		PendingOp  *op = lfirst(lc);

		if (op->kind != PENDING_REQUEST_RESET && op->kind != PENDING_REQUEST_RETRY)
		{
			es_registry_note_changes();
			break;
		}
	}
	foreach(lc, pending)
	{
		PendingOp  *op = lfirst(lc);

		switch (op->kind)
		{
			case PENDING_REGISTER:
				if (final_desired(lc, op) == ES_DESIRED_DROP)
					break;		/* created and dropped again */
				if (es_registry_register(op->dboid, op->name, op->incarnation,
										 op->partitions, final_desired(lc, op),
										 NULL, NULL) == ES_REGISTER_OK)
					break;
				/*
				 * Discovery registers it once slots are freed: soon, if this
				 * commit freed the slots it counted on (their workers drain).
				 */
				if (op->frees_slots)
					break;
				ereport(WARNING,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("subscription \"%s\" was created but cannot run: all eventsource.max_workers slots are taken",
								op->name),
						 errhint("Drop unused subscriptions, or raise eventsource.max_workers and restart the server.")));
				break;
			case PENDING_DESIRED:
				es_registry_set_desired(op->dboid, op->name, op->desired);
				break;
			case PENDING_REQUEST_RESET:
				es_registry_request(op->dboid, op->name, true, op->position, false);
				break;
			case PENDING_REQUEST_RETRY:
				es_registry_request(op->dboid, op->name, false, 0, true);
				break;
			case PENDING_DROP_DATABASE:
				es_registry_drop_database(op->dboid);
				break;
			case PENDING_REDISCOVER:
				es_registry_rediscover();
				break;
		}
	}
}

/*
 * The (sub)transaction "subid" (invalid: the whole transaction) rolled
 * back: if it stopped this database's workers for a DROP EXTENSION, the
 * launcher discovers the subscriptions again.
 */
static void
rediscover_stopped(SubTransactionId subid)
{
	if (stopped_in == InvalidSubTransactionId ||
		(subid != InvalidSubTransactionId && subid != stopped_in))
		return;
	stopped_in = InvalidSubTransactionId;
	if (es_shmem_available())
	{
		es_registry_rediscover();
	}
}

static void
pending_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed eventsource subscriptions")));
			break;
		case XACT_EVENT_COMMIT:
			if (pending != NIL && es_shmem_available())
				apply_pending();
			clear_pending();
			stopped_in = InvalidSubTransactionId;
			break;
		case XACT_EVENT_ABORT:
			clear_pending();
			rediscover_stopped(InvalidSubTransactionId);
			break;
		default:
			break;
	}
}

static void
pending_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_COMMIT_SUB && stopped_in == mySubid)
		stopped_in = parentSubid;
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		rediscover_stopped(mySubid);

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending)
		{
			PendingOp  *op = lfirst(lc);

			if (op->subid == mySubid)
				op->subid = parentSubid;
		}
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending)
		{
			PendingOp  *op = lfirst(lc);

			if (op->subid == mySubid)
			{
				pending = foreach_delete_current(pending, lc);
				pfree(op);
			}
		}
	}
}

static void
register_callbacks(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(pending_xact_callback, NULL);
		RegisterSubXactCallback(pending_subxact_callback, NULL);
		callbacks_registered = true;
	}
}

/* Queue a registry change for the commit of the current transaction. */
static void
queue_op(PendingKind kind, const char *name, int partitions, EsDesired desired)
{
	MemoryContext old;
	PendingOp  *op;

	register_callbacks();
	old = MemoryContextSwitchTo(TopMemoryContext);
	op = palloc0(sizeof(PendingOp));
	op->kind = kind;
	op->subid = GetCurrentSubTransactionId();
	op->dboid = MyDatabaseId;
	if (name)
		strlcpy(op->name, name, sizeof(op->name));
	op->partitions = partitions;
	op->desired = desired;
	pending = lappend(pending, op);
	MemoryContextSwitchTo(old);
}

/* Slots that creations of this transaction will take at commit. */
static int
pending_registrations(void)
{
	ListCell   *lc;
	ListCell   *lc2;
	int			n = 0;

	foreach(lc, pending)
	{
		PendingOp  *op = lfirst(lc);

		if (op->kind == PENDING_REGISTER)
		{
			/* unless the same transaction dropped it again */
			bool		dropped = false;

			for_each_from(lc2, pending, foreach_current_index(lc) + 1)
			{
				PendingOp  *later = lfirst(lc2);

				if (later->kind == PENDING_DESIRED && later->desired == ES_DESIRED_DROP &&
					strcmp(later->name, op->name) == 0)
					dropped = true;
			}
			if (!dropped)
				n += op->partitions;
		}
	}
	return n;
}

/*
 * Slots that the drops queued so far give back at commit: all of this
 * database's if the extension is dropped, else those of each subscription
 * dropped that existed before this transaction (one created in it has no
 * slot yet).  A worker may still hold its slot for a moment after the
 * commit: see PendingOp.frees_slots.
 */
static int
pending_frees(void)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, pending)
	{
		PendingOp  *op = lfirst(lc);

		if (op->kind == PENDING_DROP_DATABASE && op->dboid == MyDatabaseId)
			return es_registry_count_slots(MyDatabaseId, NULL);
	}
	foreach(lc, pending)
	{
		PendingOp  *op = lfirst(lc);
		bool		counted = false;

		if (op->kind != PENDING_DESIRED || op->desired != ES_DESIRED_DROP)
			continue;
		/* not if created, or dropped already, earlier in this transaction */
		for (int i = 0; i < foreach_current_index(lc); i++)
		{
			PendingOp  *earlier = list_nth(pending, i);

			if (strcmp(earlier->name, op->name) == 0 &&
				(earlier->kind == PENDING_REGISTER ||
				 (earlier->kind == PENDING_DESIRED && earlier->desired == ES_DESIRED_DROP)))
				counted = true;
		}
		if (!counted)
			n += es_registry_count_slots(MyDatabaseId, op->name);
	}
	return n;
}

/*
 * DROP EXTENSION is about to run and this database's workers were stopped
 * for it (utility_hook.c): if it does not commit, they must come back.
 */
void
es_subscriptions_workers_stopped(void)
{
	register_callbacks();
	if (stopped_in == InvalidSubTransactionId)
		stopped_in = GetCurrentSubTransactionId();
}

/*
 * Rows were copied into eventsource.subscriptions (a restore): at commit,
 * let the launcher discover them (utility_hook.c).
 */
void
es_subscriptions_restored(void)
{
	queue_op(PENDING_REDISCOVER, NULL, 0, ES_DESIRED_RUN);
}

/* DROP EXTENSION eventsource in this database (utility_hook.c). */
void
es_subscriptions_extension_dropped(void)
{
	queue_op(PENDING_DROP_DATABASE, NULL, 0, ES_DESIRED_DROP);
}

/*
 * The checkpoint that start_from => 'checkpoint' continues from, for a
 * partition: "name/k" when the subscription has several partitions (else
 * just "name"); see inherited_checkpoint().
 */
char *
es_checkpoint_name(const char *name, int partitions, int partition)
{
	if (partitions > 1)
		return psprintf("%s/%d", name, partition);
	return pstrdup(name);
}

/* ---------------------------------------------------------------------
 * argument checks
 * ---------------------------------------------------------------------
 */

/* The rules themselves are in subscription_rules.c (the worker's too). */

static char *
arg_subscription_name(FunctionCallInfo fcinfo)
{
	/* 250 bytes: its partitions' checkpoints are named "name/k" */
	char	   *name = es_arg_name(fcinfo, 0, "subscription name", ES_MAX_SUBSCRIPTION_NAME_LEN);

	es_check_subscription_name(name);
	return name;
}

/*
 * Look a subscription up: false when it does not exist, else its partition
 * count and owner.  Inside SPI, as the extension owner.
 */
static bool
lookup_subscription(const char *name, int *partitions, Oid *owner)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];
	bool		isnull;

	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		plan = es_prepare("SELECT partitions, owner::pg_catalog.oid FROM eventsource.subscriptions"
						  " WHERE name OPERATOR(pg_catalog.=) $1", 1, types);
	}
	values[0] = CStringGetTextDatum(name);
	es_spi_read(plan, values, NULL, NULL, 1);
	if (SPI_processed == 0)
		return false;
	*partitions = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	return true;
}

/*
 * The subscription must exist, and "caller" must have the privileges of its
 * owner (as ALTER and DROP of PostgreSQL objects require).  Returns its
 * partition count.
 */
static int
require_subscription(const char *name, Oid caller)
{
	int			partitions;
	Oid			owner;
	const char *running = es_handler_subscription();

	/*
	 * Not from inside the subscription's own handler: its worker holds the
	 * partition rows in the batch that the handler runs in, and would commit
	 * its checkpoint over a reset, or wait on itself for a drop.
	 */
	if (running != NULL && strcmp(running, name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("subscription \"%s\" cannot be changed from inside its own handler", name),
				 errdetail("The handler runs in the batch that moves the subscription's checkpoint."),
				 errhint("Call drop, pause, resume, reset or retry_dead_letters for it from another session.")));
	if (!lookup_subscription(name, &partitions, &owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", name)));
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of subscription \"%s\"", name),
				 GetUserNameFromId(owner, true) ?
				 errhint("Its owner can grant you membership in role \"%s\".",
						 GetUserNameFromId(owner, true)) :
				 errhint("Its owner role (OID %u) was dropped; a superuser must drop the subscription.",
						 owner)));
	return partitions;
}

/* Begin the body of an API function that writes: SPI, as the extension owner. */
static void
api_begin(EsOwnerCall *call, const char *what)
{
	es_require_writable(what);
	es_owner_begin(call);
}

/* ---------------------------------------------------------------------
 * the functions
 * ---------------------------------------------------------------------
 */

/*
 * start_from 'checkpoint': where partition p resumes: its own checkpoint if
 * one exists, else the one named like the subscription, else 0.
 */
static int64
inherited_checkpoint(SPIPlanPtr plan, const char *name, int partitions, int p,
					 const char *tenant)
{
	Datum		cp[3];
	bool		isnull;

	cp[0] = CStringGetTextDatum(es_checkpoint_name(name, partitions, p));
	cp[1] = CStringGetTextDatum(name);
	cp[2] = CStringGetTextDatum(tenant);
	es_spi_read(plan, cp, NULL, NULL, 1);
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* An interval option's argument, not null, as given. */
static void
arg_interval(FunctionCallInfo fcinfo, int argno, EsSubscriptionOptions *opts,
			 EsIntervalOption option)
{
	es_arg_not_null(fcinfo, argno, es_interval_option_name(option));
	opts->intervals[option] = PG_GETARG_INTERVAL_P(argno);
}

/*
 * create_subscription()'s arguments, in their order, into "opts" (the
 * "given" fields), as the caller: each required one must not be null.  The
 * rules come next (es_check_subscription_options).
 */
static void
parse_create_arguments(FunctionCallInfo fcinfo, EsSubscriptionOptions *opts)
{
	/* 250 bytes: its partitions' checkpoints are named "name/k" */
	opts->name = es_arg_name(fcinfo, 0, "subscription name", ES_MAX_SUBSCRIPTION_NAME_LEN);
	es_arg_not_null(fcinfo, 1, "handler");
	opts->handler = PG_GETARG_OID(1);
	opts->owner = GetUserId();	/* before api_begin() switches to the extension owner */
	opts->start_from = es_arg_name(fcinfo, 2, "start_from", ES_MAX_NAME_LEN);
	opts->batch_size = es_arg_int32(fcinfo, 3, "batch_size");
	opts->checkpoint_strategy = es_arg_name(fcinfo, 4, "checkpoint_strategy", ES_MAX_NAME_LEN);
	arg_interval(fcinfo, 5, opts, ES_OPT_CHECKPOINT_INTERVAL);
	arg_interval(fcinfo, 6, opts, ES_OPT_PROCESSING_TIMEOUT);
	opts->max_retries = es_arg_int32(fcinfo, 7, "max_retries");
	arg_interval(fcinfo, 8, opts, ES_OPT_RETRY_BACKOFF);
	es_arg_not_null(fcinfo, 9, "continue_on_error");
	opts->continue_on_error = PG_GETARG_BOOL(9);
	opts->breaker_threshold = es_arg_int32(fcinfo, 10, "circuit_breaker_threshold");
	arg_interval(fcinfo, 11, opts, ES_OPT_BREAKER_RESET);
	opts->event_types = PG_ARGISNULL(12) ? NULL : PG_GETARG_ARRAYTYPE_P(12);
	opts->categories = PG_ARGISNULL(13) ? NULL : PG_GETARG_ARRAYTYPE_P(13);
	opts->partitions = es_arg_int32(fcinfo, 14, "partitions");

	/*
	 * tenant (1.1; its default is the caller's current tenant): NULL asks
	 * for a cross-tenant subscription, which only the store's owner (and
	 * superusers, BYPASSRLS roles) may create: any other creator gets a
	 * subscription of one tenant, never one that sees every tenant.  The
	 * owner's right to the tenant is a rule of its own
	 * (es_check_subscription_tenant), checked with the others.
	 */
	opts->has_tenant = PG_NARGS() > 15;
	opts->tenant = NULL;
	if (opts->has_tenant && !PG_ARGISNULL(15))
		opts->tenant = es_arg_name(fcinfo, 15, "tenant", ES_MAX_NAME_LEN);
	else if (opts->has_tenant && !es_tenant_role_exempt(opts->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only the store's owner may create a cross-tenant subscription"),
				 errhint("Leave tenant out for a subscription of the current tenant (%s), or name one.",
						 es_current_tenant())));

	/*
	 * And the creator's session: a bound login role that SET ROLE to an
	 * unbound group must not make a subscription of another tenant, whose
	 * handler would then run as that group (es_tenant_check_caller applies
	 * current_tenant()'s rules, session's role included).
	 */
	if (opts->tenant != NULL && es_tenant_id_valid(opts->tenant, strlen(opts->tenant)))
		es_tenant_check_caller(opts->tenant);	/* (a malformed id: 22023 below) */
}

/*
 * Can this transaction create the subscription: no subscription of that
 * name, and a free worker slot for each partition (counting the slots this
 * transaction frees and takes at commit)?  Returns the slots it frees.
 * Inside SPI, as the extension owner.
 */
static int
check_can_create(const EsSubscriptionOptions *opts)
{
	int			existing_partitions;
	Oid			existing_owner;
	int			freed;
	int			free_slots;

	if (lookup_subscription(opts->name, &existing_partitions, &existing_owner))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("subscription \"%s\" already exists", opts->name)));
	freed = pending_frees();
	free_slots = es_registry_free_slots() + freed - pending_registrations();
	if (free_slots < opts->partitions)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("not enough subscription worker slots for \"%s\"", opts->name),
				 errdetail("It needs %d; %d of eventsource.max_workers = %d are free.",
						   opts->partitions, Max(free_slots, 0), es_max_workers),
				 errhint("Drop unused subscriptions, or raise eventsource.max_workers (and max_worker_processes) and restart the server.")));
	return freed;
}

/*
 * Insert the subscription's row and one row per partition, each with the
 * position it resumes after (start_from 'checkpoint': the checkpoints of
 * "checkpoint_tenant").  Returns the subscription's id (its
 * incarnation).  Inside SPI, as the extension owner.
 */
static int64
insert_subscription(const EsSubscriptionOptions *opts, const char *checkpoint_tenant)
{
	static SPIPlanPtr insert_plans[2] = {NULL, NULL};
	static SPIPlanPtr partitions_plan = NULL;
	static SPIPlanPtr inherit_plans[2] = {NULL, NULL};
	SPIPlanPtr	insert_plan;
	SPIPlanPtr	inherit_plan;
	Oid			types[19] = {TEXTOID, REGPROCEDUREOID, OIDOID, BOOLOID, TEXTOID, INT8OID,
		INT4OID, TEXTOID, INTERVALOID, INTERVALOID, INT4OID, INTERVALOID, BOOLOID,
	INT4OID, INTERVALOID, TEXTARRAYOID, TEXTARRAYOID, INT4OID, TEXTOID};
	Oid			itypes[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[19];
	char		nulls[19];
	int64		start_position = opts->start_position;
	int64		incarnation;
	bool		isnull;

	if (partitions_plan == NULL)
	{
		Oid			ptypes[4] = {TEXTOID, INT4OID, INT8OID, INT8OID};

		partitions_plan = es_prepare("INSERT INTO eventsource.subscription_partitions"
									 " (subscription, partition, subscription_id, position)"
									 " VALUES ($1, $2, $3, $4)",
									 4, ptypes);
	}
#define ES_INSERT_SUBSCRIPTION(tenant_column, tenant_value) \
	"INSERT INTO eventsource.subscriptions (name, handler, owner," \
	" batch_handler, start_from, start_position, batch_size, checkpoint_strategy," \
	" checkpoint_interval, processing_timeout, max_retries, retry_backoff," \
	" continue_on_error, circuit_breaker_threshold, circuit_breaker_reset," \
	" event_types, categories, partitions" tenant_column ")" \
	" VALUES ($1, $2, $3::pg_catalog.regrole, $4, $5, $6, $7, $8, $9, $10, $11," \
	" $12, $13, $14, $15, $16, $17, $18" tenant_value ")" \
	" RETURNING id"
	/* 1.0 SQL: no tenant column ($19 is then always NULL) */
	insert_plan = es_prepare_versioned(insert_plans,
									   ES_INSERT_SUBSCRIPTION("", ""),
									   ES_INSERT_SUBSCRIPTION(", tenant", ", $19"),
									   19, types);
#undef ES_INSERT_SUBSCRIPTION
	/* the checkpoints of the subscription's tenant ($3; 1.0: the default) */
	inherit_plan = es_prepare_versioned(inherit_plans,
										"SELECT COALESCE("
										" (SELECT position FROM eventsource.checkpoints WHERE name OPERATOR(pg_catalog.=) $1),"
										" (SELECT position FROM eventsource.checkpoints WHERE name OPERATOR(pg_catalog.=) $2),"
										" 0)",
										"SELECT COALESCE("
										" (SELECT position FROM eventsource.checkpoints WHERE tenant_id OPERATOR(pg_catalog.=) $3"
										"  AND name OPERATOR(pg_catalog.=) $1),"
										" (SELECT position FROM eventsource.checkpoints WHERE tenant_id OPERATOR(pg_catalog.=) $3"
										"  AND name OPERATOR(pg_catalog.=) $2),"
										" 0)",
										3, itypes);
	if (opts->start_kind == ES_START_END)
		start_position = es_horizon();
	else if (opts->start_kind == ES_START_CHECKPOINT)
		start_position = inherited_checkpoint(inherit_plan, opts->name, opts->partitions, 0, checkpoint_tenant);

	/* the intervals are stored as given; es_interval_option_ms() reads them */
	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(opts->name);
	values[1] = ObjectIdGetDatum(opts->handler);
	values[2] = ObjectIdGetDatum(opts->owner);
	values[3] = BoolGetDatum(opts->batch_handler);
	values[4] = CStringGetTextDatum(opts->start_from);
	values[5] = Int64GetDatum(start_position);
	values[6] = Int32GetDatum(opts->batch_size);
	values[7] = CStringGetTextDatum(opts->checkpoint_strategy);
	values[8] = IntervalPGetDatum(opts->intervals[ES_OPT_CHECKPOINT_INTERVAL]);
	values[9] = IntervalPGetDatum(opts->intervals[ES_OPT_PROCESSING_TIMEOUT]);
	values[10] = Int32GetDatum(opts->max_retries);
	values[11] = IntervalPGetDatum(opts->intervals[ES_OPT_RETRY_BACKOFF]);
	values[12] = BoolGetDatum(opts->continue_on_error);
	values[13] = Int32GetDatum(opts->breaker_threshold);
	values[14] = IntervalPGetDatum(opts->intervals[ES_OPT_BREAKER_RESET]);
	values[15] = PointerGetDatum(opts->event_types);
	nulls[15] = opts->event_types ? ' ' : 'n';
	values[16] = PointerGetDatum(opts->categories);
	nulls[16] = opts->categories ? ' ' : 'n';
	values[17] = Int32GetDatum(opts->partitions);
	values[18] = opts->tenant ? CStringGetTextDatum(opts->tenant) : (Datum) 0;
	nulls[18] = opts->tenant ? ' ' : 'n';
	es_exec_plan(insert_plan, values, nulls, SPI_OK_INSERT_RETURNING);
	incarnation = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	/* each partition and where it resumes after */
	for (int p = 0; p < opts->partitions; p++)
	{
		Datum		row[4];

		row[0] = CStringGetTextDatum(opts->name);
		row[1] = Int32GetDatum(p);
		row[2] = Int64GetDatum(incarnation);
		row[3] = Int64GetDatum(opts->start_kind == ES_START_CHECKPOINT ?
							   inherited_checkpoint(inherit_plan, opts->name, opts->partitions, p, checkpoint_tenant) :
							   start_position);
		es_exec_plan(partitions_plan, row, NULL, SPI_OK_INSERT);
	}
	return incarnation;
}

PG_FUNCTION_INFO_V1(es_create_subscription);

/*
 * create_subscription(name, handler, start_from, batch_size,
 *		checkpoint_strategy, checkpoint_interval, processing_timeout,
 *		max_retries, retry_backoff, continue_on_error,
 *		circuit_breaker_threshold, circuit_breaker_reset, event_types,
 *		categories, partitions, tenant (1.1)) RETURNS void
 *
 * As CreateSubscription: the arguments into one struct, checked by the
 * rules the worker checks its row with, then the rows; the workers start
 * at commit.
 */
Datum
es_create_subscription(PG_FUNCTION_ARGS)
{
	EsSubscriptionOptions opts = {0};
	EsOwnerCall call;
	int			freed;
	int64		incarnation;
	const char *checkpoint_tenant;

	es_require_shmem("eventsource.create_subscription()");
	parse_create_arguments(fcinfo, &opts);
	es_check_subscription_options(&opts);
	/* a cross-tenant one inherits the checkpoints of the caller's tenant */
	checkpoint_tenant = opts.tenant ? opts.tenant : pstrdup(es_current_tenant());

	api_begin(&call, "eventsource.create_subscription()");
	freed = check_can_create(&opts);
	incarnation = insert_subscription(&opts, checkpoint_tenant);
	es_owner_end(&call);

	queue_op(PENDING_REGISTER, opts.name, opts.partitions, ES_DESIRED_RUN);
	((PendingOp *) llast(pending))->incarnation = incarnation;
	((PendingOp *) llast(pending))->frees_slots = (freed > 0);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_drop_subscription);

/*
 * drop_subscription(name) RETURNS void
 *
 * Waits for an in-flight batch of the subscription to commit (it holds its
 * checkpoint row); its workers stop at commit.
 */
Datum
es_drop_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = arg_subscription_name(fcinfo);
	EsOwnerCall call;
	Datum		values[1];
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr plan = NULL;

	api_begin(&call, "eventsource.drop_subscription()");
	(void) require_subscription(name, call.save_userid);
	if (plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		/*
		 * First wait for an in-flight batch (it holds its partition's row):
		 * the dead letters it parks commit with it, and the next statement's
		 * snapshot sees them.
		 */
		lock_plan = es_prepare("SELECT FROM eventsource.subscription_partitions"
							   " WHERE subscription OPERATOR(pg_catalog.=) $1 FOR UPDATE",
							   1, types);
		/* its partitions (and their checkpoints) go with it, by cascade */
		plan = es_prepare("WITH d AS (DELETE FROM eventsource.dead_letters"
						  "  WHERE subscription OPERATOR(pg_catalog.=) $1)"
						  " DELETE FROM eventsource.subscriptions WHERE name OPERATOR(pg_catalog.=) $1",
						  1, types);
	}
	values[0] = CStringGetTextDatum(name);
	es_exec_plan(lock_plan, values, NULL, SPI_OK_SELECT);
	es_exec_plan(plan, values, NULL, SPI_OK_DELETE);
	es_owner_end(&call);

	queue_op(PENDING_DESIRED, name, 0, ES_DESIRED_DROP);
	PG_RETURN_VOID();
}

static void
set_state(FunctionCallInfo fcinfo, const char *what, bool pause)
{
	char	   *name = arg_subscription_name(fcinfo);
	EsOwnerCall call;
	Datum		values[1];
	static SPIPlanPtr pause_plan = NULL;
	static SPIPlanPtr resume_plan = NULL;

	api_begin(&call, what);
	(void) require_subscription(name, call.save_userid);
	if (resume_plan == NULL)
	{
		Oid			types[1] = {TEXTOID};

		/* both or none: the second assignment marks them ready */
		pause_plan = es_prepare("UPDATE eventsource.subscriptions SET state = 'paused',"
								" updated_at = pg_catalog.now() WHERE name OPERATOR(pg_catalog.=) $1",
								1, types);
		resume_plan = es_prepare("WITH p AS (UPDATE eventsource.subscription_partitions SET state = 'ok',"
								 "  failed_position = NULL, failed_event_id = NULL, error_message = NULL,"
								 "  error_sqlstate = NULL, failed_at = NULL"
								 "  WHERE subscription OPERATOR(pg_catalog.=) $1)"
								 " UPDATE eventsource.subscriptions SET state = 'active',"
								 " updated_at = pg_catalog.now() WHERE name OPERATOR(pg_catalog.=) $1",
								 1, types);
	}
	values[0] = CStringGetTextDatum(name);
	es_exec_plan(pause ? pause_plan : resume_plan, values, NULL, SPI_OK_UPDATE);
	es_owner_end(&call);

	queue_op(PENDING_DESIRED, name, 0, pause ? ES_DESIRED_PAUSE : ES_DESIRED_RUN);
}

PG_FUNCTION_INFO_V1(es_pause_subscription);

/* pause_subscription(name) RETURNS void: its workers drain and stop */
Datum
es_pause_subscription(PG_FUNCTION_ARGS)
{
	set_state(fcinfo, "eventsource.pause_subscription()", true);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_resume_subscription);

/*
 * resume_subscription(name) RETURNS void: run again, also after a partition
 * stopped at a failed event (that event is retried).
 */
Datum
es_resume_subscription(PG_FUNCTION_ARGS)
{
	set_state(fcinfo, "eventsource.resume_subscription()", false);
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_reset_subscription);

/*
 * reset_subscription(name, position DEFAULT 0) RETURNS void: every partition
 * resumes after "position".  Waits for an in-flight batch.
 */
Datum
es_reset_subscription(PG_FUNCTION_ARGS)
{
	char	   *name = arg_subscription_name(fcinfo);
	int64		position = es_arg_int64(fcinfo, 1, "position");
	EsOwnerCall call;
	Datum		values[2];
	static SPIPlanPtr plan = NULL;

	if (position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position must not be negative")));
	api_begin(&call, "eventsource.reset_subscription()");
	(void) require_subscription(name, call.save_userid);
	if (plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8OID};

		plan = es_prepare("UPDATE eventsource.subscription_partitions SET position = $2,"
						  " checkpointed_at = pg_catalog.now(),"
						  " resets = resets OPERATOR(pg_catalog.+) 1"
						  " WHERE subscription OPERATOR(pg_catalog.=) $1",
						  2, types);
	}
	values[0] = CStringGetTextDatum(name);
	values[1] = Int64GetDatum(position);
	es_exec_plan(plan, values, NULL, SPI_OK_UPDATE);
	es_owner_end(&call);

	queue_op(PENDING_REQUEST_RESET, name, 0, ES_DESIRED_RUN);
	((PendingOp *) llast(pending))->position = position;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(es_retry_dead_letters);

/*
 * retry_dead_letters(name, ids bigint[] DEFAULT NULL) RETURNS integer: mark
 * dead letters (all of the subscription's, or those ids) for redelivery;
 * returns how many.  The workers deliver them after commit: delivered ones
 * leave the table, failing ones stay with their new error.
 */
Datum
es_retry_dead_letters(PG_FUNCTION_ARGS)
{
	char	   *name = arg_subscription_name(fcinfo);
	EsOwnerCall call;
	Datum		values[2];
	char		nulls[2] = {' ', ' '};
	int			n;
	static SPIPlanPtr plan = NULL;

	if (!PG_ARGISNULL(1))
	{
		ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(1);

		if (ARR_NDIM(ids) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("ids must be a one-dimensional array")));
		if (array_contains_nulls(ids))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("ids must not contain null elements")));
	}
	api_begin(&call, "eventsource.retry_dead_letters()");
	(void) require_subscription(name, call.save_userid);
	if (plan == NULL)
	{
		Oid			types[2] = {TEXTOID, INT8ARRAYOID};

		plan = es_prepare("UPDATE eventsource.dead_letters SET retry_requested = true"
						  " WHERE subscription OPERATOR(pg_catalog.=) $1"
						  " AND ($2 IS NULL OR id OPERATOR(pg_catalog.=) ANY ($2))",
						  2, types);
	}
	values[0] = CStringGetTextDatum(name);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	es_exec_plan(plan, values, nulls, SPI_OK_UPDATE);
	n = (int) SPI_processed;
	es_owner_end(&call);

	if (n > 0)
		queue_op(PENDING_REQUEST_RETRY, name, 0, ES_DESIRED_RUN);
	PG_RETURN_INT32(n);
}
