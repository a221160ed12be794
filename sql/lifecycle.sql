--
-- lifecycle: soft delete, hard delete (tombstone) and truncate-before of a
-- stream; hidden events are hidden by every read path at once; every error
-- path with its SQLSTATE.
--
SET client_min_messages = warning;

-- what every read path returns for a stream, in one row
CREATE FUNCTION t.seen(s text) RETURNS TABLE (
    read_stream text, read_backwards text, stream_version bigint, load_version bigint,
    load_events text, snapshot bigint, in_streams boolean, read_all text)
LANGUAGE sql AS $$
    SELECT (SELECT string_agg(r.stream_version::text, ',' ORDER BY r.stream_version)
              FROM eventsource.read_stream(s) r),
           (SELECT string_agg(r.stream_version::text, ',')
              FROM eventsource.read_stream(s, NULL, 1000, true) r),
           eventsource.stream_version(s),
           (eventsource.load(s) ->> 'version')::bigint,
           (SELECT string_agg(e ->> 'version', ',') FROM jsonb_array_elements(eventsource.load(s) -> 'events') e),
           (SELECT l.stream_version FROM eventsource.load_snapshot(s) l),
           EXISTS (SELECT FROM eventsource.streams v WHERE v.stream_id = s),
           (SELECT string_agg(r.stream_version || ':' || r.event_type, ',' ORDER BY r.global_position)
              FROM eventsource.read_all(0, 100000) r WHERE r.stream_id = s)
$$;

-- the new objects
SELECT pg_get_function_arguments('eventsource.delete_stream(text,bigint,boolean)'::regprocedure);
SELECT pg_get_function_arguments('eventsource.truncate_stream(text,bigint,bigint)'::regprocedure);
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'eventsource.stream_lifecycle'::regclass AND attnum > 0 ORDER BY attnum;

-- the hiding predicate probes stream_lifecycle per event (its primary key):
-- no plan of the view builds a set of all lifecycle rows (a hashed SubPlan,
-- or a Materialize rescanned per event once that set outgrows work_mem),
-- whose cost would grow with the rows of other streams
CREATE FUNCTION t.plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE 'EXPLAIN (COSTS OFF) ' || q;
END $$;
SELECT count(*) FILTER (WHERE p ~ 'hashed|Materialize') AS sets_of_all_rows,
       count(*) FILTER (WHERE p ~ 'Index Only Scan using stream_lifecycle_pkey|Index Scan using stream_lifecycle_pkey') AS pkey_probes
  FROM t.plan($$SELECT * FROM eventsource.visible_events WHERE global_position > 0
                ORDER BY global_position LIMIT 1000$$) p;
SELECT count(*) FILTER (WHERE p ~ 'hashed|Materialize') AS sets_of_all_rows
  FROM t.plan($$SELECT * FROM eventsource.visible_events WHERE stream_id = 'Life-1'
                ORDER BY stream_version$$) p;

-- ---------------------------------------------------------------------------
-- truncate before version N
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Life-1', 0,
    '[{"type": "Opened", "data": {"n": 1}}, {"type": "Changed", "data": {"n": 2}},
      {"type": "Changed", "data": {"n": 3}}, {"type": "Changed", "data": {"n": 4}}]');
SELECT eventsource.save_snapshot('Life-1', 2, '{"n": 2}');
SELECT eventsource.save_snapshot('Life-1', 3, '{"n": 3}');
SELECT * FROM t.seen('Life-1');
SELECT eventsource.truncate_stream('Life-1', 3, 4) AS truncated_at \gset
-- versions 1 and 2 are gone from every path; the snapshot of version 2 too,
-- the one of version 3 (still visible) stays; the system event is in the log
SELECT * FROM t.seen('Life-1');
SELECT stream_version, event_type, data FROM eventsource.read_all(:truncated_at - 1, 1);
SELECT stream_version FROM eventsource.read_stream('Life-1', 0);
SELECT stream_version FROM eventsource.read_stream('Life-1', 2, 1, true);
SELECT stream_id, hidden_through, last_version, tombstoned, operations,
       last_position = :truncated_at AS position_ok
  FROM eventsource.stream_lifecycle WHERE stream_id = 'Life-1';
-- appends go on as before: the stream's version did not change
SELECT stream_version FROM eventsource.append_event('Life-1', 4, 'Changed', '{"n": 5}');
-- a snapshot of a hidden version is refused
SELECT t.try($$SELECT eventsource.save_snapshot('Life-1', 2, '{}')$$);
-- truncating further
SELECT eventsource.truncate_stream('Life-1', 5) > :truncated_at AS later;
SELECT * FROM t.seen('Life-1');

