--
-- erasure: erase_stream() and erase_by_metadata() redact data and chosen
-- metadata keys in place, keep the envelope, append $StreamErased, drop the
-- streams' snapshots and redact the extension's copies; every error path
-- with its SQLSTATE.
--
SET client_min_messages = warning;

-- every copy of a stream's events the extension can return, in one row
CREATE FUNCTION t.copies(s text) RETURNS TABLE (
    read_stream text, read_all text, load text, snapshot text, dead_letters text,
    recent_errors text, failed_partitions text)
LANGUAGE sql AS $$
    SELECT (SELECT string_agg(r.stream_version || ':' || r.data::text || r.metadata::text, ' '
                              ORDER BY r.stream_version)
              FROM eventsource.read_stream(s) r),
           (SELECT string_agg(r.stream_version || ':' || r.event_type || r.data::text, ' '
                              ORDER BY r.global_position)
              FROM eventsource.read_all(0, 100000) r WHERE r.stream_id = s),
           (SELECT string_agg(e ->> 'version' || ':' || (e -> 'data')::text, ' ')
              FROM jsonb_array_elements(eventsource.load(s) -> 'events') e),
           (SELECT string_agg(l.stream_version || ':' || l.state::text, ' ')
              FROM eventsource.load_snapshot(s) l),
           (SELECT string_agg(d.stream_version || ':' || d.data::text || d.metadata::text
                              || ':' || d.error_message, ' ' ORDER BY d.id)
              FROM eventsource.dead_letters d WHERE d.stream_id = s),
           (SELECT string_agg(r.error_message, ' ' ORDER BY r.id)
              FROM eventsource.recent_errors r
             WHERE r.global_position IN (SELECT global_position FROM eventsource.events
                                          WHERE stream_id = s)),
           (SELECT string_agg(p.error_message, ' ')
              FROM eventsource.subscription_partitions p
             WHERE p.failed_position IN (SELECT global_position FROM eventsource.events
                                          WHERE stream_id = s))
$$;

