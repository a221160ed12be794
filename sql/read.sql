--
-- read_stream, read_all, head_position, stream_version, the streams view
--
SET client_min_messages = warning;

SELECT t.try($$SELECT eventsource.append('Acct-1', 0, '[
    {"type": "Opened", "data": {"n": 1}}, {"type": "Deposited", "data": {"n": 2}},
    {"type": "Deposited", "data": {"n": 3}}, {"type": "Withdrawn", "data": {"n": 4}},
    {"type": "Deposited", "data": {"n": 5}}]')$$);
SELECT t.try($$SELECT eventsource.append('Acct-2', 0, '[{"type": "Opened", "data": {"n": 1}}]')$$);
SELECT t.try($$SELECT eventsource.append('Audit', 0, '[{"type": "Checked", "data": {"n": 1}}]')$$);

-- forward from the start, from a version, limited
SELECT stream_version, event_type, data FROM eventsource.read_stream('Acct-1');
SELECT stream_version FROM eventsource.read_stream('Acct-1', 3);
SELECT stream_version FROM eventsource.read_stream('Acct-1', 0, 2);
SELECT stream_version FROM eventsource.read_stream('Acct-1', 2, 2);
SELECT stream_version FROM eventsource.read_stream('Acct-1', 6);
-- backwards from the end, from a version, from past the end
SELECT stream_version FROM eventsource.read_stream('Acct-1', NULL, 1000, true);
SELECT stream_version FROM eventsource.read_stream('Acct-1', 3, 2, true);
SELECT stream_version FROM eventsource.read_stream('Acct-1', 100, 2, true);
SELECT stream_version FROM eventsource.read_stream('Acct-1', backwards => true, max_count => 1);
-- unknown stream: no rows
SELECT count(*) FROM eventsource.read_stream('Nope-1');
SELECT count(*) FROM eventsource.read_stream('Nope-1', NULL, 10, true);

-- read_all: strictly after a position, ascending, paged
SELECT min(global_position) AS first_pos FROM eventsource.events \gset
SELECT global_position - :first_pos AS rel, stream_id, stream_version
  FROM eventsource.read_all();
SELECT global_position - :first_pos AS rel FROM eventsource.read_all(:first_pos + 2, 3);
SELECT count(*) FROM eventsource.read_all(eventsource.head_position());
SELECT count(*) FROM eventsource.read_all(9223372036854775807);
-- filters, server-side
SELECT stream_id, stream_version, event_type
  FROM eventsource.read_all(0, 1000, ARRAY['Opened', 'Checked']);
SELECT stream_id, stream_version FROM eventsource.read_all(0, 1000, NULL, ARRAY['Acct']);
SELECT stream_id, stream_version FROM eventsource.read_all(0, 1000, NULL, ARRAY['Audit']);
SELECT stream_id, stream_version FROM eventsource.read_all(0, 1000, ARRAY['Deposited'], ARRAY['Acct']);
SELECT stream_id FROM eventsource.read_all(categories => ARRAY['Acct-1']);
SELECT count(*) FROM eventsource.read_all(0, 1000, ARRAY[]::text[]);
SELECT count(*) FROM eventsource.read_all(event_types => ARRAY['Deposited'], max_count => 2);

-- head_position: every position up to it is final; here all are committed
SELECT eventsource.head_position() = (SELECT max(global_position) FROM eventsource.events) AS head_is_max;

-- stream_version: 0 when absent
SELECT eventsource.stream_version('Acct-1'), eventsource.stream_version('Acct-2'),
       eventsource.stream_version('Nope-1');

-- the streams view
SELECT stream_id, category, version, last_position - first_position AS span
  FROM eventsource.streams ORDER BY stream_id;

-- a rolled-back append leaves a gap that readers skip over, not wait for
SELECT eventsource.head_position() AS h \gset
BEGIN;
SELECT t.try($$SELECT eventsource.append_event('Acct-1', 5, 'Deposited', '{"n": 6}')$$);
ROLLBACK;
SELECT eventsource.head_position() = :h + 1 AS gap_passed;
SELECT count(*) FROM eventsource.read_all(:h);
SELECT t.try($$SELECT eventsource.append_event('Acct-1', 5, 'Deposited', '{"n": 7}')$$);
SELECT global_position - :h AS distance, data FROM eventsource.read_all(:h);

-- the rows are the table's rows
SELECT (SELECT count(*) FROM eventsource.read_all(0, 100000)) =
       (SELECT count(*) FROM eventsource.events) AS read_all_sees_all;

-- load(): one round trip, snapshot (none here) plus events
SELECT jsonb_pretty(eventsource.load('Acct-2') - '{events}'::text[]);
SELECT jsonb_array_length(eventsource.load('Acct-1')->'events') AS n,
       eventsource.load('Acct-1')->'events'->0 ? 'recorded_at' AS has_time,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(eventsource.load('Acct-1')->'events'->0) k) AS keys;
SELECT eventsource.load('Nope-1');
