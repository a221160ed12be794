/* eventsource--1.0.sql: the event store's schema, tables and functions. */

\echo Use "CREATE EXTENSION eventsource" to load this file. \quit

CREATE SCHEMA eventsource;
COMMENT ON SCHEMA eventsource IS 'Event store: events, snapshots, checkpoints, subscriptions';

-- ---------------------------------------------------------------------------
-- The log
-- ---------------------------------------------------------------------------

-- CACHE 1: nextval() must return increasing values across backends, which the
-- safe horizon relies on.  Never reset it.
CREATE SEQUENCE eventsource.events_global_position_seq AS bigint
    START 1 MINVALUE 1 NO CYCLE CACHE 1;

CREATE TABLE eventsource.events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    CONSTRAINT events_pkey PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT events_global_position_key UNIQUE (global_position),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
COMMENT ON TABLE eventsource.events IS
    'The event log: append-only, written only by eventsource.append()';

ALTER SEQUENCE eventsource.events_global_position_seq
    OWNED BY eventsource.events.global_position;

CREATE FUNCTION eventsource.events_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'es_events_guard';

CREATE TRIGGER events_guard
    BEFORE INSERT OR UPDATE OR DELETE ON eventsource.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
CREATE TRIGGER events_guard_truncate
    BEFORE TRUNCATE ON eventsource.events
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
-- also with session_replication_role = replica
ALTER TABLE eventsource.events ENABLE ALWAYS TRIGGER events_guard;
ALTER TABLE eventsource.events ENABLE ALWAYS TRIGGER events_guard_truncate;

-- One row per stream, derived from the log (no write on the append path).
CREATE VIEW eventsource.streams AS
    SELECT e.stream_id,
           pg_catalog.split_part(e.stream_id, '-', 1) AS category,
           pg_catalog.max(e.stream_version) AS version,
           pg_catalog.min(e.global_position) AS first_position,
           pg_catalog.max(e.global_position) AS last_position,
           pg_catalog.min(e.recorded_at) AS created_at,
           pg_catalog.max(e.recorded_at) AS updated_at
      FROM eventsource.events e
     GROUP BY e.stream_id;

-- ---------------------------------------------------------------------------
-- Snapshots and checkpoints
-- ---------------------------------------------------------------------------

CREATE TABLE eventsource.snapshots (
    stream_id      text        NOT NULL,
    schema_version integer     NOT NULL,
    stream_version bigint      NOT NULL,
    state          jsonb       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id, schema_version, stream_version)
);

CREATE TABLE eventsource.checkpoints (
    name       text        NOT NULL,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT checkpoints_pkey PRIMARY KEY (name)
);

-- ---------------------------------------------------------------------------
-- Subscriptions (run by background workers, see src/worker.c)
-- ---------------------------------------------------------------------------

CREATE TABLE eventsource.subscriptions (
    -- a new id for every create_subscription, also of a name used before:
    -- a worker of a dropped subscription can never touch its successor
    id                        bigint      GENERATED ALWAYS AS IDENTITY,
    name                      text        NOT NULL,
    handler                   regprocedure NOT NULL,
    owner                     regrole     NOT NULL,
    batch_handler             boolean     NOT NULL,
    start_from                text        NOT NULL,
    start_position            bigint      NOT NULL,
    batch_size                integer     NOT NULL,
    checkpoint_strategy       text        NOT NULL,
    checkpoint_interval       interval    NOT NULL,
    processing_timeout        interval    NOT NULL,
    max_retries               integer     NOT NULL,
    retry_backoff             interval    NOT NULL,
    continue_on_error         boolean     NOT NULL,
    circuit_breaker_threshold integer     NOT NULL,
    circuit_breaker_reset     interval    NOT NULL,
    event_types               text[],
    categories                text[],
    partitions                integer     NOT NULL,
    state                     text        NOT NULL DEFAULT 'active',
    created_at                timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at                timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT subscriptions_pkey PRIMARY KEY (name),
    CONSTRAINT subscriptions_id_key UNIQUE (id),
    CONSTRAINT subscriptions_state_check CHECK (state IN ('active', 'paused')),
    CONSTRAINT subscriptions_strategy_check
        CHECK (checkpoint_strategy IN ('every_event', 'every_batch', 'periodic'))
);

