-- test/bench/scale_setup.sql: the extension, the baseline table, the loader,
-- the handlers and the server-side timer of run_scale.sh.  Run once on a
-- fresh database with psql -v ON_ERROR_STOP=1 -v payload=...
CREATE EXTENSION eventsource;
-- The baseline (bench.plain_events, bench.plain_seq,
-- bench.uuid_time_ordered()): filled with a copy of the store's rows after
-- every load step.
\ir baseline.sql

SELECT set_config('bench.payload', :'payload', false);
CREATE TABLE bench.batch AS
    SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded',
                                        'data', current_setting('bench.payload')::jsonb)) AS events
      FROM generate_series(1, 100);

-- The loader: appends batches first .. last of 100 events each through
-- eventsource.append(), one transaction per batch, batch b to the stream
-- Order-<b mod streams + 1> (round-robin, so a stream's events are spread
-- over the heap as real traffic leaves them).  Two loaders run at once on
-- disjoint batch ranges.
CREATE PROCEDURE bench.load(first bigint, last bigint, streams integer)
    LANGUAGE plpgsql AS $$
DECLARE
    evs jsonb := (SELECT events FROM bench.batch);
BEGIN
    FOR b IN first .. last LOOP
        PERFORM eventsource.append('Order-' || (b % streams + 1), -1, evs);
        COMMIT;
    END LOOP;
END
$$;

-- The catch-up handler: a batch handler that does nothing (the worker's own cost).
CREATE FUNCTION bench.noop_batch(es eventsource.events[]) RETURNS void
    LANGUAGE sql AS $$ SELECT $$;
-- The handler of the monitored (paused) subscriptions: never called.
CREATE FUNCTION bench.noop(e eventsource.events) RETURNS void
    LANGUAGE sql AS $$ SELECT $$;

-- Median wall time, in milliseconds, of "calls" executions of "query" on the
-- server (EXECUTE: planned and run to the last row, result discarded), after
-- one untimed warm-up call.
CREATE FUNCTION bench.time_ms(query text, calls integer) RETURNS numeric
    LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    ms double precision[] := '{}';
BEGIN
    EXECUTE query;
    FOR i IN 1 .. calls LOOP
        t := clock_timestamp();
        EXECUTE query;
        ms := ms || extract(epoch FROM clock_timestamp() - t) * 1000;
    END LOOP;
    RETURN round((SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY m) FROM unnest(ms) m)::numeric, 2);
END
$$;
