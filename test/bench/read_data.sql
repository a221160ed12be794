-- test/bench/read_data.sql: the read data of run.sh and run_tenancy.sh.
-- For each tenant tenant-:first .. tenant-:last (0 .. 0: the default
-- tenant, no setting), :streams streams "Read-<n>" x 100 events, appended
-- 10 events at a time in 10 rounds over the tenants and their streams, so
-- that a stream's events are spread over the heap as they would be after
-- real traffic.  One transaction per tenant and round, or per 1,000 streams
-- (a transaction holds its streams' locks).  psql variables: payload,
-- first, last, streams.
SELECT set_config('bench.payload', :'payload', false),
       set_config('bench.first', :'first', false),
       set_config('bench.last', :'last', false),
       set_config('bench.streams', :'streams', false);
DO $$
DECLARE
    batch jsonb;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded', 'data', current_setting('bench.payload')::jsonb))
      INTO batch FROM generate_series(1, 10);
    FOR r IN 1..10 LOOP
        FOR k IN current_setting('bench.first')::int .. current_setting('bench.last')::int LOOP
            FOR s IN 1..current_setting('bench.streams')::int LOOP
                IF k > 0 AND s % 1000 = 1 THEN
                    PERFORM set_config('eventsource.tenant', 'tenant-' || k, true);
                END IF;
                PERFORM eventsource.append('Read-' || s, -1, batch);
                IF s % 1000 = 0 THEN
                    COMMIT;
                END IF;
            END LOOP;
            COMMIT;
        END LOOP;
    END LOOP;
END
$$;
