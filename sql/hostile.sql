--
-- hostile: a battery of bad calls across every public function and view of
-- the extension.  Each call must fail with a clear, documented SQLSTATE
-- (never XX000, never a crash) and leave the store exactly as it was.
--
-- errors.sql and subscription_api.sql check each function's error paths one
-- by one; this suite is the cross-cutting battery: NULLs in every argument,
-- empty and huge (10 MB) strings, invalid UTF-8 and unicode escapes in JSON
-- text, deeply nested JSON, arrays where objects are expected and vice
-- versa, numbers at and past the limits of their types, unknown names, wrong
-- handlers, duplicates, read-only and aborted transactions, savepoints.
--
-- Every call runs through t.try() (core_setup.sql) and is recorded in the
-- temporary table "calls"; the summary at the end counts them per SQLSTATE
-- and checks that every public function and view was called.  A snapshot of
-- the store (h.store) taken before the battery is compared after it.
--
SET client_min_messages = warning;
CREATE SCHEMA h;

-- handlers: a right one and wrong ones
CREATE FUNCTION h.on_event(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION h.two_args(e eventsource.events, n integer) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION h.returns_int(e eventsource.events) RETURNS integer
    LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION h.no_args() RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION h.takes_jsonb(e jsonb) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION h.takes_text_array(e text[]) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE PROCEDURE h.proc(e eventsource.events)
    LANGUAGE plpgsql AS $$ BEGIN END $$;

-- the fixtures: two streams with known event ids, a snapshot, a checkpoint
-- and a subscription paused in the transaction that created it (no worker
-- ever runs it)
BEGIN;
SELECT stream_version FROM eventsource.append('Hostile-1', 0, '[
    {"type": "Created", "data": {"n": 1}, "id": "a0000000-0000-4000-8000-000000000001"},
    {"type": "Changed", "data": {"n": 2}, "id": "a0000000-0000-4000-8000-000000000002"},
    {"type": "Changed", "data": {"n": 3}, "id": "a0000000-0000-4000-8000-000000000003"}]');
SELECT stream_version FROM eventsource.append_event('Hostile-2', 0, 'Created', '{}', '{}',
    'a0000000-0000-4000-8000-000000000004');
SELECT eventsource.save_snapshot('Hostile-1', 2, '{"n": 2}');
SELECT eventsource.save_checkpoint('hostile_cp', 2);
SELECT eventsource.create_subscription('hostile_sub', 'h.on_event(eventsource.events)');
SELECT eventsource.pause_subscription('hostile_sub');
COMMIT;

-- everything a bad call could change, in one row
CREATE VIEW h.store AS
    SELECT (SELECT count(*) FROM eventsource.events) AS events,
           (SELECT md5(string_agg(concat_ws(' ', global_position, stream_id, stream_version,
                                            event_id, event_type, data, metadata, recorded_at),
                                  E'\n' ORDER BY global_position))
              FROM eventsource.events) AS events_md5,
           (SELECT last_value FROM eventsource.events_global_position_seq) AS last_position_taken,
           eventsource.head_position() AS head_position,
           (SELECT md5(string_agg(stream_id || ':' || version, ',' ORDER BY stream_id COLLATE "C"))
              FROM eventsource.streams) AS stream_versions,
           (SELECT count(*) FROM eventsource.checkpoints) AS checkpoints,
           (SELECT md5(string_agg(name || '=' || position, ',' ORDER BY name COLLATE "C"))
              FROM eventsource.checkpoints) AS checkpoint_positions,
           (SELECT count(*) FROM eventsource.snapshots) AS snapshots,
           (SELECT md5(string_agg(concat_ws(' ', stream_id, schema_version, stream_version, state),
                                  E'\n' ORDER BY stream_id COLLATE "C", schema_version, stream_version))
              FROM eventsource.snapshots) AS snapshots_md5,
           (SELECT count(*) FROM eventsource.subscriptions) AS subscriptions,
           (SELECT md5(string_agg(concat_ws(' ', s.name, s.state, s.handler, s.start_position,
                                            s.partitions), ',' ORDER BY s.name COLLATE "C"))
              FROM eventsource.subscriptions s) AS subscriptions_md5,
           (SELECT count(*) FROM eventsource.subscription_partitions) AS subscription_partitions,
           (SELECT count(*) FROM eventsource.dead_letters) AS dead_letters,
           (SELECT count(*) FILTER (WHERE retry_requested) FROM eventsource.dead_letters)
               AS dead_letters_marked,
           (SELECT md5(string_agg(concat_ws(' ', stream_id, hidden_through, last_version, tombstoned,
                                            operations, last_position), ',' ORDER BY stream_id COLLATE "C"))
              FROM eventsource.stream_lifecycle) AS lifecycle_md5;
CREATE TABLE h.before AS SELECT * FROM h.store;
-- the fixtures as the battery sees them
SELECT eventsource.stream_version('Hostile-1') AS hostile_1, eventsource.stream_version('Hostile-2') AS hostile_2,
       eventsource.get_checkpoint('hostile_cp') AS hostile_cp,
       (SELECT stream_version FROM eventsource.load_snapshot('Hostile-1')) AS snapshot_version,
       (SELECT state FROM eventsource.subscriptions WHERE name = 'hostile_sub') AS hostile_sub;

-- every call of the battery and what it gave
CREATE TEMP TABLE calls (
    id     integer GENERATED ALWAYS AS IDENTITY,
    fn     text NOT NULL,   -- the function or view called
    ctx    text NOT NULL DEFAULT 'autocommit',
    call   text NOT NULL,
    result text
);

-- long lines: one call per line, no column alignment
\pset format unaligned
\pset fieldsep ' | '

--
-- append(stream_id, expected_version, events)
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT 'append', c, t.try(c) FROM (VALUES
        -- NULL in each argument (NULL expected_version means "any")
        ($$SELECT eventsource.append(NULL, 3, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, NULL)$$),
        ($$SELECT eventsource.append(NULL, NULL, NULL)$$),
        -- empty and huge stream ids
        ($$SELECT eventsource.append('', 3, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append(repeat('s', 10485760), NULL, '[{"type": "A", "data": {}}]')$$),
        -- expected_version out of its domain, at the limits of bigint, and wrong
        ($$SELECT eventsource.append('Hostile-1', -3, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', -9223372036854775808, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 9223372036854775807, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 9223372036854775808, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 0, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 2, '[{"type": "A", "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-none', -2, '[{"type": "A", "data": {}}]')$$),
        -- objects where an array is expected, and the other way round
        ($$SELECT eventsource.append('Hostile-1', 3, '{}')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '{"type": "A", "data": {}}')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '{"0": {"type": "A", "data": {}}}')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '"[{\"type\": \"A\", \"data\": {}}]"')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[[{"type": "A", "data": {}}]]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '["A"]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": {"name": "A"}, "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": ["A"], "data": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "metadata": []}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "metadata": [{"correlation_id": "x"}]}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": ["a0000000-0000-4000-8000-000000000009"]}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": {}}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "extra": 1}]')$$),
        -- one bad event makes the whole call fail (nothing of the first is written)
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}}, {"type": "B", "data": {}, "metadata": "m"}]')$$),
        -- numbers out of range in the JSON text: PostgreSQL's jsonb input refuses them
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": 1e1000000}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": 1e100000, "data": {}}]')$$),
        -- huge values inside the events
        ($$SELECT eventsource.append('Hostile-1', 3, jsonb_build_array(jsonb_build_object('type', repeat('T', 10485760), 'data', '{}'::jsonb)))$$),
        ($$SELECT eventsource.append('Hostile-1', 3, jsonb_build_array(jsonb_build_object('type', 'A', 'data', repeat('d', 10485760))))$$),
        ($$SELECT eventsource.append('Hostile-1', 3, jsonb_build_array(jsonb_build_object('type', 'A', 'data', '{}'::jsonb, 'metadata', jsonb_build_object('m', repeat('m', 10485760)))))$$),
        ($$SELECT eventsource.append('Hostile-1', 3, (SELECT jsonb_agg(jsonb_build_object('type', 'A', 'data', i)) FROM generate_series(1, 10001) i))$$),
        -- deeply nested JSON: 10,000 levels parse (and the conflict is what is
        -- reported); 100,000 levels hit PostgreSQL's stack depth check in the
        -- jsonb input, before the function runs
        ($$SELECT eventsource.append('Hostile-1', 0, format('[{"type": "A", "data": %s}]', repeat('[', 10000) || repeat(']', 10000))::jsonb)$$),
        ($$SELECT eventsource.append('Hostile-1', 3, format('[{"type": "A", "data": {}, "metadata": %s}]', repeat('[', 10000) || repeat(']', 10000))::jsonb)$$),
        ($$SELECT eventsource.append('Hostile-1', 3, format('[{"type": "A", "data": %s}]', repeat('[', 100000) || repeat(']', 100000))::jsonb)$$),
        ($$SELECT eventsource.append('Hostile-1', 3, format('[{"type": "A", "data": {}, "metadata": %s}]', repeat('{"a": ', 100000) || '1' || repeat('}', 100000))::jsonb)$$),
        -- event ids: stored in another stream, stored at another version, twice in one call
        ($$SELECT eventsource.append('Hostile-2', 1, '[{"type": "A", "data": {}, "id": "a0000000-0000-4000-8000-000000000001"}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": "a0000000-0000-4000-8000-000000000002"}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": "a0000000-0000-4000-8000-000000000009"}, {"type": "A", "data": {}, "id": "a0000000-0000-4000-8000-000000000009"}]')$$),
        ($$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": "a0000000-0000-4000-8000-00000000000g"}]')$$)
    ) v(c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- append_event(stream_id, expected_version, event_type, data, metadata, event_id)
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT 'append_event', c, t.try(c) FROM (VALUES
        -- NULL in each argument that has no NULL meaning (expected_version:
        -- any; metadata: {}; event_id: generated)
        ($$SELECT eventsource.append_event(NULL, 3, 'A', '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, NULL, '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', NULL)$$),
        ($$SELECT eventsource.append_event(NULL, NULL, NULL, NULL, NULL, NULL)$$),
        -- empty and huge strings
        ($$SELECT eventsource.append_event('', 3, 'A', '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, '', '{}')$$),
        ($$SELECT eventsource.append_event(repeat('s', 10485760), 3, 'A', '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, repeat('T', 10485760), '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', jsonb_build_object('d', repeat('d', 10485760)))$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', jsonb_build_object('m', repeat('m', 10485760)))$$),
        -- metadata must be an object
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '[]')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '[{"tenant_id": "t"}]')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '"m"')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', 'null')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '42')$$),
        -- expected_version at the limits of bigint
        ($$SELECT eventsource.append_event('Hostile-1', -9223372036854775808, 'A', '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 9223372036854775807, 'A', '{}')$$),
        ($$SELECT eventsource.append_event('Hostile-1', -4, 'A', '{}')$$),
        -- event ids: a stored id (another stream, another version), not a uuid
        ($$SELECT eventsource.append_event('Hostile-2', NULL, 'A', '{}', '{}', 'a0000000-0000-4000-8000-000000000003')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '{}', 'a0000000-0000-4000-8000-000000000001')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '{}', 'not-a-uuid')$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '{}', '')$$),
        -- deep nesting past the stack depth check
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', (repeat('[', 100000) || repeat(']', 100000))::jsonb)$$),
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', (repeat('{"a": ', 100000) || '1' || repeat('}', 100000))::jsonb)$$),
        -- 10,000 levels of arrays where an object is expected
        ($$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', (repeat('[', 10000) || repeat(']', 10000))::jsonb)$$)
    ) v(c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- invalid UTF-8 and unicode escapes in JSON and text.  PostgreSQL's own input
-- functions refuse these before any function of ours runs: "\u0000" cannot
-- be stored in jsonb (22P05), a lone surrogate is not valid JSON (22P02),
-- bytes that are not UTF-8 are refused by the server encoding (22021), bad
-- U& escapes are a syntax error of the SQL string (42601).  The json type
-- keeps its text unchecked, so the error comes with the cast to jsonb.
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\u0000"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {"\u0000": 1}}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "\u0000", "data": {}}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\ud800"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\udc00"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\ud800\u0041"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\u00"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": "\x41"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}, "id": "\ud800"}]')$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, ('[{"type": "A", "data": "\ud83d"}]'::json)::jsonb)$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, ('[{"type": "A", "data": "\u0000"}]'::json)::jsonb)$$),
        ('append', $$SELECT eventsource.append('Hostile-1', 3, convert_from('\x5b7b2274797065223a2241222c2264617461223a22ff227d5d'::bytea, 'UTF8')::jsonb)$$),
        ('append', $$SELECT eventsource.append(convert_from('\x486f7374696c652dff'::bytea, 'UTF8'), 3, '[{"type": "A", "data": {}}]')$$),
        ('append', $$SELECT eventsource.append(E'Hostile-\xc3\x28', 3, '[{"type": "A", "data": {}}]')$$),
        ('append', $$SELECT eventsource.append(U&'Hostile-\0000', 3, '[{"type": "A", "data": {}}]')$$),
        ('append', $$SELECT eventsource.append(U&'Hostile-\D800', 3, '[{"type": "A", "data": {}}]')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', 3, 'A', '"\u0000"')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}', '{"correlation_id": "\ud800"}')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', 3, convert_from('\xff'::bytea, 'UTF8'), '{}')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', 3, E'\u0000', '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{"s": "\u0000"}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '"\udfff"')$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- reading: read_stream, read_all, head_position, stream_version, category,
