-- Tenant isolation enforced by the database (issue 15, docs/tenancy.md): a
-- role bound to tenant 'acme', even one holding every privilege on the
-- tables, reads and changes only acme's rows, whatever SQL it sends: SELECT,
-- INSERT, UPDATE, DELETE, TRUNCATE and COPY on every table and view that
-- holds tenant data, a trigger or a foreign key on them, a function of its
-- own in a condition on a view, the store's functions (the tenant
-- functions included), and a crafted search_path.  Bound-ness holds through
-- SET ROLE (the session's role's bindings) and NOINHERIT membership; a
-- bound role cannot be dropped, an exempt role cannot be bound; row-level
-- security asks for the tenant once per query.
BEGIN;
SELECT plan(88);

-- ---------------------------------------------------------------------------
-- Fixtures: two tenants with the same stream id, a snapshot and a
-- checkpoint each; ten_app bound to acme, holding all privileges
-- ---------------------------------------------------------------------------
SELECT eventsource.create_tenant('acme');
SELECT eventsource.create_tenant('globex');
SET LOCAL eventsource.tenant = 'acme';
SELECT eventsource.append('Iso-1', 0, '[{"type": "A", "data": {"t": "acme"}}, {"type": "B", "data": {}}]');
SELECT eventsource.save_snapshot('Iso-1', 1, '{"t": "acme"}');
SELECT eventsource.save_checkpoint('iso_cp', 1);
SET LOCAL eventsource.tenant = 'globex';
SELECT eventsource.append('Iso-1', 0, '[{"type": "A", "data": {"t": "globex"}}]');
SELECT eventsource.save_snapshot('Iso-1', 1, '{"t": "globex"}');
SELECT eventsource.save_checkpoint('iso_cp', 7);
SELECT eventsource.append('Secret-globex', 0, '[{"type": "A", "data": {}}]');
-- lifecycle (issue 15 part 2): Iso-2 truncated in both tenants, and a
-- category rule each
SELECT set_config('eventsource.tenant', t, true),
       eventsource.append('Iso-2', 0, format('[{"type": "A", "data": {"t": "%1$s"}}, {"type": "B", "data": {"t": "%1$s"}}]', t)::jsonb),
       eventsource.truncate_stream('Iso-2', 2),
       eventsource.set_category_retention('Iso', max_count => 100)
  FROM unnest(ARRAY['acme', 'globex']) t;
RESET eventsource.tenant;

CREATE ROLE ten_app NOLOGIN;
SELECT eventsource.bind_role_to_tenant('ten_app', 'acme');
GRANT USAGE ON SCHEMA eventsource TO ten_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO ten_app;
-- ALL: SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES and TRIGGER
GRANT ALL ON eventsource.events, eventsource.snapshots,
    eventsource.checkpoints, eventsource.tenants, eventsource.tenant_roles,
    eventsource.streams, eventsource.stream_lifecycle, eventsource.stream_retention TO ten_app;
GRANT SELECT ON eventsource.retention, eventsource.stream_cleanup, eventsource.cleanup_status TO ten_app;
GRANT pg_write_server_files, pg_read_server_files TO ten_app;
-- a schema of its own (a foreign key needs a permanent table)
CREATE SCHEMA ten_own;
GRANT USAGE, CREATE ON SCHEMA ten_own TO ten_app;

-- what every table holds for another tenant than acme, read past row-level
-- security (this runs as the superuser)
CREATE FUNCTION pg_temp.others(tbl text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM eventsource.%I WHERE tenant_id <> %L', tbl, 'acme') INTO n;
    RETURN n;
END $$;
CREATE TEMP TABLE before AS
    SELECT t, pg_temp.others(t) AS n
      FROM unnest(ARRAY['events', 'snapshots', 'checkpoints', 'tenants', 'tenant_roles',
                         'stream_lifecycle', 'stream_retention']) t;
GRANT SELECT ON before TO ten_app;

-- ---------------------------------------------------------------------------
-- SELECT: only acme's rows, in every table and in the streams view
-- ---------------------------------------------------------------------------
SET LOCAL ROLE ten_app;
SELECT is(eventsource.current_tenant(), 'acme', 'the bound role''s tenant needs no SET');
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM eventsource.events), ARRAY['acme'],
    'events: SELECT sees acme''s rows only');
