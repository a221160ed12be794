/*-------------------------------------------------------------------------
 *
 * upcalls.h
 *	  Every call from the event store's core into the subscription engine
 *	  (and the tracing), in one place.
 *
 * The core is what stores and reads events: append.c, horizon.c,
 * horizon_blockers.c, read.c, stream.c, lifecycle.c, erasure.c, snapshot.c,
 * checkpoint.c, guard.c, stats.c, validate.c, json.c and the SPI layer
 * (spi.c, extversion.c).  The engine is built on the core: subscription.c
 * and subscription_rules.c (SQL API), registry.c, launcher.c, the worker
 * (worker.c, worker_config.c, delivery.c, bookkeeping.c,
 * dead_letter_retry.c), handler.c, current_event.c, classify.c, status.c,
 * wait_for_subscription.c; it calls the core freely (es_horizon(),
 * es_visible_plan(), es_append_system_event(), ...).  The core calls the
 * engine only through the functions below, each at one named point and
 * with a bounded cost; nothing else in the core may know that
 * subscriptions exist.  They are plain calls, not hooks: the append path
 * pays one function call and one test of backend-local state for each, as
 * before this header named them.
 *
 * A new upcall is added here, with who calls it, when, and what it may
 * cost.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_UPCALLS_H
#define ES_UPCALLS_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * horizon.c -> registry.c.  Wake the subscription workers of a database:
 * the safe horizon may have moved.  Called from the transaction callbacks
 * after the horizon was recomputed (commit of a transaction that appended;
 * abort of one, or of a subtransaction, that held reservations; backend
 * exit), never on the append itself.  Takes the WORKERS LWLock shared and
 * sets latches; no I/O.  Every append's commit pays it once.
 */
extern void es_wake_workers(Oid dboid);

/*
 * append.c -> current_event.c.  Inside a subscription handler, add
 * causation_id and correlation_id (from the event being handled) to an
 * appended event's metadata unless it has them; elsewhere return it as is
 * (one test of a backend-local flag).  Called for every event appended,
 * after the expected version is checked and before positions are reserved.
 */
extern Jsonb *es_inherit_causation(Jsonb *metadata);

/*
 * append.c -> trace.c (declared in trace.h, whose essay it belongs to):
 * es_trace_metadata() adds the current trace context to an appended
 * event's metadata, right after es_inherit_causation().
 */

/*
 * utility_hook.c -> subscription.c.  What the SQL API's pending queue must
 * learn from utility commands, in the transaction that runs them:
 *	- es_subscriptions_workers_stopped: DROP EXTENSION stopped this
 *	  database's workers (rediscover them if the drop rolls back);
 *	- es_subscriptions_extension_dropped: DROP EXTENSION ran (forget the
 *	  pending operations of this database);
 *	- es_subscriptions_restored: COPY into eventsource.subscriptions (a
 *	  restore): the launcher must discover the subscriptions at commit.
 */
extern void es_subscriptions_extension_dropped(void);
extern void es_subscriptions_workers_stopped(void);
extern void es_subscriptions_restored(void);

/*
 * utility_hook.c -> registry.c (subscription.c calls both too, at the
 * commit of a DROP EXTENSION or a restore):
 *	- es_registry_drop_database: DROP DATABASE is about to run: mark every
 *	  slot of the database dropped, SIGTERM its workers, free the slots that
 *	  have none.  WORKERS LWLock exclusive for one scan of the slots; the
 *	  caller then waits on the slots' condition variables for the workers to
 *	  leave (utility_hook.c, stop_database_workers, which reads the slots
 *	  under WORKERS shared);
 *	- es_registry_rediscover: a DROP DATABASE or DROP EXTENSION failed or was
 *	  cancelled after the workers were stopped: have the launcher discover
 *	  the subscriptions again.  WORKERS LWLock exclusive for one store, then
 *	  the launcher's latch.
 * Utility commands only; the append and read paths never call them.
 */
extern void es_registry_drop_database(Oid dboid);
extern void es_registry_rediscover(void);

#endif							/* ES_UPCALLS_H */
