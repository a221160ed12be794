/*-------------------------------------------------------------------------
 *
 * eventsource.h
 *	  Declarations shared by the files of the eventsource extension.
 *
 * Each .c file under src/ owns one responsibility; this header declares what
 * the files of the event store's core share with each other and with the
 * rest (subscription.h adds the subscription engine's declarations,
 * trace.h the tracing's, schema.h the tables' columns, upcalls.h the calls
 * from the core into the engine).  Limits and SQLSTATEs that users can
 * observe are defined here so that the README, the tests and the code
 * agree.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENTSOURCE_H
#define EVENTSOURCE_H

#include "postgres.h"

#include "executor/spi.h"
#include "nodes/nodes.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "utils/timestamp.h"

/* Our own SQLSTATE class "ES" for domain errors (see README, error codes). */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','S','0','0','1')
#define ERRCODE_ES_DUPLICATE_EVENT_ID		MAKE_SQLSTATE('E','S','0','0','2')
#define ERRCODE_ES_STREAM_DELETED			MAKE_SQLSTATE('E','S','0','0','3')
#define ERRCODE_ES_STREAM_NOT_FOUND			MAKE_SQLSTATE('E','S','0','0','4')
#define ERRCODE_ES_UNKNOWN_TENANT			MAKE_SQLSTATE('E','S','0','0','5')
#define ERRCODE_ES_NO_TENANT				MAKE_SQLSTATE('E','S','0','0','6')

/*
 * Documented limits, enforced with SQLSTATE 54000 (program_limit_exceeded).
 * Lengths are in bytes of the database encoding.
 */
#define ES_MAX_STREAM_ID_LEN		1000
#define ES_MAX_EVENT_TYPE_LEN		255
#define ES_MAX_NAME_LEN				255 /* checkpoint and subscription names */
#define ES_MAX_EVENTS_PER_CALL		10000
#define ES_MAX_EVENT_SIZE			(1024 * 1024)	/* data + metadata */
#define ES_MAX_READ_COUNT			100000
#define ES_MAX_FILTER_ELEMENTS		10000	/* event_types, categories */

/* Expected-version sentinels of append() (the seed library's). */
#define ES_EXPECT_ANY				(-1)
#define ES_EXPECT_NO_STREAM			0
#define ES_EXPECT_STREAM_EXISTS		(-2)

/* guc.c */
extern int	es_snapshots_to_keep;
extern int	es_max_databases;
extern int	es_max_workers;
extern int	es_drain_timeout_ms_guc;
extern int	es_liveness_timeout_ms;
extern int	es_max_error_rate_per_minute;
extern int	es_max_errors_warning;
extern int	es_max_errors_critical;
extern int	es_max_lag_events_warning;
extern int	es_max_lag_events_critical;
extern int	es_lag_count_limit;
extern int	es_max_dead_letters_warning;
extern int	es_max_dead_letters_critical;
extern int	es_recent_errors_kept;
extern int	es_notify_min_severity;
extern void es_define_gucs(bool preloading);

/* shmem.c */
#define ES_LWLOCK_TRANCHE			"eventsource"
#define ES_LWLOCK_HORIZON			0	/* reservations, per-database state */
#define ES_LWLOCK_WORKERS			1	/* subscription worker slots */
#define ES_LWLOCK_TENANT_STATS		2	/* per-tenant stats table (tenant_stats.c) */
#define ES_NUM_LWLOCKS				3
extern LWLock *es_lwlock(int which);
extern bool es_shmem_available(void);
extern void es_require_shmem(const char *what);
extern void es_shmem_install_hooks(void);

/* horizon.c: reservations of positions and the safe horizon */
typedef struct EsReservation
{
	Oid			dboid;			/* database of the reserving transaction */
	int			pid;
	int64		min_position;	/* lowest position held; 0 = slot unused */
	int64		max_position;
	int64		count;			/* positions taken by the transaction */
	TimestampTz since;			/* when it took its first one */
	TransactionId xid;			/* its top-level transaction id */
} EsReservation;

