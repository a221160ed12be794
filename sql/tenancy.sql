--
-- tenancy: the tenant a transaction works in (eventsource.tenant,
-- current_tenant()), the registry of tenants and the roles bound to them,
-- and the store's functions per tenant (issue 15; docs/tenancy.md).
--
SET client_min_messages = warning;

-- ---------------------------------------------------------------------------
-- The setting: '' or 1 to 63 bytes of [A-Za-z0-9_.:-], checked at SET (22023)
-- ---------------------------------------------------------------------------
SHOW eventsource.tenant;
SELECT eventsource.current_tenant();
SELECT t.try($$SET eventsource.tenant = 'a b'$$) AS space;
SELECT t.try($$SET eventsource.tenant = 'x''; DROP TABLE eventsource.events; --'$$) AS injection;
SELECT t.try(format('SET eventsource.tenant = %L', repeat('t', 64))) AS too_long;
SELECT t.try(format('SET eventsource.tenant = %L', repeat('t', 63))) AS longest;
RESET eventsource.tenant;
SELECT t.try($$SET eventsource.tenant = 'Acme.EU:prod-1_a'$$) AS every_allowed_character;
RESET eventsource.tenant;
-- a tenant that is not registered: ES005 when it is used, whatever uses it
BEGIN;
SET LOCAL eventsource.tenant = 'acme';
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS unknown;
SELECT t.try($$SELECT eventsource.append_event('Tn-1', 0, 'Placed', '{}')$$) AS append_unknown;
SELECT t.try($$SELECT count(*) FROM eventsource.streams$$) AS streams_unknown;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- The registry: create_tenant() is idempotent; only the functions write it
-- ---------------------------------------------------------------------------
SELECT eventsource.create_tenant('acme') AS created, eventsource.create_tenant('acme') AS again,
       eventsource.create_tenant('globex') AS globex;
SELECT tenant_id FROM eventsource.tenants ORDER BY tenant_id;
SELECT t.try($$SELECT eventsource.create_tenant(NULL)$$) AS null_id,
       t.try($$SELECT eventsource.create_tenant('bad id')$$) AS bad_id;
SELECT t.try($$INSERT INTO eventsource.tenants (tenant_id) VALUES ('sneaky')$$) AS direct_insert,
       t.try($$DELETE FROM eventsource.tenants WHERE tenant_id = 'globex'$$) AS direct_delete;

-- ---------------------------------------------------------------------------
-- The same stream id in two tenants: independent versions, expected-version
-- checks, event ids, snapshots, checkpoints, reads
-- ---------------------------------------------------------------------------
SELECT stream_version FROM eventsource.append('Tn-1', 0, '[
    {"type": "Placed", "data": {"t": "default"}, "id": "b0000000-0000-4000-8000-000000000001"},
    {"type": "Paid", "data": {"t": "default"}}]');
BEGIN;
SET LOCAL eventsource.tenant = 'acme';
SELECT eventsource.current_tenant();
-- version 0 again: the stream does not exist in acme
SELECT stream_version FROM eventsource.append('Tn-1', 0, '[
    {"type": "Placed", "data": {"t": "acme"}, "id": "b0000000-0000-4000-8000-000000000001"}]');
-- the same event id in the same tenant, another stream: ES002 (per tenant)
SELECT t.try($$SELECT eventsource.append_event('Tn-2', 0, 'Placed', '{}', '{}',
                                               'b0000000-0000-4000-8000-000000000001')$$) AS dup_in_tenant;
-- an exact retry in the tenant returns the original result
SELECT stream_version, first_position = (SELECT global_position FROM eventsource.read_stream('Tn-1'))
           AS same_position
  FROM eventsource.append('Tn-1', 0, '[
    {"type": "Placed", "data": {"t": "acme"}, "id": "b0000000-0000-4000-8000-000000000001"}]');
-- expected version 2 is the default tenant's version, not acme's: ES001
SELECT t.try($$SELECT eventsource.append_event('Tn-1', 2, 'Paid', '{}')$$) AS wrong_expected;
SELECT stream_id, stream_version, event_type, data, tenant_id FROM eventsource.read_stream('Tn-1');
SELECT eventsource.stream_version('Tn-1') AS acme_version,
       eventsource.stream_version('Tn-2') AS acme_order_2;