SELECT is((SELECT count(*)::integer FROM eventsource.events), 5,
    'events: all of acme''s (Iso-1''s two, Iso-2''s two and its $StreamTruncated)');
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM eventsource.snapshots), ARRAY['acme'],
    'snapshots: SELECT sees acme''s rows only');
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM eventsource.checkpoints), ARRAY['acme'],
    'checkpoints: SELECT sees acme''s rows only');
SELECT is((SELECT array_agg(tenant_id) FROM eventsource.tenants), ARRAY['acme'],
    'tenants: SELECT sees its own tenant only');
SELECT is((SELECT array_agg(tenant_id) FROM eventsource.tenant_roles), ARRAY['acme'],
    'tenant_roles: SELECT sees its own tenant''s bindings only');
SELECT is((SELECT array_agg(tenant_id || ':' || stream_id || ':' || version ORDER BY stream_id) FROM eventsource.streams),
    ARRAY['acme:Iso-1:2', 'acme:Iso-2:2'], 'streams: the view lists acme''s streams only');
SELECT is((SELECT array_agg(tenant_id || ':' || stream_id || ':' || hidden_through) FROM eventsource.stream_lifecycle),
    ARRAY['acme:Iso-2:1'], 'stream_lifecycle: SELECT sees acme''s rows only');
SELECT is((SELECT array_agg(tenant_id || ':' || name) FROM eventsource.stream_retention),
    ARRAY['acme:Iso'], 'stream_retention: SELECT sees acme''s rules only');
SELECT is((SELECT array_agg(tenant_id || ':' || name) FROM eventsource.retention),
    ARRAY['acme:Iso'], 'retention: the view lists acme''s rules only');
SELECT is((SELECT array_agg(tenant_id || ':' || stream_id) FROM eventsource.stream_cleanup),
    ARRAY['acme:Iso-2'], 'stream_cleanup: the view lists acme''s streams only');
SELECT is((SELECT streams_pending FROM eventsource.cleanup_status),
    (SELECT count(*) FROM eventsource.stream_cleanup WHERE pending_versions > 0),
    'cleanup_status: what is pending is acme''s');
SELECT throws_ok($$SELECT count(*) FROM eventsource.visible_events$$, '42501', NULL,
    'visible_events (cross-tenant, internal) is not readable');
-- granted by mistake (GRANT SELECT ON ALL TABLES IN SCHEMA ...), it still
-- shows acme's rows only (cross-tenant for the store's owner alone)
RESET ROLE;
GRANT SELECT ON eventsource.visible_events TO ten_app;
SET LOCAL ROLE ten_app;
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM eventsource.visible_events), ARRAY['acme'],
    'visible_events: even when granted, a bound role sees acme''s events only');
RESET ROLE;
REVOKE SELECT ON eventsource.visible_events FROM ten_app;
SET LOCAL ROLE ten_app;
-- naming another tenant does not widen it
SELECT throws_ok($$SET LOCAL eventsource.tenant = 'globex'; SELECT count(*) FROM eventsource.events$$,
    '42501', NULL, 'events: naming another tenant is refused');

-- ---------------------------------------------------------------------------
-- INSERT: never another tenant's row (the guard refuses the log anyway)
-- ---------------------------------------------------------------------------
SELECT throws_ok($$INSERT INTO eventsource.events VALUES (999999, 'Iso-1', 9, gen_random_uuid(), 'X', '{}', '{}', now(), 'globex')$$,
    '42501', NULL, 'events: INSERT refused');
