/*-------------------------------------------------------------------------
 *
 * subscription.h
 *	  Declarations shared by the subscription machinery: the worker slot
 *	  registry in shared memory, the launcher, the workers and the SQL API.
 *	  The worker's own files share worker.h besides.
 *
 * One slot per subscription partition.  A slot outlives its worker process:
 * it keeps the partition's desired state (run, paused, failed, dropped) and
 * its statistics until the subscription is dropped or the server restarts.
 * registry.c is the slots' only writer (its header essay: the lifecycle,
 * which lock protects which field, the lock order); everyone else reads
 * them under the locks named below, or calls registry.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_SUBSCRIPTION_H
#define ES_SUBSCRIPTION_H

#include "postgres.h"

#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "eventsource.h"

/* What the partition should be doing (set by the SQL API at commit). */
typedef enum EsDesired
{
	ES_DESIRED_RUN,
	ES_DESIRED_PAUSE,
	ES_DESIRED_FAILED,			/* stopped at an event (continue_on_error off) */
	ES_DESIRED_DROP
} EsDesired;

/* What the partition is doing (the status view's "state"). */
typedef enum EsWorkerState
{
	ES_STATE_STARTING,
	ES_STATE_CATCHING_UP,
	ES_STATE_LIVE,
	ES_STATE_PAUSED,
	ES_STATE_CIRCUIT_OPEN,
	ES_STATE_FAILED,
	ES_STATE_STOPPED
} EsWorkerState;

#define ES_ERROR_BUCKETS	60	/* one per second: the rolling error rate */
#define ES_ERROR_TEXT_LEN	256

/* The outcome of a worker's last graceful shutdown. */
typedef struct EsShutdownRecord
{
	TimestampTz at;				/* 0: none yet */
	char		reason[16];		/* "server stop", "pause", "drop", ... */
	char		phase[16];		/* "completed" or "forced" */
	int64		duration_ms;
	bool		forced;
	int			events_in_flight;	/* rolled back by a forced stop */
	int			checkpoints_saved;
} EsShutdownRecord;

typedef struct EsWorkerSlot
{
	/* identity and control: protected by the WORKERS LWLock */
	bool		in_use;
	Oid			dboid;
	char		name[ES_MAX_NAME_LEN + 1];	/* empty: a retired slot */
	int64		incarnation;	/* eventsource.subscriptions.id */
	int			partition;
	int			partitions;
	EsDesired	desired;
	uint32		generation;		/* bumped at every start */
	uint32		attached_generation;	/* the last generation that attached */
	pid_t		pid;			/* 0: no process */
	Latch	   *latch;			/* the worker's latch while it runs */
	TimestampTz next_start_at;	/* restart backoff */
	int			crash_count;
	bool		retry_requested;	/* retry_dead_letters() */

	/* state and statistics: protected by mutex */
	slock_t		mutex;
	EsWorkerState state;
	TimestampTz started_at;
	TimestampTz heartbeat_at;
	TimestampTz last_activity_at;
	int64		checkpoint;
	int64		last_position;
	TimestampTz last_recorded_at;	/* of the last event delivered */
	int64		events_processed;
	int64		events_failed;
	int64		events_retried;
	int64		dead_letters;
	int64		consecutive_failures;
	int64		bookkeeping_failures;	/* our own writes that failed (bookkeeping.c) */
	int64		errors_by_second[ES_ERROR_BUCKETS];
	int64		error_second[ES_ERROR_BUCKETS];
	char		last_error[ES_ERROR_TEXT_LEN];
	char		last_sqlstate[6];
	TimestampTz last_error_at;
	TimestampTz circuit_open_until;
	EsShutdownRecord shutdown;

	/*
	 * Where the running worker is, in memory, after its last committed batch
	 * (periodic saves it to the checkpoint row only every interval), with
	 * the row's "resets" it started from and its pid: the status measures
	 * lag from it while that pid still runs the slot.  es_slot_set_progress.
	 */
	int64		progress_position;
	int64		progress_resets;
	pid_t		progress_pid;	/* 0: nothing published */

	/* broadcast when the checkpoint moves (wait_for_subscription) */
	ConditionVariable progress_cv;
} EsWorkerSlot;