-- stream_partition
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('read_stream', $$SELECT eventsource.read_stream(NULL)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', NULL, NULL)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', NULL, 10, NULL)$$),
        ('read_stream', $$SELECT eventsource.read_stream(NULL, NULL, NULL, NULL)$$),
        ('read_stream', $$SELECT eventsource.read_stream('')$$),
        ('read_stream', $$SELECT eventsource.read_stream(repeat('s', 10485760))$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', -1)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', -9223372036854775808)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', -1, 10, true)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, 0)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, -1)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, -2147483648)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, 2147483647)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, 2147483648)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 1, 2147483648::integer)$$),
        ('read_stream', $$SELECT eventsource.read_stream('Hostile-1', 9223372036854775808)$$),
        ('read_all', $$SELECT eventsource.read_all(NULL)$$),
        ('read_all', $$SELECT eventsource.read_all(0, NULL)$$),
        ('read_all', $$SELECT eventsource.read_all(NULL, NULL, NULL, NULL)$$),
        ('read_all', $$SELECT eventsource.read_all(-1)$$),
        ('read_all', $$SELECT eventsource.read_all(-9223372036854775808)$$),
        ('read_all', $$SELECT eventsource.read_all(0, 0)$$),
        ('read_all', $$SELECT eventsource.read_all(0, -2147483648)$$),
        ('read_all', $$SELECT eventsource.read_all(0, 2147483647)$$),
        ('read_all', $$SELECT eventsource.read_all(0, -2147483649)$$),
        ('read_all', $$SELECT eventsource.read_all(0, 10, ARRAY['Created', NULL])$$),
        ('read_all', $$SELECT eventsource.read_all(0, 10, '{{Created},{Changed}}')$$),
        ('read_all', $$SELECT eventsource.read_all(0, 10, NULL, ARRAY[NULL]::text[])$$),
        ('read_all', $$SELECT eventsource.read_all(0, 10, NULL, '{{Hostile}}')$$),
        ('read_all', $$SELECT eventsource.read_all(0, 10, '{"Created"}'::jsonb)$$),
        ('head_position', $$SELECT eventsource.head_position(0)$$),
        ('head_position', $$SELECT eventsource.head_position(NULL)$$),
        ('stream_version', $$SELECT eventsource.stream_version(NULL)$$),
        ('stream_version', $$SELECT eventsource.stream_version('')$$),
        ('stream_version', $$SELECT eventsource.stream_version(repeat('s', 10485760))$$),
        ('stream_version', $$SELECT eventsource.stream_version(1)$$),
        ('category', $$SELECT eventsource.category(NULL)$$),
        ('category', $$SELECT eventsource.category('')$$),
        ('category', $$SELECT eventsource.category(repeat('s', 10485760))$$),
        ('stream_partition', $$SELECT eventsource.stream_partition(NULL, 4)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', NULL)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('', 4)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition(repeat('s', 10485760), 4)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', 0)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', -1)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', 1025)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', 2147483647)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', -2147483648)$$),
        ('stream_partition', $$SELECT eventsource.stream_partition('Hostile-1', 2147483648)$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- snapshots: save_snapshot, load_snapshot, load
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('save_snapshot', $$SELECT eventsource.save_snapshot(NULL, 3, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', NULL, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, NULL)$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}', NULL)$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('', 3, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot(repeat('s', 10485760), 3, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 0, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', -1, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 4, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 9223372036854775807, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', -9223372036854775808, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-none', 1, '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}', 0)$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}', -2147483648)$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}', 2147483648)$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, (repeat('[', 100000) || repeat(']', 100000))::jsonb)$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot(NULL)$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot('Hostile-1', NULL)$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot('')$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot(repeat('s', 10485760))$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot('Hostile-1', 0)$$),
        ('load_snapshot', $$SELECT eventsource.load_snapshot('Hostile-1', -2147483648)$$),
        ('load', $$SELECT eventsource.load(NULL)$$),
        ('load', $$SELECT eventsource.load('Hostile-1', NULL)$$),
        ('load', $$SELECT eventsource.load('')$$),
        ('load', $$SELECT eventsource.load(repeat('s', 10485760))$$),
        ('load', $$SELECT eventsource.load('Hostile-1', 0)$$),
        ('load', $$SELECT eventsource.load('Hostile-1', -2147483648)$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- checkpoints: save_checkpoint, get_checkpoint, reset_checkpoint
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint(NULL, 3)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', NULL)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('', 3)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint(repeat('c', 256), 3)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint(repeat('c', 10485760), 3)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', -1)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', -9223372036854775808)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', 1)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', 0)$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', 9223372036854775808)$$),
        ('get_checkpoint', $$SELECT eventsource.get_checkpoint(NULL)$$),
        ('get_checkpoint', $$SELECT eventsource.get_checkpoint('')$$),
        ('get_checkpoint', $$SELECT eventsource.get_checkpoint(repeat('c', 10485760))$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint(NULL)$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('hostile_cp', NULL)$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('')$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint(repeat('c', 10485760))$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('hostile_cp', -1)$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('hostile_cp', -9223372036854775808)$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- create_subscription: NULLs, names, wrong handlers, duplicates, numbers at
-- the limits of integer and bigint, intervals far out of range
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT 'create_subscription', c, t.try(c) FROM (VALUES
        ($$SELECT eventsource.create_subscription(NULL, 'h.on_event(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', NULL)$$),
        ($$SELECT eventsource.create_subscription(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', start_from => NULL)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', batch_size => NULL)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', processing_timeout => NULL)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', partitions => NULL)$$),
        ($$SELECT eventsource.create_subscription('', 'h.on_event(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription(repeat('n', 10485760), 'h.on_event(eventsource.events)')$$),
        -- duplicate names
        ($$SELECT eventsource.create_subscription('hostile_sub', 'h.on_event(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription('hostile_sub', 'h.on_event(eventsource.events)', partitions => 2)$$),
        -- handlers with wrong signatures, and ones that do not exist
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.two_args(eventsource.events,integer)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.returns_int(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.no_args()')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.takes_jsonb(jsonb)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.takes_text_array(text[])')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.proc(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'eventsource.append(text,bigint,jsonb)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.missing(eventsource.events)')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 0)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)'::regproc)$$),
        -- numbers at the limits
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', batch_size => 2147483647)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', batch_size => -2147483648)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', max_retries => -2147483648)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', circuit_breaker_threshold => 2147483647)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', partitions => 2147483647)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', partitions => -2147483648)$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', partitions => 2147483648)$$),
        -- start_from: bigint limits, garbage, huge
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', start_from => '-9223372036854775808')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', start_from => '9223372036854775808')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', start_from => '{"position": 1}')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', start_from => repeat('9', 10485760))$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', checkpoint_strategy => repeat('x', 10485760))$$),
        -- intervals whose microseconds overflow 64 bits, either sign
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', checkpoint_interval => '178000000 years')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', processing_timeout => '-178000000 years')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', retry_backoff => '-300000 years')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', circuit_breaker_reset => '300000 years')$$),
        -- filters: arrays of the wrong shape
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', event_types => '{{A},{B}}')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', event_types => ARRAY[NULL]::text[])$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', categories => '{Hostile,NULL}')$$),
        ($$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)', categories => '{"Hostile"}'::jsonb)$$)
    ) v(c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- managing subscriptions: drop, pause, resume, reset, retry_dead_letters
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, format('SELECT eventsource.%s(%s)', fn, a),
           t.try(format('SELECT eventsource.%s(%s)', fn, a))
      FROM (VALUES ('drop_subscription'), ('pause_subscription'), ('resume_subscription'),
                   ('reset_subscription'), ('retry_dead_letters')) f(fn),
           (VALUES (1, $$NULL$$),
                   (2, $$''$$),
                   (3, $$repeat('n', 10485760)$$),
                   (4, $$'hostile_nope'$$),
                   (5, $$'HOSTILE_SUB'$$),
                   (6, $$'hostile_sub/0'$$),
                   (7, $$' hostile_sub'$$)) a(i, a)
     ORDER BY a.i, f.fn COLLATE "C"
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', NULL)$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', -1)$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', -9223372036854775808)$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', 9223372036854775808)$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_nope', 9223372036854775807)$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub', ARRAY[1, NULL])$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub', '{{1},{2}}')$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub', '{9223372036854775808}')$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_nope', '{-9223372036854775808,9223372036854775807}')$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub', '[1, 2]'::jsonb)$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- monitoring: health, readiness, liveness, error_stats, stat_reset,
-- wait_for_subscription and the functions behind the views
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('health', $$SELECT eventsource.health(1)$$),
        ('readiness', $$SELECT eventsource.readiness(NULL)$$),
        ('liveness', $$SELECT eventsource.liveness('hostile_sub')$$),
        ('error_stats', $$SELECT eventsource.error_stats('hostile_sub')$$),
        ('stat_reset', $$SELECT eventsource.stat_reset(true)$$),
        ('subscription_status_rows', $$SELECT * FROM eventsource.subscription_status_rows('hostile_sub')$$),
        ('subscription_status_rows_v2', $$SELECT * FROM eventsource.subscription_status_rows_v2('hostile_sub')$$),
        ('subscription_status_rows_v3', $$SELECT * FROM eventsource.subscription_status_rows_v3('hostile_sub')$$),
        ('store_stats_row', $$SELECT * FROM eventsource.store_stats_row(NULL)$$),
        ('tracing_stats', $$SELECT * FROM eventsource.tracing_stats(NULL)$$),
        ('tenant_stats_rows', $$SELECT * FROM eventsource.tenant_stats_rows(NULL)$$),
        ('tenant_stats_rows', $$SELECT * FROM eventsource.tenant_stats_rows('default')$$),
        ('horizon_blocker_rows', $$SELECT * FROM eventsource.horizon_blocker_rows(0)$$),
        ('events_guard', $$SELECT eventsource.events_guard()$$),
        ('protect_handlers', $$SELECT eventsource.protect_handlers()$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription(NULL, 0, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', NULL, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0, NULL)$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0)$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('', 0, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription(repeat('n', 10485760), 0, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_nope', 0, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', -1, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', -9223372036854775808, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 9223372036854775808, '0')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0, '-1 millisecond')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0, '-1 day 23 hours')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0, 'soon')$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- the views and tables: no writes through the views; the log refuses direct
