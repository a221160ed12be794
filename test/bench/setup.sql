-- test/bench/setup.sql: the extension, the baseline table and the read data.
-- Run once by run.sh with psql -v ON_ERROR_STOP=1 on a fresh database.
CREATE EXTENSION eventsource;

\ir baseline.sql

-- Read data: 1,000 streams "Read-<n>" x 100 events, appended 10 events at a
-- time round-robin over the streams (10 rounds), so that a stream's events
-- are spread over the heap as they would be after real traffic.
SELECT set_config('bench.payload', :'payload', false);
DO $$
DECLARE
    batch jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded', 'data', current_setting('bench.payload')::jsonb))
      INTO batch FROM generate_series(1, 10);
    FOR r IN 1..10 LOOP
        FOR s IN 1..1000 LOOP
            PERFORM eventsource.append('Read-' || s, -1, batch);
        END LOOP;
    END LOOP;
END
$$;

-- The baseline table starts with the same rows, so both tables (and their
-- indexes) have the same size when the append measurements start.
INSERT INTO bench.plain_events SELECT * FROM eventsource.events;
SELECT setval('bench.plain_seq', (SELECT max(global_position) FROM bench.plain_events));