-- ---------------------------------------------------------------------------
-- soft delete: the stream reads as absent; an append re-opens it after its
-- last version; an old expected version is ES001
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Life-2', 0,
    '[{"type": "Opened", "data": {}}, {"type": "Changed", "data": {}}, {"type": "Changed", "data": {}}]');
SELECT eventsource.save_snapshot('Life-2', 3, '{"n": 3}');
SELECT eventsource.delete_stream('Life-2', 3) AS deleted_at \gset
SELECT * FROM t.seen('Life-2');
SELECT stream_version, event_type, data FROM eventsource.read_all(:deleted_at - 1, 1);
SELECT count(*) AS snapshots_left FROM eventsource.snapshots WHERE stream_id = 'Life-2';
-- the client that read version 3 before the delete: ES001, nothing written
SELECT t.try($$SELECT eventsource.append_event('Life-2', 3, 'Changed', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Life-2', -2, 'Changed', '{}')$$);
-- re-open with "no stream": numbering continues after version 3
SELECT stream_version FROM eventsource.append_event('Life-2', 0, 'Reopened', '{}',
    event_id => '00000000-0000-7000-8000-000000000014');
-- an exact retry of the re-opening append is recognised, not ES002
SELECT stream_version FROM eventsource.append_event('Life-2', 0, 'Reopened', '{}',
    event_id => '00000000-0000-7000-8000-000000000014');
SELECT * FROM t.seen('Life-2');
SELECT stream_version FROM eventsource.append_event('Life-2', 4, 'Changed', '{}');
-- delete again (it is present again), then re-open with "any"
SELECT eventsource.delete_stream('Life-2', -2) > :deleted_at AS deleted_again;
SELECT stream_version FROM eventsource.append_event('Life-2', -1, 'Reopened', '{}');
SELECT * FROM t.seen('Life-2');
SELECT hidden_through, last_version, operations FROM eventsource.stream_lifecycle
 WHERE stream_id = 'Life-2';

-- ---------------------------------------------------------------------------
-- hard delete (tombstone): never written again, ES003
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Life-3', 0,
    '[{"type": "Opened", "data": {}}, {"type": "Closed", "data": {}}]');
SELECT eventsource.delete_stream('Life-3', 2, hard => true) AS tombstoned_at \gset
SELECT * FROM t.seen('Life-3');
SELECT stream_version, event_type, data FROM eventsource.read_all(:tombstoned_at - 1, 1);
SELECT t.try($$SELECT eventsource.append_event('Life-3', -1, 'Opened', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Life-3', 0, 'Opened', '{}')$$);
SELECT t.try($$SELECT eventsource.append('Life-3', NULL, '[{"type": "Opened", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-3', -1)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-3', -1, true)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-3', 1)$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Life-3', 1, '{}')$$);
-- a soft-deleted stream can be tombstoned (it reads as absent: expected -1)
SELECT stream_version FROM eventsource.append_event('Life-4', 0, 'Opened', '{}');
SELECT eventsource.delete_stream('Life-4', 1) > 0 AS soft;
SELECT t.try($$SELECT eventsource.delete_stream('Life-4', 1, true)$$);
SELECT eventsource.delete_stream('Life-4', -1, true) > 0 AS hard;
SELECT tombstoned, hidden_through, operations FROM eventsource.stream_lifecycle WHERE stream_id = 'Life-4';
SELECT t.try($$SELECT eventsource.append_event('Life-4', 0, 'Opened', '{}')$$);

-- ---------------------------------------------------------------------------
-- read_all with filters and the system events' types
-- ---------------------------------------------------------------------------
SELECT stream_id, stream_version, event_type FROM eventsource.read_all(0, 100000, categories => '{Life}')
 ORDER BY global_position;
SELECT stream_id, stream_version FROM eventsource.read_all(0, 100000, event_types => '{$StreamDeleted}')
 WHERE stream_id LIKE 'Life-%' ORDER BY global_position;
SELECT count(*) AS hidden_opened FROM eventsource.read_all(0, 100000, '{Opened}', '{Life}');
SELECT stream_id, version, first_position > 0 AS ok FROM eventsource.streams
 WHERE category = 'Life' ORDER BY stream_id;

-- ---------------------------------------------------------------------------
-- errors: each with its SQLSTATE, nothing written
-- ---------------------------------------------------------------------------
SELECT count(*) AS events_before FROM eventsource.events \gset
SELECT count(*) AS rows_before FROM eventsource.stream_lifecycle \gset
-- unknown stream: ES004
SELECT t.try($$SELECT eventsource.delete_stream('Life-none', -1)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-none', -1, true)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-none', 1)$$);
-- wrong expected version: ES001
SELECT stream_version FROM eventsource.append('Life-5', 0,
    '[{"type": "Opened", "data": {}}, {"type": "Changed", "data": {}}, {"type": "Changed", "data": {}}]');
SELECT t.try($$SELECT eventsource.delete_stream('Life-5', 2)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-5', 4, true)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-5', 2, 1)$$);
-- deleting twice: ES003
SELECT eventsource.delete_stream('Life-5', 3) > 0 AS deleted;
SELECT t.try($$SELECT eventsource.delete_stream('Life-5', -1)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-5', 2)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-5', 3)$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Life-5', 3, '{}')$$);
-- NULLs: 22004
SELECT t.try($$SELECT eventsource.delete_stream(NULL, -1)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-1', NULL)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-1', -1, NULL)$$);
SELECT t.try($$SELECT eventsource.truncate_stream(NULL, 2)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', NULL)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 6, NULL)$$);
-- bad values: 22023 (and the stream id rules of append)
SELECT t.try($$SELECT eventsource.delete_stream('', -1)$$);
SELECT t.try(format($$SELECT eventsource.delete_stream(%L, -1)$$, repeat('x', 1001)));
SELECT t.try($$SELECT eventsource.delete_stream('Life-1', 0)$$);
SELECT t.try($$SELECT eventsource.delete_stream('Life-1', -3)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 0)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', -5)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 6, 0)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 6, -7)$$);
-- truncating beyond the last version, or what is already hidden
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 6)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 7)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 4)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 1)$$);
-- system event types are the store's own: a writer cannot forge one (22023),
-- in either append function, in any element of the array
SELECT t.try($$SELECT eventsource.append('Life-forged', -1, '[{"type": "$StreamDeleted", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('Life-forged', -1,
    '[{"type": "Opened", "data": {}}, {"type": "$StreamTruncated", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append_event('Life-forged', -1, '$StreamDeleted', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Life-forged', -1, '$Anything', '{}')$$);
