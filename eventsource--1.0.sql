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

-- pg_dump keeps the user data of these tables (and the sequence's value).
SELECT pg_catalog.pg_extension_config_dump('eventsource.events', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.events_global_position_seq', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.snapshots', '');
SELECT pg_catalog.pg_extension_config_dump('eventsource.checkpoints', '');

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
-- Privileges: nothing for PUBLIC but the pure helpers.  The README shows the
-- GRANTs for writer, reader and operator roles.
-- ---------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA eventsource FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA eventsource FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA eventsource FROM PUBLIC;
GRANT USAGE ON SCHEMA eventsource TO PUBLIC;
GRANT EXECUTE ON FUNCTION eventsource.category(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION eventsource.stream_partition(text, integer) TO PUBLIC;