SELECT stream_id, version, tenant_id FROM eventsource.streams ORDER BY stream_id;
SELECT eventsource.save_snapshot('Tn-1', 1, '{"acme": true}');
SELECT eventsource.load('Tn-1') - 'events' AS acme_load;
SELECT eventsource.save_checkpoint('proj', 1);
SELECT eventsource.get_checkpoint('proj') AS acme_checkpoint;
COMMIT;
-- read_all: the tenant's events only (after the commit: the horizon)
BEGIN;
SET LOCAL eventsource.tenant = 'acme';
SELECT stream_id, stream_version, data, tenant_id FROM eventsource.read_all(0, 100);
COMMIT;
-- the default tenant sees its own, and none of acme's
SELECT stream_id, stream_version, data, tenant_id FROM eventsource.read_stream('Tn-1');
SELECT eventsource.stream_version('Tn-1') AS default_version;
SELECT stream_id, version, tenant_id FROM eventsource.streams WHERE stream_id LIKE 'Tn-%';
SELECT count(*) FILTER (WHERE tenant_id <> 'default') AS other_tenants_in_read_all
  FROM eventsource.read_all(0, 100000);
SELECT stream_version FROM eventsource.load_snapshot('Tn-1') AS no_default_snapshot;
SELECT eventsource.get_checkpoint('proj') IS NULL AS no_default_checkpoint;
SELECT eventsource.save_checkpoint('proj', 2);
-- the two checkpoints, and what the table holds (the superuser sees all)
SELECT tenant_id, name, position FROM eventsource.checkpoints WHERE name = 'proj' ORDER BY tenant_id;
SELECT tenant_id, stream_id, stream_version, event_id = 'b0000000-0000-4000-8000-000000000001' AS given_id FROM eventsource.events
 WHERE stream_id = 'Tn-1' ORDER BY tenant_id, stream_version;
-- the same stream in globex: appends still start at 1
BEGIN;
SET LOCAL eventsource.tenant = 'globex';
SELECT t.try($$SELECT eventsource.append_event('Tn-1', -2, 'Paid', '{}')$$) AS must_exist;
SELECT stream_version FROM eventsource.append_event('Tn-1', 0, 'Placed', '{}');
COMMIT;

-- ---------------------------------------------------------------------------
-- Roles bound to tenants
-- ---------------------------------------------------------------------------
CREATE ROLE ten_acme;
CREATE ROLE ten_two;
CREATE ROLE ten_free;
CREATE ROLE ten_member;
GRANT USAGE ON SCHEMA t TO ten_acme, ten_two, ten_free, ten_member;
GRANT EXECUTE ON FUNCTION eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.stream_version(text) TO ten_acme, ten_two, ten_free, ten_member;
GRANT SELECT ON eventsource.events, eventsource.streams TO ten_acme, ten_two, ten_free, ten_member;
SELECT eventsource.bind_role_to_tenant('ten_acme', 'acme') AS bound,
       eventsource.bind_role_to_tenant('ten_acme', 'acme') AS again,
       eventsource.bind_role_to_tenant('ten_two', 'acme') AS two_a,
       eventsource.bind_role_to_tenant('ten_two', 'globex') AS two_b;
SELECT t.try($$SELECT eventsource.bind_role_to_tenant('ten_acme', 'nope')$$) AS unknown_tenant,
       t.try($$SELECT eventsource.bind_role_to_tenant(NULL, 'acme')$$) AS null_role,
       t.try($$SELECT eventsource.bind_role_to_tenant('ten_acme', NULL)$$) AS null_tenant,
       t.try($$SELECT eventsource.unbind_role_from_tenant('ten_acme', NULL)$$) AS null_unbind;
SELECT role, tenant_id FROM eventsource.tenant_roles ORDER BY role::text, tenant_id;

-- bound to one tenant: it is the role's tenant without a SET
BEGIN;
SET LOCAL ROLE ten_acme;
SELECT eventsource.current_tenant() AS bound_default,
       eventsource.stream_version('Tn-1') AS acme_order_1,
       (SELECT count(*) FROM eventsource.events) AS events_seen,
       (SELECT count(*) FROM eventsource.events WHERE tenant_id <> 'acme') AS others_seen;