extern Size es_horizon_shmem_size(void);
extern void es_horizon_shmem_init(void *area, bool found);
extern void es_horizon_register_callbacks(void);
extern int64 es_reserve_positions(int count, int64 *positions);
extern void es_reserve_for_restore(void);
extern int64 es_horizon(void);
extern int	es_horizon_blockers(EsReservation *out);	/* horizon_blockers.c shows them */

/* spi.c: SPI as the extension owner: cached OIDs, owner rights, plans */
typedef struct EsCatalog
{
	Oid			namespace_oid;
	Oid			events_oid;
	Oid			sequence_oid;
	Oid			owner_oid;
} EsCatalog;

extern const EsCatalog *es_catalog(void);
extern Oid	es_lookup_relation(const char *name, Oid nsp);
extern const EsCatalog *es_catalog_cached(void);
extern void es_become_owner(Oid *save_userid, int *save_sec_context);
extern void es_restore_user(Oid save_userid, int save_sec_context);

typedef struct EsOwnerCall
{
	Oid			save_userid;	/* the caller */
	int			save_sec_context;
} EsOwnerCall;

extern void es_owner_begin(EsOwnerCall *call);
extern void es_owner_end(EsOwnerCall *call);
extern SPIPlanPtr es_prepare(const char *query, int nargs, Oid *argtypes);
extern SPIPlanPtr es_prepare_versioned(SPIPlanPtr *slots, const char *q10, const char *q11,
									   int nargs, Oid *argtypes);
extern void es_exec_plan(SPIPlanPtr plan, Datum *values, const char *nulls,
						 int expected);
extern uint64 es_exec_plan_snapshot(SPIPlanPtr plan, Datum *values, const char *nulls,
									Snapshot snapshot, int expected);
extern void es_spi_read(SPIPlanPtr plan, Datum *values, const char *nulls,
						DestReceiver *dest, uint64 tcount);
extern void es_spi_read_latest(SPIPlanPtr plan, Datum *values, const char *nulls,
							   DestReceiver *dest, uint64 tcount);

/*
 * The version of the extension's SQL objects this library is built for: the
 * control file's default_version (the Makefile passes it).  The library
 * also serves every older version it can be updated from (README,
 * "Upgrading"; CONTRIBUTING.md).
 */
#ifndef ES_LIBRARY_VERSION
#error "ES_LIBRARY_VERSION must be defined (the Makefile takes it from eventsource.control)"
#endif
StaticAssertDecl(sizeof(ES_LIBRARY_VERSION) > 1,
				 "ES_LIBRARY_VERSION must not be empty (the Makefile takes it from eventsource.control)");
#define ES_VERSION_NUM(major, minor)	((major) * 1000 + (minor))
#define ES_SQL_1_0					ES_VERSION_NUM(1, 0)
#define ES_SQL_1_1					ES_VERSION_NUM(1, 1)
/* an extversion this library cannot read: newer than anything it knows */
#define ES_SQL_UNKNOWN				PG_INT32_MAX

/* extversion.c: the version of the SQL objects in the current database */
extern bool es_parse_version(const char *str, int *num);
extern int	es_sql_version(void);
extern const char *es_sql_version_text(void);
extern bool es_sql_version_at_least(const char *min);
extern void es_require_sql_version(const char *min, const char *what);

/* validate.c: argument checks shared by the SQL functions */
extern void es_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what);
extern void es_require_writable(const char *function);
extern text *es_arg_stream_id(FunctionCallInfo fcinfo, int argno);
extern char *es_arg_name(FunctionCallInfo fcinfo, int argno, const char *what, int maxlen);
extern bool es_interval_us(const Interval *iv, int64 *us);
extern int64 es_arg_int64(FunctionCallInfo fcinfo, int argno, const char *what);
extern int32 es_arg_int32(FunctionCallInfo fcinfo, int argno, const char *what);
extern void es_check_text_array(ArrayType *arr, const char *what);

