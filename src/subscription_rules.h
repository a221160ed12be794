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

#endif							/* ES_SUBSCRIPTION_RULES_H */