SELECT stream_id, version, tenant_id FROM eventsource.streams ORDER BY stream_id;
-- naming another tenant, an existing one or not, is 42501
SET LOCAL eventsource.tenant = 'globex';
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS switch_to_globex;
SELECT t.try($$SELECT eventsource.append_event('Tn-1', -1, 'Paid', '{}')$$) AS append_globex;
SELECT t.try($$SELECT count(*) FROM eventsource.events$$) AS select_globex;
SET LOCAL eventsource.tenant = 'default';
SELECT t.try($$SELECT eventsource.stream_version('Tn-1')$$) AS switch_to_default;
SET LOCAL eventsource.tenant = 'nope';
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS no_probing;
SET LOCAL eventsource.tenant = 'acme';
SELECT stream_version FROM eventsource.append_event('Tn-1', 1, 'Paid', '{}');
ROLLBACK;

-- bound to two: it must choose (ES006), one of them
BEGIN;
SET LOCAL ROLE ten_two;
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS no_tenant_chosen;
SELECT t.try($$SELECT count(*) FROM eventsource.events$$) AS select_without_choice;
SET LOCAL eventsource.tenant = 'globex';
SELECT eventsource.current_tenant(), eventsource.stream_version('Tn-1') AS globex_order_1;
SET LOCAL eventsource.tenant = 'default';
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS not_bound_to_default;
ROLLBACK;

-- unbound: any registered tenant, 'default' without a SET
BEGIN;
SET LOCAL ROLE ten_free;
SELECT eventsource.current_tenant() AS unbound_default;
SET LOCAL eventsource.tenant = 'globex';
SELECT eventsource.current_tenant(), (SELECT count(*) FROM eventsource.events) AS globex_events;
ROLLBACK;

-- membership: a role that inherits a bound role is bound too, from the next
-- statement after GRANT, and unbound again after REVOKE (the cache follows
-- pg_auth_members)
BEGIN;
SET LOCAL ROLE ten_member;
SELECT eventsource.current_tenant() AS before_grant;
RESET ROLE;
GRANT ten_acme TO ten_member;
SET LOCAL ROLE ten_member;
SELECT eventsource.current_tenant() AS member_of_bound;
SET LOCAL eventsource.tenant = 'default';
SELECT t.try($$SELECT eventsource.current_tenant()$$) AS member_switching;
RESET ROLE;
REVOKE ten_acme FROM ten_member;
SET LOCAL ROLE ten_member;
SELECT eventsource.current_tenant() AS after_revoke;
ROLLBACK;

-- unbinding: the role may choose again (the cache follows tenant_roles)
BEGIN;
SELECT eventsource.unbind_role_from_tenant('ten_acme', 'acme') AS unbound,
       eventsource.unbind_role_from_tenant('ten_acme', 'acme') AS again;
SET LOCAL ROLE ten_acme;
SELECT eventsource.current_tenant() AS after_unbind;
ROLLBACK;

-- what is refused around bindings (pgTAP 04_tenancy tests each case): a
-- bound caller of the tenant functions, DROP ROLE of a bound role, binding
-- a role that is never restricted
GRANT EXECUTE ON FUNCTION eventsource.create_tenant(text) TO ten_acme;
BEGIN;
SET LOCAL ROLE ten_acme;
SELECT t.try($$SELECT eventsource.create_tenant('mine')$$) AS bound_caller;
ROLLBACK;
SELECT t.try($$DROP ROLE ten_acme$$) AS drop_bound_role;
CREATE ROLE ten_bypass BYPASSRLS;
SELECT t.try($$SELECT eventsource.bind_role_to_tenant('ten_bypass', 'acme')$$) AS bind_bypassrls;
DROP ROLE ten_bypass;