typedef struct EsWorkersShared
{
	/* all but nslots: protected by the WORKERS LWLock (registry.c) */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	TimestampTz launcher_started_at;
	TimestampTz launcher_heartbeat_at;
	bool		discovery_done;
	bool		shutting_down;	/* the launcher got SIGTERM */

	/*
	 * Bumped (WORKERS lock) by every commit that changes subscriptions,
	 * before it changes the slots.  Whoever sets slots from rows it read
	 * (discovery, a starting worker) reads it before taking its snapshot and
	 * changes nothing if it moved since: its rows may be out of date.
	 */
	uint64		changes;
	bool		register_when_freed;	/* a registration found too few slots */
	int			nslots;			/* fixed at startup */
	EsWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} EsWorkersShared;

/* registry.c (es_registry_drop_database, es_registry_rediscover: upcalls.h) */
extern EsWorkersShared *es_workers;
extern Size es_workers_shmem_size(void);
extern void es_workers_shmem_init(void *area, bool found);
typedef enum EsRegisterResult
{
	ES_REGISTER_OK,
	ES_REGISTER_NO_SLOTS,		/* not enough free slots; nothing changed */
	ES_REGISTER_STALE			/* subscriptions changed since *as_of */
} EsRegisterResult;

extern EsRegisterResult es_registry_register(Oid dboid, const char *name,
											 int64 incarnation, int partitions,
											 EsDesired desired, const bool *failed,
											 const uint64 *as_of);
extern void es_registry_set_desired(Oid dboid, const char *name, EsDesired desired);
extern uint64 es_registry_changes(void);
extern void es_registry_note_changes(void);
extern void es_free_slot_locked(EsWorkerSlot *slot);
extern void es_registry_request(Oid dboid, const char *name, bool reset,
								int64 position, bool retry);
extern int	es_registry_free_slots(void);
extern int	es_registry_count_slots(Oid dboid, const char *name);
extern void es_launcher_wake(void);

/* registry.c: the restart backoff of a crashed worker */
#define ES_RESTART_BACKOFF_MS		1000	/* after the first crash, doubling */
#define ES_RESTART_BACKOFF_MAX_MS	60000
#define ES_STEADY_RUN_MS			60000	/* a worker that ran this long starts its count again */
extern int64 es_restart_delay_ms(int crash_count);

/* registry.c: the launcher's side */
extern void es_registry_launcher_attach(void);
extern void es_registry_launcher_detach(void);
extern void es_registry_launcher_stopping(void);
extern void es_registry_launcher_heartbeat_locked(TimestampTz now);
extern bool es_registry_begin_discovery(void);
extern void es_registry_discovery_failed(void);
extern bool es_registry_discovery_wanted(void);
extern bool es_slot_wants_process_locked(EsWorkerSlot *slot);
extern bool es_slot_start_due_locked(EsWorkerSlot *slot, TimestampTz now,
									 bool died_unattached, TimestampTz *due_at);
extern bool es_slot_attached_locked(EsWorkerSlot *slot, uint32 generation);
extern uint32 es_slot_begin_start_locked(EsWorkerSlot *slot);
extern void es_slot_start_failed_locked(EsWorkerSlot *slot, TimestampTz now,
										const char *message, int64 retry_ms);

/* registry.c: the worker's side */
typedef struct EsSlotIdentity
{
	Oid			dboid;
	char		name[ES_MAX_NAME_LEN + 1];
	int			partition;
	int			partitions;
	int64		incarnation;	/* eventsource.subscriptions.id */
} EsSlotIdentity;

extern EsWorkerSlot *es_registry_attach(int index, uint32 generation, EsSlotIdentity *id);
extern void es_registry_detach(EsWorkerSlot *slot, int code);
extern EsDesired es_slot_desired(EsWorkerSlot *slot);
extern void es_slot_set_desired_if(EsWorkerSlot *slot, EsDesired from, EsDesired to);
extern bool es_slot_follow_row(EsWorkerSlot *slot, EsDesired desired, uint64 as_of);
extern void es_slot_gone(EsWorkerSlot *slot);
extern bool es_slot_take_retry_request(EsWorkerSlot *slot);
extern void es_slot_set_state(EsWorkerSlot *slot, EsWorkerState state);
extern void es_slot_heartbeat(EsWorkerSlot *slot);
extern void es_slot_checkpointed(EsWorkerSlot *slot, int64 position);
extern void es_slot_delivered(EsWorkerSlot *slot, int64 position,
							  TimestampTz recorded_at, int n);