SELECT throws_ok($$INSERT INTO eventsource.snapshots (stream_id, schema_version, stream_version, state, tenant_id) VALUES ('Iso-1', 1, 2, '{}', 'globex')$$,
    '42501', NULL, 'snapshots: INSERT into another tenant refused by the policy');
SELECT throws_ok($$INSERT INTO eventsource.checkpoints (name, position, tenant_id) VALUES ('x', 1, 'globex')$$,
    '42501', NULL, 'checkpoints: INSERT into another tenant refused by the policy');
SELECT throws_ok($$INSERT INTO eventsource.checkpoints (name, position) VALUES ('x', 1)$$,
    '42501', NULL, 'checkpoints: the column default (''default'') is another tenant too');
SELECT throws_ok($$INSERT INTO eventsource.stream_lifecycle (tenant_id, stream_id, hidden_through, last_version, operations, last_position) VALUES ('globex', 'Iso-1', 1, 1, 1, 1)$$,
    '42501', NULL, 'stream_lifecycle: INSERT refused');
SELECT throws_ok($$INSERT INTO eventsource.stream_retention (tenant_id, scope, name, max_count) VALUES ('globex', 'category', 'Iso', 1)$$,
    '42501', NULL, 'stream_retention: INSERT refused');
SELECT throws_ok($$INSERT INTO eventsource.tenants (tenant_id) VALUES ('sneaky')$$,
    '42501', NULL, 'tenants: INSERT refused');
SELECT throws_ok($$INSERT INTO eventsource.tenant_roles (role, tenant_id) VALUES ('ten_app', 'globex')$$,
    '42501', NULL, 'tenant_roles: INSERT refused (a role cannot bind itself to another tenant)');

-- ---------------------------------------------------------------------------
-- UPDATE and DELETE: other tenants' rows are invisible to them, and a row
-- cannot be moved to another tenant
-- ---------------------------------------------------------------------------
SELECT throws_ok($$UPDATE eventsource.events SET data = '{}' WHERE tenant_id = 'globex'$$,
    '0A000', NULL, 'events: UPDATE refused (immutable)');
SELECT throws_ok($$DELETE FROM eventsource.events WHERE tenant_id = 'globex'$$,
    '0A000', NULL, 'events: DELETE refused (immutable)');
SELECT lives_ok($$UPDATE eventsource.snapshots SET state = '{"hacked": true}' WHERE tenant_id = 'globex'$$,
    'snapshots: UPDATE of another tenant''s rows runs');
SELECT lives_ok($$DELETE FROM eventsource.snapshots WHERE tenant_id = 'globex'$$,
    'snapshots: DELETE of another tenant''s rows runs');
SELECT lives_ok($$UPDATE eventsource.checkpoints SET position = 0 WHERE name = 'iso_cp' AND tenant_id <> 'acme'$$,
    'checkpoints: UPDATE of another tenant''s rows runs');
SELECT lives_ok($$DELETE FROM eventsource.checkpoints WHERE tenant_id = 'globex'$$,
    'checkpoints: DELETE of another tenant''s rows runs');
SELECT throws_ok($$UPDATE eventsource.checkpoints SET tenant_id = 'globex' WHERE name = 'iso_cp'$$,
    '42501', NULL, 'checkpoints: moving a row to another tenant is refused');
SELECT throws_ok($$UPDATE eventsource.snapshots SET tenant_id = 'globex'$$,
    '42501', NULL, 'snapshots: moving a row to another tenant is refused');
SELECT throws_ok($$DELETE FROM eventsource.tenant_roles$$, '42501', NULL,
    'tenant_roles: DELETE refused (a role cannot unbind itself)');

-- ---------------------------------------------------------------------------
-- TRUNCATE, TRIGGER and REFERENCES, which row-level security does not cover
-- ---------------------------------------------------------------------------
SELECT throws_ok($$TRUNCATE eventsource.snapshots$$, '42501', NULL, 'snapshots: TRUNCATE refused');
SELECT throws_ok($$UPDATE eventsource.stream_lifecycle SET hidden_through = 0 WHERE tenant_id = 'globex'$$,
    '42501', NULL, 'stream_lifecycle: UPDATE refused');