-- writes through row-level security: a bound role holding INSERT on
-- checkpoints may write only its tenant's rows
GRANT SELECT, INSERT, UPDATE, DELETE ON eventsource.checkpoints TO ten_acme;
BEGIN;
SET LOCAL ROLE ten_acme;
SELECT t.try($$INSERT INTO eventsource.checkpoints (name, position, tenant_id) VALUES ('x', 1, 'globex')$$) AS insert_other;
SELECT t.try($$INSERT INTO eventsource.checkpoints (name, position) VALUES ('x', 1)$$) AS insert_default_column;
SELECT t.try($$UPDATE eventsource.checkpoints SET tenant_id = 'globex' WHERE name = 'proj'$$) AS move_to_other;
SELECT t.try($$UPDATE eventsource.checkpoints SET position = 99$$) AS update_own;
SELECT tenant_id, name, position FROM eventsource.checkpoints ORDER BY name;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- The tenant named per call: the overloads with a last argument "tenant"
-- decide it as the setting would be decided, for that call only
-- ---------------------------------------------------------------------------
-- every data function, in globex, with no setting (the default tenant's and
-- acme's Tn-1 are untouched)
SELECT stream_version FROM eventsource.append('Tn-9', 0, '[{"type": "Placed", "data": {"n": 1}}]', 'globex');
SELECT stream_version FROM eventsource.append_event('Tn-9', 1, 'Paid', '{"n": 2}', '{}', NULL, 'globex');
SELECT eventsource.stream_version('Tn-9', 'globex') AS globex_tn9,
       eventsource.stream_version('Tn-9') AS default_tn9,
       eventsource.stream_version('Tn-1', 'acme') AS acme_tn1,
       eventsource.stream_version('Tn-1', NULL) AS null_is_the_setting;
SELECT stream_version, event_type, data, tenant_id FROM eventsource.read_stream('Tn-9', NULL, 10, false, 'globex');
SELECT count(*) AS backwards_from_2 FROM eventsource.read_stream('Tn-9', 2, 1, true, 'globex');
SELECT stream_id, stream_version, tenant_id FROM eventsource.read_all(0, 100, NULL, NULL, 'globex') ORDER BY global_position;
SELECT count(*) AS globex_paid FROM eventsource.read_all(0, 100, ARRAY['Paid'], ARRAY['Tn'], 'globex');
SELECT eventsource.save_snapshot('Tn-9', 1, '{"s": 1}', 1, 'globex');
SELECT stream_version, state FROM eventsource.load_snapshot('Tn-9', 1, 'globex');
SELECT count(*) AS default_snapshot FROM eventsource.load_snapshot('Tn-9');
SELECT l->'version' AS version, l->'snapshot'->'state' AS snapshot_state,
       jsonb_array_length(l->'events') AS events_after
  FROM eventsource.load('Tn-9', 1, 'globex') l;
SELECT eventsource.save_checkpoint('per_call', 5, 'globex');
SELECT eventsource.get_checkpoint('per_call', 'globex') AS globex_cp,
       eventsource.get_checkpoint('per_call') AS default_cp;
SELECT t.try($$SELECT eventsource.save_checkpoint('per_call', 4, 'globex')$$) AS backwards;
SELECT eventsource.reset_checkpoint('per_call', 1, 'globex');
SELECT eventsource.get_checkpoint('per_call', 'globex') AS after_reset;
-- the argument wins over the setting, and does not change it
BEGIN;
SET LOCAL eventsource.tenant = 'acme';
SELECT eventsource.stream_version('Tn-9', 'globex') AS globex_over_acme,
       eventsource.stream_version('Tn-9') AS acme_tn9,
       eventsource.current_tenant() AS setting_kept;
ROLLBACK;
-- errors: unknown (ES005), malformed or empty (22023); NULL is the setting
SELECT t.try($$SELECT eventsource.stream_version('Tn-9', 'nope')$$) AS unknown_tenant,
       t.try($$SELECT eventsource.append_event('Tn-9', -1, 'Paid', '{}', '{}', NULL, 'nope')$$) AS append_unknown,
       t.try($$SELECT eventsource.stream_version('Tn-9', '')$$) AS empty_tenant,
       t.try($$SELECT eventsource.stream_version('Tn-9', 'a b')$$) AS malformed_tenant,
       t.try(format('SELECT eventsource.stream_version(%L, %L)', 'Tn-9', repeat('t', 64))) AS too_long;
-- a 1.0 call with parameters of unknown type still finds one function: the
-- overloads take one argument more than the 1.0 function can
PREPARE per_call_old(unknown, unknown, unknown, unknown) AS
    SELECT stream_version FROM eventsource.append_event($1, $2, $3, $4);
EXECUTE per_call_old('Tn-9', '-1', 'Paid', '{}');
PREPARE per_call_new(unknown, unknown, unknown, unknown, unknown, unknown, unknown) AS
    SELECT stream_version FROM eventsource.append_event($1, $2, $3, $4, $5, $6, $7);
EXECUTE per_call_new('Tn-9', '-1', 'Paid', '{}', '{}', NULL, 'globex');
DEALLOCATE per_call_old;
DEALLOCATE per_call_new;
SELECT eventsource.stream_version('Tn-9') AS default_tn9, eventsource.stream_version('Tn-9', 'globex') AS globex_tn9;
-- a bound role: its own tenants only, as with the setting (42501 for
-- another, existing or not); with two tenants, naming one is the choice
GRANT EXECUTE ON FUNCTION eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid, text),
    eventsource.stream_version(text, text),
    eventsource.read_all(bigint, integer, text[], text[], text) TO ten_acme, ten_two;
