--
-- tenancy_subscriptions: subscriptions per tenant (issue 15, part 3;
-- docs/tenancy.md section 4): create_subscription's tenant argument and its
-- rules, what the status, error_stats() and wait_for_subscription() show a
-- role bound to tenants, and row-level security on the subscription tables.
-- The delivery itself (a tenant's events only, the handler's tenant, a
-- crash) is TAP's: test/t/047_tenant_subscriptions.pl.
--
SET client_min_messages = warning;

SELECT eventsource.create_tenant('tsub_a') AS a, eventsource.create_tenant('tsub_b') AS b;
CREATE ROLE regress_ts_bound;		-- bound to tsub_a
CREATE ROLE regress_ts_multi;		-- bound to tsub_a and tsub_b
CREATE ROLE regress_ts_free;		-- bound to nothing: chooses its tenant
SELECT eventsource.bind_role_to_tenant('regress_ts_bound', 'tsub_a'),
       eventsource.bind_role_to_tenant('regress_ts_multi', 'tsub_a'),
       eventsource.bind_role_to_tenant('regress_ts_multi', 'tsub_b');
CREATE SCHEMA ts;
CREATE FUNCTION ts.h(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
GRANT USAGE ON SCHEMA ts, t TO PUBLIC;
GRANT EXECUTE ON FUNCTION ts.h(eventsource.events) TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
    eventsource.drop_subscription(text),
    eventsource.retry_dead_letters(text, bigint[]),
    eventsource.wait_for_subscription(text, bigint, interval),
    eventsource.subscription_status_rows(),
    eventsource.error_stats(),
    eventsource.health()
    TO regress_ts_bound, regress_ts_multi, regress_ts_free;
GRANT SELECT ON eventsource.subscription_status TO regress_ts_bound, regress_ts_multi, regress_ts_free;

-- ---------------------------------------------------------------------------
-- The tenant argument: by default the caller's current tenant; NULL asks for
-- a cross-tenant subscription (the store's owner only)
-- ---------------------------------------------------------------------------
SELECT eventsource.create_subscription('ts_default', 'ts.h(eventsource.events)');
BEGIN;
SET LOCAL eventsource.tenant = 'tsub_a';
SELECT eventsource.create_subscription('ts_a', 'ts.h(eventsource.events)', partitions => 2);
COMMIT;
SELECT eventsource.create_subscription('ts_b', 'ts.h(eventsource.events)', tenant => 'tsub_b');
SELECT eventsource.create_subscription('ts_all', 'ts.h(eventsource.events)', tenant => NULL);
SELECT name, tenant FROM eventsource.subscriptions WHERE name LIKE 'ts\_%' ORDER BY name;

-- start_from 'checkpoint': the checkpoint of the subscription's tenant (the
-- same name in two tenants is two checkpoints)
BEGIN;
SET LOCAL eventsource.tenant = 'tsub_a';
SELECT eventsource.save_checkpoint('ts_cp', 5);
SET LOCAL eventsource.tenant = 'tsub_b';
SELECT eventsource.save_checkpoint('ts_cp', 7);
RESET eventsource.tenant;
SELECT eventsource.create_subscription('ts_cp', 'ts.h(eventsource.events)', start_from => 'checkpoint',
                                       tenant => 'tsub_b');
SELECT position FROM eventsource.subscription_partitions WHERE subscription = 'ts_cp';
ROLLBACK;

-- bad tenant arguments: empty, malformed, too long, unknown, a bad setting
SELECT t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => '')$$) AS empty,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'a b')$$) AS malformed,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'x''; --')$$) AS injection;
SELECT t.try(format('SELECT eventsource.create_subscription(%L, %L, tenant => %L)',
                    'ts_x', 'ts.h(eventsource.events)', repeat('t', 64))) AS too_long,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'nope')$$) AS unknown;
BEGIN;
SET LOCAL eventsource.tenant = 'nope';
SELECT t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)')$$) AS unknown_setting;
ROLLBACK;
-- the table's CHECK agrees (23514; the detail with the row is left out)
SELECT split_part(t.try($$UPDATE eventsource.subscriptions SET tenant = 'a b' WHERE name = 'ts_a'$$), ' | ', 1) AS check_refuses;