-- One row per partition: its checkpoint (everything up to "position" is
-- done), whether it stopped at an event, and how its last graceful shutdown
-- went.  Subscription progress is kept here, apart from the checkpoints of
-- eventsource.checkpoints, so that save_checkpoint() can never move it.
-- "resets" counts reset_subscription() calls: a worker that keeps its
-- position in memory (periodic) tells a reset from its own last save by it,
-- even a reset to the very position it saved.
CREATE TABLE eventsource.subscription_partitions (
    subscription    text        NOT NULL
        REFERENCES eventsource.subscriptions (name) ON DELETE CASCADE,
    partition       integer     NOT NULL,
    subscription_id bigint      NOT NULL,
    position        bigint      NOT NULL,
    checkpointed_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    resets          bigint      NOT NULL DEFAULT 0,     -- reset_subscription() calls
    state           text        NOT NULL DEFAULT 'ok',
    failed_position bigint,
    failed_event_id uuid,
    error_message   text,
    error_sqlstate  text,
    failed_at       timestamptz,
    last_shutdown   jsonb,
    CONSTRAINT subscription_partitions_pkey PRIMARY KEY (subscription, partition),
    CONSTRAINT subscription_partitions_state_check CHECK (state IN ('ok', 'failed'))
);

-- Events a handler failed on after all retries, parked for inspection and
-- retry_dead_letters().
CREATE TABLE eventsource.dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    subscription    text        NOT NULL,
    partition       integer     NOT NULL,
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    error_message   text        NOT NULL,
    error_sqlstate  text        NOT NULL,
    error_category  text        NOT NULL,
    error_severity  text        NOT NULL,
    retry_count     integer     NOT NULL,
    retry_requested boolean     NOT NULL DEFAULT false,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    dead_lettered_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT dead_letters_pkey PRIMARY KEY (id)
);
CREATE INDEX dead_letters_subscription_idx
    ON eventsource.dead_letters (subscription, partition, id);

-- Every failed handler call, newest eventsource.recent_errors_kept kept.
CREATE TABLE eventsource.recent_errors (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    subscription    text        NOT NULL,
    partition       integer     NOT NULL,
    global_position bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    error_message   text        NOT NULL,
    error_sqlstate  text        NOT NULL,
    error_category  text        NOT NULL,
    error_severity  text        NOT NULL,
    attempt         integer     NOT NULL,
    occurred_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT recent_errors_pkey PRIMARY KEY (id)
);

