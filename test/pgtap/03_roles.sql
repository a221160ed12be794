-- Least privilege: the roles of docs/privileges.md (writer, reader,
-- operator, and the eraser of personal data), with exactly the GRANTs shown
-- there, can do exactly that:
-- every granted call works, every other function of the extension is
-- refused with 42501, and no role can read or write any table of the schema
-- directly.  Managing a subscription also needs the privileges of its owner;
-- the error text of another role's subscription is hidden unless the viewer
-- is a member of the owner role or of pg_read_all_stats.
BEGIN;
SELECT plan(
    9                                                -- the roles, the matrix itself
    + 3 * (SELECT count(*)::integer FROM pg_proc     -- every function, by each role
            WHERE pronamespace = 'eventsource'::regnamespace)
    + 4                                              -- what the granted calls did
    + 3                                              -- visible_events refused
    + 3 * 5 * (SELECT count(*)::integer FROM pg_class  -- 5 commands on every table
                WHERE relnamespace = 'eventsource'::regnamespace AND relkind = 'r')
    + 3 * (SELECT count(*)::integer FROM pg_class    -- nextval on every sequence
            WHERE relnamespace = 'eventsource'::regnamespace AND relkind = 'S')
    + 1 + 6 + 1                                      -- sequences counted, views
    + 1 * (SELECT count(*)::integer FROM pg_proc     -- every function, by the eraser
            WHERE pronamespace = 'eventsource'::regnamespace)
    + 3                                              -- the eraser's role, EXECUTE, what it did
    + 3 + 2                                          -- retention and cleanup views
    + 2                                              -- tenant_stats view
    + 28                                             -- subscription ownership
    + 14                                             -- error text visibility
);

-- ---------------------------------------------------------------------------
-- The roles, with the GRANTs of docs/privileges.md
-- ---------------------------------------------------------------------------
CREATE ROLE es_writer NOLOGIN;
CREATE ROLE es_reader NOLOGIN;
CREATE ROLE es_operator NOLOGIN;

-- writer: appends, reads, rebuilds aggregates, keeps snapshots
GRANT USAGE ON SCHEMA eventsource TO es_writer, es_reader, es_operator;
GRANT EXECUTE ON FUNCTION
    eventsource.append(text, bigint, jsonb),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[]),
    eventsource.head_position(),
    eventsource.stream_version(text),
    eventsource.load(text, integer),
    eventsource.save_snapshot(text, bigint, jsonb, integer),
    eventsource.load_snapshot(text, integer),
    -- the same with the tenant named per call (1.1, docs/tenancy.md)
    eventsource.append(text, bigint, jsonb, text),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid, text),
    eventsource.read_stream(text, bigint, integer, boolean, text),
    eventsource.read_all(bigint, integer, text[], text[], text),
    eventsource.stream_version(text, text),
    eventsource.load(text, integer, text),
    eventsource.save_snapshot(text, bigint, jsonb, integer, text),
    eventsource.load_snapshot(text, integer, text)
    TO es_writer;

-- reader: reads, rebuilds aggregates, keeps its own checkpoints
GRANT EXECUTE ON FUNCTION
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[]),
    eventsource.head_position(),
    eventsource.stream_version(text),
    eventsource.load(text, integer),
    eventsource.load_snapshot(text, integer),
    eventsource.get_checkpoint(text),
    eventsource.save_checkpoint(text, bigint),
    -- the same with the tenant named per call (1.1, docs/tenancy.md)
    eventsource.read_stream(text, bigint, integer, boolean, text),
    eventsource.read_all(bigint, integer, text[], text[], text),
    eventsource.stream_version(text, text),
    eventsource.load(text, integer, text),
    eventsource.load_snapshot(text, integer, text),
    eventsource.get_checkpoint(text, text),
    eventsource.save_checkpoint(text, bigint, text)
    TO es_reader;

-- operator: subscriptions and monitoring
GRANT EXECUTE ON FUNCTION
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
    eventsource.drop_subscription(text),
    eventsource.pause_subscription(text),
    eventsource.resume_subscription(text),
    eventsource.reset_subscription(text, bigint),
    eventsource.retry_dead_letters(text, bigint[]),
    eventsource.wait_for_subscription(text, bigint, interval),
    eventsource.health(),
    eventsource.readiness(),
    eventsource.liveness(),
    eventsource.error_stats(),
    eventsource.stat_reset(),
    eventsource.subscription_status_rows(),
    eventsource.store_stats_row(),
    eventsource.horizon_blocker_rows(),
    eventsource.tracing_stats(),
    eventsource.tenant_stats_rows()
    TO es_operator;
