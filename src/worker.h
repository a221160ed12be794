/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The subscription worker's own declarations, shared by its files (and
 *	  by nothing else):
 *
 *	  worker.c             the process: attach to its slot, the main loop,
 *	                       stop and exit; the transaction bracket
 *	  worker_config.c      the subscription's row, loaded and checked
 *	                       (es_cfg); following an update of the SQL objects
 *	  delivery.c           the delivery state machine (EsDelivery) and one
 *	                       batch: checkpoint, fetch, handler calls, retries,
 *	                       breaker
 *	  bookkeeping.c        what the worker records about failures, none of
 *	                       which may stop delivery: recent_errors,
 *	                       notifications, dead letters, the failed row, the
 *	                       log fields
 *	  dead_letter_retry.c  retry_dead_letters(): parked events delivered
 *	                       again
 *
 * Process-wide state has one owner each: es_worker (who we are) is set by
 * worker.c at attach; es_cfg (what the row says) by worker_config.c; the
 * delivery state is private to delivery.c.  The slot in shared memory is
 * written only through registry.c (subscription.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_WORKER_H
#define ES_WORKER_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/elog.h"
#include "utils/palloc.h"

#include "subscription.h"

/* Who this process is: set at attach (worker.c), never changed after. */
typedef struct EsWorker
{
	EsWorkerSlot *slot;			/* ours, in shared memory (registry.c) */
	Oid			dboid;
	char		name[ES_MAX_NAME_LEN + 1];
	int			partition;
	int			partitions;		/* refreshed from the row (worker_config.c) */
	int64		incarnation;	/* eventsource.subscriptions.id */
	Oid			extension;		/* the extension our subscription is in */
	Oid			partitions_rel; /* its eventsource.subscription_partitions */
	char	   *dbname;			/* for log lines, read at start */
	MemoryContext batch_cxt;	/* a batch's events; reset by each batch */
} EsWorker;

extern PGDLLIMPORT EsWorker es_worker;

/*
 * The subscription's definition, loaded from its row (worker_config.c,
 * es_worker_load_config), with what the worker derives from it.
 */
typedef struct EsSubConfig
{
	Oid			handler;
	Oid			owner;
	bool		batch_handler;
	int			batch_size;
	EsStrategy	strategy;
	int64		checkpoint_interval_ms;
	int64		processing_timeout_ms;
	int			max_retries;
	int64		retry_backoff_ms;
	bool		continue_on_error;
	int			breaker_threshold;
	int64		breaker_reset_ms;
	Datum		event_types;	/* text[] or 0 */
	Datum		categories;		/* text[] or 0 */
	bool		has_tenant;		/* the SQL has tenants (1.1) */
	char	   *tenant;			/* NULL: cross-tenant (and on 1.0 SQL) */

	FmgrInfo	handler_finfo;
	char	   *handler_name;
	TupleDesc	events_desc;	/* row type of eventsource.events; never NULL
								 * once loaded */
	Oid			events_type;
	AttrNumber	tenant_attno;	/* events_desc's tenant_id; 0: none (1.0) */
	int			sql_version;	/* the version of the SQL objects we run with */
	char		sql_version_text[NAMEDATALEN];
	EsDesired	row_desired;	/* what our row says */
	ErrorData  *error;			/* why the row breaks a rule (NULL: valid) */
} EsSubConfig;

extern PGDLLIMPORT EsSubConfig es_cfg;

/* What a batch ended with. */
typedef enum EsBatchOutcome
{
	BATCH_IDLE,					/* nothing to deliver: caught up */
	BATCH_DONE,					/* delivered events; maybe more to come */
	BATCH_RETRY_WAIT,			/* an event failed; retry after backoff */
	BATCH_BREAKER_OPEN,
	BATCH_FAILED,				/* stopped at an event (continue_on_error off) */
	BATCH_FORCED,				/* drain timed out: rolled back */
	BATCH_GONE,					/* the subscription no longer exists */
	BATCH_ENDED_EARLY			/* every_event: the row or the SQL moved */
} EsBatchOutcome;

/* An event being delivered: a row of eventsource.events (es_cfg.events_desc). */
typedef struct EsEventRef
{
	HeapTuple	tuple;			/* in events_desc's layout */
	int64		position;
	TimestampTz recorded_at;
} EsEventRef;

/* A step run in a subtransaction of its own (es_worker_try_in_subxact). */
typedef void (*EsBookkeepingFn) (EsEventRef *ev, void *arg);

/* worker.c */
extern void es_worker_tx_begin(const char *activity);
extern void es_worker_tx_commit(void);
extern void es_worker_tx_abort(void);
extern ErrorData *es_worker_try_in_subxact(EsBookkeepingFn fn, EsEventRef *ev, void *arg);
extern void es_worker_try_transaction(const char *activity, void (*fn) (void *arg),
									  void *arg);

/* worker_config.c */
extern bool es_worker_extension_is_ours(void);
extern void es_worker_row_key(Datum *values);
extern bool es_worker_load_config(void);
extern bool es_worker_follow_sql_version(void);
extern bool es_worker_sql_version_moved(void);
extern bool es_worker_tenant_still_allowed(void);

/* delivery.c */
extern EsBatchOutcome es_delivery_batch(void);
extern EsCallResult es_deliver_one(EsEventRef *ev, EsCallError *err);
extern int64 es_delivery_wait_ms(TimestampTz now);
extern bool es_delivery_unsaved(void);
extern void es_delivery_rolled_back(TimestampTz retry_at);
extern void es_delivery_final_checkpoint(void);
extern int64 es_delivery_saved_position(void);
extern int	es_delivery_checkpoints_saved_in_drain(void);

/* bookkeeping.c */
extern char *es_logfmt(const char *value);
extern char *es_log_fields(EsEventRef *ev, const char *sqlstate);
extern bool es_run_bookkeeping(const char *what, EsEventRef *ev, EsBookkeepingFn fn,
							   void *arg);
extern void es_send_notices(void);
extern void es_drop_notices(void);
extern void es_error_columns(Datum *values, const EsCallError *err);
extern void es_error_as_copied(EsEventRef *ev, const EsCallError *err, EsCallError *out);
extern void es_record_error(EsEventRef *ev, EsCallError *err, int attempt, bool will_retry);
extern void es_note_batch_error(EsCallError *err);
extern bool es_dead_letter(EsEventRef *ev, EsCallError *err, int retries,
						   TimestampTz first_failed_at);
extern void es_stop_at_event(EsEventRef *ev, EsCallError *err);
extern void es_fail_invalid_config(void) pg_attribute_noreturn();

/* dead_letter_retry.c */
extern void es_worker_retry_dead_letters(void);

#endif							/* ES_WORKER_H */
