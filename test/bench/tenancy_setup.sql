-- test/bench/tenancy_setup.sql: the extension, the plain-table baseline, the
-- application role of run_tenancy.sh.
-- Run once with psql -v ON_ERROR_STOP=1 on a fresh database;
-- the read data comes after (run_tenancy.sh, read_data.sql).
CREATE EXTENSION eventsource;

-- The baseline: a plain table of the shape eventsource.events had before
-- tenancy (the same columns, keys and indexes as 1.0: primary key
-- (stream_id, stream_version), unique global_position, unique event_id), no
-- trigger, no policy, and a sequence with the same CACHE 1.  Spelled out
-- rather than LIKE eventsource.events: the plain-table baselines are those
-- of today's benchmark (run.sh), whatever the store's own keys became.
CREATE SCHEMA bench;
CREATE TABLE bench.plain_events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    PRIMARY KEY (stream_id, stream_version),
    UNIQUE (global_position),
    UNIQUE (event_id)
);
CREATE SEQUENCE bench.plain_seq AS bigint CACHE 1;
CREATE FUNCTION bench.uuid_time_ordered() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN (lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
            || substr(replace(gen_random_uuid()::text, '-', ''), 13))::uuid;

-- The application role of the tenancy side: not the owner, not a superuser,
-- no BYPASSRLS (so row-level security applies to it), bound to no tenant (it
-- chooses one per transaction with SET LOCAL eventsource.tenant); the
-- writer's and reader's grants of docs/privileges.md.
CREATE ROLE es_bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION
    eventsource.append(text, bigint, jsonb),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[])
    TO es_bench_app;
-- only for run_tenancy.sh's check that row-level security applies to it
GRANT SELECT ON eventsource.events TO es_bench_app;

