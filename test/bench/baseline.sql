-- test/bench/baseline.sql: the baseline objects of run.sh, run_scale.sh and
-- run_tenancy.sh (included by their setup files after CREATE EXTENSION).

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
-- A time-ordered uuid (48 bits of Unix milliseconds, then random bits), as
-- append() generates in C, so the baseline's event_id index also grows at
-- its right edge.  SQL-inlinable, so no function-call overhead in the plan.
CREATE FUNCTION bench.uuid_time_ordered() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN (lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
            || substr(replace(gen_random_uuid()::text, '-', ''), 13))::uuid;