extern void es_slot_event_failed(EsWorkerSlot *slot, bool dead_lettered);
extern void es_slot_dead_letters_gone(EsWorkerSlot *slot, int64 delivered, int64 dropped);
extern int64 es_slot_bookkeeping_failed(EsWorkerSlot *slot);
extern void es_slot_set_circuit_open_until(EsWorkerSlot *slot, TimestampTz until);
extern void es_slot_set_in_flight(EsWorkerSlot *slot, int n);
extern void es_slot_record_shutdown(EsWorkerSlot *slot, EsShutdownRecord *rec);
extern void es_slot_note_error(EsWorkerSlot *slot, const char *message,
							   const char *sqlstate, bool retried);
extern void es_slot_withhold_error(EsWorkerSlot *slot, const char *note);
extern int64 es_slot_error_rate(EsWorkerSlot *slot, TimestampTz now);
extern void es_slot_set_progress(EsWorkerSlot *slot, int64 position, int64 resets);
extern const char *es_state_name(EsWorkerState state);

/* subscription.c */
#define ES_MAX_SUBSCRIPTION_NAME_LEN (ES_MAX_NAME_LEN - 5)	/* room for "/1023" */
#define ES_MAX_PARTITIONS 1024		/* and at most eventsource.max_workers */
#define ES_MAX_RETRIES 100
#define ES_MAX_BREAKER_THRESHOLD 1000000
extern char *es_checkpoint_name(const char *name, int partitions, int partition);

/* subscription_rules.c: a subscription's configuration, checked */
typedef enum EsStrategy
{
	ES_EVERY_EVENT,
	ES_EVERY_BATCH,
	ES_PERIODIC
} EsStrategy;

extern void es_check_subscription_name(const char *name);
extern void es_check_int_range(int64 v, const char *what, int64 min, int64 max);
extern void es_check_partitions(int64 partitions);
extern int64 es_check_interval_ms(const Interval *iv, const char *what, bool zero_ok);
extern EsStrategy es_check_strategy(const char *strategy);
extern bool es_check_handler(Oid handler, Oid user);
extern void es_check_subscription_tenant(const char *tenant, Oid owner);

/* launcher.c */
extern void es_launcher_register(void);

/* handler.c: calling a handler for one event or a batch */
typedef enum EsCallResult
{
	ES_CALL_OK,
	ES_CALL_FAILED,				/* the handler raised an error */
	ES_CALL_DRAIN_EXPIRED		/* cancelled: the shutdown drain timed out */
} EsCallResult;

typedef struct EsCallError
{
	char	   *message;
	char		sqlstate[6];
	bool		timed_out;		/* processing_timeout cancelled it */
} EsCallError;

extern void es_handler_init_timer(void);
extern void es_handler_arm_timer(void);
extern void es_handler_disarm_timer(void);
extern bool es_handler_timer_armed(void);
extern const char *es_handler_subscription(void);
extern EsCallResult es_call_handler(FmgrInfo *flinfo, Datum arg, Oid owner,
									const char *tenant, int64 timeout_ms, const char *subscription,
									HeapTuple event, TupleDesc desc,
									EsCallError *err);

/* worker.c: the worker's stop request (its SIGTERM) */
extern volatile sig_atomic_t es_shutdown_requested;
extern volatile TimestampTz es_shutdown_requested_at;
extern bool es_drain_expired_at(TimestampTz now);
extern bool es_drain_expired(void);

/* classify.c: what a failure's SQLSTATE means */
extern const char *es_error_category(const char *sqlstate);
extern const char *es_error_severity(const char *sqlstate);
extern int	es_severity_rank(const char *severity);

#endif							/* ES_SUBSCRIPTION_H */