-- a copy of an event as a dead letter, an error and a stopped partition
-- would keep it (the worker's own rows; TAP 043 makes them the real way)
CREATE FUNCTION t.copy_as_failure(s text, v bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO eventsource.dead_letters (subscription, partition, global_position,
        stream_id, stream_version, event_id, event_type, data, metadata, recorded_at,
        error_message, error_sqlstate, error_category, error_severity, retry_count,
        first_failed_at)
    SELECT 'erasure_sub', 0, global_position, stream_id, stream_version, event_id,
           event_type, data, metadata, recorded_at, 'bad email ' || (data ->> 'email'),
           'P0001', 'application', 'error', 3, now()
      FROM eventsource.events WHERE stream_id = s AND stream_version = v;
    INSERT INTO eventsource.recent_errors (subscription, partition, global_position,
        event_id, event_type, error_message, error_sqlstate, error_category,
        error_severity, attempt)
    SELECT 'erasure_sub', 0, global_position, event_id, event_type,
           'bad email ' || (data ->> 'email'), 'P0001', 'application', 'error', 1
      FROM eventsource.events WHERE stream_id = s AND stream_version = v;
    INSERT INTO eventsource.subscription_partitions AS p (subscription, partition,
        subscription_id, position, state, failed_position, failed_event_id,
        error_message, error_sqlstate, failed_at)
    SELECT 'erasure_sub', 0, (SELECT id FROM eventsource.subscriptions WHERE name = 'erasure_sub'),
           e.global_position - 1, 'failed', e.global_position, e.event_id,
           'bad email ' || (e.data ->> 'email'), 'P0001', now()
      FROM eventsource.events e WHERE e.stream_id = s AND e.stream_version = v
    ON CONFLICT (subscription, partition) DO UPDATE
       SET state = 'failed', failed_position = excluded.failed_position,
           failed_event_id = excluded.failed_event_id, error_message = excluded.error_message,
           error_sqlstate = 'P0001', failed_at = now();
$$;
CREATE FUNCTION t.erasure_handler(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventsource.create_subscription('erasure_sub', 't.erasure_handler(eventsource.events)');
SELECT eventsource.pause_subscription('erasure_sub');

-- the new functions
SELECT pg_get_function_arguments('eventsource.erase_stream(text,text[],bigint)'::regprocedure),
       pg_get_function_result('eventsource.erase_stream(text,text[],bigint)'::regprocedure);
SELECT pg_get_function_arguments('eventsource.erase_by_metadata(text,text,text[],integer)'::regprocedure),
       pg_get_function_result('eventsource.erase_by_metadata(text,text,text[],integer)'::regprocedure);
-- not for PUBLIC
SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE') AS public_may
  FROM pg_proc p WHERE p.proname IN ('erase_stream', 'erase_by_metadata') ORDER BY 1;

-- ---------------------------------------------------------------------------
-- erase_stream
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Erase-1', 0,
    '[{"type": "Registered", "data": {"name": "Ann", "email": "ann@example.com"},
       "metadata": {"subject_id": "s-1", "ip": "10.0.0.1", "tenant": "acme"}},
      {"type": "Renamed", "data": {"name": "Anna"}, "metadata": {"subject_id": "s-1"}},
      {"type": "Emailed", "data": {"email": "anna@example.com"}, "metadata": {"ip": "10.0.0.2"}}]');
SELECT stream_version FROM eventsource.append_event('Erase-other', 0, 'Kept', '{"name": "Bob"}');
SELECT eventsource.save_snapshot('Erase-1', 2, '{"name": "Anna"}');
SELECT eventsource.save_snapshot('Erase-1', 3, '{"name": "Anna", "email": "anna@example.com"}', 2);
SELECT t.copy_as_failure('Erase-1', 1);
SELECT * FROM t.copies('Erase-1');
SELECT global_position AS before_position, event_id AS before_id, recorded_at AS before_at
  FROM eventsource.events WHERE stream_id = 'Erase-1' AND stream_version = 1 \gset
SELECT count(*) AS events_before FROM eventsource.events \gset

SELECT events_erased, "position" > 0 AS has_position
  FROM eventsource.erase_stream('Erase-1', '{ip,missing_key}', 3);
-- data and the named metadata keys are the marker; the envelope, the other
-- keys, the version and the other stream are as they were
SELECT * FROM t.copies('Erase-1');
SELECT global_position = :before_position AS same_position, event_id = :'before_id' AS same_id,
       recorded_at = :'before_at' AS same_time, event_type
  FROM eventsource.events WHERE stream_id = 'Erase-1' AND stream_version = 1;
SELECT eventsource.stream_version('Erase-1'), (SELECT version FROM eventsource.streams WHERE stream_id = 'Erase-1');
SELECT data FROM eventsource.read_stream('Erase-other');
-- the system event: in the stream, at -1, after the erased events in the log
SELECT stream_version, event_type, data FROM eventsource.events
 WHERE stream_id = 'Erase-1' AND stream_version < 0;
SELECT hidden_through, last_version, tombstoned, operations,
       last_position = (SELECT max(global_position) FROM eventsource.events) AS last_position_is_erasure
  FROM eventsource.stream_lifecycle WHERE stream_id = 'Erase-1';
SELECT count(*) AS snapshots_left FROM eventsource.snapshots WHERE stream_id = 'Erase-1';
SELECT count(*) - :events_before AS new_events FROM eventsource.events;
SELECT stream_version, event_type FROM eventsource.read_all(0, 100000, event_types => '{$StreamErased}')
 WHERE stream_id LIKE 'Erase-%';

-- erasing twice: only what is not erased yet; nothing left: 0, null, no event
SELECT * FROM eventsource.erase_stream('Erase-1', '{ip}');
SELECT events_erased, "position" IS NULL AS no_position FROM eventsource.erase_stream('Erase-1');
-- a key not erased before: only the events that have it
SELECT events_erased FROM eventsource.erase_stream('Erase-1', ARRAY['subject_id']);
SELECT stream_version, metadata FROM eventsource.read_stream('Erase-1');
-- events appended after an erasure are not erased, and the next call erases them
SELECT stream_version FROM eventsource.append_event('Erase-1', 3, 'Renamed', '{"name": "Ann B"}');
SELECT stream_version, data FROM eventsource.read_stream('Erase-1', 4);
SELECT events_erased FROM eventsource.erase_stream('Erase-1', NULL, 4);
SELECT stream_version, event_type, data -> 'events' AS events, data -> 'first_version' AS first
  FROM eventsource.events WHERE stream_id = 'Erase-1' AND stream_version < 0 ORDER BY global_position;
-- a copy made after an erasure from data read before it (a worker's batch in
-- flight) is redacted by erasing the stream again, which writes no event
INSERT INTO eventsource.dead_letters (subscription, partition, global_position,
    stream_id, stream_version, event_id, event_type, data, metadata, recorded_at,
    error_message, error_sqlstate, error_category, error_severity, retry_count, first_failed_at)
SELECT 'erasure_sub', 0, global_position, stream_id, stream_version, event_id, event_type,
       '{"name": "Anna"}', '{"subject_id": "s-1"}', recorded_at, 'bad name Anna', 'P0001',
       'application', 'error', 3, now()
  FROM eventsource.events WHERE stream_id = 'Erase-1' AND stream_version = 2;
SELECT count(*) AS events_before FROM eventsource.events \gset
SELECT events_erased, "position" FROM eventsource.erase_stream('Erase-1', '{subject_id}');
SELECT stream_version, data, metadata, error_message FROM eventsource.dead_letters
 WHERE stream_id = 'Erase-1' ORDER BY id;
SELECT count(*) - :events_before AS new_events FROM eventsource.events;
-- a snapshot of the erased state may be saved again
SELECT eventsource.save_snapshot('Erase-1', 4, '{"name": "erased"}');
SELECT stream_version, state FROM eventsource.load_snapshot('Erase-1');
-- a snapshot saved after the erasure from a state loaded before it (READ
-- COMMITTED: the save's own statement snapshot already shows the erasure,
-- so save_snapshot cannot tell) is purged by erasing the stream again, which
-- writes no event
SELECT eventsource.save_snapshot('Erase-1', 4, '{"name": "Ann B"}');
SELECT count(*) AS events_before FROM eventsource.events \gset
SELECT events_erased, "position" FROM eventsource.erase_stream('Erase-1');
SELECT count(*) AS snapshots_left FROM eventsource.snapshots WHERE stream_id = 'Erase-1';
SELECT eventsource.load('Erase-1') -> 'snapshot' AS loaded_snapshot;
SELECT count(*) - :events_before AS new_events FROM eventsource.events;

-- an erasure rolled back leaves everything as it was
SELECT stream_version FROM eventsource.append_event('Erase-rb', 0, 'Registered', '{"name": "Cy"}');
BEGIN;
SELECT events_erased FROM eventsource.erase_stream('Erase-rb');
ROLLBACK;
SELECT data FROM eventsource.read_stream('Erase-rb');
SELECT count(*) AS rb_rows FROM eventsource.stream_lifecycle WHERE stream_id = 'Erase-rb';

-- ---------------------------------------------------------------------------
-- deleted, truncated and tombstoned streams: their stored (hidden) events
-- are erased too, and they stay deleted
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Erase-del', 0,
    '[{"type": "A", "data": {"name": "Di"}}, {"type": "B", "data": {"name": "Di"}}]');
