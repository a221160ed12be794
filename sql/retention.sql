--
-- retention: the max age / max count rules (set, clear, the view), the
-- cleanup's surface (stream_cleanup, cleanup_status, cleaned_through), the
-- guards, and every error path with its SQLSTATE.  The enforcement and the
-- physical removal run in the cleanup worker: test/t/044_cleanup.pl.  No
-- rule set here can expire an event of this database (the worker runs
-- meanwhile): they name streams and categories without events, or ages far
-- beyond the test's.
--
SET client_min_messages = warning;

-- the new objects
SELECT pg_get_function_arguments('eventsource.set_retention(text,interval,bigint)'::regprocedure);
SELECT pg_get_function_arguments('eventsource.set_category_retention(text,interval,bigint)'::regprocedure);
SELECT pg_get_function_result('eventsource.clear_retention(text)'::regprocedure),
       pg_get_function_result('eventsource.clear_category_retention(text)'::regprocedure);
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'eventsource.stream_retention'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute
 WHERE attrelid = 'eventsource.stream_lifecycle'::regclass AND attname LIKE 'cleaned%' ORDER BY attnum;
SELECT attname FROM pg_attribute
 WHERE attrelid = 'eventsource.cleanup_status'::regclass AND attnum > 0 ORDER BY attnum;
-- dumped with the extension's data
SELECT c.relname FROM pg_extension x, unnest(x.extconfig) r JOIN pg_class c ON c.oid = r
 WHERE x.extname = 'eventsource' ORDER BY 1;

-- ---------------------------------------------------------------------------
-- setting and clearing rules
-- ---------------------------------------------------------------------------
-- a stream that does not exist yet may have a rule (it applies from its
-- first append on)
SELECT eventsource.set_retention('Future-1', max_count => 10);
SELECT eventsource.set_retention('Future-2', interval '30 days');
SELECT eventsource.set_retention('Future-3', interval '1 year', 5);
SELECT eventsource.set_category_retention('Sensor', interval '1 month');
SELECT eventsource.set_category_retention('Audit', max_count => 1000000);
SELECT scope, name, max_age, max_count FROM eventsource.retention ORDER BY scope, name;
-- setting again replaces the whole rule (a NULL removes that limit)
SELECT eventsource.set_retention('Future-3', max_count => 7);
SELECT scope, name, max_age, max_count FROM eventsource.retention WHERE name = 'Future-3';
SELECT updated_at >= now() - interval '1 minute' AS recent FROM eventsource.retention WHERE name = 'Future-3';
-- clear: whether there was a rule
SELECT eventsource.clear_retention('Future-3'), eventsource.clear_retention('Future-3');
SELECT eventsource.clear_category_retention('Audit'), eventsource.clear_category_retention('Nope');
SELECT scope, name FROM eventsource.retention ORDER BY scope, name;
-- a stream id and a category of the same name are different rules
SELECT eventsource.set_retention('Sensor', max_count => 3);
SELECT scope, name, max_age, max_count FROM eventsource.retention WHERE name = 'Sensor' ORDER BY scope;
SELECT eventsource.clear_retention('Sensor');