-- a bound role: its tenant, never another nor all of them (42501, also for
-- a tenant that does not exist: no probing)
BEGIN;
SET LOCAL ROLE regress_ts_bound;
SELECT t.try($$SELECT eventsource.create_subscription('ts_bound', 'ts.h(eventsource.events)')$$) AS own_tenant;
SELECT t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'tsub_b')$$) AS other_tenant,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'default')$$) AS default_tenant,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => 'nope')$$) AS unknown_tenant,
       t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => NULL)$$) AS cross_tenant;
RESET ROLE;
SELECT name, tenant, owner::text FROM eventsource.subscriptions WHERE name = 'ts_bound';
ROLLBACK;
-- a role bound to two tenants names one (ES006 when it names none)
BEGIN;
SET LOCAL ROLE regress_ts_multi;
SELECT t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)')$$) AS no_tenant_chosen,
       t.try($$SELECT eventsource.create_subscription('ts_multi', 'ts.h(eventsource.events)', tenant => 'tsub_b')$$) AS named;
ROLLBACK;
-- a role bound to nothing: any tenant, but not all of them
BEGIN;
SET LOCAL ROLE regress_ts_free;
SELECT t.try($$SELECT eventsource.create_subscription('ts_x', 'ts.h(eventsource.events)', tenant => NULL)$$) AS cross_tenant,
       t.try($$SELECT eventsource.create_subscription('ts_free', 'ts.h(eventsource.events)', tenant => 'tsub_b')$$) AS other_tenant;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- What each role's status shows: the owner every subscription; a bound role
-- its current tenant's; a free role its current tenant's and the
-- cross-tenant ones (as on 1.0)
-- ---------------------------------------------------------------------------
SELECT name, partition, tenant FROM eventsource.subscription_status
 WHERE name LIKE 'ts\_%' ORDER BY name, partition;
BEGIN;
SET LOCAL ROLE regress_ts_bound;
SELECT name, partition, tenant FROM eventsource.subscription_status ORDER BY name, partition;
SELECT s->>'name' AS health_of FROM jsonb_array_elements(eventsource.health()->'subscriptions') s;
SELECT eventsource.error_stats()->'by_subscription' AS errors_of;
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_ts_multi;
SET LOCAL eventsource.tenant = 'tsub_b';
SELECT name, partition, tenant FROM eventsource.subscription_status ORDER BY name, partition;
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_ts_free;
SELECT name, tenant FROM eventsource.subscription_status
 WHERE name LIKE 'ts\_%' OR name LIKE 'hostile%' ORDER BY name, partition;
SET LOCAL eventsource.tenant = 'tsub_b';
SELECT name, tenant FROM eventsource.subscription_status
 WHERE name LIKE 'ts\_%' ORDER BY name, partition;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- wait_for_subscription(): a bound role waits for its tenants' subscriptions
-- only
-- ---------------------------------------------------------------------------
BEGIN;
SET LOCAL ROLE regress_ts_bound;
SELECT t.try($$SELECT eventsource.wait_for_subscription('ts_a', 0, '0')$$) AS own,
       t.try($$SELECT eventsource.wait_for_subscription('ts_b', 0, '0')$$) AS other_tenant,
       t.try($$SELECT eventsource.wait_for_subscription('ts_all', 0, '0')$$) AS cross_tenant,
       t.try($$SELECT eventsource.wait_for_subscription('ts_nope', 0, '0')$$) AS unknown;
ROLLBACK;
BEGIN;
SET LOCAL ROLE regress_ts_free;
SELECT eventsource.wait_for_subscription('ts_b', 0, '0') AS free_role_other_tenant,
       eventsource.wait_for_subscription('ts_all', 0, '0') AS free_role_cross_tenant;
ROLLBACK;

-- ---------------------------------------------------------------------------
-- Row-level security on the subscription tables: a role granted them reads
-- its current tenant's rows only (the cross-tenant subscription's are the
-- owner's).  Dead letters and errors: a role bound to tenants reads only
-- those a subscription of its tenant wrote (subscription_tenant), not the
-- cross-tenant subscription's about its tenant's events; a role bound to
-- none reads both, for the tenant it selects.
-- ---------------------------------------------------------------------------
INSERT INTO eventsource.dead_letters (subscription, partition, global_position, stream_id,
    stream_version, event_id, event_type, data, metadata, recorded_at, error_message,
    error_sqlstate, error_category, error_severity, retry_count, first_failed_at, tenant_id,
    subscription_tenant)
