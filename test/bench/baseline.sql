-- test/bench/baseline.sql: the baseline objects of run.sh and run_scale.sh
-- (included by setup.sql and scale_setup.sql after CREATE EXTENSION).

-- The baseline: a plain table with the same columns and the same indexes as
-- eventsource.events (since 1.1: primary key (tenant_id, stream_id,
-- stream_version), unique (tenant_id, event_id), unique global_position,
-- unique (tenant_id, global_position); tenant_id defaults to 'default'), no
-- triggers, no row-level security, and a sequence with the same CACHE 1 as
-- eventsource.events_global_position_seq.  The baseline queries name the
-- tenant as the store's functions do (the default tenant: the benchmark
-- runs without eventsource.tenant), so both sides use the same indexes.
CREATE SCHEMA bench;
CREATE TABLE bench.plain_events (LIKE eventsource.events INCLUDING ALL);
CREATE SEQUENCE bench.plain_seq AS bigint CACHE 1;

-- A time-ordered uuid (48 bits of Unix milliseconds, then random bits), as
-- append() generates in C, so the baseline's event_id index also grows at
-- its right edge.  SQL-inlinable, so no function-call overhead in the plan.
CREATE FUNCTION bench.uuid_time_ordered() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN (lpad(to_hex((date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
            || substr(replace(gen_random_uuid()::text, '-', ''), 13))::uuid;