BEGIN;
SET LOCAL ROLE ten_acme;
SELECT eventsource.stream_version('Tn-1', 'acme') AS own_tenant;
SELECT t.try($$SELECT eventsource.stream_version('Tn-9', 'globex')$$) AS other_tenant,
       t.try($$SELECT eventsource.stream_version('Tn-9', 'nope')$$) AS no_probing,
       t.try($$SELECT eventsource.append_event('Tn-9', -1, 'Paid', '{}', '{}', NULL, 'globex')$$) AS append_other,
       t.try($$SELECT count(*) FROM eventsource.read_all(0, 10, NULL, NULL, 'default')$$) AS read_all_default;
-- a setting it may use does not let the argument name another tenant
SET LOCAL eventsource.tenant = 'acme';
SELECT t.try($$SELECT eventsource.stream_version('Tn-9', 'globex')$$) AS other_over_setting;
ROLLBACK;
BEGIN;
SET LOCAL ROLE ten_two;
SELECT t.try($$SELECT eventsource.stream_version('Tn-9')$$) AS two_no_choice,
       eventsource.stream_version('Tn-9', 'globex') AS two_names_globex,
       eventsource.stream_version('Tn-1', 'acme') AS two_names_acme;
SELECT tenant_id, count(*) FROM eventsource.read_all(0, 100, NULL, NULL, 'globex') GROUP BY 1;
SELECT tenant_id, count(*) FROM eventsource.read_all(0, 100, NULL, NULL, 'acme') GROUP BY 1;
ROLLBACK;
-- a session of a bound role, after SET ROLE to an unbound group: the
-- argument may not leave the session's tenants either
GRANT ten_free TO ten_acme;
GRANT EXECUTE ON FUNCTION eventsource.stream_version(text, text) TO ten_free;
BEGIN;
SET LOCAL SESSION AUTHORIZATION ten_acme;
SET LOCAL ROLE ten_free;
SELECT t.try($$SELECT eventsource.stream_version('Tn-9', 'globex')$$) AS escape_by_set_role,
       eventsource.stream_version('Tn-1', 'acme') AS own_tenant;
ROLLBACK;
REVOKE ten_free FROM ten_acme;
-- the store's counters go to the tenant named in the call
SELECT appends AS globex_appends_before FROM eventsource.tenant_stats WHERE tenant_id = 'globex' \gset
SELECT appends AS acme_appends_before FROM eventsource.tenant_stats WHERE tenant_id = 'acme' \gset
SELECT stream_version FROM eventsource.append_event('Tn-9', -1, 'Paid', '{}', '{}', NULL, 'globex');
SELECT (SELECT appends FROM eventsource.tenant_stats WHERE tenant_id = 'globex') - :globex_appends_before AS globex_appends,
       (SELECT appends FROM eventsource.tenant_stats WHERE tenant_id = 'acme') - :acme_appends_before AS acme_appends;

-- ---------------------------------------------------------------------------
-- clean up (the tenants stay: they cannot be removed)
-- ---------------------------------------------------------------------------
SELECT eventsource.unbind_role_from_tenant('ten_acme', 'acme'),
       eventsource.unbind_role_from_tenant('ten_two', 'acme'),
       eventsource.unbind_role_from_tenant('ten_two', 'globex');
DROP OWNED BY ten_acme, ten_two, ten_free, ten_member;
DROP ROLE ten_acme, ten_two, ten_free, ten_member;