-- writes, even from a superuser (this suite runs as one)
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('subscription_status', $$INSERT INTO eventsource.subscription_status (name) VALUES ('x')$$),
        ('subscription_status', $$UPDATE eventsource.subscription_status SET state = 'live'$$),
        ('subscription_status', $$DELETE FROM eventsource.subscription_status$$),
        ('subscription_status', $$SELECT no_such_column FROM eventsource.subscription_status$$),
        ('store_stats', $$UPDATE eventsource.store_stats SET appends = 0$$),
        ('store_stats', $$DELETE FROM eventsource.store_stats$$),
        ('tracing', $$UPDATE eventsource.tracing SET queued = 0$$),
        ('tracing', $$DELETE FROM eventsource.tracing$$),
        ('tenant_stats', $$UPDATE eventsource.tenant_stats SET appends = 0$$),
        ('tenant_stats', $$DELETE FROM eventsource.tenant_stats$$),
        ('tenant_stats', $$INSERT INTO eventsource.tenant_stats (tenant_id) VALUES ('x')$$),
        ('horizon_blockers', $$DELETE FROM eventsource.horizon_blockers$$),
        ('horizon_blockers', $$INSERT INTO eventsource.horizon_blockers (pid) VALUES (1)$$),
        ('streams', $$INSERT INTO eventsource.streams (stream_id) VALUES ('Hostile-3')$$),
        ('streams', $$UPDATE eventsource.streams SET version = 0$$),
        ('streams', $$DELETE FROM eventsource.streams$$),
        ('events', $$INSERT INTO eventsource.events VALUES (9223372036854775807, 'Hostile-1', 4, gen_random_uuid(), 'A', '{}', '{}', now())$$),
        ('events', $$INSERT INTO eventsource.events SELECT * FROM eventsource.events WHERE false ON CONFLICT DO NOTHING$$),
        ('events', $$UPDATE eventsource.events SET data = '{}' WHERE stream_id = 'Hostile-1'$$),
        ('events', $$DELETE FROM eventsource.events WHERE stream_id = 'Hostile-1'$$),
        ('events', $$TRUNCATE eventsource.events$$),
        ('events', $$TRUNCATE eventsource.events CASCADE$$),
        ('events', $$MERGE INTO eventsource.events e USING (VALUES ('Hostile-1')) s(id) ON e.stream_id = s.id WHEN MATCHED THEN DELETE$$),
        ('events', $$MERGE INTO eventsource.events e USING (VALUES ('Hostile-9')) s(id) ON e.stream_id = s.id WHEN NOT MATCHED THEN INSERT VALUES (9223372036854775807, s.id, 1, gen_random_uuid(), 'A', '{}', '{}', now())$$),
        ('events', $$COPY eventsource.events FROM '/dev/null'$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- delete_stream(stream_id, expected_version, hard), truncate_stream(stream_id,
-- before_version, expected_version) and the visible_events view
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('delete_stream', $$SELECT eventsource.delete_stream(NULL, NULL, NULL)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream(NULL, -1)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', NULL)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 3, NULL)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('', -1)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream(repeat('s', 10485760), -1)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 0)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', -3, true)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', -9223372036854775808)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 9223372036854775807, true)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 2)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-none', -1, true)$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', '2')$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 'three')$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream(NULL, NULL, NULL)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream(NULL, 2)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', NULL)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2, NULL)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('', 2)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream(repeat('s', 10485760), 2)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 0)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 1)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', -9223372036854775808)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 9223372036854775807)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 4)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2, 2)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2, 0)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2, -9223372036854775808)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-none', 2)$$),
        ('visible_events', $$INSERT INTO eventsource.visible_events VALUES (9223372036854775807, 'Hostile-1', 4, gen_random_uuid(), 'A', '{}', '{}', now())$$),
        ('visible_events', $$UPDATE eventsource.visible_events SET data = '{}' WHERE stream_id = 'Hostile-1'$$),
        ('visible_events', $$DELETE FROM eventsource.visible_events WHERE stream_id = 'Hostile-1'$$),
        ('visible_events', $$TRUNCATE eventsource.visible_events$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- erase_stream(stream_id, metadata_keys, expected_version) and
-- erase_by_metadata(key, value, metadata_keys, max_events): refused before
-- they touch anything (a call that finds nothing to erase changes nothing);
-- the retention rules (set_retention, set_category_retention and their clear
-- functions), the rules table and the cleanup's views
--
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('erase_stream', $$SELECT eventsource.erase_stream(NULL, NULL, NULL)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', '{a}', NULL)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('')$$),
        ('erase_stream', $$SELECT eventsource.erase_stream(repeat('s', 10485760))$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-none')$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', NULL, 2)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', NULL, 0)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', NULL, -9223372036854775808)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', NULL, 9223372036854775807)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', ARRAY[NULL::text])$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', '{""}')$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', '{{a},{b}}')$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', (SELECT array_agg(i::text) FROM generate_series(1, 10001) i))$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', '{a}'::text[], 'three')$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1', '[1, 2]'::jsonb)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata(NULL, NULL, NULL, NULL)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata(NULL, 'x')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', NULL)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('', 'x')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', '')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata(repeat('k', 10485760), 'x')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', ARRAY[NULL::text])$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', '{""}')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', '{{a},{b}}')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', NULL, NULL)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', NULL, 0)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', NULL, -2147483648)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', NULL, 2147483647)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x', NULL, 9223372036854775807)$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', repeat('v', 10485760))$$),
        ('set_retention', $$SELECT eventsource.set_retention(NULL, NULL, NULL)$$),
        ('set_retention', $$SELECT eventsource.set_retention(NULL, max_count => 1)$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1')$$),
        ('set_retention', $$SELECT eventsource.set_retention('', max_count => 1)$$),
        ('set_retention', $$SELECT eventsource.set_retention(repeat('s', 10485760), max_count => 1)$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', max_count => 0)$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', max_count => -9223372036854775808)$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', interval '0')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', interval '-178000000 years')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', interval '178000000 years 2147483647 months')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', interval '1 month -31 days')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', max_count => 'many')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', 'forever')$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention(NULL, NULL, NULL)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('Hostile')$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('', max_count => 1)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('Hostile-1', max_count => 1)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('-', max_count => 1)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention(repeat('c', 10485760), max_count => 1)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('Hostile', max_count => -1)$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('Hostile', interval '-1 microsecond')$$),
        ('clear_retention', $$SELECT eventsource.clear_retention(NULL)$$),
        ('clear_retention', $$SELECT eventsource.clear_retention('')$$),
        ('clear_retention', $$SELECT eventsource.clear_retention(repeat('s', 10485760))$$),
        ('clear_category_retention', $$SELECT eventsource.clear_category_retention(NULL)$$),
        ('clear_category_retention', $$SELECT eventsource.clear_category_retention('')$$),
        ('clear_category_retention', $$SELECT eventsource.clear_category_retention('Hostile-1')$$),
        ('cleanup_worker', $$SELECT eventsource.cleanup_worker(1)$$),
        ('cleanup_worker', $$SELECT * FROM eventsource.cleanup_worker() WHERE no_such_column$$),
        ('stream_retention', $$INSERT INTO eventsource.stream_retention (scope, name, max_count) VALUES ('stream', 'Hostile-1', 1)$$),
        ('stream_retention', $$UPDATE eventsource.stream_retention SET max_count = 1$$),
        ('stream_retention', $$DELETE FROM eventsource.stream_retention$$),
        ('stream_retention', $$TRUNCATE eventsource.stream_retention$$),
        ('retention', $$INSERT INTO eventsource.retention (scope, name, max_count) VALUES ('stream', 'Hostile-1', 1)$$),
        ('retention', $$UPDATE eventsource.retention SET max_count = 1$$),
        ('retention', $$DELETE FROM eventsource.retention$$),
        ('stream_cleanup', $$UPDATE eventsource.stream_cleanup SET cleaned_through = 0$$),
        ('stream_cleanup', $$DELETE FROM eventsource.stream_cleanup$$),
        ('stream_cleanup', $$UPDATE eventsource.stream_cleanup SET pending_versions = 0$$),
        ('cleanup_status', $$DELETE FROM eventsource.cleanup_status$$),
        ('cleanup_status', $$UPDATE eventsource.cleanup_status SET rows_removed = 0$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

--
-- tenants (issue 15): the tenant functions with bad arguments, direct writes
-- of the registry, and every function of the store called in a tenant that
-- does not exist, in a malformed one, and by a role bound to another
-- tenant (hostile_bound, bound to hostile_t: it may not name 'default')
--
CREATE ROLE hostile_bound;
GRANT USAGE ON SCHEMA t TO hostile_bound;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO hostile_bound;
SELECT eventsource.create_tenant('hostile_t') AS created;
SELECT eventsource.bind_role_to_tenant('hostile_bound', 'hostile_t') AS bound;
-- the store as it is now (the registry changed above, not in the battery)
DELETE FROM h.before;
INSERT INTO h.before SELECT * FROM h.store;
WITH r AS (
    INSERT INTO calls (fn, call, result)
    SELECT fn, c, t.try(c) FROM (VALUES
        ('create_tenant', $$SELECT eventsource.create_tenant(NULL)$$),
        ('create_tenant', $$SELECT eventsource.create_tenant('')$$),
        ('create_tenant', $$SELECT eventsource.create_tenant(repeat('t', 64))$$),
        ('create_tenant', $$SELECT eventsource.create_tenant(repeat('t', 10485760))$$),
        ('create_tenant', $$SELECT eventsource.create_tenant('a b')$$),
        ('create_tenant', $$SELECT eventsource.create_tenant('x''; DROP TABLE eventsource.events; --')$$),
        ('create_tenant', $$SELECT eventsource.create_tenant(E'caf\u00e9')$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant(NULL, 'hostile_t')$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant('hostile_bound', NULL)$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant('hostile_bound', 'nope')$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant('hostile_bound', '')$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant('no_such_role', 'hostile_t')$$),
        ('bind_role_to_tenant', $$SELECT eventsource.bind_role_to_tenant(4000000000::oid::regrole, 'hostile_t')$$),
        ('unbind_role_from_tenant', $$SELECT eventsource.unbind_role_from_tenant(NULL, 'hostile_t')$$),
        ('unbind_role_from_tenant', $$SELECT eventsource.unbind_role_from_tenant('hostile_bound', NULL)$$),
        ('unbind_role_from_tenant', $$SELECT eventsource.unbind_role_from_tenant('hostile_bound', '%')$$),
        ('current_tenant', $$SELECT eventsource.current_tenant(1)$$),
        ('current_tenant', $$SELECT set_config('eventsource.tenant', 'nope', true), eventsource.current_tenant()$$),
        ('current_tenant', $$SET eventsource.tenant = 'a/b'$$),
        ('current_tenant', $$SET eventsource.tenant = 'x''y'$$),
        ('current_tenant', $$SELECT set_config('eventsource.tenant', repeat('t', 64), true)$$),
        ('caller_bound_to_tenants', $$SELECT eventsource.caller_bound_to_tenants('hostile_bound')$$),
        ('tenants', $$INSERT INTO eventsource.tenants (tenant_id) VALUES ('sneaky')$$),
        ('tenants', $$UPDATE eventsource.tenants SET tenant_id = 'sneaky' WHERE tenant_id = 'hostile_t'$$),
        ('tenants', $$DELETE FROM eventsource.tenants WHERE tenant_id = 'hostile_t'$$),
        ('tenants', $$TRUNCATE eventsource.tenants CASCADE$$),
        ('tenant_roles', $$INSERT INTO eventsource.tenant_roles (role, tenant_id) VALUES ('hostile_bound', 'default')$$),
        ('tenant_roles', $$UPDATE eventsource.tenant_roles SET tenant_id = 'default'$$),
        ('tenant_roles', $$DELETE FROM eventsource.tenant_roles$$),
        ('tenant_roles', $$TRUNCATE eventsource.tenant_roles$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;

-- every store function and tenant-scoped view in an unknown tenant (ES005),
-- and as the bound role naming the default tenant (42501): refused before
-- it touches anything.  (The superuser reads the tables past row-level
-- security; the bound role goes through it, with SELECT granted.)
GRANT SELECT ON eventsource.events, eventsource.snapshots, eventsource.checkpoints,
    eventsource.streams, eventsource.tenants, eventsource.tenant_roles,
    eventsource.stream_lifecycle, eventsource.stream_retention, eventsource.retention,
    eventsource.stream_cleanup, eventsource.cleanup_status TO hostile_bound;
WITH f(fn, c, direct) AS (VALUES
        ('append', $$eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}}]')$$, false),
        ('append_event', $$eventsource.append_event('Hostile-1', 3, 'A', '{}')$$, false),
        ('read_stream', $$eventsource.read_stream('Hostile-1')$$, false),
        ('read_all', $$eventsource.read_all(0, 10)$$, false),
        ('stream_version', $$eventsource.stream_version('Hostile-1')$$, false),
        ('load', $$eventsource.load('Hostile-1')$$, false),
        ('load_snapshot', $$eventsource.load_snapshot('Hostile-1')$$, false),
        ('save_snapshot', $$eventsource.save_snapshot('Hostile-1', 2, '{}')$$, false),
        ('get_checkpoint', $$eventsource.get_checkpoint('hostile_cp')$$, false),
        ('save_checkpoint', $$eventsource.save_checkpoint('hostile_cp', 3)$$, false),
        ('reset_checkpoint', $$eventsource.reset_checkpoint('hostile_cp')$$, false),
        ('delete_stream', $$eventsource.delete_stream('Hostile-1', 3)$$, false),
        ('truncate_stream', $$eventsource.truncate_stream('Hostile-1', 2)$$, false),
        ('erase_stream', $$eventsource.erase_stream('Hostile-1')$$, false),
        ('erase_by_metadata', $$eventsource.erase_by_metadata('k', 'x')$$, false),
        ('set_retention', $$eventsource.set_retention('Hostile-1', max_count => 1)$$, false),
        ('set_category_retention', $$eventsource.set_category_retention('Hostile', max_count => 1)$$, false),
        ('clear_retention', $$eventsource.clear_retention('Hostile-1')$$, false),
        ('clear_category_retention', $$eventsource.clear_category_retention('Hostile')$$, false),
        ('streams', $$count(*) FROM eventsource.streams$$, false),
        ('retention', $$count(*) FROM eventsource.retention$$, false),
        ('stream_cleanup', $$count(*) FROM eventsource.stream_cleanup$$, false),
        ('cleanup_status', $$streams_pending FROM eventsource.cleanup_status$$, false),
        ('events', $$count(*) FROM eventsource.events$$, true),
        ('snapshots', $$count(*) FROM eventsource.snapshots$$, true),
        ('checkpoints', $$count(*) FROM eventsource.checkpoints$$, true),
        ('tenants', $$count(*) FROM eventsource.tenants$$, true),
        ('tenant_roles', $$count(*) FROM eventsource.tenant_roles$$, true),
        ('stream_lifecycle', $$count(*) FROM eventsource.stream_lifecycle$$, true),
        ('stream_retention', $$count(*) FROM eventsource.stream_retention$$, true)),
r AS (
    INSERT INTO calls (fn, ctx, call, result)
    SELECT fn, 'unknown tenant', c, t.try(c) FROM
        (SELECT fn, $$SET LOCAL eventsource.tenant = 'nope'; SELECT $$ || c FROM f
          WHERE NOT direct) v(fn, c)
    UNION ALL
    SELECT fn, 'bound role', c, t.try(c) FROM
        (SELECT fn, $$SET LOCAL ROLE hostile_bound; SET LOCAL eventsource.tenant = 'default'; SELECT $$ || c
           FROM f) v(fn, c)
    RETURNING id, fn, ctx, call, result)
SELECT fn, ctx, result FROM r ORDER BY id;
SELECT current_user = session_user AS role_restored;
-- the overloads that name the tenant in the call: an unknown tenant
-- (ES005), a malformed one (22023: injection, too long, empty, not ASCII),
-- and the bound role naming the default tenant, with its own tenant set
-- (42501): refused before they touch anything
WITH f(fn, c) AS (VALUES
        ('append', $$eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}}]', %L)$$),
        ('append_event', $$eventsource.append_event('Hostile-1', 3, 'A', '{}', '{}', NULL, %L)$$),
        ('read_stream', $$eventsource.read_stream('Hostile-1', NULL, 10, false, %L)$$),
        ('read_all', $$eventsource.read_all(0, 10, NULL, NULL, %L)$$),
        ('stream_version', $$eventsource.stream_version('Hostile-1', %L)$$),
        ('load', $$eventsource.load('Hostile-1', 1, %L)$$),
        ('load_snapshot', $$eventsource.load_snapshot('Hostile-1', 1, %L)$$),
        ('save_snapshot', $$eventsource.save_snapshot('Hostile-1', 2, '{}', 1, %L)$$),
        ('get_checkpoint', $$eventsource.get_checkpoint('hostile_cp', %L)$$),
        ('save_checkpoint', $$eventsource.save_checkpoint('hostile_cp', 3, %L)$$),
        ('reset_checkpoint', $$eventsource.reset_checkpoint('hostile_cp', 0, %L)$$)),