-- a "$" elsewhere in the type is an ordinary type
SELECT stream_version FROM eventsource.append_event('Life-dollar', 0, 'Paid$', '{}');
SELECT t.try($$SELECT eventsource.delete_stream('Life-dollar', 1)$$);
-- read-only transactions refuse them
BEGIN READ ONLY;
SELECT t.try($$SELECT eventsource.delete_stream('Life-1', -1)$$);
SELECT t.try($$SELECT eventsource.truncate_stream('Life-1', 5)$$);
ROLLBACK;
-- nothing was written by any of them (Life-5's append and delete: 4 events;
-- Life-dollar's append and delete: 2)
SELECT count(*) - :events_before AS new_events FROM eventsource.events;
SELECT count(*) - :rows_before AS new_rows FROM eventsource.stream_lifecycle;

-- ---------------------------------------------------------------------------
-- atomic: a rolled-back delete hides nothing and leaves no system event
-- ---------------------------------------------------------------------------
BEGIN;
SELECT eventsource.delete_stream('Life-1', -1) > 0 AS deleted;
SELECT * FROM t.seen('Life-1');
ROLLBACK;
SELECT * FROM t.seen('Life-1');
SELECT operations FROM eventsource.stream_lifecycle WHERE stream_id = 'Life-1';

-- the log itself, read directly by its owner, still has the hidden rows
-- until a cleanup removes them (docs/lifecycle.md)
SELECT stream_id, count(*) AS rows, min(stream_version), max(stream_version)
  FROM eventsource.events WHERE stream_id LIKE 'Life-%' GROUP BY stream_id ORDER BY stream_id;
-- and the guard still refuses to change them
SELECT t.try($$DELETE FROM eventsource.events WHERE stream_id = 'Life-1'$$);
-- stream_lifecycle is guarded too: only the lifecycle functions write it,
-- not even a superuser directly (this suite runs as one)
SELECT t.try($$DELETE FROM eventsource.stream_lifecycle WHERE stream_id = 'Life-1'$$);
SELECT t.try($$UPDATE eventsource.stream_lifecycle SET last_version = 0, hidden_through = 0$$);
SELECT t.try($$INSERT INTO eventsource.stream_lifecycle (stream_id, hidden_through, last_version, operations, last_position)
               VALUES ('Life-x', 0, 0, 1, 1)$$);
SELECT t.try($$TRUNCATE eventsource.stream_lifecycle$$);
SELECT * FROM t.seen('Life-1');

-- ---------------------------------------------------------------------------
-- read_all reads the table and drops the hidden rows itself (src/read.c,
-- read_all_hiding; src/lifecycle.c, "Hiding a page of the log"): paged with
-- any page size and filter it returns exactly the view's rows, never a
-- hidden event, and never a short page while visible events remain below
-- the horizon (a client would take a short page for having caught up)
-- ---------------------------------------------------------------------------
SELECT eventsource.head_position() AS page_start \gset
-- Page-B 1, Page-A 1..60 (59 of them hidden below), Page-B 2, then Page-C
-- (deleted below) and Page-B interleaved; Page-D erased only (a lifecycle
-- row that hides nothing); every event older than the newest operation
SELECT stream_version FROM eventsource.append_event('Page-B', -1, 'B', '{}');
SELECT stream_version FROM eventsource.append('Page-A', 0,
    (SELECT jsonb_agg(jsonb_build_object('type', 'A', 'data', jsonb_build_object('n', i)))
       FROM generate_series(1, 60) i));
SELECT stream_version FROM eventsource.append_event('Page-B', -1, 'B', '{}');
SELECT count(*) FROM generate_series(1, 20) i,
    LATERAL (SELECT eventsource.append_event('Page-C', -1, 'C', jsonb_build_object('i', i)),
                    eventsource.append_event('Page-D', -1, 'D', jsonb_build_object('i', i)),
                    eventsource.append_event('Page-B', -1, 'B', jsonb_build_object('i', i))) x;
SELECT eventsource.truncate_stream('Page-A', 60) > 0 AS truncated;
SELECT eventsource.delete_stream('Page-C', -1) > 0 AS deleted;
SELECT events_erased FROM eventsource.erase_stream('Page-D');
SELECT stream_id, hidden_through FROM eventsource.stream_lifecycle
 WHERE stream_id LIKE 'Page-%' ORDER BY stream_id;
-- the hidden rows are still in the table (the cleanup is off in this suite)
SELECT count(*) AS stored_page_rows FROM eventsource.events
 WHERE global_position > :page_start AND stream_id LIKE 'Page-%';

-- every page size, with and without filters: all pages together are the
-- view's rows; no page is short unless it is the last one
CREATE FUNCTION t.read_all_paged(after bigint, n int, types text[], cats text[])
RETURNS TABLE (pages int, short_before_end int, positions bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    got bigint[];
    acc bigint[] := '{}';
    k int := 0;
    short int := 0;
    prev_short boolean := false;
BEGIN
    LOOP
        SELECT array_agg(r.global_position ORDER BY r.global_position) INTO got
          FROM eventsource.read_all(after, n, types, cats) r;
        EXIT WHEN got IS NULL;
        k := k + 1;
        IF prev_short THEN
            short := short + 1;
        END IF;
        prev_short := cardinality(got) < n;
        acc := acc || got;
        after := got[cardinality(got)];
    END LOOP;
    RETURN QUERY SELECT k, short, acc;
END $$;
SELECT f.types, f.cats, n, p.pages, p.short_before_end,
       p.positions = (SELECT array_agg(v.global_position ORDER BY v.global_position)
                        FROM eventsource.visible_events v
                       WHERE v.global_position > :page_start
                         AND (f.types IS NULL OR v.event_type = ANY (f.types))
                         AND (f.cats IS NULL OR split_part(v.stream_id, '-', 1) = ANY (f.cats)))
         AS same_as_view,
       cardinality(p.positions) AS events
  FROM (VALUES (NULL::text[], NULL::text[]), (NULL, '{Page}'), ('{A,B}', '{Page}'),
               ('{A,$StreamTruncated}', NULL)) f(types, cats),
       unnest('{1,2,3,7,50,1000}'::int[]) n,
       LATERAL t.read_all_paged(:page_start, n, f.types, f.cats) p
 ORDER BY f.types NULLS FIRST, f.cats NULLS FIRST, n;
-- no hidden event in any page
SELECT count(*) AS hidden_returned
  FROM generate_series(:page_start, :page_start + 130) a,
       LATERAL eventsource.read_all(a, 3) r
 WHERE (r.stream_id = 'Page-A' AND r.stream_version BETWEEN 1 AND 59)
    OR (r.stream_id = 'Page-C' AND r.stream_version >= 1);
-- a page of one right before the run of 59 hidden rows is Page-A's
-- version 60, not an empty page
SELECT stream_id, stream_version, event_type
  FROM eventsource.read_all(:page_start + 1, 1);
SELECT stream_id, stream_version, data
  FROM eventsource.read_all(:page_start + 1, 3, categories => '{Page}');
-- erased events are returned (redacted): erasure hides nothing
SELECT count(*) AS erased_returned, min(data::text) AS data
  FROM eventsource.read_all(:page_start, 1000) WHERE stream_id = 'Page-D' AND stream_version >= 1;