GRANT SELECT ON eventsource.subscription_status, eventsource.store_stats,
    eventsource.horizon_blockers, eventsource.tracing, eventsource.tenant_stats TO es_operator;
-- operator: stream lifecycle (delete, tombstone, truncate)
GRANT EXECUTE ON FUNCTION
    eventsource.delete_stream(text, bigint, boolean),
    eventsource.truncate_stream(text, bigint, bigint)
    TO es_operator;
-- operator: retention rules and the cleanup's status, see docs/lifecycle.md
GRANT EXECUTE ON FUNCTION
    eventsource.set_retention(text, interval, bigint),
    eventsource.set_category_retention(text, interval, bigint),
    eventsource.clear_retention(text),
    eventsource.clear_category_retention(text),
    eventsource.cleanup_worker()
    TO es_operator;
GRANT SELECT ON eventsource.retention, eventsource.stream_cleanup,
    eventsource.cleanup_status TO es_operator;
-- operator: tenants and the roles bound to them (docs/tenancy.md)
GRANT EXECUTE ON FUNCTION
    eventsource.create_tenant(text),
    eventsource.bind_role_to_tenant(regrole, text),
    eventsource.unbind_role_from_tenant(regrole, text)
    TO es_operator;

-- eraser: erasure of personal data, a role of its own (neither the
-- writer's nor the operator's)
CREATE ROLE es_eraser NOLOGIN;
GRANT USAGE ON SCHEMA eventsource TO es_eraser;
GRANT EXECUTE ON FUNCTION
    eventsource.erase_stream(text, text[], bigint),
    eventsource.erase_by_metadata(text, text, text[], integer)
    TO es_eraser;