/* stats.c: cumulative store statistics */
typedef enum EsStatKind
{
	ES_STAT_APPENDS,
	ES_STAT_EVENTS_APPENDED,
	ES_STAT_CONFLICTS,
	ES_STAT_IDEMPOTENT_RETRIES,
	ES_STAT_DUPLICATE_IDS,
	ES_STAT_STREAM_READS,
	ES_STAT_GLOBAL_READS,
	ES_STAT_EVENTS_READ,
	ES_STAT_STREAMS_CREATED,	/* per tenant only */
	ES_NUM_TENANT_STATS
} EsStatKind;
#define ES_NUM_STATS	ES_STAT_STREAMS_CREATED /* the counters of store_stats */
extern Size es_stats_shmem_size(void);
extern void es_stats_shmem_init(void *area, bool found);
extern void es_stats_count(text *tenant, EsStatKind kind, int64 n);

/* tenant_stats.c: per-tenant store statistics */
extern int	es_max_tenant_stats;
extern Size es_tenant_stats_shmem_size(void);
extern void es_tenant_stats_shmem_init(void *area, bool found);
extern void es_tenant_stats_count(text *tenant, EsStatKind kind, int64 n);
extern void es_tenant_stats_reset(void);

/* stream.c: category, partition hash, lock hash */
#define ES_STREAM_LOCK_FIELD4		0x4553	/* 'ES' in the advisory lock space */
extern uint64 es_hash_stream_id(const char *data, int len);
extern uint64 es_hash_tenant_stream(text *tenant, text *stream_id);
extern int	es_stream_partition(const char *data, int len, int partitions);
extern int	es_stream_category(const char *data, int len);


/* append.c: shared with the lifecycle operations */
extern void es_lock_stream(text *tenant, text *stream_id);
extern void es_check_expected_version(text *tenant, text *stream_id, int64 expected,
									  int64 current);
extern int64 es_append_system_event(text *tenant, text *stream_id, int64 version, const char *type,
									Jsonb *data);

/* json.c: the one way to build JSON text in C */
typedef struct EsJson
{
	StringInfoData buf;
	char		close;			/* '}' or ']'; '\0' once finished */
	bool		empty;			/* no member yet */
} EsJson;

extern void es_json_object(EsJson *j);
extern void es_json_array(EsJson *j);
extern void es_json_string(EsJson *j, const char *key, const char *value);
extern void es_json_int(EsJson *j, const char *key, int64 value);
extern void es_json_bool(EsJson *j, const char *key, bool value);
extern void es_json_timestamp(EsJson *j, const char *key, TimestampTz t);
extern void es_json_time(EsJson *j, const char *key, TimestampTz t);
extern void es_json_nested(EsJson *j, const char *key, EsJson *value);
extern char *es_json_finish(EsJson *j);
extern Datum es_json_jsonb(EsJson *j);

/* lifecycle.c: soft/hard delete and truncation of streams, hiding */
typedef struct EsStreamState
{
	int64		last_version;	/* highest version ever (0: never written) */
	int64		hidden_through; /* versions 1 .. this are hidden */
	bool		has_row;		/* a lifecycle operation touched the stream */
	bool		tombstoned;		/* hard-deleted: never written again */
	int32		operations;		/* lifecycle operations so far */
} EsStreamState;

extern bool es_lifecycle_installed(void);
extern SPIPlanPtr es_visible_plan(SPIPlanPtr *slots, const char *query_fmt,
								  int nargs, Oid *argtypes, bool generic);
extern void es_stream_state(text *tenant, text *stream_id, bool latest, EsStreamState *state);
extern int64 es_visible_version(const EsStreamState *state);
extern int64 es_stream_version(text *tenant, text *stream_id, bool latest);
extern void es_check_not_tombstoned(text *stream_id, const EsStreamState *state);
extern int64 es_lifecycle_arg_expected(FunctionCallInfo fcinfo, int argno);
extern uint64 es_exec_with_active_snapshot(SPIPlanPtr plan, Datum *values, int expected);
extern int64 es_record_operation(text *tenant, text *stream_id, const EsStreamState *st,
								 int64 hidden_through, bool tombstone, const char *event_type,
								 Jsonb *details);

