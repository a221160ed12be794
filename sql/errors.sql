--
-- errors: every bad input gets a clear error with its SQLSTATE and leaves the
-- store as it was.
--
SET client_min_messages = warning;

SELECT count(*) AS events_before, eventsource.head_position() AS head_before
  FROM eventsource.events \gset

-- stream ids: NULL 22004, empty 22023, over 1000 bytes 54000
SELECT t.try($$SELECT eventsource.append(NULL, 0, '[{"type": "A", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('', 0, '[{"type": "A", "data": {}}]')$$);
SELECT t.try(format($$SELECT eventsource.append(%L, 0, '[{"type": "A", "data": {}}]')$$, repeat('x', 1001)));
SELECT t.try(format($$SELECT eventsource.append(%L, -1, '[{"type": "A", "data": {}}]')$$, repeat('é', 501)));
SELECT t.try($$SELECT eventsource.append_event(NULL, 0, 'A', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('', 0, 'A', '{}')$$);
SELECT t.try($$SELECT eventsource.read_stream(NULL)$$);
SELECT t.try($$SELECT eventsource.read_stream('')$$);
SELECT t.try($$SELECT eventsource.stream_version(NULL)$$);
SELECT t.try($$SELECT eventsource.stream_version('')$$);
SELECT t.try($$SELECT eventsource.save_snapshot(NULL, 1, '{}')$$);
SELECT t.try($$SELECT eventsource.save_snapshot('', 1, '{}')$$);
SELECT t.try($$SELECT eventsource.load_snapshot(NULL)$$);
SELECT t.try($$SELECT eventsource.load_snapshot('')$$);
SELECT t.try($$SELECT eventsource.load(NULL)$$);
SELECT t.try($$SELECT eventsource.load('')$$);
SELECT t.try($$SELECT eventsource.category(NULL)$$);
SELECT t.try($$SELECT eventsource.category('')$$);
SELECT t.try($$SELECT eventsource.stream_partition(NULL, 4)$$);
SELECT t.try(format($$SELECT eventsource.read_stream(%L)$$, repeat('x', 1001)));

-- the events argument
SELECT t.try($$SELECT eventsource.append('E-1', 0, NULL)$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '{"type": "A", "data": {}}')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '"A"')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '42')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, 'null')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[1]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[[]]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[null]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": null, "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": 7, "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": ["A"], "data": {}}]')$$);
SELECT t.try(format($$SELECT eventsource.append('E-1', 0, '[{"type": "%s", "data": {}}]')$$, repeat('T', 256)));
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A"}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "metadata": []}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "metadata": "m"}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "metadata": 1}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "id": "not-a-uuid"}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "id": 12}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "id": ""}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}, "metdata": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}}, {"type": "B"}]')$$);
-- the error names the event
\set SHOW_CONTEXT always
SELECT eventsource.append('E-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}, "id": "zz"}]');
\set SHOW_CONTEXT errors
-- over the limits: 10,000 events per call, 1 MB per event
SELECT t.try(format('SELECT eventsource.append(%L, 0, %L)', 'E-1',
    (SELECT jsonb_agg(jsonb_build_object('type', 'A', 'data', i)) FROM generate_series(1, 10001) i)));
SELECT t.try(format('SELECT eventsource.append_event(%L, 0, %L, %L)', 'E-1', 'A',
    jsonb_build_object('blob', repeat('x', 1024 * 1024))));
SELECT t.try(format('SELECT eventsource.append_event(%L, 0, %L, %L, %L)', 'E-1', 'A', '{}',
    jsonb_build_object('blob', repeat('x', 1024 * 1024))));

-- append_event's other arguments
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, NULL, '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, '', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, 'A', NULL)$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, 'A', '{}', '[]')$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, 'A', '{}', '"x"')$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', 0, 'A', '{}', '{}', 'nope')$$);
SELECT t.try($$SELECT eventsource.append_event('E-1', -3, 'A', '{}')$$);
SELECT t.try($$SELECT eventsource.append('E-1', -100, '[{"type": "A", "data": {}}]')$$);

-- read_stream
SELECT t.try($$SELECT eventsource.read_stream('E-1', -1)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', NULL, 0)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', NULL, -5)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', NULL, NULL)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', NULL, 100001)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', NULL, 10, NULL)$$);
SELECT t.try($$SELECT eventsource.read_stream('E-1', 9223372036854775807, 100000, true)$$);

-- read_all
SELECT t.try($$SELECT eventsource.read_all(-1)$$);
SELECT t.try($$SELECT eventsource.read_all(NULL)$$);
SELECT t.try($$SELECT eventsource.read_all(0, 0)$$);
SELECT t.try($$SELECT eventsource.read_all(0, NULL)$$);
SELECT t.try($$SELECT eventsource.read_all(0, 2147483647)$$);
SELECT t.try($$SELECT eventsource.read_all(0, 10, ARRAY['A', NULL])$$);
SELECT t.try($$SELECT eventsource.read_all(0, 10, NULL, ARRAY[NULL::text])$$);
SELECT t.try($$SELECT eventsource.read_all(0, 10, ARRAY[['A'], ['B']])$$);
SELECT t.try($$SELECT eventsource.read_all(9223372036854775807, 100000)$$);

-- snapshots
SELECT t.try($$SELECT eventsource.save_snapshot('Order-1', NULL, '{}')$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Order-1', 1, NULL)$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Order-1', 1, '{}', NULL)$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Order-1', 1, '{}', 0)$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Order-1', 9223372036854775807, '{}')$$);
SELECT t.try($$SELECT eventsource.load_snapshot('Order-1', NULL)$$);
SELECT t.try($$SELECT eventsource.load_snapshot('Order-1', -1)$$);
SELECT t.try($$SELECT eventsource.load('Order-1', 0)$$);
SELECT t.try($$SELECT eventsource.load('Order-1', NULL)$$);

-- stream_partition
SELECT t.try($$SELECT eventsource.stream_partition('Order-1', 0)$$);
SELECT t.try($$SELECT eventsource.stream_partition('Order-1', -1)$$);
SELECT t.try($$SELECT eventsource.stream_partition('Order-1', 1025)$$);
SELECT t.try($$SELECT eventsource.stream_partition('Order-1', NULL)$$);

-- calls inside an aborted transaction are refused by PostgreSQL itself
BEGIN;
SELECT 1 / 0;
SELECT eventsource.append_event('E-1', 0, 'A', '{}');
ROLLBACK;

-- the store is exactly as it was
SELECT count(*) = :events_before AS same_count,
       eventsource.head_position() = :head_before AS same_head,
       eventsource.stream_version('E-1') AS e1_version
  FROM eventsource.events;