-- test scaffolding (rolled back with the rest): a handler, an application
-- role that owns a subscription, a stream with an event
CREATE SCHEMA roles_test;
CREATE ROLE roles_test_tenant_app NOLOGIN;
CREATE FUNCTION roles_test.handler(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
-- the HINT of the error a statement raises (NULL when it succeeds)
CREATE FUNCTION roles_test.error_hint(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    h text;
BEGIN
    EXECUTE cmd;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT;
    RETURN h;
END $$;
GRANT USAGE ON SCHEMA roles_test TO es_writer, es_reader, es_operator;
SELECT eventsource.append_event('Role-1', 0, 'Created', '{}');
SELECT eventsource.append('Role-2', 0, '[{"type": "Created", "data": {}}, {"type": "Changed", "data": {}}]');

SELECT has_role('es_writer');
SELECT has_role('es_reader');
SELECT has_role('es_operator');

-- ---------------------------------------------------------------------------
-- The call matrix: one valid call of every function of the extension, and
-- which role may make it.  Rows run in order (the operator's subscription is
-- created before it is managed and dropped last).
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE matrix (
    ord      integer PRIMARY KEY,
    fn       regprocedure NOT NULL,
    call     text NOT NULL,
    writer   boolean NOT NULL,
    reader   boolean NOT NULL,
    operator boolean NOT NULL
);
INSERT INTO matrix VALUES
    (1, 'eventsource.append(text,bigint,jsonb)',
        $$SELECT eventsource.append('Role-1', NULL, '[{"type": "Changed", "data": {}}]')$$, true, false, false),
    (2, 'eventsource.append_event(text,bigint,text,jsonb,jsonb,uuid)',
        $$SELECT eventsource.append_event('Role-1', NULL, 'Changed', '{}')$$, true, false, false),
    (3, 'eventsource.read_stream(text,bigint,integer,boolean)',
        $$SELECT count(*) FROM eventsource.read_stream('Role-1')$$, true, true, false),
    (4, 'eventsource.read_all(bigint,integer,text[],text[])',
        $$SELECT count(*) FROM eventsource.read_all()$$, true, true, false),
    (5, 'eventsource.head_position()',
        $$SELECT eventsource.head_position()$$, true, true, false),
    (6, 'eventsource.stream_version(text)',
        $$SELECT eventsource.stream_version('Role-1')$$, true, true, false),
    (7, 'eventsource.category(text)',
        $$SELECT eventsource.category('Role-1')$$, true, true, true),
    (8, 'eventsource.stream_partition(text,integer)',
        $$SELECT eventsource.stream_partition('Role-1', 4)$$, true, true, true),
    (9, 'eventsource.save_snapshot(text,bigint,jsonb,integer)',
        $$SELECT eventsource.save_snapshot('Role-1', 1, '{"status": "created"}')$$, true, false, false),
    (10, 'eventsource.load_snapshot(text,integer)',
        $$SELECT count(*) FROM eventsource.load_snapshot('Role-1')$$, true, true, false),
    (11, 'eventsource.load(text,integer)',
        $$SELECT eventsource.load('Role-1')$$, true, true, false),
    (12, 'eventsource.save_checkpoint(text,bigint)',
        $$SELECT eventsource.save_checkpoint('role_cp', 1)$$, false, true, false),
    (13, 'eventsource.get_checkpoint(text)',
        $$SELECT eventsource.get_checkpoint('role_cp')$$, false, true, false),
    (14, 'eventsource.reset_checkpoint(text,bigint)',
        $$SELECT eventsource.reset_checkpoint('role_cp', 0)$$, false, false, false),
    (15, 'eventsource.create_subscription(text,regprocedure,text,integer,text,interval,interval,integer,interval,boolean,integer,interval,text[],text[],integer,text)',
        $$SELECT eventsource.create_subscription('role_sub', 'roles_test.handler(eventsource.events)')$$, false, false, true),
    (16, 'eventsource.pause_subscription(text)',
        $$SELECT eventsource.pause_subscription('role_sub')$$, false, false, true),
    (17, 'eventsource.resume_subscription(text)',
        $$SELECT eventsource.resume_subscription('role_sub')$$, false, false, true),
    (18, 'eventsource.reset_subscription(text,bigint)',
        $$SELECT eventsource.reset_subscription('role_sub', 0)$$, false, false, true),
    (19, 'eventsource.retry_dead_letters(text,bigint[])',
        $$SELECT eventsource.retry_dead_letters('role_sub')$$, false, false, true),
    (20, 'eventsource.wait_for_subscription(text,bigint,interval)',
        $$SELECT eventsource.wait_for_subscription('role_sub', 0, '0')$$, false, false, true),
    (21, 'eventsource.health()',
        $$SELECT eventsource.health()$$, false, false, true),
    (22, 'eventsource.readiness()',
        $$SELECT eventsource.readiness()$$, false, false, true),
    (23, 'eventsource.liveness()',
        $$SELECT eventsource.liveness()$$, false, false, true),
    (24, 'eventsource.error_stats()',
        $$SELECT eventsource.error_stats()$$, false, false, true),
    (25, 'eventsource.stat_reset()',
        $$SELECT eventsource.stat_reset()$$, false, false, true),
    (26, 'eventsource.subscription_status_rows()',
        $$SELECT count(*) FROM eventsource.subscription_status_rows()$$, false, false, true),
    (27, 'eventsource.store_stats_row()',
        $$SELECT * FROM eventsource.store_stats_row()$$, false, false, true),
    (28, 'eventsource.horizon_blocker_rows()',
        $$SELECT count(*) FROM eventsource.horizon_blocker_rows()$$, false, false, true),
    (29, 'eventsource.events_guard()',
        $$SELECT eventsource.events_guard()$$, false, false, false),
    (30, 'eventsource.drop_subscription(text)',
        $$SELECT eventsource.drop_subscription('role_sub')$$, false, false, true),
    (31, 'eventsource.protect_handlers()',
        $$SELECT eventsource.protect_handlers()$$, false, false, false),
    -- EXECUTE for PUBLIC, but it checks EXECUTE on subscription_status_rows()
    (32, 'eventsource.subscription_status_rows_v2()',
        $$SELECT count(*) FROM eventsource.subscription_status_rows_v2()$$, false, false, true),
    (33, 'eventsource.tracing_stats()',
        $$SELECT * FROM eventsource.tracing_stats()$$, false, false, true),
    (34, 'eventsource.truncate_stream(text,bigint,bigint)',
        $$SELECT eventsource.truncate_stream('Role-2', 2)$$, false, false, true),
    (35, 'eventsource.delete_stream(text,bigint,boolean)',
        $$SELECT eventsource.delete_stream('Role-2', 2, true)$$, false, false, true),
    -- the eraser's only (below)
    (36, 'eventsource.erase_stream(text,text[],bigint)',
        $$SELECT eventsource.erase_stream('Role-1')$$, false, false, false),
    (37, 'eventsource.erase_by_metadata(text,text,text[],integer)',
        $$SELECT eventsource.erase_by_metadata('subject_id', 'role')$$, false, false, false),
    (38, 'eventsource.set_retention(text,interval,bigint)',
        $$SELECT eventsource.set_retention('Role-3', max_count => 5)$$, false, false, true),
    (39, 'eventsource.set_category_retention(text,interval,bigint)',
        $$SELECT eventsource.set_category_retention('RoleCat', interval '30 days')$$, false, false, true),
    (40, 'eventsource.clear_retention(text)',
        $$SELECT eventsource.clear_retention('Role-3')$$, false, false, true),
    (41, 'eventsource.clear_category_retention(text)',
        $$SELECT eventsource.clear_category_retention('RoleCat')$$, false, false, true),
    (42, 'eventsource.cleanup_worker()',
        $$SELECT * FROM eventsource.cleanup_worker()$$, false, false, true),
    -- every role: the policies of row-level security call it
    (43, 'eventsource.current_tenant()',
        $$SELECT eventsource.current_tenant()$$, true, true, true),
    (44, 'eventsource.create_tenant(text)',
        $$SELECT eventsource.create_tenant('role_t')$$, false, false, true),
    (45, 'eventsource.bind_role_to_tenant(regrole,text)',
        $$SELECT eventsource.bind_role_to_tenant('roles_test_tenant_app', 'role_t')$$, false, false, true),
    (46, 'eventsource.unbind_role_from_tenant(regrole,text)',
        $$SELECT eventsource.unbind_role_from_tenant('roles_test_tenant_app', 'role_t')$$, false, false, true),
    (47, 'eventsource.tenant_stats_rows()',
        $$SELECT count(*) FROM eventsource.tenant_stats_rows()$$, false, false, true),
    -- EXECUTE for PUBLIC, but it checks EXECUTE on subscription_status_rows()
    (48, 'eventsource.subscription_status_rows_v3()',
        $$SELECT count(*) FROM eventsource.subscription_status_rows_v3()$$, false, false, true),
    -- the overloads that name the tenant per call
    (49, 'eventsource.append(text,bigint,jsonb,text)',
        $$SELECT eventsource.append('Role-1', NULL, '[{"type": "Changed", "data": {}}]', 'default')$$, true, false, false),
    (50, 'eventsource.append_event(text,bigint,text,jsonb,jsonb,uuid,text)',
        $$SELECT eventsource.append_event('Role-1', NULL, 'Changed', '{}', '{}', NULL, 'default')$$, true, false, false),
    (51, 'eventsource.read_stream(text,bigint,integer,boolean,text)',
        $$SELECT count(*) FROM eventsource.read_stream('Role-1', NULL, 10, false, 'default')$$, true, true, false),
    (52, 'eventsource.read_all(bigint,integer,text[],text[],text)',
        $$SELECT count(*) FROM eventsource.read_all(0, 10, NULL, NULL, 'default')$$, true, true, false),
    (53, 'eventsource.stream_version(text,text)',
        $$SELECT eventsource.stream_version('Role-1', 'default')$$, true, true, false),
    (54, 'eventsource.save_snapshot(text,bigint,jsonb,integer,text)',
        $$SELECT eventsource.save_snapshot('Role-1', 1, '{"status": "created"}', 1, 'default')$$, true, false, false),
    (55, 'eventsource.load_snapshot(text,integer,text)',
        $$SELECT count(*) FROM eventsource.load_snapshot('Role-1', 1, 'default')$$, true, true, false),
    (56, 'eventsource.load(text,integer,text)',
        $$SELECT eventsource.load('Role-1', 1, 'default')$$, true, true, false),
    (57, 'eventsource.save_checkpoint(text,bigint,text)',
        $$SELECT eventsource.save_checkpoint('role_cp', 1, 'default')$$, false, true, false),
    (58, 'eventsource.get_checkpoint(text,text)',
        $$SELECT eventsource.get_checkpoint('role_cp', 'default')$$, false, true, false),
    (59, 'eventsource.reset_checkpoint(text,bigint,text)',
        $$SELECT eventsource.reset_checkpoint('role_cp', 0, 'default')$$, false, false, false),
    -- every role: the policies of dead_letters and recent_errors call it
    (60, 'eventsource.caller_bound_to_tenants()',
        $$SELECT eventsource.caller_bound_to_tenants()$$, true, true, true);
GRANT SELECT ON matrix TO es_writer, es_reader, es_operator, es_eraser;

-- the matrix names every function of the schema, once
SELECT set_eq(
    $$SELECT fn::oid FROM matrix$$,
    $$SELECT oid FROM pg_proc WHERE pronamespace = 'eventsource'::regnamespace$$,
    'the call matrix covers every function of the extension');
SELECT is((SELECT count(*)::integer FROM matrix), (SELECT count(DISTINCT fn)::integer FROM matrix),
    'each function once');
-- and EXECUTE is what the catalog says it is, for each role (for the
-- status function of 1.1: EXECUTE on 1.0's, which it checks itself)
CREATE FUNCTION pg_temp.gate(fn regprocedure) RETURNS regprocedure LANGUAGE sql AS $$
    SELECT CASE WHEN fn IN ('eventsource.subscription_status_rows_v2()'::regprocedure,
                            'eventsource.subscription_status_rows_v3()'::regprocedure)
                THEN 'eventsource.subscription_status_rows()'::regprocedure ELSE fn END
$$;
SELECT is(
    (SELECT array_agg(ord ORDER BY ord) FROM matrix
      WHERE has_function_privilege('es_writer', pg_temp.gate(fn), 'EXECUTE') <> writer),
    NULL, 'es_writer: EXECUTE as in the matrix');
SELECT is(
    (SELECT array_agg(ord ORDER BY ord) FROM matrix
      WHERE has_function_privilege('es_reader', pg_temp.gate(fn), 'EXECUTE') <> reader),
    NULL, 'es_reader: EXECUTE as in the matrix');
SELECT is(
    (SELECT array_agg(ord ORDER BY ord) FROM matrix
      WHERE has_function_privilege('es_operator', pg_temp.gate(fn), 'EXECUTE') <> operator),
    NULL, 'es_operator: EXECUTE as in the matrix');
SELECT is(
    (SELECT array_agg(p.proname::text ORDER BY p.proname) FROM pg_proc p
      WHERE p.pronamespace = 'eventsource'::regnamespace
        AND has_function_privilege('public', p.oid, 'EXECUTE')),
    ARRAY['caller_bound_to_tenants', 'category', 'current_tenant', 'stream_partition',
          'subscription_status_rows_v2', 'subscription_status_rows_v3'],
    'PUBLIC may only run the pure helpers, current_tenant() and caller_bound_to_tenants() (row-level security calls them), and the status function that checks EXECUTE on 1.0''s');

-- each role makes every call: granted ones work, the others fail with 42501
SET ROLE es_writer;
SELECT CASE WHEN writer
            THEN lives_ok(call, format('es_writer may call %s', fn))
            ELSE throws_ok(call, '42501', NULL, format('es_writer may not call %s', fn)) END
  FROM matrix ORDER BY ord;
RESET ROLE;
SET ROLE es_reader;
SELECT CASE WHEN reader
            THEN lives_ok(call, format('es_reader may call %s', fn))
            ELSE throws_ok(call, '42501', NULL, format('es_reader may not call %s', fn)) END
  FROM matrix ORDER BY ord;
RESET ROLE;
SET ROLE es_operator;
SELECT CASE WHEN operator
            THEN lives_ok(call, format('es_operator may call %s', fn))
            ELSE throws_ok(call, '42501', NULL, format('es_operator may not call %s', fn)) END
  FROM matrix ORDER BY ord;
RESET ROLE;

-- what the granted calls did
SELECT is((SELECT count(*)::integer FROM eventsource.read_stream('Role-1')), 5,
    'the writer''s four appends (two with the tenant named) are in the stream');
SELECT is((SELECT stream_version FROM eventsource.load_snapshot('Role-1')), 1::bigint,
    'the writer''s snapshot is there');
SELECT is(eventsource.get_checkpoint('role_cp'), 1::bigint, 'the reader''s checkpoint is there');
SELECT is((SELECT tombstoned FROM eventsource.stream_lifecycle WHERE stream_id = 'Role-2'), true,
    'the operator''s truncate and hard delete are recorded');

-- the eraser may call the two erasure functions and nothing else
SELECT has_role('es_eraser');
SELECT is(
    (SELECT array_agg(ord ORDER BY ord) FROM matrix
      WHERE has_function_privilege('es_eraser', pg_temp.gate(fn), 'EXECUTE') <> (ord IN (7, 8, 36, 37, 43, 60))),
    NULL, 'es_eraser: EXECUTE on the erasure functions (and the PUBLIC helpers) only');
SET ROLE es_eraser;
SELECT CASE WHEN ord IN (7, 8, 36, 37, 43, 60)
            THEN lives_ok(call, format('es_eraser may call %s', fn))
            ELSE throws_ok(call, '42501', NULL, format('es_eraser may not call %s', fn)) END
  FROM matrix ORDER BY ord;
RESET ROLE;
SELECT is((SELECT string_agg(data::text, ',' ORDER BY stream_version) FROM eventsource.read_stream('Role-1')),
    '{"$erased": true},{"$erased": true},{"$erased": true},{"$erased": true},{"$erased": true}',
    'the eraser erased Role-1 (its five events)');

-- ---------------------------------------------------------------------------
-- No role reads or writes a table of the schema directly, nor takes
-- positions from the sequences
-- ---------------------------------------------------------------------------
CREATE TEMP TABLE table_ops AS
SELECT c.relname, o.op, o.n,
       format(o.sql, c.relname,
              (SELECT attname FROM pg_attribute
                WHERE attrelid = c.oid AND attnum > 0 AND attidentity = '' AND NOT attisdropped
                ORDER BY attnum LIMIT 1)) AS cmd
  FROM pg_class c,
       (VALUES (1, 'SELECT', 'SELECT count(*) FROM eventsource.%I'),
               (2, 'INSERT', 'INSERT INTO eventsource.%I DEFAULT VALUES'),
               (3, 'UPDATE', 'UPDATE eventsource.%I SET %2$I = %2$I'),
               (4, 'DELETE', 'DELETE FROM eventsource.%I'),
               (5, 'TRUNCATE', 'TRUNCATE eventsource.%I')) o(n, op, sql)
 WHERE c.relnamespace = 'eventsource'::regnamespace AND c.relkind = 'r';
GRANT SELECT ON table_ops TO es_writer, es_reader, es_operator;
CREATE TEMP TABLE seq_ops AS
SELECT c.relname, o.n, format(o.sql, c.relname) AS cmd, o.op
  FROM pg_class c,
       (VALUES (1, 'nextval', $$SELECT nextval('eventsource.%I')$$)) o(n, op, sql)
 WHERE c.relnamespace = 'eventsource'::regnamespace AND c.relkind = 'S';
GRANT SELECT ON seq_ops TO es_writer, es_reader, es_operator;

SET ROLE es_writer;
SELECT throws_ok(cmd, '42501', NULL, format('es_writer: %s on eventsource.%s refused', op, relname))
  FROM table_ops ORDER BY relname, n;
SELECT throws_ok(cmd, '42501', NULL, format('es_writer: %s on eventsource.%s refused', op, relname))
  FROM seq_ops ORDER BY relname, n;
SELECT throws_ok('SELECT count(*) FROM eventsource.streams', '42501', NULL,
    'es_writer: SELECT on the streams view refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.subscription_status', '42501', NULL,
    'es_writer: SELECT on subscription_status refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.visible_events', '42501', NULL,
    'es_writer: SELECT on visible_events refused');
RESET ROLE;
SET ROLE es_reader;
SELECT throws_ok(cmd, '42501', NULL, format('es_reader: %s on eventsource.%s refused', op, relname))
  FROM table_ops ORDER BY relname, n;
SELECT throws_ok(cmd, '42501', NULL, format('es_reader: %s on eventsource.%s refused', op, relname))
  FROM seq_ops ORDER BY relname, n;
SELECT throws_ok('SELECT count(*) FROM eventsource.streams', '42501', NULL,
    'es_reader: SELECT on the streams view refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.store_stats', '42501', NULL,
    'es_reader: SELECT on store_stats refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.tenant_stats', '42501', NULL,
    'es_reader: SELECT on tenant_stats refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.visible_events', '42501', NULL,
    'es_reader: SELECT on visible_events refused');
RESET ROLE;
SET ROLE es_operator;
SELECT throws_ok(cmd, '42501', NULL, format('es_operator: %s on eventsource.%s refused', op, relname))
  FROM table_ops ORDER BY relname, n;
SELECT throws_ok(cmd, '42501', NULL, format('es_operator: %s on eventsource.%s refused', op, relname))
  FROM seq_ops ORDER BY relname, n;
SELECT throws_ok('SELECT count(*) FROM eventsource.streams', '42501', NULL,
    'es_operator: SELECT on the streams view refused');
SELECT lives_ok('SELECT count(*) FROM eventsource.horizon_blockers',
    'es_operator: SELECT on horizon_blockers works');
SELECT lives_ok('SELECT count(*) FROM eventsource.tenant_stats',
    'es_operator: SELECT on tenant_stats works');
SELECT throws_ok('SELECT count(*) FROM eventsource.visible_events', '42501', NULL,
    'es_operator: SELECT on visible_events refused');
SELECT lives_ok('SELECT count(*) FROM eventsource.retention',
    'es_operator: SELECT on retention works');
SELECT lives_ok('SELECT count(*) FROM eventsource.stream_cleanup',
    'es_operator: SELECT on stream_cleanup works');
SELECT lives_ok('SELECT count(*) FROM eventsource.cleanup_status',
    'es_operator: SELECT on cleanup_status works');
RESET ROLE;
SET ROLE es_writer;
SELECT throws_ok('SELECT count(*) FROM eventsource.cleanup_status', '42501', NULL,
    'es_writer: SELECT on cleanup_status refused');
SELECT throws_ok('SELECT count(*) FROM eventsource.retention', '42501', NULL,
    'es_writer: SELECT on retention refused');
RESET ROLE;
SELECT is((SELECT count(*)::integer FROM seq_ops), 4, 'four sequences in the schema');

-- the views run their functions with the caller's EXECUTE: SELECT on the
-- view alone is not enough
CREATE ROLE es_view_only NOLOGIN;
GRANT SELECT ON eventsource.subscription_status TO es_view_only;
SET ROLE es_view_only;
SELECT throws_ok('SELECT count(*) FROM eventsource.subscription_status', '42501',
    'permission denied for function subscription_status_rows',
    'SELECT on subscription_status without EXECUTE on its function is refused');
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Managing a subscription needs the privileges of its owner
-- ---------------------------------------------------------------------------
CREATE ROLE es_app NOLOGIN;
GRANT USAGE ON SCHEMA roles_test TO es_app;
GRANT EXECUTE ON FUNCTION
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)
    TO es_app;
SET ROLE es_app;
SELECT lives_ok($$SELECT eventsource.create_subscription('app_sub', 'roles_test.handler(eventsource.events)', partitions => 2)$$,
    'es_app creates a subscription: it owns it');
RESET ROLE;
SELECT lives_ok($$SELECT eventsource.create_subscription('su_sub', 'roles_test.handler(eventsource.events)')$$,
    'the superuser creates one too');
SELECT is((SELECT owner::text FROM eventsource.subscriptions WHERE name = 'app_sub'), 'es_app',
    'app_sub belongs to es_app');

-- the operator, not a member of es_app: 42501 for every management call,
-- with a hint naming the role to be granted; waiting needs no ownership
SET ROLE es_operator;
SELECT throws_ok($$SELECT eventsource.pause_subscription('app_sub')$$, '42501',
    'must be owner of subscription "app_sub"', 'operator may not pause another role''s subscription');
SELECT throws_ok($$SELECT eventsource.resume_subscription('app_sub')$$, '42501',
    'must be owner of subscription "app_sub"', 'operator may not resume it');
SELECT throws_ok($$SELECT eventsource.reset_subscription('app_sub', 0)$$, '42501',
    'must be owner of subscription "app_sub"', 'operator may not reset it');
SELECT throws_ok($$SELECT eventsource.retry_dead_letters('app_sub')$$, '42501',
    'must be owner of subscription "app_sub"', 'operator may not retry its dead letters');
SELECT throws_ok($$SELECT eventsource.drop_subscription('app_sub')$$, '42501',
    'must be owner of subscription "app_sub"', 'operator may not drop it');
SELECT is(roles_test.error_hint($$SELECT eventsource.pause_subscription('app_sub')$$),
    'Its owner can grant you membership in role "es_app".', 'the hint names the owner role');
SELECT lives_ok($$SELECT eventsource.wait_for_subscription('app_sub', 0, '0')$$,
    'operator may wait for it (no ownership needed)');
SELECT throws_ok($$SELECT eventsource.pause_subscription('su_sub')$$, '42501',
    'must be owner of subscription "su_sub"', 'operator may not pause the superuser''s subscription');
SELECT throws_ok($$SELECT eventsource.pause_subscription('app_nope')$$, '42704',
    'subscription "app_nope" does not exist', 'an unknown name is 42704, not 42501');
RESET ROLE;
SELECT is((SELECT state FROM eventsource.subscriptions WHERE name = 'app_sub'), 'active',
    'app_sub is untouched');

-- the writer and the reader get 42501 before any ownership check
SET ROLE es_writer;
SELECT throws_ok($$SELECT eventsource.pause_subscription('app_sub')$$, '42501',
    'permission denied for function pause_subscription', 'writer: no EXECUTE on pause_subscription');
RESET ROLE;
SET ROLE es_reader;
SELECT throws_ok($$SELECT eventsource.drop_subscription('app_sub')$$, '42501',
    'permission denied for function drop_subscription', 'reader: no EXECUTE on drop_subscription');
RESET ROLE;

-- membership in the owner role is what it takes: GRANT es_app TO es_operator
GRANT es_app TO es_operator;
SET ROLE es_operator;
SELECT lives_ok($$SELECT eventsource.pause_subscription('app_sub')$$, 'member of es_app: pause');
SELECT is((SELECT state FROM eventsource.subscription_status WHERE name = 'app_sub' AND partition = 0),
    'paused', 'the status view shows it paused');
SELECT lives_ok($$SELECT eventsource.resume_subscription('app_sub')$$, 'member of es_app: resume');
SELECT lives_ok($$SELECT eventsource.reset_subscription('app_sub', 0)$$, 'member of es_app: reset');
SELECT is((SELECT eventsource.retry_dead_letters('app_sub')), 0, 'member of es_app: retry_dead_letters');
-- still not the superuser's subscription
SELECT throws_ok($$SELECT eventsource.pause_subscription('su_sub')$$, '42501',
    'must be owner of subscription "su_sub"', 'membership in es_app does not reach su_sub');
RESET ROLE;

-- a subscription the operator created is its own: no extra GRANT needed
SET ROLE es_operator;
SELECT lives_ok($$SELECT eventsource.create_subscription('op_sub', 'roles_test.handler(eventsource.events)')$$,
    'operator creates its own subscription');
SELECT lives_ok($$SELECT eventsource.pause_subscription('op_sub')$$, 'and pauses it');
RESET ROLE;
SELECT is((SELECT owner::text FROM eventsource.subscriptions WHERE name = 'op_sub'), 'es_operator',
    'op_sub belongs to es_operator');

-- es_app cannot manage the operator's subscription (membership goes one way)
GRANT EXECUTE ON FUNCTION eventsource.pause_subscription(text) TO es_app;
SET ROLE es_app;
SELECT throws_ok($$SELECT eventsource.pause_subscription('op_sub')$$, '42501',
    'must be owner of subscription "op_sub"', 'es_app may not pause the operator''s subscription');
RESET ROLE;

-- and the operator, as member, may drop es_app's subscription
SET ROLE es_operator;
SELECT lives_ok($$SELECT eventsource.drop_subscription('app_sub')$$, 'member of es_app: drop');
RESET ROLE;
SELECT is((SELECT count(*)::integer FROM eventsource.subscriptions WHERE name = 'app_sub'), 0,
    'app_sub is gone');

-- a role that does not inherit its memberships does not get the owner's
-- privileges (has_privs_of_role)
CREATE ROLE es_noinherit NOLOGIN NOINHERIT;
GRANT es_operator TO es_noinherit;
GRANT EXECUTE ON FUNCTION eventsource.pause_subscription(text) TO es_noinherit;
SET ROLE es_noinherit;
SELECT throws_ok($$SELECT eventsource.pause_subscription('op_sub')$$, '42501',
    'must be owner of subscription "op_sub"', 'NOINHERIT member of the owner role is refused');
RESET ROLE;
REVOKE es_app FROM es_operator;

-- ---------------------------------------------------------------------------
-- Error text of another role's subscription: '<insufficient privilege>'
-- unless the viewer is a member of the owner role or of pg_read_all_stats.
-- A partition that stopped at an event keeps its error in the table; it is
-- written here as a worker would, in this transaction, so no worker runs.
-- ---------------------------------------------------------------------------
SET ROLE es_app;
SELECT lives_ok($$SELECT eventsource.create_subscription('app_failing', 'roles_test.handler(eventsource.events)', continue_on_error => false)$$,
    'es_app creates a subscription that will fail');
RESET ROLE;
UPDATE eventsource.subscription_partitions
   SET state = 'failed', failed_position = 1, failed_event_id = gen_random_uuid(),
       error_message = 'secret: customer 42 has no credit', error_sqlstate = 'P0001',
       failed_at = now()
 WHERE subscription IN ('app_failing', 'op_sub');
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'secret: customer 42 has no credit', 'the superuser sees the error text');

SET ROLE es_operator;
SELECT is((SELECT state FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'failed', 'operator sees that app_failing failed');
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    '<insufficient privilege>', 'operator does not see another role''s error text');
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'op_sub'),
    'secret: customer 42 has no credit', 'operator sees its own subscription''s error text');