SELECT s, 0, 1000000 + i, 'Ts-' || i, 1, gen_random_uuid(), 'T', '{}', '{}', now(),
       'boom', 'P0001', 'application', 'error', 0, now(), t, st
  FROM (VALUES (1, 'ts_all', 'tsub_a', NULL), (2, 'ts_all', 'tsub_b', NULL), (3, 'ts_all', 'default', NULL),
               (4, 'ts_a', 'tsub_a', 'tsub_a')) v(i, s, t, st);
INSERT INTO eventsource.recent_errors (subscription, partition, global_position, event_id,
    event_type, error_message, error_sqlstate, error_category, error_severity, attempt, tenant_id,
    subscription_tenant)
SELECT s, 0, 1000000 + i, gen_random_uuid(), 'T', 'boom', 'P0001', 'application', 'error', 1, t, st
  FROM (VALUES (1, 'ts_all', 'tsub_a', NULL), (2, 'ts_all', 'tsub_b', NULL), (3, 'ts_all', 'default', NULL),
               (4, 'ts_a', 'tsub_a', 'tsub_a')) v(i, s, t, st);
GRANT SELECT ON eventsource.dead_letters, eventsource.recent_errors, eventsource.subscriptions,
    eventsource.subscription_partitions TO regress_ts_bound, regress_ts_free;
BEGIN;
SET LOCAL ROLE regress_ts_bound;
SELECT (SELECT string_agg(subscription || ':' || tenant_id, ',' ORDER BY subscription, tenant_id)
          FROM eventsource.dead_letters) AS dead_letters,
       (SELECT string_agg(subscription || ':' || tenant_id, ',' ORDER BY subscription, tenant_id)
          FROM eventsource.recent_errors) AS recent_errors,
       (SELECT string_agg(name || ':' || tenant, ',' ORDER BY name) FROM eventsource.subscriptions) AS subscriptions,
       (SELECT string_agg(subscription || '/' || partition, ',' ORDER BY subscription, partition)
          FROM eventsource.subscription_partitions) AS partitions;
-- the errors of the cross-tenant subscription are not in its error_stats
SELECT eventsource.error_stats()->'by_subscription' ? 'ts_all' AS sees_cross_tenant_errors;
-- nor can it ask for them to be retried
SELECT t.try($$SELECT eventsource.retry_dead_letters('ts_all')$$) AS retry_cross_tenant;
ROLLBACK;
-- a role bound to no tenant: its tenant's rows of both subscriptions
BEGIN;
SET LOCAL ROLE regress_ts_free;
SET LOCAL eventsource.tenant = 'tsub_a';
SELECT (SELECT string_agg(subscription || ':' || tenant_id, ',' ORDER BY subscription, tenant_id)
          FROM eventsource.dead_letters) AS dead_letters,
       (SELECT string_agg(subscription || ':' || tenant_id, ',' ORDER BY subscription, tenant_id)
          FROM eventsource.recent_errors) AS recent_errors;
ROLLBACK;
-- writes are held to its tenant and its subscriptions' rows too (WITH
-- CHECK: not even a row of its tenant that names no subscription tenant),
-- and COPY TO writes its rows only
GRANT INSERT, UPDATE, DELETE ON eventsource.dead_letters TO regress_ts_bound;
BEGIN;
SET LOCAL ROLE regress_ts_bound;
SELECT t.try($$INSERT INTO eventsource.dead_letters (subscription, partition, global_position, stream_id,
    stream_version, event_id, event_type, data, metadata, recorded_at, error_message,
    error_sqlstate, error_category, error_severity, retry_count, first_failed_at, tenant_id)
    VALUES ('ts_all', 0, 1, 'Ts-9', 1, gen_random_uuid(), 'T', '{}', '{}', now(), 'x', 'P0001',
            'application', 'error', 0, now(), 'tsub_b')$$) AS insert_other_tenant,
       t.try($$INSERT INTO eventsource.dead_letters (subscription, partition, global_position, stream_id,
    stream_version, event_id, event_type, data, metadata, recorded_at, error_message,
    error_sqlstate, error_category, error_severity, retry_count, first_failed_at, tenant_id)
    VALUES ('ts_all', 0, 1, 'Ts-9', 1, gen_random_uuid(), 'T', '{}', '{}', now(), 'x', 'P0001',
            'application', 'error', 0, now(), 'tsub_a')$$) AS insert_cross_tenant_row,
       t.try($$UPDATE eventsource.dead_letters SET tenant_id = 'tsub_b'$$) AS move_to_other_tenant,
       t.try($$UPDATE eventsource.dead_letters SET subscription_tenant = NULL$$) AS make_cross_tenant;