a(ctx, prefix, tenant) AS (VALUES
        ('unknown tenant', '', 'nope'),
        ('injection', '', 'x''; DROP TABLE eventsource.events; --'),
        ('too long', '', repeat('t', 64)),
        ('10 MB', '', repeat('t', 10485760)),
        ('empty', '', ''),
        ('not ASCII', '', E'caf\u00e9'),
        ('bound role', 'SET LOCAL ROLE hostile_bound; SET LOCAL eventsource.tenant = ''hostile_t''; ', 'default')),
r AS (
    INSERT INTO calls (fn, ctx, call, result)
    SELECT fn, ctx, c, t.try(c) FROM
        (SELECT fn, ctx, a.prefix || 'SELECT ' || format(f.c, a.tenant) FROM f, a) v(fn, ctx, c)
    RETURNING id, fn, ctx, call, result)
SELECT fn, ctx, result FROM r ORDER BY id;
SELECT current_user = session_user AS role_restored;
-- in its own tenant the bound role reaches none of the default tenant's
-- Hostile-1 (the same stream id) through the lifecycle functions: the
-- stream does not exist there, nothing matches, no rule is the default's
-- (the comparison of the store after the battery shows nothing changed;
-- not in calls: the two that find nothing are answered, not refused)
SELECT fn, t.try($$SET LOCAL ROLE hostile_bound; SELECT $$ || c || $$; RESET ROLE$$) AS result
  FROM (VALUES
        ('delete_stream', $$eventsource.delete_stream('Hostile-1', -1, hard => true)$$),
        ('truncate_stream', $$eventsource.truncate_stream('Hostile-1', 2)$$),
        ('erase_stream', $$eventsource.erase_stream('Hostile-1')$$),
        ('erase_by_metadata', $$(eventsource.erase_by_metadata('tenant_id', 't')).events_erased$$),
        ('clear_retention', $$eventsource.clear_retention('Hostile-1')$$)
    ) v(fn, c);
