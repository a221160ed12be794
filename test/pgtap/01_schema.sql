-- The objects the extension creates, with their shapes: what users' code
-- and pg_dump rely on.
BEGIN;
SELECT plan(67);

SELECT has_schema('eventsource');
SELECT has_table('eventsource', 'events', 'the log');
SELECT has_table('eventsource', 'snapshots', 'snapshots');
SELECT has_table('eventsource', 'checkpoints', 'checkpoints');
SELECT has_view('eventsource', 'streams', 'streams view');
SELECT has_sequence('eventsource', 'events_global_position_seq', 'position sequence');

SELECT columns_are('eventsource', 'events', ARRAY[
    'global_position', 'stream_id', 'stream_version', 'event_id', 'event_type',
    'data', 'metadata', 'recorded_at', 'tenant_id']);
SELECT col_type_is('eventsource', 'events', 'global_position', 'bigint', 'events.global_position is bigint');
SELECT col_type_is('eventsource', 'events', 'stream_id', 'text', 'events.stream_id is text');
SELECT col_type_is('eventsource', 'events', 'stream_version', 'bigint', 'events.stream_version is bigint');
SELECT col_type_is('eventsource', 'events', 'event_id', 'uuid', 'events.event_id is uuid');
SELECT col_type_is('eventsource', 'events', 'event_type', 'text', 'events.event_type is text');
SELECT col_type_is('eventsource', 'events', 'data', 'jsonb', 'events.data is jsonb');
SELECT col_type_is('eventsource', 'events', 'metadata', 'jsonb', 'events.metadata is jsonb');
SELECT col_type_is('eventsource', 'events', 'recorded_at', 'timestamp with time zone', 'events.recorded_at is timestamp with time zone');
-- tenant_id in every key but the log's own integrity check, second in the
-- event id's (time-ordered ids append at its right edge: docs/tenancy.md)
SELECT col_is_pk('eventsource', 'events', ARRAY['tenant_id', 'stream_id', 'stream_version'], 'primary key (tenant_id, stream_id, stream_version)');
SELECT col_is_unique('eventsource', 'events', ARRAY['global_position'], 'global_position is unique');
SELECT col_is_unique('eventsource', 'events', ARRAY['event_id', 'tenant_id'], 'event_id is unique per tenant');
-- a new store's tenant columns have no stored "missing" default: with one,
-- every scan of the table projects each row (eventsource--1.0--1.1.sql,
-- foundation)
SELECT is((SELECT pg_catalog.array_agg(attrelid::regclass::text ORDER BY 1) FROM pg_catalog.pg_attribute
            WHERE attrelid IN ('eventsource.events'::regclass, 'eventsource.snapshots'::regclass,
                               'eventsource.checkpoints'::regclass)
              AND attnum > 0 AND atthasmissing),
          NULL, 'events, snapshots and checkpoints have no column with a missing value');
SELECT has_trigger('eventsource', 'events', 'events_guard', 'guard trigger on events');
SELECT has_trigger('eventsource', 'events', 'events_guard_truncate', 'truncate guard on events');

SELECT is((SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'eventsource_protect_handlers'),
    'O', 'the event trigger protecting handlers is enabled');