SELECT throws_ok($$DELETE FROM eventsource.stream_retention WHERE tenant_id = 'globex'$$,
    '42501', NULL, 'stream_retention: DELETE refused');
SELECT throws_ok($$TRUNCATE eventsource.checkpoints$$, '42501', NULL, 'checkpoints: TRUNCATE refused');
SELECT throws_ok($$TRUNCATE eventsource.events$$, '0A000', NULL, 'events: TRUNCATE refused (immutable)');
SELECT throws_ok($$TRUNCATE eventsource.tenant_roles$$, '42501', NULL, 'tenant_roles: TRUNCATE refused');
CREATE FUNCTION pg_temp.spy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
SELECT throws_ok($$CREATE TRIGGER spy AFTER INSERT ON eventsource.events FOR EACH ROW EXECUTE FUNCTION pg_temp.spy()$$,
    '42501', NULL, 'events: CREATE TRIGGER refused (it would run as the appending owner on every tenant''s rows)');
SELECT throws_ok($$CREATE TRIGGER spy BEFORE UPDATE ON eventsource.checkpoints FOR EACH ROW EXECUTE FUNCTION pg_temp.spy()$$,
    '42501', NULL, 'checkpoints: CREATE TRIGGER refused');
SELECT throws_ok($$CREATE TABLE ten_own.probe (t text, s text, v bigint,
                     FOREIGN KEY (t, s, v) REFERENCES eventsource.events (tenant_id, stream_id, stream_version))$$,
    '42501', NULL, 'events: a foreign key referencing it is refused (an existence oracle past row-level security)');
CREATE TABLE ten_own.mine (t text, n text);
SELECT throws_ok($$ALTER TABLE ten_own.mine ADD FOREIGN KEY (t, n) REFERENCES eventsource.checkpoints (tenant_id, name)$$,
    '42501', NULL, 'checkpoints: ALTER TABLE ADD FOREIGN KEY referencing it is refused');
SELECT throws_ok($$ALTER TABLE ten_own.mine ADD COLUMN x text REFERENCES eventsource.tenants$$,
    '42501', NULL, 'tenants: a column''s REFERENCES is refused');

-- ---------------------------------------------------------------------------
-- The tenant functions: a bound role holding EXECUTE still cannot use them
-- ---------------------------------------------------------------------------
SELECT throws_ok($$SELECT eventsource.create_tenant('sneaky')$$, '42501', NULL,
    'create_tenant: refused to a bound role');
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('ten_app', 'globex')$$, '42501', NULL,
    'bind_role_to_tenant: a bound role cannot bind itself to another tenant');
SELECT throws_ok($$SELECT eventsource.unbind_role_from_tenant('ten_app', 'acme')$$, '42501', NULL,
    'unbind_role_from_tenant: a bound role cannot unbind itself');

-- ---------------------------------------------------------------------------
-- A function of the role's own in a condition on streams never sees another
-- tenant's rows (the view is a security barrier)
-- ---------------------------------------------------------------------------
CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE COST 0.0000001 AS $$
BEGIN
    PERFORM set_config('es_test.leaked', coalesce(current_setting('es_test.leaked', true), '') || ' ' || $1, true);
    RETURN true;
END $$;
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL enable_indexonlyscan = off;
SELECT is((SELECT count(*)::integer FROM eventsource.streams WHERE pg_temp.leak(stream_id)), 2,
    'streams: a cheap condition of the role''s own (index scans off) returns acme''s streams');
SELECT is((SELECT string_agg(x, ' ' ORDER BY x)
             FROM unnest(string_to_array(btrim(current_setting('es_test.leaked', true)), ' ')) x),
    'Iso-1 Iso-2',
    'streams: and the function saw acme''s stream ids only, never globex''s (Secret-globex)');
