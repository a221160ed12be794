/*-------------------------------------------------------------------------
 *
 * subscription_rules.c
 *	  The rules a subscription's configuration obeys, spelled once: checked
 *	  on create_subscription()'s arguments (subscription.c) and again by the
 *	  worker on what it loads from eventsource.subscriptions (worker_config.c),
 *	  since the table's own CHECK constraints (1.1) may be missing (a
 *	  database still on the 1.0 SQL) or NOT VALID for an old row, and some
 *	  rules (the handler's signature, the owner's rights) are no constraint.
 *
 * Each check raises the documented SQLSTATE (22023 for a value outside the
 * domain, 42883 for a function that cannot be a handler, 54000 for a
 * filter over its size limit) and returns normally otherwise.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

#include "subscription.h"
#include "subscription_rules.h"
#include "tenant.h"

#define ES_MAX_INTERVAL_MS	(7LL * 24 * 3600 * 1000)	/* a week */

/* A subscription name: 1..250 bytes (room for "/k"), no "/". */
void
es_check_subscription_name(const char *name)
{
	int			len = strlen(name);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscription name must not be empty")));
	if (len > ES_MAX_SUBSCRIPTION_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("subscription name is too long"),
				 errdetail("It is %d bytes; the limit is %d bytes.",
						   len, ES_MAX_SUBSCRIPTION_NAME_LEN)));
	if (strchr(name, '/') != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscription name must not contain \"/\""),
				 errdetail("\"name/k\" names the checkpoint of partition k.")));
}

/* An integer setting between min and max. */
void
es_check_int_range(int64 v, const char *what, int64 min, int64 max)
{
	if (v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between " INT64_FORMAT " and " INT64_FORMAT,
						what, min, max)));
}

/* partitions: 1..Min(eventsource.max_workers, ES_MAX_PARTITIONS). */
void
es_check_partitions(int64 partitions)
{
	es_check_int_range(partitions, "partitions", 1, Min(es_max_workers, ES_MAX_PARTITIONS));
}

/*
 * An interval setting in milliseconds: 0 (when "zero_ok") or between 1 ms
 * and 7 days.  Months count as 30 days, as interval comparisons do.
 */
int64
es_check_interval_ms(const Interval *iv, const char *what, bool zero_ok)
{
	int64		us;

	if (!es_interval_us(iv, &us) ||
		us < 0 || (us == 0 && !zero_ok) || (us > 0 && us < 1000) ||
		us > ES_MAX_INTERVAL_MS * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be %sbetween 1 millisecond and 7 days", what,
						zero_ok ? "zero or " : "")));
	return us / 1000;
}

/* Each interval option's name and whether 0 is allowed. */
static const struct
{
	const char *name;
	bool		zero_ok;
}			interval_options[ES_NUM_INTERVAL_OPTIONS] = {
	[ES_OPT_CHECKPOINT_INTERVAL] = {"checkpoint_interval", false},
	[ES_OPT_PROCESSING_TIMEOUT] = {"processing_timeout", false},
	[ES_OPT_RETRY_BACKOFF] = {"retry_backoff", true},
	[ES_OPT_BREAKER_RESET] = {"circuit_breaker_reset", false},
};

const char *
es_interval_option_name(EsIntervalOption option)
{
	Assert(option >= 0 && option < ES_NUM_INTERVAL_OPTIONS);
	return interval_options[option].name;
}

/*
 * An interval option in milliseconds: the one conversion, by the option's
 * rule (es_check_interval_ms).  Raises 22023 when the value breaks it.
 */
int64
es_interval_option_ms(EsIntervalOption option, const Interval *value)
{
	Assert(option >= 0 && option < ES_NUM_INTERVAL_OPTIONS);
	return es_check_interval_ms(value, interval_options[option].name,
								interval_options[option].zero_ok);
}

/* checkpoint_strategy: its EsStrategy. */
EsStrategy
es_check_strategy(const char *strategy)
{
	if (strcmp(strategy, "every_event") == 0)
		return ES_EVERY_EVENT;
	if (strcmp(strategy, "every_batch") == 0)
		return ES_EVERY_BATCH;
	if (strcmp(strategy, "periodic") == 0)
		return ES_PERIODIC;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid checkpoint_strategy \"%s\"", strategy),
			 errhint("Use 'every_event', 'every_batch' or 'periodic'.")));
	pg_unreachable();
}

/*
 * A handler: a function of one argument, eventsource.events (one event per
 * call) or eventsource.events[] (a batch), returning void, that "user" may
 * execute.  Returns whether it takes a batch.
 */