/* lifecycle.c: hiding the rows of a read of the table (read_all) */
typedef struct EsHiding EsHiding;
extern EsHiding *es_hiding_begin(int64 after);
extern DestReceiver *es_hiding_receiver(EsHiding *hiding, DestReceiver *inner);
extern uint64 es_hiding_resolve(EsHiding *hiding, const uint64 **rows,
								uint64 *scanned, int64 *last_position);

/* erasure.c: redaction of personal data in place */
extern void es_erasure_before_snapshot_save(text *tenant, text *stream_id);
extern Size es_erasure_shmem_size(void);
extern void es_erasure_shmem_init(void *area, bool found);
extern TimestampTz es_erasure_committed_at(void);
extern bool es_erasure_lock_for_copy(text *tenant, text *stream_id);

/* an erased event's error text, in every copy (the marker of its data) */
#define ES_ERASED_ERROR_TEXT	"(erased)"
#define ES_ERASURE_PENDING_NOTE \
	"(error text withheld: an erasure of the event's stream was in progress)"

#define ES_ERASED_ERROR_NOTE \
	"(error text withheld: an erasure committed after it; see eventsource.recent_errors)"

/* guard.c: the events table accepts rows only from append() or a restore */
extern bool es_append_in_progress;

/* the extension's own writes of the guarded tables other than append()'s */
typedef enum EsGuardedWrite
{
	ES_GUARDED_LIFECYCLE,		/* stream_lifecycle, stream_retention */
	ES_GUARDED_ERASE,			/* the erasure's UPDATE of events */
	ES_GUARDED_CLEANUP_DELETE	/* the cleanup's DELETE from events */
} EsGuardedWrite;

extern uint64 es_exec_guarded(EsGuardedWrite write, SPIPlanPtr plan, Datum *values,
							  const char *nulls, Snapshot snapshot, int expected);
extern bool es_guard_is_copy_into_events(Node *parsetree);
extern void es_guard_restore_copy(bool on);

/* utility_hook.c: COPY restores, DROP DATABASE, DROP EXTENSION */
extern void es_utility_install_hook(void);

/* current_event.c: the event a handler is processing in this process */
typedef struct EsCurrentEvent
{
	bool		active;			/* a single event is being handled */
	char		subscription[ES_MAX_NAME_LEN + 1];	/* "" outside a handler */
	char		event_id[UUID_LEN * 2 + 5];
	char		event_type[ES_MAX_EVENT_TYPE_LEN + 1];
	char		stream_id[ES_MAX_STREAM_ID_LEN + 1];
	int64		position;
	char		position_text[32];
	char		correlation_id[ES_MAX_NAME_LEN + 1];	/* what appends inherit */
} EsCurrentEvent;

extern const EsCurrentEvent *es_current_event(void);
extern void es_current_event_set(const char *subscription, HeapTuple event,
								 TupleDesc desc);
extern void es_current_event_clear(void);

/*
 * cleanup.c: the cleanup worker of each database (physical removal of hidden
 * rows, retention passes), its shared state and the launcher's side
 */
extern bool es_cleanup_enabled;
extern int	es_cleanup_naptime_ms;
extern int	es_cleanup_batch_size;
extern int	es_cleanup_max_rows_per_second;
extern void es_cleanup_define_gucs(void);
extern Size es_cleanup_shmem_size(void);
extern void es_cleanup_shmem_init(void *area, bool found);
extern void es_cleanup_want(Oid dboid);
extern void es_cleanup_stop(Oid dboid);
extern int64 es_cleanup_supervise(void);

/* retention.c: max age / max count rules, turned into truncations */
extern int64 es_retention_enforce(char *note, size_t notelen);


/*
 * The calls from the core into the subscription engine, each documented
 * there; included here so that the engine files that define them see the
 * prototypes.
 */
#include "upcalls.h"

#endif							/* EVENTSOURCE_H */