RESET enable_indexscan;
RESET enable_bitmapscan;
RESET enable_indexonlyscan;

-- ---------------------------------------------------------------------------
-- COPY: TO applies the policy; FROM is refused under row-level security
-- ---------------------------------------------------------------------------
SELECT lives_ok($$COPY eventsource.events TO '/tmp/es_pgtap_tenancy_events.csv' (FORMAT csv)$$,
    'events: COPY TO runs');
SELECT lives_ok($$COPY eventsource.checkpoints TO '/tmp/es_pgtap_tenancy_checkpoints.csv' (FORMAT csv)$$,
    'checkpoints: COPY TO runs');
SELECT throws_ok($$COPY eventsource.checkpoints FROM '/tmp/es_pgtap_tenancy_checkpoints.csv' (FORMAT csv)$$,
    '0A000', NULL, 'checkpoints: COPY FROM refused under row-level security');
SELECT throws_ok($$COPY eventsource.snapshots FROM '/tmp/es_pgtap_tenancy_checkpoints.csv' (FORMAT csv)$$,
    '0A000', NULL, 'snapshots: COPY FROM refused under row-level security');

-- ---------------------------------------------------------------------------
-- The store's functions: acme's stream, whatever globex has under that id
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(data->>'t') FROM eventsource.read_stream('Iso-1') WHERE stream_version = 1),
    ARRAY['acme'], 'read_stream: acme''s Iso-1');
SELECT is(eventsource.stream_version('Iso-1'), 2::bigint, 'stream_version: acme''s');
SELECT is(eventsource.load('Iso-1')->'snapshot'->'state', '{"t": "acme"}'::jsonb, 'load: acme''s snapshot');
SELECT is(eventsource.get_checkpoint('iso_cp'), 1::bigint, 'get_checkpoint: acme''s');
SELECT is((SELECT stream_version FROM eventsource.append_event('Iso-1', 2, 'C', '{}')), 3::bigint,
    'append_event: at acme''s version');
SELECT is(eventsource.delete_stream('Iso-2', 2) > 0, true, 'delete_stream: acme''s Iso-2');
SELECT is((SELECT events_erased FROM eventsource.erase_stream('Iso-2')), 2::bigint,
    'erase_stream: acme''s Iso-2 (its two events)');
SELECT is(eventsource.clear_category_retention('Iso'), true, 'clear_category_retention: acme''s rule');

-- ---------------------------------------------------------------------------
-- A crafted search_path: look-alike current_tenant() and = in a schema
-- searched first change nothing (the policies and the functions name
-- pg_catalog's operators and eventsource's function)
-- ---------------------------------------------------------------------------
RESET ROLE;
CREATE SCHEMA evil;
CREATE FUNCTION evil.current_tenant() RETURNS text LANGUAGE sql AS $$ SELECT 'globex'::text $$;
CREATE FUNCTION evil.always(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always);
CREATE VIEW evil.events AS SELECT * FROM eventsource.events;
GRANT USAGE ON SCHEMA evil TO ten_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA evil TO ten_app;
GRANT SELECT ON evil.events TO ten_app;
SET LOCAL ROLE ten_app;
-- (pgTAP's own functions must not run with that search_path: evil.= would
-- answer its bookkeeping queries, turning assertions into TODOs that cannot
-- fail; so the results are kept and asserted after RESET search_path)
SET LOCAL search_path = evil, pg_catalog, eventsource, public;
CREATE TEMP TABLE crafted AS SELECT
    (SELECT count(*)::integer FROM eventsource.events WHERE tenant_id OPERATOR(pg_catalog.<>) 'acme') AS events_others,
    (SELECT count(*)::integer FROM eventsource.read_all(0, 1000) WHERE tenant_id OPERATOR(pg_catalog.<>) 'acme') AS read_all_others,
    (SELECT count(*)::integer FROM eventsource.streams WHERE tenant_id OPERATOR(pg_catalog.<>) 'acme') AS streams_others,
    eventsource.current_tenant() AS tenant;