-- pg_dump keeps the user data of these tables (and the sequence's value).
SELECT pg_catalog.pg_extension_config_dump('eventsource.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.events_global_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.subscriptions_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.subscription_partitions', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.recent_errors', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.dead_letters_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.recent_errors_id_seq', '');

-- ---------------------------------------------------------------------------
-- Store functions.  They run with the rights of the extension's owner on its
-- tables (see src/catalog.c); EXECUTE is what is granted to roles.
-- ---------------------------------------------------------------------------

CREATE FUNCTION eventsource.append(
    stream_id text, expected_version bigint, events jsonb,
    OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_append';

CREATE FUNCTION eventsource.append_event(
    stream_id text, expected_version bigint, event_type text, data jsonb,
    metadata jsonb DEFAULT '{}', event_id uuid DEFAULT NULL,
    OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_append_event';

CREATE FUNCTION eventsource.read_stream(
    stream_id text, from_version bigint DEFAULT NULL,
    max_count integer DEFAULT 1000, backwards boolean DEFAULT false)
    RETURNS SETOF eventsource.events
    LANGUAGE c STABLE PARALLEL UNSAFE ROWS 100
    AS 'MODULE_PATHNAME', 'es_read_stream';

CREATE FUNCTION eventsource.read_all(
    after_position bigint DEFAULT 0, max_count integer DEFAULT 1000,
    event_types text[] DEFAULT NULL, categories text[] DEFAULT NULL)
    RETURNS SETOF eventsource.events
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'es_read_all';

CREATE FUNCTION eventsource.head_position() RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_head_position';

CREATE FUNCTION eventsource.stream_version(stream_id text) RETURNS bigint
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_stream_version_sql';

CREATE FUNCTION eventsource.category(stream_id text) RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'es_category';

CREATE FUNCTION eventsource.stream_partition(stream_id text, partitions integer)
    RETURNS integer
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'es_stream_partition_sql';

CREATE FUNCTION eventsource.save_snapshot(
    stream_id text, stream_version bigint, state jsonb, schema_version integer DEFAULT 1)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_save_snapshot';

CREATE FUNCTION eventsource.load_snapshot(stream_id text, schema_version integer DEFAULT 1)
    RETURNS TABLE (stream_version bigint, state jsonb, schema_version integer,
                   created_at timestamptz)
    LANGUAGE c STABLE PARALLEL UNSAFE ROWS 1
    AS 'MODULE_PATHNAME', 'es_load_snapshot';

CREATE FUNCTION eventsource.load(stream_id text, schema_version integer DEFAULT 1)
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_load';

CREATE FUNCTION eventsource.save_checkpoint(name text, "position" bigint) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_save_checkpoint';

CREATE FUNCTION eventsource.get_checkpoint(name text) RETURNS bigint
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_get_checkpoint';

CREATE FUNCTION eventsource.reset_checkpoint(name text, "position" bigint DEFAULT 0)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_reset_checkpoint';

-- ---------------------------------------------------------------------------
-- Subscription functions
-- ---------------------------------------------------------------------------

CREATE FUNCTION eventsource.create_subscription(
    name text, handler regprocedure, start_from text DEFAULT 'beginning',
    batch_size integer DEFAULT 100, checkpoint_strategy text DEFAULT 'every_batch',
    checkpoint_interval interval DEFAULT '5 seconds',
    processing_timeout interval DEFAULT '30 seconds',
    max_retries integer DEFAULT 5, retry_backoff interval DEFAULT '1 second',
    continue_on_error boolean DEFAULT true, circuit_breaker_threshold integer DEFAULT 5,
    circuit_breaker_reset interval DEFAULT '30 seconds',
    event_types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
    partitions integer DEFAULT 1)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_create_subscription';

CREATE FUNCTION eventsource.drop_subscription(name text) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_drop_subscription';

CREATE FUNCTION eventsource.pause_subscription(name text) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_pause_subscription';

CREATE FUNCTION eventsource.resume_subscription(name text) RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_resume_subscription';

CREATE FUNCTION eventsource.reset_subscription(name text, "position" bigint DEFAULT 0)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_reset_subscription';

CREATE FUNCTION eventsource.retry_dead_letters(name text, ids bigint[] DEFAULT NULL)
    RETURNS integer
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_retry_dead_letters';

-- A subscription depends on its handler: dropping the function (directly,
-- or with DROP SCHEMA ... CASCADE, DROP OWNED ...) is refused while a
-- subscription uses it, as a real dependency would.
-- SECURITY DEFINER: it runs for every DROP of every role, and must read the
-- subscriptions table that those roles may not read.  It only reads.
CREATE FUNCTION eventsource.protect_handlers() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sub record;
BEGIN
    -- the extension itself is being dropped: nothing to protect
    IF pg_catalog.to_regclass('eventsource.subscriptions') IS NULL THEN
        RETURN;
    END IF;
    FOR sub IN
        SELECT s.name, d.object_identity
          FROM eventsource.subscriptions s
          JOIN pg_catalog.pg_event_trigger_dropped_objects() d
            ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.objid OPERATOR(pg_catalog.=) s.handler::pg_catalog.oid
    LOOP
        RAISE EXCEPTION 'cannot drop function %: subscription "%" uses it as its handler',
                        sub.object_identity, sub.name
              USING ERRCODE = 'dependent_objects_still_exist',
                    HINT = 'Drop the subscription first with eventsource.drop_subscription().';
    END LOOP;
END $$;

CREATE EVENT TRIGGER eventsource_protect_handlers ON sql_drop
    EXECUTE FUNCTION eventsource.protect_handlers();

-- ---------------------------------------------------------------------------
-- Health and monitoring
-- ---------------------------------------------------------------------------

CREATE FUNCTION eventsource.subscription_status_rows(
    OUT name text, OUT partition integer, OUT pid integer, OUT state text,
    OUT checkpoint bigint, OUT last_position bigint, OUT head_position bigint,
    OUT lag_events bigint, OUT lag_seconds double precision,
    OUT events_processed bigint, OUT events_failed bigint, OUT events_retried bigint,
    OUT dead_letters bigint, OUT consecutive_failures bigint,
    OUT error_rate_per_minute bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT started_at timestamptz, OUT last_activity_at timestamptz, OUT health text,
    OUT health_reason text, OUT last_sqlstate text, OUT heartbeat_at timestamptz,
    OUT circuit_open_until timestamptz, OUT last_shutdown jsonb, OUT partitions integer)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_subscription_status';

-- One row per subscription partition, like the pg_stat_* views.
CREATE VIEW eventsource.subscription_status AS
    SELECT * FROM eventsource.subscription_status_rows();

CREATE FUNCTION eventsource.health() RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_health';

CREATE FUNCTION eventsource.readiness() RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_readiness';

CREATE FUNCTION eventsource.liveness() RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_liveness';

CREATE FUNCTION eventsource.error_stats() RETURNS jsonb
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_error_stats';

CREATE FUNCTION eventsource.wait_for_subscription(name text, "position" bigint, timeout interval)
    RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_wait_for_subscription';

CREATE FUNCTION eventsource.horizon_blocker_rows(
    OUT pid integer, OUT dboid oid, OUT since timestamptz, OUT positions bigint,
    OUT min_position bigint, OUT max_position bigint, OUT xid xid)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_horizon_blocker_rows';

-- The transactions whose uncommitted appends hold the safe horizon back:
-- "why is my projection not moving" in one query.
CREATE VIEW eventsource.horizon_blockers AS
    SELECT b.pid, d.datname AS database, b.since AS holding_since,
           b.positions, b.min_position, b.max_position, b.xid,
           pg_catalog.age(b.xid) AS xid_age, a.xact_start,
           pg_catalog.now() OPERATOR(pg_catalog.-) a.xact_start AS transaction_age,
           a.state, a.wait_event_type, a.wait_event, a.query
      FROM eventsource.horizon_blocker_rows() b
      LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) b.pid
      LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) b.dboid;

CREATE FUNCTION eventsource.store_stats_row(
    OUT appends bigint, OUT events_appended bigint, OUT expected_version_conflicts bigint,
    OUT idempotent_retries bigint, OUT duplicate_event_ids bigint,
    OUT stream_reads bigint, OUT global_reads bigint, OUT events_read bigint,
    OUT stats_reset timestamptz)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_store_stats';

-- Cumulative counters of this database's store since stat_reset() or the
-- server start.
CREATE VIEW eventsource.store_stats AS
    SELECT * FROM eventsource.store_stats_row();

CREATE FUNCTION eventsource.stat_reset() RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_stat_reset';

-- ---------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC but the pure helpers.  The README shows the
-- GRANTs for writer, reader and operator roles.
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA eventsource FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventsource FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventsource FROM PUBLIC;
GRANT USAGE ON SCHEMA eventsource TO PUBLIC;
GRANT EXECUTE ON FUNCTION eventsource.category(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION eventsource.stream_partition(text, integer) TO PUBLIC;