SELECT eventsource.delete_stream('Erase-del', 2) > 0 AS deleted;
SELECT t.try($$SELECT eventsource.erase_stream('Erase-del', NULL, 2)$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-del', NULL, -2)$$);
SELECT events_erased FROM eventsource.erase_stream('Erase-del');
SELECT stream_version, data FROM eventsource.events WHERE stream_id = 'Erase-del' ORDER BY global_position;
SELECT eventsource.stream_version('Erase-del'), (SELECT count(*) FROM eventsource.read_stream('Erase-del')) AS readable;
-- re-opened after the erasure: numbering goes on
SELECT stream_version FROM eventsource.append_event('Erase-del', 0, 'C', '{"name": "Di"}');

SELECT stream_version FROM eventsource.append('Erase-trunc', 0,
    '[{"type": "A", "data": {"n": 1}}, {"type": "B", "data": {"n": 2}}, {"type": "C", "data": {"n": 3}}]');
SELECT eventsource.truncate_stream('Erase-trunc', 3) > 0 AS truncated;
SELECT events_erased FROM eventsource.erase_stream('Erase-trunc');
SELECT stream_version, data FROM eventsource.events WHERE stream_id = 'Erase-trunc' ORDER BY global_position;
SELECT string_agg(stream_version::text, ',') AS readable FROM eventsource.read_stream('Erase-trunc');
SELECT hidden_through, operations FROM eventsource.stream_lifecycle WHERE stream_id = 'Erase-trunc';

SELECT stream_version FROM eventsource.append_event('Erase-tomb', 0, 'A', '{"name": "Ed"}');
SELECT eventsource.delete_stream('Erase-tomb', 1, true) > 0 AS tombstoned;
SELECT events_erased FROM eventsource.erase_stream('Erase-tomb');
SELECT stream_version, event_type, data FROM eventsource.events WHERE stream_id = 'Erase-tomb' ORDER BY global_position;
SELECT tombstoned FROM eventsource.stream_lifecycle WHERE stream_id = 'Erase-tomb';
SELECT t.try($$SELECT eventsource.append_event('Erase-tomb', -1, 'A', '{}')$$);

-- ---------------------------------------------------------------------------
-- erase_by_metadata
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Erase-m1', 0,
    '[{"type": "A", "data": {"who": "Fay"}, "metadata": {"subject_id": "s-42"}},
      {"type": "B", "data": {"who": "Gus"}, "metadata": {"subject_id": "s-43"}},
      {"type": "C", "data": {"who": "Fay"}, "metadata": {"subject_id": "s-42", "email": "f@x"}}]');