SELECT current_user = session_user AS role_restored;

-- subscriptions across tenants (issue 15, part 3): the bound role, with
-- EXECUTE on every subscription function and SELECT on the status and the
-- subscription tables, tries to reach the default tenant's subscription
-- (hostile_sub) and to make one that sees other tenants; it sees none of
-- them anywhere
GRANT EXECUTE ON FUNCTION
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
    eventsource.drop_subscription(text), eventsource.pause_subscription(text),
    eventsource.resume_subscription(text), eventsource.reset_subscription(text, bigint),
    eventsource.retry_dead_letters(text, bigint[]),
    eventsource.wait_for_subscription(text, bigint, interval),
    eventsource.subscription_status_rows(), eventsource.health(), eventsource.error_stats()
    TO hostile_bound;
GRANT SELECT ON eventsource.subscription_status, eventsource.subscriptions,
    eventsource.subscription_partitions, eventsource.dead_letters, eventsource.recent_errors
    TO hostile_bound;
GRANT USAGE ON SCHEMA h TO hostile_bound;
GRANT EXECUTE ON FUNCTION h.on_event(eventsource.events) TO hostile_bound;
WITH r AS (
    INSERT INTO calls (fn, ctx, call, result)
    SELECT fn, 'bound role', c, t.try($$SET LOCAL ROLE hostile_bound; $$ || c) FROM (VALUES
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_x', 'h.on_event(eventsource.events)', tenant => NULL)$$),
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_x', 'h.on_event(eventsource.events)', tenant => 'default')$$),
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_x', 'h.on_event(eventsource.events)', tenant => 'nope')$$),
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_x', 'h.on_event(eventsource.events)', tenant => '')$$),
        ('create_subscription', $$SET LOCAL eventsource.tenant = 'default'; SELECT eventsource.create_subscription('hostile_x', 'h.on_event(eventsource.events)')$$),
        ('wait_for_subscription', $$SELECT eventsource.wait_for_subscription('hostile_sub', 0, '0')$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub')$$),
        ('drop_subscription', $$SELECT eventsource.drop_subscription('hostile_sub')$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', 0)$$),
        ('subscriptions', $$UPDATE eventsource.subscriptions SET tenant = 'hostile_t'$$),
        ('subscription_partitions', $$UPDATE eventsource.subscription_partitions SET position = 0$$),
        ('dead_letters', $$DELETE FROM eventsource.dead_letters$$)
    ) v(fn, c)
    RETURNING id, fn, ctx, call, result)
SELECT fn, ctx, result FROM r ORDER BY id;
BEGIN;
SET LOCAL ROLE hostile_bound;
SELECT (SELECT count(*) FROM eventsource.subscription_status) AS status_rows,
       eventsource.health()->'subscriptions' AS health_subscriptions,
       eventsource.error_stats()->'by_subscription' AS error_stats_subscriptions,
       (SELECT count(*) FROM eventsource.subscriptions) AS subscriptions,
       (SELECT count(*) FROM eventsource.subscription_partitions) AS partitions,
       (SELECT count(*) FROM eventsource.dead_letters) AS dead_letters,
       (SELECT count(*) FROM eventsource.recent_errors) AS recent_errors;
ROLLBACK;
REVOKE SELECT ON eventsource.subscription_status, eventsource.subscriptions,
    eventsource.subscription_partitions, eventsource.dead_letters, eventsource.recent_errors
    FROM hostile_bound;

--
-- values at the edges that are answered, not refused: max-int positions and
-- versions, unknown streams and names, the largest partition count
--
SELECT (SELECT count(*) FROM eventsource.read_stream('Hostile-1', 9223372036854775807)) AS forward_from_max,
       (SELECT string_agg(stream_version::text, ',')
          FROM eventsource.read_stream('Hostile-1', 9223372036854775807, 100000, true)) AS backwards_from_max,
       (SELECT count(*) FROM eventsource.read_stream('Hostile-1', 0)) AS from_version_0,
       (SELECT count(*) FROM eventsource.read_all(9223372036854775807, 100000)) AS read_all_after_max,
       (SELECT count(*) FROM eventsource.read_all(0, 10, '{}', '{}')) AS empty_filters,
       (SELECT count(*) FROM eventsource.read_all(0, 10, ARRAY[repeat('T', 10485760)])) AS huge_type_filter;
SELECT eventsource.stream_version('Hostile-none') AS unknown_stream_version,
       eventsource.load('Hostile-none') AS load_unknown_stream,
       (SELECT count(*) FROM eventsource.load_snapshot('Hostile-1', 2147483647)) AS snapshots_of_max_schema,
       eventsource.get_checkpoint('hostile_nope') IS NULL AS unknown_checkpoint_is_null,
       eventsource.stream_partition('Hostile-1', 1024) BETWEEN 0 AND 1023 AS partition_in_range,
       eventsource.category(repeat('C', 1000)) = repeat('C', 1000) AS category_of_1000_bytes,
       eventsource.wait_for_subscription('hostile_sub', 9223372036854775807, '0') AS wait_for_max_position;

--
-- a read-only transaction (SET TRANSACTION READ ONLY): every function that
-- writes refuses with 25006, even with arguments that would be valid
--
BEGIN;
SET TRANSACTION READ ONLY;
WITH r AS (
    INSERT INTO calls (fn, ctx, call, result)
    SELECT fn, 'read only', c, t.try(c) FROM (VALUES
        ('append', $$SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}}]')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}')$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 3)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x')$$),
        ('set_retention', $$SELECT eventsource.set_retention('Hostile-1', max_count => 1)$$),
        ('clear_category_retention', $$SELECT eventsource.clear_category_retention('Hostile')$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', 3)$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('hostile_cp')$$),
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)')$$),
        ('drop_subscription', $$SELECT eventsource.drop_subscription('hostile_sub')$$),
        ('pause_subscription', $$SELECT eventsource.pause_subscription('hostile_sub')$$),
        ('resume_subscription', $$SELECT eventsource.resume_subscription('hostile_sub')$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub', 1)$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub')$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;