-- ---------------------------------------------------------------------------
-- error paths
-- ---------------------------------------------------------------------------
SELECT t.try($$SELECT eventsource.set_retention(NULL, max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_retention('', max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_retention(repeat('s', 1001), max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1')$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', NULL, NULL)$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', max_count => 0)$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', max_count => -5)$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '0')$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '-1 day')$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '1 month -40 days')$$);
-- an age a retention pass could not subtract from now() (timestamp out of
-- range: every pass of the database would fail)
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '10000 years')$$);
SELECT t.try($$SELECT eventsource.set_category_retention('Sensor', interval '1000 years 1 day')$$);
-- a negative part: the calendar cutoff would depend on the month's length
-- (in March, now() - '1 month -29 days' lies in the future)
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '1 month -29 days')$$);
SELECT t.try($$SELECT eventsource.set_retention('Future-1', interval '2 days -1 hour')$$);
SELECT t.try($$SELECT eventsource.set_category_retention(NULL, max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_category_retention('', max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_category_retention('Order-1', max_count => 1)$$);
SELECT t.try($$SELECT eventsource.set_category_retention('Sensor')$$);
SELECT t.try($$SELECT eventsource.clear_retention(NULL)$$);
SELECT t.try($$SELECT eventsource.clear_category_retention('a-b')$$);
-- nothing changed
SELECT scope, name, max_age, max_count FROM eventsource.retention ORDER BY scope, name;

-- in a read-only transaction
BEGIN READ ONLY;
SELECT t.try($$SELECT eventsource.set_retention('Future-1', max_count => 2)$$);
SELECT t.try($$SELECT eventsource.clear_retention('Future-1')$$);
ROLLBACK;

-- the rules table is written only by these functions (any role, superusers
-- included, also in replica mode)
SELECT t.try($$INSERT INTO eventsource.stream_retention (scope, name, max_count) VALUES ('stream', 'X', 1)$$);
SELECT t.try($$UPDATE eventsource.stream_retention SET max_count = 1$$);
SELECT t.try($$DELETE FROM eventsource.stream_retention$$);
SELECT t.try($$TRUNCATE eventsource.stream_retention$$);
SET session_replication_role = replica;
SELECT t.try($$DELETE FROM eventsource.stream_retention$$);
RESET session_replication_role;
-- nor can anyone delete from the log but the cleanup worker
SELECT t.try($$DELETE FROM eventsource.events WHERE false$$);
-- nor move cleaned_through (it says which rows are gone)
SELECT t.try($$UPDATE eventsource.stream_lifecycle SET cleaned_through = 0$$);

-- ---------------------------------------------------------------------------
-- the cleanup's surface
-- ---------------------------------------------------------------------------
-- a stream truncated: its lifecycle row says what is hidden, what the
-- cleanup removed (cleaned_through, cleaned_at) and what is pending; the
-- worker may have cleaned it already, so only the invariants are shown
SELECT stream_version FROM eventsource.append('Ret-1', 0,
    '[{"type": "A", "data": {}}, {"type": "A", "data": {}}, {"type": "A", "data": {}}]');
SELECT eventsource.truncate_stream('Ret-1', 3) > 0 AS truncated;
SELECT stream_id, hidden_through, cleaned_through IN (0, 2) AS cleaned_through_ok,
       pending_versions = hidden_through - cleaned_through AS pending_ok,
       (cleaned_at IS NULL) = (cleaned_through = 0) AS cleaned_at_ok, tombstoned
  FROM eventsource.stream_cleanup WHERE stream_id = 'Ret-1';
-- reads are the same whether or not the rows are gone
SELECT string_agg(stream_version::text, ',' ORDER BY stream_version) FROM eventsource.read_stream('Ret-1');
SELECT eventsource.stream_version('Ret-1');
-- one row for this database's worker; pending counts are not negative
SELECT count(*), bool_and(state IN ('running', 'disabled', 'starting', 'stopped')) AS state_ok,
       bool_and(streams_pending >= 0 AND versions_pending >= 0) AS pending_ok,
       bool_and(rows_removed >= 0 AND truncations >= 0) AS counters_ok
  FROM eventsource.cleanup_status;

-- nothing granted to PUBLIC
SELECT p.oid::regprocedure, has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'eventsource'::regnamespace
   AND p.proname IN ('set_retention', 'set_category_retention', 'clear_retention',
                     'clear_category_retention', 'cleanup_worker')
 ORDER BY 1::text;
SELECT c.relname, has_table_privilege('public', c.oid, 'SELECT') AS public_select
  FROM pg_class c
 WHERE c.relnamespace = 'eventsource'::regnamespace
   AND c.relname IN ('stream_retention', 'retention', 'stream_cleanup', 'cleanup_status')
 ORDER BY 1;

-- leave no rule behind
SELECT eventsource.clear_retention('Future-1'), eventsource.clear_retention('Future-2'),
       eventsource.clear_category_retention('Sensor');
SELECT count(*) FROM eventsource.retention;
