--
-- tracing: W3C trace context in the log (issue 13).  Validation of
-- traceparent and tracestate (settings and metadata, SQLSTATE 22023), the
-- per-transaction setting, metadata winning over it, and the propagation
-- into the events a subscription handler appends.
--
SET client_min_messages = warning;
CREATE SCHEMA tr;

-- the settings: valid values
SET eventsource.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SHOW eventsource.traceparent;
SET eventsource.tracestate = 'rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,tenant@vendor=x';
SHOW eventsource.tracestate;
-- a later version may carry more fields, which are ignored
SET eventsource.traceparent = '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever';
RESET eventsource.traceparent;
RESET eventsource.tracestate;
SHOW eventsource.traceparent;

-- invalid ones: 22023 with what is wrong
\set VERBOSITY default
CREATE FUNCTION tr.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SET eventsource.traceparent = 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
SELECT v, tr.try(format('SET eventsource.traceparent = %L', v)) FROM (VALUES
    ('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7'),        -- no flags
    ('00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'),     -- upper case
    ('ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'),     -- version ff
    ('00-00000000000000000000000000000000-00f067aa0ba902b7-01'),     -- zero trace id
    ('00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'),     -- zero parent id
    ('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x'),   -- 00 with more
    ('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x'),    -- no dash after flags
    ('00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01'),     -- separators
    ('00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01'),     -- not hex
    ('zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')      -- version not hex
) AS t(v);
SELECT v, tr.try(format('SET eventsource.tracestate = %L', v)) FROM (VALUES
    ('Rojo=1'), ('rojo'), ('rojo=1,rojo=2'), ('rojo=a=b'), ('a@=1'),
    ('a@1vendor=1'), ('rojo=caf' || chr(233)), ('rojo=1,,congo=2'),
    ('1rojo=1'), ('1tenant@vendor=1')
) AS t(v);
SELECT tr.try(format('SET eventsource.tracestate = %L',
                     (SELECT string_agg('k' || i || '=v', ',') FROM generate_series(1, 33) i))) AS members_33;
SELECT tr.try(format('SET eventsource.tracestate = %L',
                     (SELECT string_agg('k' || i || '=v', ',') FROM generate_series(1, 32) i))) AS members_32;
SELECT tr.try(format('SET eventsource.tracestate = %L', 'k=' || repeat('v', 256))) AS value_256;
SELECT tr.try(format('SET eventsource.tracestate = %L', 'k=' || repeat('v', 257))) AS value_257;
-- over 512 characters: members dropped from the end (here the third),
-- not refused; in the setting and in metadata alike
SELECT set_config('eventsource.tracestate',
                  'a=' || repeat('1', 200) || ',b=' || repeat('2', 200) || ' , c=' || repeat('3', 200),
                  false) IS NOT NULL AS set;
SELECT length(current_setting('eventsource.tracestate')) AS trimmed_length,
       right(current_setting('eventsource.tracestate'), 5) AS trimmed_end;
SELECT stream_version FROM eventsource.append_event('Trace-long', 0, 'X', '{}',
    jsonb_build_object('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
                       'tracestate', 'a=' || repeat('1', 200) || ',b=' || repeat('2', 200) || ',c=' || repeat('3', 200),
                       'other', 1));
SELECT length(metadata->>'tracestate') AS stored_length, metadata->>'traceparent' IS NOT NULL AS traceparent_kept,
       metadata->'other' AS other_kept
  FROM eventsource.events WHERE stream_id = 'Trace-long';
RESET eventsource.tracestate;

-- the setting: SET LOCAL lasts for the transaction and reaches every append
BEGIN;
SET LOCAL eventsource.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
SET LOCAL eventsource.tracestate = 'congo=t61rcWkgMzE';
SELECT stream_version FROM eventsource.append_event('Trace-1', 0, 'Created', '{}');
SELECT stream_version FROM eventsource.append('Trace-1', 1, '[{"type": "Changed", "data": {}},
    {"type": "Changed", "data": {}, "metadata": {"user": "u1"}}]');
COMMIT;
SELECT stream_version, metadata FROM eventsource.events WHERE stream_id = 'Trace-1' ORDER BY 1;
-- after the transaction nothing is added
SELECT stream_version FROM eventsource.append_event('Trace-1', 3, 'Changed', '{}');
SELECT metadata FROM eventsource.events WHERE stream_id = 'Trace-1' AND stream_version = 4;

