/*-------------------------------------------------------------------------
 *
 * subscription_rules.h
 *	  The options of a subscription, each with its rule spelled once
 *	  (subscription_rules.c): create_subscription checks them before it
 *	  stores them, the worker checks the stored row with the same rules
 *	  before it runs, and both convert an interval option with the same
 *	  function.
 *
 * The rules' older declarations (es_check_*) are in subscription.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_SUBSCRIPTION_RULES_H
#define ES_SUBSCRIPTION_RULES_H

#include "datatype/timestamp.h"
#include "utils/array.h"

#include "subscription.h"

/*
 * The interval options of a subscription (columns of
 * eventsource.subscriptions of type interval).  Each is 0 (retry_backoff
 * only) or between 1 millisecond and 7 days; months count as 30 days.
 */
typedef enum EsIntervalOption
{
	ES_OPT_CHECKPOINT_INTERVAL,
	ES_OPT_PROCESSING_TIMEOUT,
	ES_OPT_RETRY_BACKOFF,
	ES_OPT_BREAKER_RESET,
	ES_NUM_INTERVAL_OPTIONS
} EsIntervalOption;

extern const char *es_interval_option_name(EsIntervalOption option);
extern int64 es_interval_option_ms(EsIntervalOption option, const Interval *value);

/* start_from: where a new subscription's partitions begin */
typedef enum EsStartFrom
{
	ES_START_POSITION,			/* after start_position (0: 'beginning') */
	ES_START_END,				/* after the horizon at creation */
	ES_START_CHECKPOINT			/* after each partition's inherited checkpoint */
} EsStartFrom;

/*
 * A subscription's options, in the column order of eventsource.subscriptions
 * (the argument order of create_subscription).  The "given" fields are
 * filled by whoever reads them (create_subscription's arguments, the
 * worker's row); es_check_subscription_options() checks them and fills in
 * the "derived" ones.
 */
typedef struct EsSubscriptionOptions
{
	/* given */
	const char *name;
	Oid			handler;
	Oid			owner;			/* whose rights the handler runs with */
	const char *start_from;		/* NULL: not checked (the worker) */
	int32		batch_size;
	const char *checkpoint_strategy;
	const Interval *intervals[ES_NUM_INTERVAL_OPTIONS];
	int32		max_retries;
	bool		continue_on_error;
	int32		breaker_threshold;
	ArrayType  *event_types;	/* NULL: every type */
	ArrayType  *categories;		/* NULL: every category */
	int32		partitions;
	bool		has_tenant;		/* the SQL has subscriptions.tenant (1.1) */
	const char *tenant;			/* NULL: cross-tenant */

	/* derived */
	bool		batch_handler;	/* the handler takes eventsource.events[] */
	EsStartFrom start_kind;
	int64		start_position; /* ES_START_POSITION */
	EsStrategy	strategy;
	int64		interval_ms[ES_NUM_INTERVAL_OPTIONS];
} EsSubscriptionOptions;

extern void es_check_subscription_options(EsSubscriptionOptions *opts);

#endif							/* ES_SUBSCRIPTION_RULES_H */