SELECT stream_version FROM eventsource.append('Erase-m2', 0,
    '[{"type": "A", "data": {"who": "Fay"}, "metadata": {"subject_id": "s-42"}},
      {"type": "B", "data": {"who": "Fay"}, "metadata": {"subject_id": 42}}]');
SELECT eventsource.save_snapshot('Erase-m2', 2, '{"who": "Fay"}');
SELECT eventsource.save_snapshot('Erase-m1', 2, '{"who": "Fay"}');
-- at most max_events per call; "more" until a call finds no more than that
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42', '{email}', 2);
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42', '{email}', 2);
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42', '{email}', 2);
-- only string values equal to the value match (42 is a number)
SELECT stream_id, stream_version, data, metadata FROM eventsource.events
 WHERE stream_id IN ('Erase-m1', 'Erase-m2') AND stream_version > 0 ORDER BY stream_id, stream_version;
-- one $StreamErased per stream and call, with the versions and the key, never the value
SELECT stream_id, stream_version, data FROM eventsource.events
 WHERE stream_id IN ('Erase-m1', 'Erase-m2') AND stream_version < 0 ORDER BY global_position;
SELECT stream_id, count(*) AS snapshots FROM eventsource.snapshots
 WHERE stream_id IN ('Erase-m1', 'Erase-m2') GROUP BY 1;