UPDATE eventsource.dead_letters SET retry_count = 7;
DELETE FROM eventsource.dead_letters WHERE subscription <> 'ts_a';
COPY (SELECT subscription, tenant_id FROM eventsource.dead_letters) TO STDOUT;
COPY eventsource.dead_letters (subscription, tenant_id) TO STDOUT;
RESET ROLE;
-- its UPDATE reached its subscription's row only, its DELETE none of the others
SELECT string_agg(subscription || ':' || tenant_id || ':' || retry_count, ',' ORDER BY subscription, tenant_id)
           AS after_bound_writes
  FROM eventsource.dead_letters WHERE subscription IN ('ts_all', 'ts_a');
ROLLBACK;
REVOKE INSERT, UPDATE, DELETE ON eventsource.dead_letters FROM regress_ts_bound;
-- the owner sees them all
SELECT eventsource.error_stats()->'by_subscription'->'ts_all'->>'errors' AS owner_sees_errors,
       (SELECT count(*) FROM eventsource.dead_letters WHERE subscription = 'ts_all') AS owner_sees_dead_letters;
REVOKE SELECT ON eventsource.dead_letters, eventsource.recent_errors, eventsource.subscriptions,
    eventsource.subscription_partitions FROM regress_ts_bound, regress_ts_free;
DELETE FROM eventsource.recent_errors WHERE subscription IN ('ts_all', 'ts_a');
DELETE FROM eventsource.dead_letters WHERE subscription = 'ts_a';

-- ---------------------------------------------------------------------------
-- A bound session that SET ROLE to an unbound group keeps its tenants here
-- too: no subscription of another tenant (its handler would run as the
-- group), no cross-tenant rows in the status, no waiting on them
-- ---------------------------------------------------------------------------
GRANT regress_ts_free TO regress_ts_bound;
BEGIN;
SET LOCAL SESSION AUTHORIZATION regress_ts_bound;
SET LOCAL ROLE regress_ts_free;
SELECT t.try($$SELECT eventsource.create_subscription('ts_steal', 'ts.h(eventsource.events)', tenant => 'tsub_b')$$) AS other_tenant,
       t.try($$SELECT eventsource.create_subscription('ts_steal', 'ts.h(eventsource.events)', tenant => NULL)$$) AS cross_tenant,
       t.try($$SELECT eventsource.wait_for_subscription('ts_all', 0, '0')$$) AS wait_cross_tenant,
       (SELECT count(*) FROM eventsource.subscription_status WHERE tenant IS DISTINCT FROM 'tsub_a') AS other_rows;
ROLLBACK;
REVOKE regress_ts_free FROM regress_ts_bound;

-- ---------------------------------------------------------------------------
-- cleanup
-- ---------------------------------------------------------------------------
SELECT eventsource.drop_subscription(name) FROM eventsource.subscriptions
 WHERE name LIKE 'ts\_%' ORDER BY name;
REVOKE ALL ON FUNCTION
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
    eventsource.drop_subscription(text),
    eventsource.retry_dead_letters(text, bigint[]),
    eventsource.wait_for_subscription(text, bigint, interval),
    eventsource.subscription_status_rows(),
    eventsource.error_stats(),
    eventsource.health()
    FROM regress_ts_bound, regress_ts_multi, regress_ts_free;
REVOKE SELECT ON eventsource.subscription_status FROM regress_ts_bound, regress_ts_multi, regress_ts_free;
SELECT eventsource.unbind_role_from_tenant('regress_ts_bound', 'tsub_a'),
       eventsource.unbind_role_from_tenant('regress_ts_multi', 'tsub_a'),
       eventsource.unbind_role_from_tenant('regress_ts_multi', 'tsub_b');
REVOKE USAGE ON SCHEMA t FROM PUBLIC;
DROP SCHEMA ts CASCADE;
DROP ROLE regress_ts_bound, regress_ts_multi, regress_ts_free;