RESET search_path;
SELECT is((SELECT events_others FROM crafted), 0, 'search_path: events still acme''s only');
SELECT is((SELECT read_all_others FROM crafted), 0, 'search_path: read_all still acme''s only');
SELECT is((SELECT streams_others FROM crafted), 0, 'search_path: streams still acme''s only');
SELECT is((SELECT tenant FROM crafted), 'acme', 'search_path: eventsource.current_tenant() is the real one');
-- a view owned by the superuser (bypassing row-level security) is the
-- superuser's own grant to give away: not the store's concern
RESET ROLE;

-- ---------------------------------------------------------------------------
-- Row-level security asks for the tenant once per query (an InitPlan), not
-- once per row: counted with track_functions, on sequential scans
-- ---------------------------------------------------------------------------
SET LOCAL track_functions = 'all';
SET LOCAL enable_indexscan = off;
SET LOCAL enable_bitmapscan = off;
SET LOCAL enable_indexonlyscan = off;
CREATE TEMP TABLE tenant_calls (n bigint);
GRANT ALL ON tenant_calls TO ten_app;
SET LOCAL ROLE ten_app;
INSERT INTO tenant_calls
    SELECT coalesce(pg_stat_get_xact_function_calls('eventsource.current_tenant()'::regprocedure), 0);
SELECT count(*) FROM eventsource.events WHERE event_type <> 'none';
SELECT count(*) FROM eventsource.streams WHERE category <> 'none';
SELECT cmp_ok(coalesce(pg_stat_get_xact_function_calls('eventsource.current_tenant()'::regprocedure), 0)
              - (SELECT n FROM tenant_calls), '<=', 3::bigint,
    'events and streams: current_tenant() called once per query, not once per row (events: its policy; streams: its filter and visible_events'')');
RESET ROLE;
RESET enable_indexscan;
RESET enable_bitmapscan;
RESET enable_indexonlyscan;

-- ---------------------------------------------------------------------------
-- Who is bound: membership, inheriting or not, and the session's role
-- ---------------------------------------------------------------------------
-- a NOINHERIT member of a bound role is bound (it could SET ROLE to it)
CREATE ROLE ten_noinherit NOINHERIT;
GRANT ten_app TO ten_noinherit;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO ten_noinherit;
GRANT SELECT ON eventsource.events TO ten_noinherit;
SET LOCAL ROLE ten_noinherit;
SELECT is(eventsource.current_tenant(), 'acme', 'a NOINHERIT member of a bound role is bound to its tenant');
SET LOCAL eventsource.tenant = 'globex';
SELECT throws_ok($$SELECT count(*) FROM eventsource.events$$, '42501', NULL,
    'a NOINHERIT member of a bound role cannot choose another tenant');
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('ten_noinherit', 'globex')$$, '42501', NULL,
    'nor rebind itself');
RESET eventsource.tenant;
RESET ROLE;

-- a bound login role that is also a member of an unbound group does not
-- escape with SET ROLE: the session's role's tenants still hold
CREATE ROLE ten_login LOGIN;
CREATE ROLE ten_writer NOLOGIN;
GRANT ten_writer TO ten_login;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO ten_writer;
GRANT SELECT ON eventsource.events, eventsource.checkpoints TO ten_writer;
SELECT eventsource.bind_role_to_tenant('ten_login', 'acme');
SET LOCAL SESSION AUTHORIZATION ten_login;
SET LOCAL ROLE ten_writer;
SELECT is(eventsource.current_tenant(), 'acme',
    'SET ROLE to an unbound group: still the session''s tenant');
SELECT is((SELECT array_agg(DISTINCT tenant_id) FROM eventsource.events), ARRAY['acme'],
    'SET ROLE to an unbound group: events still acme''s only');