SELECT is((SELECT last_sqlstate FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'P0001', 'the SQLSTATE is not hidden');
SELECT ok(strpos(eventsource.health()::text, 'customer 42') = 0, 'health() carries no error text');
SELECT ok(strpos(eventsource.readiness()::text, 'customer 42') = 0, 'readiness() carries no error text');
SELECT ok(strpos(eventsource.error_stats()::text, 'customer 42') = 0, 'error_stats() carries no error text');
RESET ROLE;

-- member of pg_read_all_stats: sees it
GRANT pg_read_all_stats TO es_operator;
SET ROLE es_operator;
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'secret: customer 42 has no credit', 'a member of pg_read_all_stats sees the error text');
RESET ROLE;
REVOKE pg_read_all_stats FROM es_operator;

-- member of the owner role: sees it
GRANT es_app TO es_operator;
SET ROLE es_operator;
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'secret: customer 42 has no credit', 'a member of the owner role sees the error text');
RESET ROLE;
REVOKE es_app FROM es_operator;

-- and the owner does, the others still do not
SET ROLE es_operator;
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    '<insufficient privilege>', 'hidden again once the membership is revoked');
RESET ROLE;
GRANT EXECUTE ON FUNCTION eventsource.subscription_status_rows() TO es_app;
GRANT SELECT ON eventsource.subscription_status TO es_app;
SET ROLE es_app;
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'app_failing'),
    'secret: customer 42 has no credit', 'the owner sees its own error text');
SELECT is((SELECT last_error FROM eventsource.subscription_status WHERE name = 'op_sub'),
    '<insufficient privilege>', 'the owner does not see the operator''s error text');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