-- the metadata's traceparent wins (and its tracestate, if any, stays with it)
BEGIN;
SET LOCAL eventsource.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
SET LOCAL eventsource.tracestate = 'congo=t61rcWkgMzE';
SELECT stream_version FROM eventsource.append_event('Trace-2', 0, 'Created', '{}',
    '{"traceparent": "00-11111111111111111111111111111111-2222222222222222-00"}');
-- a tracestate of the metadata without a traceparent: stored as given, never
-- paired with the setting's traceparent (it belongs to another trace)
SELECT stream_version FROM eventsource.append_event('Trace-2', 1, 'Changed', '{}',
    '{"tracestate": "rojo=1"}');
COMMIT;
SELECT stream_version, metadata FROM eventsource.events WHERE stream_id = 'Trace-2' ORDER BY 1;

-- invalid trace context in metadata: 22023, nothing appended
SELECT m, tr.try(format($$SELECT eventsource.append_event('Trace-3', -1, 'X', '{}', %L)$$, m)) FROM (VALUES
    ('{"traceparent": "00-00000000000000000000000000000000-2222222222222222-00"}'),
    ('{"traceparent": "ff-11111111111111111111111111111111-2222222222222222-00"}'),
    ('{"traceparent": 42}'),
    ('{"traceparent": "00-11111111111111111111111111111111-2222222222222222-00", "tracestate": "A=1"}')
) AS t(m);
SELECT tr.try($$SELECT eventsource.append('Trace-3', -1, '[{"type": "X", "data": {}},
    {"type": "X", "data": {}, "metadata": {"traceparent": "garbage"}}]')$$);
SELECT count(*) AS trace3_events FROM eventsource.events WHERE stream_id = 'Trace-3';

-- into a handler: it reads the event's context, and what it appends carries
-- it.  Without an endpoint (this suite has none) no handler span is made up:
-- the event's traceparent is passed on unchanged (the TAP test 050_tracing
-- checks the handler span as parent when spans are exported)
CREATE TABLE tr.seen (position bigint, traceparent text, tracestate text);
CREATE FUNCTION tr.on_event(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tr.seen VALUES (e.global_position, current_setting('eventsource.traceparent'),
                                current_setting('eventsource.tracestate'));
    PERFORM eventsource.append_event('Derived-' || e.global_position, 0, 'Derived', '{}');
END $$;
BEGIN;
SET LOCAL eventsource.traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
SET LOCAL eventsource.tracestate = 'congo=t61rcWkgMzE';
SELECT stream_version FROM eventsource.append_event('Traced-1', 0, 'Placed', '{}');
COMMIT;
SELECT stream_version FROM eventsource.append_event('Untraced-1', 0, 'Placed', '{}');
SELECT eventsource.create_subscription('tr_sub', 'tr.on_event(eventsource.events)',
                                       categories => ARRAY['Traced', 'Untraced']);
SELECT eventsource.wait_for_subscription('tr_sub', eventsource.head_position(), '60 s');

SELECT o.stream_id,
       d.metadata->>'causation_id' = o.event_id::text AS causation_kept,
       substr(d.metadata->>'traceparent', 4, 32) = substr(o.metadata->>'traceparent', 4, 32) AS same_trace,
       d.metadata->>'traceparent' = o.metadata->>'traceparent' AS passed_on_unchanged,
       d.metadata->>'traceparent' = s.traceparent AS parent_is_handler_span,
       d.metadata->>'tracestate' AS tracestate,
       s.tracestate AS handler_reads_tracestate,
       s.traceparent = '' AS handler_reads_nothing,
       d.metadata ? 'traceparent' AS derived_has_traceparent
  FROM tr.seen s
  JOIN eventsource.events o ON o.global_position = s.position
  JOIN eventsource.events d ON d.stream_id = 'Derived-' || s.position
 ORDER BY o.stream_id;
SELECT eventsource.drop_subscription('tr_sub');

-- the exporter's view exists and is quiet without an endpoint
SELECT enabled, queued, spans_dropped, last_export_error FROM eventsource.tracing;
SELECT eventsource.health()->'checks' ? 'tracing' AS tracing_check;