-- the selecting key itself may be erased: then the value is gone from the log
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42', '{subject_id}');
SELECT count(*) AS left_with_value FROM eventsource.events WHERE metadata @> '{"subject_id": "s-42"}';
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42', '{subject_id}');
-- no match at all
SELECT * FROM eventsource.erase_by_metadata('nobody', 'x');
-- a capped call erases the oldest matching events first (log order), not
-- whatever the plan meets first: version 1's erased row version now lies
-- after versions 2 and 3 in the table, yet the second call takes it first
SELECT stream_version FROM eventsource.append('Erase-o1', 0,
    '[{"type": "A", "data": {"n": 1}, "metadata": {"subject_id": "s-9", "email": "a@x"}},
      {"type": "A", "data": {"n": 2}, "metadata": {"subject_id": "s-9", "email": "b@x"}},
      {"type": "A", "data": {"n": 3}, "metadata": {"subject_id": "s-9", "email": "c@x"}}]');
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-9', NULL, 1);
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-9', '{email}', 1);
SELECT stream_version, data, metadata FROM eventsource.events
 WHERE stream_id = 'Erase-o1' AND stream_version > 0 ORDER BY stream_version;
-- copies made after the erasure from data read before it (a worker's batch
-- in flight: a dead letter, its error, a partition stopped at it) are
-- redacted by the next call for the same subject, although it finds no
-- event left to erase; a dead letter takes its event's redacted row
INSERT INTO eventsource.dead_letters (subscription, partition, global_position,
    stream_id, stream_version, event_id, event_type, data, metadata, recorded_at,
    error_message, error_sqlstate, error_category, error_severity, retry_count, first_failed_at)
SELECT 'erasure_sub', 0, global_position, stream_id, stream_version, event_id, event_type,
       '{"who": "Fay"}', '{"subject_id": "s-42", "email": "f@x"}', recorded_at, 'bad who Fay',
       'P0001', 'application', 'error', 0, now()
  FROM eventsource.events WHERE stream_id = 'Erase-m1' AND stream_version = 3;
INSERT INTO eventsource.recent_errors (subscription, partition, global_position,
    event_id, event_type, error_message, error_sqlstate, error_category, error_severity, attempt)
SELECT 'erasure_sub', 0, global_position, event_id, event_type, 'bad who Fay', 'P0001',
       'application', 'error', 1
  FROM eventsource.events WHERE stream_id = 'Erase-m1' AND stream_version = 3;
UPDATE eventsource.subscription_partitions p
   SET state = 'failed', failed_position = e.global_position, failed_event_id = e.event_id,
       error_message = 'bad who Fay', error_sqlstate = 'P0001', failed_at = now()
  FROM eventsource.events e
 WHERE p.subscription = 'erasure_sub' AND e.stream_id = 'Erase-m1' AND e.stream_version = 3;
SELECT count(*) AS events_before FROM eventsource.events \gset
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42');
SELECT d.data, d.metadata, d.error_message, d.data = e.data AND d.metadata = e.metadata AS same_as_event
  FROM eventsource.dead_letters d JOIN eventsource.events e USING (global_position)
 WHERE d.stream_id = 'Erase-m1';
SELECT error_message FROM eventsource.recent_errors
 WHERE global_position = (SELECT global_position FROM eventsource.events
                           WHERE stream_id = 'Erase-m1' AND stream_version = 3);
SELECT state, error_message FROM eventsource.subscription_partitions WHERE subscription = 'erasure_sub';
SELECT count(*) - :events_before AS new_events FROM eventsource.events;
-- a dead letter of another subject, or of an event not erased, is left alone
SELECT stream_version FROM eventsource.append_event('Erase-m3', 0, 'A', '{"who": "Hal"}', '{"subject_id": "s-44"}');
INSERT INTO eventsource.dead_letters (subscription, partition, global_position,
    stream_id, stream_version, event_id, event_type, data, metadata, recorded_at,
    error_message, error_sqlstate, error_category, error_severity, retry_count, first_failed_at)
SELECT 'erasure_sub', 0, global_position, stream_id, stream_version, event_id, event_type,
       data, metadata, recorded_at, 'bad who Hal', 'P0001', 'application', 'error', 0, now()
  FROM eventsource.events WHERE stream_id = 'Erase-m3';
