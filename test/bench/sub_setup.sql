-- test/bench/sub_setup.sql: the extension, the read model, the handlers and
-- the loader of run_subscriptions.sh.  Run once on a fresh database with
-- psql -v ON_ERROR_STOP=1; the events are appended afterwards (bench.load).
CREATE EXTENSION eventsource;
CREATE SCHEMA bench;

-- The read model of the throughput and memory measurements: one counter per
-- stream.  Emptied (TRUNCATE: a fresh file, no dead tuples) before each run.
CREATE TABLE bench.counts (
    stream text   PRIMARY KEY,
    n      bigint NOT NULL
);

-- The per-event handler: one upsert of the event's stream counter.
CREATE FUNCTION bench.count_event(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.counts AS c (stream, n) VALUES (e.stream_id, 1)
        ON CONFLICT (stream) DO UPDATE SET n = c.n + 1;
END
$$;

-- The batch handler: one set-based upsert per batch (one row per stream of
-- the batch, adding how many of its events the batch holds).
CREATE FUNCTION bench.count_batch(es eventsource.events[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench.counts AS c (stream, n)
        SELECT e.stream_id, count(*) FROM unnest(es) e GROUP BY e.stream_id
        ON CONFLICT (stream) DO UPDATE SET n = c.n + excluded.n;
END
$$;

-- The wake latency: the appender puts clock_timestamp() into the event's
-- metadata as "t0" (evaluated while the append runs, in the transaction
-- that then commits); the handler's first statement reads the clock.
CREATE TABLE bench.latency (
    global_position bigint PRIMARY KEY,
    latency         interval NOT NULL
);

CREATE FUNCTION bench.note_latency(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    t1 timestamptz := clock_timestamp();
BEGIN
    INSERT INTO bench.latency VALUES (e.global_position, t1 - (e.metadata->>'t0')::timestamptz);
END
$$;

-- The loader: "total" events of the given payload, "per_call" events a call
-- of eventsource.append, round-robin over the streams <prefix>-1 ..
-- <prefix>-<streams> (expected_version -1), committing after every call.
CREATE PROCEDURE bench.load(prefix text, streams integer, per_call integer, total bigint,
                            payload jsonb)
    LANGUAGE plpgsql AS $$
DECLARE
    batch jsonb;
    done  bigint := 0;
    i     bigint := 0;
    k     integer;
BEGIN
    SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded', 'data', payload))
      INTO batch FROM generate_series(1, per_call);
    WHILE done < total LOOP
        k := least(per_call, total - done);
        IF k < per_call THEN
            SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded', 'data', payload))
              INTO batch FROM generate_series(1, k);
        END IF;
        PERFORM eventsource.append(prefix || '-' || (i % streams + 1), -1, batch);
        done := done + k;
        i := i + 1;
        COMMIT;
    END LOOP;
END
$$;