-- reading works there (not counted as bad calls)
SELECT c AS call, t.try(c) AS result FROM (VALUES
    ($$SELECT eventsource.read_stream('Hostile-1')$$),
    ($$SELECT eventsource.read_all(0, 10)$$),
    ($$SELECT eventsource.load('Hostile-1')$$),
    ($$SELECT eventsource.load_snapshot('Hostile-1')$$),
    ($$SELECT eventsource.head_position()$$),
    ($$SELECT eventsource.stream_version('Hostile-1')$$),
    ($$SELECT eventsource.get_checkpoint('hostile_cp')$$),
    ($$SELECT eventsource.health()$$),
    ($$SELECT eventsource.readiness()$$),
    ($$SELECT eventsource.liveness()$$),
    ($$SELECT eventsource.error_stats()$$),
    ($$SELECT eventsource.wait_for_subscription('hostile_sub', 0, '0')$$),
    ($$SELECT * FROM eventsource.subscription_status$$),
    ($$SELECT * FROM eventsource.store_stats$$),
    ($$SELECT * FROM eventsource.tracing$$),
    ($$SELECT * FROM eventsource.horizon_blockers$$),
    ($$SELECT * FROM eventsource.streams$$)
) v(c);
COMMIT;

-- default_transaction_read_only: the same
SET default_transaction_read_only = on;
WITH r AS (
    INSERT INTO calls (fn, ctx, call, result)
    SELECT fn, 'default_transaction_read_only', c, t.try(c) FROM (VALUES
        ('append', $$SELECT eventsource.append('Hostile-1', NULL, '[{"type": "A", "data": {}}]')$$),
        ('append_event', $$SELECT eventsource.append_event('Hostile-1', NULL, 'A', '{}')$$),
        ('save_snapshot', $$SELECT eventsource.save_snapshot('Hostile-1', 3, '{}')$$),
        ('delete_stream', $$SELECT eventsource.delete_stream('Hostile-1', 3)$$),
        ('truncate_stream', $$SELECT eventsource.truncate_stream('Hostile-1', 2)$$),
        ('erase_stream', $$SELECT eventsource.erase_stream('Hostile-1')$$),
        ('erase_by_metadata', $$SELECT eventsource.erase_by_metadata('k', 'x')$$),
        ('set_category_retention', $$SELECT eventsource.set_category_retention('Hostile', interval '1 day')$$),
        ('clear_retention', $$SELECT eventsource.clear_retention('Hostile-1')$$),
        ('save_checkpoint', $$SELECT eventsource.save_checkpoint('hostile_cp', 3)$$),
        ('reset_checkpoint', $$SELECT eventsource.reset_checkpoint('hostile_cp', 1)$$),
        ('create_subscription', $$SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)')$$),
        ('drop_subscription', $$SELECT eventsource.drop_subscription('hostile_sub')$$),
        ('resume_subscription', $$SELECT eventsource.resume_subscription('hostile_sub')$$),
        ('reset_subscription', $$SELECT eventsource.reset_subscription('hostile_sub')$$),
        ('retry_dead_letters', $$SELECT eventsource.retry_dead_letters('hostile_sub', '{1}')$$)
    ) v(fn, c)
    RETURNING id, fn, call, result)