SELECT * FROM eventsource.erase_by_metadata('subject_id', 's-42');
SELECT data, metadata, error_message FROM eventsource.dead_letters WHERE stream_id = 'Erase-m3';
DELETE FROM eventsource.dead_letters WHERE stream_id IN ('Erase-m1', 'Erase-m3');
UPDATE eventsource.subscription_partitions
   SET state = 'ok', failed_position = NULL, failed_event_id = NULL, error_message = NULL,
       error_sqlstate = NULL, failed_at = NULL
 WHERE subscription = 'erasure_sub';

-- ---------------------------------------------------------------------------
-- the guard: the erasure's own UPDATE passes, nothing else does
-- ---------------------------------------------------------------------------
SELECT t.try($$UPDATE eventsource.events SET data = '{}' WHERE stream_id = 'Erase-other'$$);
BEGIN;
SELECT events_erased FROM eventsource.erase_stream('Erase-other');
SELECT t.try($$UPDATE eventsource.events SET data = '{"name": "Bob"}' WHERE stream_id = 'Erase-other'$$);
SELECT t.try($$DELETE FROM eventsource.events WHERE stream_id = 'Erase-other'$$);
ROLLBACK;
SET session_replication_role = replica;
SELECT t.try($$UPDATE eventsource.events SET data = '{}' WHERE stream_id = 'Erase-other'$$);
RESET session_replication_role;
SELECT data FROM eventsource.read_stream('Erase-other');
-- writers cannot forge the system event
SELECT t.try($$SELECT eventsource.append_event('Erase-other', -1, '$StreamErased', '{}')$$);

-- an erasure commits where it ran: a transaction that erased cannot be
-- prepared (0A000), and rolls back
BEGIN;
SELECT events_erased FROM eventsource.erase_stream('Erase-other');
PREPARE TRANSACTION 'erasure';
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT data FROM eventsource.read_stream('Erase-other');

-- ---------------------------------------------------------------------------
-- errors
-- ---------------------------------------------------------------------------
SELECT count(*) AS events_before FROM eventsource.events \gset
SELECT count(*) AS rows_before FROM eventsource.stream_lifecycle \gset
-- unknown stream: ES004; wrong expected version: ES001
SELECT t.try($$SELECT eventsource.erase_stream('Erase-nope')$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', NULL, 5)$$);
-- NULLs: 22004 (NULL metadata_keys is the default: no key)
SELECT t.try($$SELECT eventsource.erase_stream(NULL)$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', NULL, NULL)$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', '{ip,NULL}')$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata(NULL, 'x')$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', NULL)$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', ARRAY[NULL::text])$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', NULL, NULL)$$);
-- bad values: 22023, limits: 54000
SELECT t.try($$SELECT eventsource.erase_stream('')$$);
SELECT t.try(format($$SELECT eventsource.erase_stream(%L)$$, repeat('x', 1001)));
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', NULL, 0)$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', NULL, -3)$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', '{""}')$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', '{{a},{b}}')$$);
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other', (SELECT array_agg(i::text) FROM generate_series(1, 10001) i))$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('', 'x')$$);
SELECT t.try(format($$SELECT eventsource.erase_by_metadata(%L, 'x')$$, repeat('k', 256)));
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', '')$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', '{""}')$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', NULL, 0)$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', NULL, 10001)$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x', NULL, -1)$$);
-- read-only transactions refuse them
BEGIN READ ONLY;
SELECT t.try($$SELECT eventsource.erase_stream('Erase-other')$$);
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject_id', 'x')$$);
ROLLBACK;
-- nothing was written by any of them
SELECT count(*) - :events_before AS new_events FROM eventsource.events;
SELECT count(*) - :rows_before AS new_rows FROM eventsource.stream_lifecycle;
SELECT data FROM eventsource.read_stream('Erase-other');

SELECT eventsource.drop_subscription('erasure_sub');