SELECT is((SELECT string_agg(tgname || '=' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
            WHERE tgrelid = 'eventsource.events'::regclass),
    'events_guard=A,events_guard_truncate=A', 'the guard triggers fire always, also in replica mode');

-- every function of the contract, with its signature and result
SELECT function_returns('eventsource', 'append', ARRAY['text', 'bigint', 'jsonb'], 'record');
SELECT function_returns('eventsource', 'append_event',
    ARRAY['text', 'bigint', 'text', 'jsonb', 'jsonb', 'uuid'], 'record');
SELECT function_returns('eventsource', 'read_stream',
    ARRAY['text', 'bigint', 'integer', 'boolean'], 'setof eventsource.events');
SELECT function_returns('eventsource', 'read_all',
    ARRAY['bigint', 'integer', 'text[]', 'text[]'], 'setof eventsource.events');
SELECT function_returns('eventsource', 'head_position', ARRAY[]::text[], 'bigint');
SELECT function_returns('eventsource', 'stream_version', ARRAY['text'], 'bigint');
SELECT function_returns('eventsource', 'stream_partition', ARRAY['text', 'integer'], 'integer');
SELECT function_returns('eventsource', 'category', ARRAY['text'], 'text');
SELECT function_returns('eventsource', 'save_snapshot',
    ARRAY['text', 'bigint', 'jsonb', 'integer'], 'void');
SELECT function_returns('eventsource', 'load_snapshot', ARRAY['text', 'integer'], 'setof record');
SELECT function_returns('eventsource', 'load', ARRAY['text', 'integer'], 'jsonb');
SELECT function_returns('eventsource', 'save_checkpoint', ARRAY['text', 'bigint'], 'void');
SELECT function_returns('eventsource', 'get_checkpoint', ARRAY['text'], 'bigint');
SELECT function_returns('eventsource', 'reset_checkpoint', ARRAY['text', 'bigint'], 'void');
-- 1.1: the stream lifecycle (docs/lifecycle.md)
SELECT has_table('eventsource', 'stream_lifecycle', 'per-stream lifecycle state');
SELECT has_view('eventsource', 'visible_events', 'the view every read path reads');
SELECT col_is_pk('eventsource', 'stream_lifecycle', ARRAY['tenant_id', 'stream_id'], 'stream_lifecycle keyed by tenant and stream id');
SELECT function_returns('eventsource', 'delete_stream', ARRAY['text', 'bigint', 'boolean'], 'bigint');
SELECT function_returns('eventsource', 'truncate_stream', ARRAY['text', 'bigint', 'bigint'], 'bigint');
SELECT function_returns('eventsource', 'erase_stream', ARRAY['text', 'text[]', 'bigint'], 'record');
SELECT function_returns('eventsource', 'erase_by_metadata', ARRAY['text', 'text', 'text[]', 'integer'], 'record');
-- 1.1: retention and the cleanup (docs/lifecycle.md)
SELECT has_table('eventsource', 'stream_retention', 'retention rules');
SELECT col_is_pk('eventsource', 'stream_retention', ARRAY['tenant_id', 'scope', 'name'], 'stream_retention keyed by tenant, scope and name');
SELECT has_column('eventsource', 'stream_lifecycle', 'cleaned_through', 'the cleanup''s progress per stream');
SELECT has_view('eventsource', 'retention', 'the rules');
SELECT has_view('eventsource', 'stream_cleanup', 'what the cleanup did per stream');
SELECT has_view('eventsource', 'cleanup_status', 'the cleanup worker');
SELECT function_returns('eventsource', 'set_retention', ARRAY['text', 'interval', 'bigint'], 'void');
SELECT function_returns('eventsource', 'set_category_retention', ARRAY['text', 'interval', 'bigint'], 'void');
SELECT function_returns('eventsource', 'clear_retention', ARRAY['text'], 'boolean');
SELECT function_returns('eventsource', 'clear_category_retention', ARRAY['text'], 'boolean');

-- the documented defaults
SELECT is(pg_get_function_arguments('eventsource.read_stream(text,bigint,integer,boolean)'::regprocedure),
    'stream_id text, from_version bigint DEFAULT NULL::bigint, max_count integer DEFAULT 1000, backwards boolean DEFAULT false',
    'read_stream defaults');
SELECT is(pg_get_function_arguments('eventsource.read_all(bigint,integer,text[],text[])'::regprocedure),
    'after_position bigint DEFAULT 0, max_count integer DEFAULT 1000, event_types text[] DEFAULT NULL::text[], categories text[] DEFAULT NULL::text[]',
    'read_all defaults');
SELECT is(pg_get_function_arguments('eventsource.append_event(text,bigint,text,jsonb,jsonb,uuid)'::regprocedure),
    'stream_id text, expected_version bigint, event_type text, data jsonb, metadata jsonb DEFAULT ''{}''::jsonb, event_id uuid DEFAULT NULL::uuid, OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint',
    'append_event defaults');
SELECT is(pg_get_function_result('eventsource.append(text,bigint,jsonb)'::regprocedure),
    'record', 'append returns a record');
SELECT is(pg_get_function_arguments('eventsource.append(text,bigint,jsonb)'::regprocedure),
    'stream_id text, expected_version bigint, events jsonb, OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint',
    'append columns');

-- the only SECURITY DEFINER function is the event trigger that protects
-- handlers (it must read the catalog whoever runs the DDL), and it pins its
-- search_path; everything else accesses tables as the owner inside C
SELECT set_eq(
    $$SELECT proname::text, proconfig FROM pg_proc
       WHERE pronamespace = 'eventsource'::regnamespace AND prosecdef$$,
    $$VALUES ('protect_handlers'::text, ARRAY['search_path=pg_catalog, pg_temp'])$$,
    'only protect_handlers is SECURITY DEFINER, with a pinned search_path');
-- pure helpers are immutable, reads stable, writes volatile
SELECT volatility_is('eventsource', 'stream_partition', ARRAY['text', 'integer'], 'immutable');
SELECT volatility_is('eventsource', 'append', ARRAY['text', 'bigint', 'jsonb'], 'volatile');
SELECT volatility_is('eventsource', 'read_all', ARRAY['bigint', 'integer', 'text[]', 'text[]'], 'volatile');

-- pg_dump keeps the user data
SELECT set_eq(
    $$SELECT c::regclass::text FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'eventsource'$$,
    ARRAY['eventsource.events', 'eventsource.events_global_position_seq',
          'eventsource.snapshots', 'eventsource.checkpoints',
          'eventsource.subscriptions', 'eventsource.subscriptions_id_seq',
          'eventsource.subscription_partitions',
          'eventsource.dead_letters', 'eventsource.dead_letters_id_seq',
          'eventsource.recent_errors', 'eventsource.recent_errors_id_seq',
          'eventsource.stream_lifecycle', 'eventsource.stream_retention',
          'eventsource.tenants', 'eventsource.tenant_roles'],
    'tables and sequences holding user data registered with pg_extension_config_dump');

-- the extension is not relocatable and lives in its own schema
SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'eventsource'), false, 'not relocatable');
SELECT is((SELECT count(*)::int FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
            WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventsource')
              AND d.deptype = 'e' AND c.relnamespace <> 'eventsource'::regnamespace),
    0, 'every relation of the extension is in schema eventsource');
SELECT is((SELECT count(*)::int FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
            WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventsource')
              AND d.deptype = 'e' AND p.pronamespace <> 'eventsource'::regnamespace),
    0, 'every function of the extension is in schema eventsource');

SELECT * FROM finish();
ROLLBACK;