SELECT fn, call, result FROM r ORDER BY id;
RESET default_transaction_read_only;

\pset format aligned
\pset fieldsep '|'

--
-- an aborted transaction: after the first error every call is refused with
-- 25P02 by PostgreSQL until ROLLBACK (psql shows the SQLSTATE only)
--
\set VERBOSITY sqlstate
BEGIN;
SELECT eventsource.append('Hostile-1', 0, '[{"type": "A", "data": {}}]');
SELECT eventsource.append('Hostile-1', 3, '[{"type": "A", "data": {}}]');
SELECT eventsource.append_event('Hostile-1', 3, 'A', '{}');
SELECT count(*) FROM eventsource.read_stream('Hostile-1');
SELECT count(*) FROM eventsource.read_all();
SELECT eventsource.head_position();
SELECT eventsource.stream_version('Hostile-1');
SELECT eventsource.load('Hostile-1');
SELECT eventsource.save_snapshot('Hostile-1', 3, '{}');
SELECT eventsource.save_checkpoint('hostile_cp', 3);
SELECT eventsource.get_checkpoint('hostile_cp');
SELECT eventsource.create_subscription('hostile_new', 'h.on_event(eventsource.events)');
SELECT eventsource.resume_subscription('hostile_sub');
SELECT eventsource.health();
SELECT eventsource.wait_for_subscription('hostile_sub', 0, '0');
SELECT count(*) FROM eventsource.subscription_status;
ROLLBACK;
-- and the same after a bad call inside a savepoint, until ROLLBACK TO
BEGIN;
SAVEPOINT s;
SELECT eventsource.save_checkpoint('hostile_cp', 1);
SELECT eventsource.get_checkpoint('hostile_cp');
ROLLBACK TO SAVEPOINT s;
SELECT eventsource.get_checkpoint('hostile_cp') AS after_rollback_to;
COMMIT;
\set VERBOSITY default