SET LOCAL eventsource.tenant = 'globex';
SELECT throws_ok($$SELECT eventsource.current_tenant()$$, '42501', NULL,
    'SET ROLE to an unbound group: another tenant is refused');
SELECT throws_ok($$SELECT count(*) FROM eventsource.checkpoints$$, '42501', NULL,
    'SET ROLE to an unbound group: reading another tenant''s table is refused');
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('ten_login', 'globex')$$, '42501', NULL,
    'SET ROLE to an unbound group: the tenant functions are refused');
RESET eventsource.tenant;
RESET ROLE;
RESET SESSION AUTHORIZATION;
SELECT is(session_user::text, 'postgres', '(back to the superuser''s session)');

-- ---------------------------------------------------------------------------
-- Bindings stay consistent: a bound role cannot be dropped, an exempt role
-- cannot be bound
-- ---------------------------------------------------------------------------
CREATE ROLE ten_doomed;
SELECT eventsource.bind_role_to_tenant('ten_doomed', 'globex');
SELECT throws_ok($$DROP ROLE ten_doomed$$, '2BP01', NULL,
    'DROP ROLE of a role bound to tenants is refused');
SELECT is((SELECT count(*)::integer FROM eventsource.tenant_roles WHERE role = 'ten_doomed'::regrole), 1,
    'and its binding stays');
SELECT eventsource.unbind_role_from_tenant('ten_doomed', 'globex');
SELECT lives_ok($$DROP ROLE ten_doomed$$, 'once unbound it can be dropped');
CREATE ROLE ten_bypass BYPASSRLS;
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('ten_bypass', 'acme')$$, '22023', NULL,
    'a BYPASSRLS role cannot be bound (row-level security never applies to it)');
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('postgres', 'acme')$$, '22023', NULL,
    'a superuser cannot be bound');
CREATE ROLE ten_owner_member;
GRANT postgres TO ten_owner_member;
SELECT throws_ok($$SELECT eventsource.bind_role_to_tenant('ten_owner_member', 'acme')$$, '22023', NULL,
    'a role with the privileges of the store''s owner cannot be bound');

-- ---------------------------------------------------------------------------
-- After all that: nothing of another tenant changed
-- ---------------------------------------------------------------------------
SELECT is((SELECT array_agg(b.t ORDER BY b.t) FROM before b WHERE b.n <> pg_temp.others(b.t)), NULL,
    'no row of another tenant was added, changed or removed, in any table');
SELECT is((SELECT state FROM eventsource.snapshots WHERE tenant_id = 'globex'), '{"t": "globex"}'::jsonb,
    'globex''s snapshot is untouched');
SELECT is((SELECT position FROM eventsource.checkpoints WHERE tenant_id = 'globex'), 7::bigint,
    'globex''s checkpoint is untouched');
SELECT is((SELECT array_agg(data->>'t' ORDER BY stream_version) FROM eventsource.events
            WHERE tenant_id = 'globex' AND stream_id = 'Iso-2' AND stream_version > 0),
    ARRAY['globex', 'globex'], 'globex''s Iso-2 is neither erased nor deleted');
SELECT is((SELECT hidden_through || ':' || operations FROM eventsource.stream_lifecycle
            WHERE tenant_id = 'globex' AND stream_id = 'Iso-2'), '1:1',
    'globex''s lifecycle row of Iso-2 is untouched');
SELECT is((SELECT count(*)::integer FROM pg_read_file('/tmp/es_pgtap_tenancy_events.csv') f,
                  regexp_split_to_table(rtrim(f, E'\n'), E'\n') l WHERE l NOT LIKE '%,acme'), 0,
    'events: COPY TO wrote acme''s rows only');
SELECT is((SELECT count(*)::integer FROM pg_read_file('/tmp/es_pgtap_tenancy_events.csv') f,
                  regexp_split_to_table(rtrim(f, E'\n'), E'\n') l), 5,
    'events: COPY TO wrote all of acme''s rows (before the append)');

SELECT * FROM finish();
ROLLBACK;