bool
es_check_handler(Oid handler, Oid user)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			events_type = get_rel_type_id(es_catalog()->events_oid);
	Oid			events_array = get_array_type(events_type);
	bool		batch;
	bool		takes_event;
	char		prokind;
	bool		returns_void;
	AclResult	aclresult;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(handler));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("handler function with OID %u does not exist", handler)));
	proc = (Form_pg_proc) GETSTRUCT(tup);
	takes_event = proc->pronargs == 1 &&
		(proc->proargtypes.values[0] == events_type ||
		 proc->proargtypes.values[0] == events_array);
	batch = takes_event && proc->proargtypes.values[0] == events_array;
	prokind = proc->prokind;
	returns_void = proc->prorettype == VOIDOID && !proc->proretset;
	ReleaseSysCache(tup);

	if (!takes_event)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s cannot be a subscription handler", format_procedure(handler)),
				 errdetail("A handler takes exactly one argument, of type eventsource.events (one event per call) or eventsource.events[] (a batch)."),
				 errhint("Declare it as f(e eventsource.events) RETURNS void.")));
	if (prokind != PROKIND_FUNCTION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s cannot be a subscription handler: it is not a plain function",
						format_procedure(handler))));
	if (!returns_void)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("function %s cannot be a subscription handler: it must return void",
						format_procedure(handler))));

	aclresult = pg_proc_aclcheck(handler, user, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(handler));
	return batch;
}

/*
 * start_from: 'beginning', 'end', 'checkpoint' or a position (the
 * subscription resumes after it).
 */
static void
check_start_from(EsSubscriptionOptions *opts)
{
	const char *start_from = opts->start_from;
	char	   *end;

	opts->start_kind = ES_START_POSITION;
	opts->start_position = 0;
	if (strcmp(start_from, "beginning") == 0)
		return;
	if (strcmp(start_from, "end") == 0)
	{
		opts->start_kind = ES_START_END;
		return;
	}
	if (strcmp(start_from, "checkpoint") == 0)
	{
		opts->start_kind = ES_START_CHECKPOINT;
		return;
	}
	errno = 0;
	opts->start_position = strtoll(start_from, &end, 10);
	if (*start_from == '\0' || *end != '\0' || errno != 0 || opts->start_position < 0 ||
		!isdigit((unsigned char) *start_from))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid start_from \"%s\"", start_from),
				 errhint("Use 'beginning', 'end', 'checkpoint' or a position (the subscription resumes after it).")));
}

/*
 * tenant: a tenant id its owner may work in, or NULL (cross-tenant) for an
 * owner not bound to tenants (tenant.c).  A binding removed after the
 * subscription was created breaks this rule: the worker checks it before
 * every batch too (worker_config.c, es_worker_tenant_still_allowed).
 */
void
es_check_subscription_tenant(const char *tenant, Oid owner)
{
	if (tenant != NULL && !es_tenant_id_valid(tenant, strlen(tenant)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant \"%s\"", tenant),
				 errdetail("A tenant id is 1 to %d bytes of letters, digits, \"_\", \".\", \":\" and \"-\".",
						   ES_MAX_TENANT_LEN),
				 errhint("Pass tenant => NULL for a subscription of every tenant.")));
	es_tenant_check_role(owner, tenant);
}

/*
 * Check every option of a subscription by its rule, in column order, and
 * fill in what they mean (the "derived" fields).  Raises the first rule
 * broken.  Needs a transaction (the handler's check reads the catalogs).
 */
void
es_check_subscription_options(EsSubscriptionOptions *opts)
{
	es_check_subscription_name(opts->name);
	opts->batch_handler = es_check_handler(opts->handler, opts->owner);
	if (opts->start_from != NULL)
		check_start_from(opts);
	es_check_int_range(opts->batch_size, "batch_size", 1, ES_MAX_EVENTS_PER_CALL);
	opts->strategy = es_check_strategy(opts->checkpoint_strategy);
	opts->interval_ms[ES_OPT_CHECKPOINT_INTERVAL] =
		es_interval_option_ms(ES_OPT_CHECKPOINT_INTERVAL,
							  opts->intervals[ES_OPT_CHECKPOINT_INTERVAL]);
	opts->interval_ms[ES_OPT_PROCESSING_TIMEOUT] =
		es_interval_option_ms(ES_OPT_PROCESSING_TIMEOUT,
							  opts->intervals[ES_OPT_PROCESSING_TIMEOUT]);
	es_check_int_range(opts->max_retries, "max_retries", 0, ES_MAX_RETRIES);
	opts->interval_ms[ES_OPT_RETRY_BACKOFF] =
		es_interval_option_ms(ES_OPT_RETRY_BACKOFF,
							  opts->intervals[ES_OPT_RETRY_BACKOFF]);
	es_check_int_range(opts->breaker_threshold, "circuit_breaker_threshold",
					   0, ES_MAX_BREAKER_THRESHOLD);
	opts->interval_ms[ES_OPT_BREAKER_RESET] =
		es_interval_option_ms(ES_OPT_BREAKER_RESET,
							  opts->intervals[ES_OPT_BREAKER_RESET]);
	if (opts->event_types != NULL)
		es_check_text_array(opts->event_types, "event_types");
	if (opts->categories != NULL)
		es_check_text_array(opts->categories, "categories");
	es_check_partitions(opts->partitions);
	if (opts->has_tenant)
		es_check_subscription_tenant(opts->tenant, opts->owner);
}