--
-- savepoints: writes made in a savepoint and a bad call after them; ROLLBACK
-- TO leaves the store as it was, and the transaction goes on
--
BEGIN;
SAVEPOINT s1;
SELECT eventsource.save_checkpoint('hostile_cp', 5);
SELECT eventsource.reset_checkpoint('hostile_sp', 9);
SELECT eventsource.save_snapshot('Hostile-1', 3, '{"n": 3}');
SELECT eventsource.save_snapshot('Hostile-1', 1, (repeat('[', 10000) || repeat(']', 10000))::jsonb, 2);
SELECT eventsource.create_subscription('hostile_sp', 'h.on_event(eventsource.events)', partitions => 2);
SELECT eventsource.reset_subscription('hostile_sub', 1);
SELECT eventsource.resume_subscription('hostile_sub');
SELECT name, state FROM eventsource.subscriptions WHERE name LIKE 'hostile%' ORDER BY name;
SELECT t.try($$SELECT eventsource.save_checkpoint('hostile_cp', 4)$$);
ROLLBACK TO SAVEPOINT s1;
SELECT (SELECT row(b.*)::text FROM h.before b) = (SELECT row(s.*)::text FROM h.store s)
       AS unchanged_after_rollback_to;
-- nested: the inner savepoint's failure does not undo the outer one's work
SAVEPOINT s2;
SELECT eventsource.save_checkpoint('hostile_cp', 6);
SAVEPOINT s3;
SELECT eventsource.save_checkpoint('hostile_cp', 7);
SELECT t.try($$SELECT eventsource.reset_checkpoint('hostile_cp', -7)$$);
ROLLBACK TO SAVEPOINT s3;
SELECT eventsource.get_checkpoint('hostile_cp') AS outer_savepoint_kept;
ROLLBACK TO SAVEPOINT s2;
SELECT eventsource.get_checkpoint('hostile_cp') AS back_to_fixture;
COMMIT;

--
-- the battery: how many calls, per function and per SQLSTATE
--
SELECT count(*) AS bad_calls,
       count(DISTINCT fn) AS functions_and_views,
       count(*) FILTER (WHERE result IS NULL OR result = 'ok') AS accepted,
       count(*) FILTER (WHERE result LIKE 'XX%') AS internal_errors,
       count(*) FILTER (WHERE result !~ '^[0-9A-Z]{5}: ') AS unclassified
  FROM calls;
SELECT left(result, 5) AS sqlstate, count(*) AS calls,
       string_agg(DISTINCT fn, ', ' ORDER BY fn) AS functions
  FROM calls GROUP BY 1 ORDER BY 1;
SELECT fn, count(*) AS calls FROM calls GROUP BY fn ORDER BY fn;
-- every function and view of the extension was called (no rows)
SELECT p.proname AS not_called
  FROM pg_proc p
 WHERE p.pronamespace = 'eventsource'::regnamespace
   AND p.proname NOT IN (SELECT fn FROM calls)
UNION ALL
SELECT c.relname
  FROM pg_class c
 WHERE c.relnamespace = 'eventsource'::regnamespace AND c.relkind = 'v'
   AND c.relname NOT IN (SELECT fn FROM calls);

--
-- the store is exactly as it was before the battery: events, positions
-- taken, the head, stream versions, checkpoints, snapshots, subscriptions,
-- dead letters
--
\x on
SELECT b.events = s.events AS events,
       b.events_md5 = s.events_md5 AS events_content,
       b.last_position_taken = s.last_position_taken AS positions_taken,
       b.head_position = s.head_position AS head_position,
       b.stream_versions = s.stream_versions AS stream_versions,
       b.checkpoints = s.checkpoints AS checkpoints,
       b.checkpoint_positions = s.checkpoint_positions AS checkpoint_positions,
       b.snapshots = s.snapshots AS snapshots,
       b.snapshots_md5 = s.snapshots_md5 AS snapshots_content,
       b.subscriptions = s.subscriptions AS subscriptions,
       b.subscriptions_md5 = s.subscriptions_md5 AS subscriptions_content,
       b.subscription_partitions = s.subscription_partitions AS subscription_partitions,
       b.dead_letters = s.dead_letters AS dead_letters,
       b.dead_letters_marked = s.dead_letters_marked AS dead_letters_marked,
       row(b.*)::text = row(s.*)::text AS unchanged
  FROM h.before b, h.store s;
\x off
SELECT eventsource.stream_version('Hostile-1') AS hostile_1, eventsource.stream_version('Hostile-2') AS hostile_2,
       eventsource.get_checkpoint('hostile_cp') AS hostile_cp,
       (SELECT stream_version FROM eventsource.load_snapshot('Hostile-1')) AS snapshot_version,
       (SELECT state FROM eventsource.subscriptions WHERE name = 'hostile_sub') AS hostile_sub;

--
-- appends rolled back (to a savepoint, or with the transaction) leave the
-- log as it was; the positions they took are a gap the head passes over.
-- A 10,000-level nested event is stored and read back in the savepoint.
--
SELECT eventsource.head_position() AS head_before \gset
BEGIN;
SAVEPOINT a;
SELECT stream_version FROM eventsource.append('Hostile-1', 3,
    format('[{"type": "Deep", "data": %s}]', repeat('[', 10000) || repeat(']', 10000))::jsonb);
SELECT (eventsource.load('Hostile-1')->>'version')::integer AS loaded_version,
       jsonb_array_length(eventsource.load('Hostile-1')->'events') AS events_after_snapshot,
       length(eventsource.load('Hostile-1')->'events'->-1->>'data') AS loaded_data_chars,
       (SELECT length(data::text) FROM eventsource.read_stream('Hostile-1', 4)) AS read_back_chars;
ROLLBACK TO SAVEPOINT a;
SELECT eventsource.stream_version('Hostile-1') AS after_rollback_to;
COMMIT;
BEGIN;
SELECT stream_version FROM eventsource.append_event('Hostile-2', 1, 'A', '{}');
ROLLBACK;
SELECT b.events = s.events AS events,
       b.events_md5 = s.events_md5 AS events_content,
       b.stream_versions = s.stream_versions AS stream_versions,
       s.last_position_taken - b.last_position_taken AS positions_taken,
       s.head_position - :head_before AS head_moved_over_the_gap,
       (SELECT count(*) FROM eventsource.read_all(:head_before)) AS events_after_old_head
  FROM h.before b, h.store s;

--
-- clean up: the subscription goes, and every worker slot is free again (no
-- failed creation above left a pending slot behind)
--
SELECT eventsource.drop_subscription('hostile_sub');
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('hostile_all', 'h.on_event(eventsource.events)',
                                                     partitions => current_setting('eventsource.max_workers')::integer)$$);
ROLLBACK;
DELETE FROM eventsource.checkpoints WHERE name LIKE 'hostile%';
DELETE FROM eventsource.snapshots WHERE stream_id LIKE 'Hostile-%';
SELECT count(*) AS subscriptions_left FROM eventsource.subscriptions WHERE name LIKE 'hostile%';
DROP SCHEMA h CASCADE;
SELECT eventsource.unbind_role_from_tenant('hostile_bound', 'hostile_t') AS unbound;
DROP OWNED BY hostile_bound;
DROP ROLE hostile_bound;
