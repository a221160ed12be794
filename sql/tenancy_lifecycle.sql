--
-- tenancy_lifecycle: the stream lifecycle per (tenant, stream) (issue 15
-- part 2; docs/tenancy.md section 6).  The same stream ids in two tenants:
-- delete, truncate, erase, erase_by_metadata and the retention rules of
-- one never touch the other's events, versions, snapshots, lifecycle rows
-- or rules; a role bound to one tenant sees and changes only its own.
--
SET client_min_messages = warning;
SELECT eventsource.create_tenant('lc_a') AS a, eventsource.create_tenant('lc_b') AS b;

-- what a tenant has: its events (as the superuser, past row-level security)
CREATE FUNCTION t.lc_events(tenant text)
    RETURNS TABLE (stream_id text, stream_version bigint, event_type text, data jsonb, metadata jsonb)
    LANGUAGE sql AS $$
    SELECT stream_id, stream_version, event_type, data, metadata FROM eventsource.events
     WHERE tenant_id = tenant AND stream_id LIKE 'Lc-%' ORDER BY global_position $$;

-- the same streams, events, snapshots in both tenants
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY '{lc_a,lc_b}'::text[] LOOP
        PERFORM set_config('eventsource.tenant', t, true);
        PERFORM eventsource.append(s, 0, format('[
            {"type": "A", "data": {"n": 1, "t": "%1$s"}, "metadata": {"subject": "s-1"}},
            {"type": "B", "data": {"n": 2, "t": "%1$s"}, "metadata": {"subject": "s-1"}},
            {"type": "C", "data": {"n": 3, "t": "%1$s"}, "metadata": {"subject": "s-2"}}]', t)::jsonb)
          FROM unnest('{Lc-1,Lc-2,Lc-3}'::text[]) s;
        PERFORM eventsource.save_snapshot('Lc-1', 3, format('{"t": "%s"}', t)::jsonb);
    END LOOP;
END $$;

-- ---------------------------------------------------------------------------
-- truncate and delete in lc_a: lc_b's stream of the same id is untouched
-- ---------------------------------------------------------------------------
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT eventsource.truncate_stream('Lc-1', 3) > 0 AS truncated_a;
SELECT stream_version FROM eventsource.read_stream('Lc-1');
SELECT count(*) AS snapshots_a FROM eventsource.load_snapshot('Lc-1');
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_b';
SELECT stream_version FROM eventsource.read_stream('Lc-1');
SELECT eventsource.stream_version('Lc-1') AS version_b,
       (eventsource.load('Lc-1'))->'snapshot'->'state' AS snapshot_b;
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT eventsource.delete_stream('Lc-2', 3, hard => true) > 0 AS tombstoned_a;
SELECT eventsource.stream_version('Lc-2') AS version_a;
SELECT t.try($$SELECT eventsource.append_event('Lc-2', -1, 'D', '{}')$$) AS append_a;
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_b';
-- lc_b's Lc-2 is neither deleted nor tombstoned: it appends at version 4
SELECT eventsource.stream_version('Lc-2') AS version_b,
       (eventsource.append_event('Lc-2', 3, 'D', '{}')).stream_version AS appended_b;
SELECT stream_id, version FROM eventsource.streams WHERE stream_id LIKE 'Lc-%' ORDER BY 1;
-- lc_b's expected version is its own: 3 for Lc-1 although lc_a hid 1..2
SELECT eventsource.truncate_stream('Lc-1', 2, expected_version => 3) > 0 AS truncated_b;
COMMIT;
-- read_all hides each tenant's versions by its own lifecycle row (lc_a hid
-- 1..2 of Lc-1, lc_b 1) and lists its own system events
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT stream_id, stream_version, event_type FROM eventsource.read_all(0, 1000)
 WHERE stream_id LIKE 'Lc-%' ORDER BY global_position;
SET LOCAL eventsource.tenant = 'lc_b';
SELECT stream_id, stream_version, event_type FROM eventsource.read_all(0, 1000)
 WHERE stream_id LIKE 'Lc-%' ORDER BY global_position;
COMMIT;
-- the lifecycle rows and the system events, each in its tenant
SELECT tenant_id, stream_id, hidden_through, last_version, tombstoned, operations
  FROM eventsource.stream_lifecycle WHERE stream_id LIKE 'Lc-%' ORDER BY 1, 2;
SELECT tenant_id, stream_id, stream_version, event_type, data
  FROM eventsource.events WHERE stream_id LIKE 'Lc-%' AND stream_version < 0 ORDER BY global_position;
-- snapshots: lc_a's Lc-1 (at version 3, above the truncation) stays, as lc_b's
SELECT tenant_id, stream_id, stream_version FROM eventsource.snapshots
 WHERE stream_id LIKE 'Lc-%' ORDER BY 1, 2;

-- ---------------------------------------------------------------------------
-- erasure in lc_a: lc_b's events, snapshots of the same stream ids stay
-- ---------------------------------------------------------------------------
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT events_erased FROM eventsource.erase_stream('Lc-1', '{subject}');
COMMIT;
SELECT * FROM t.lc_events('lc_b') WHERE stream_id = 'Lc-1';
SELECT * FROM t.lc_events('lc_a') WHERE stream_id = 'Lc-1' AND stream_version > 0;
SELECT tenant_id, stream_id FROM eventsource.snapshots WHERE stream_id LIKE 'Lc-%' ORDER BY 1, 2;
-- by metadata in lc_b: only lc_b's events with subject s-2
BEGIN;
SET LOCAL eventsource.tenant = 'lc_b';
SELECT * FROM eventsource.erase_by_metadata('subject', 's-2');
COMMIT;
SELECT tenant_id, count(*) FILTER (WHERE data = '{"$erased": true}') AS erased,
       count(*) FILTER (WHERE metadata @> '{"subject": "s-2"}') AS s2
  FROM eventsource.events WHERE stream_id = 'Lc-3' AND stream_version > 0
 GROUP BY 1 ORDER BY 1;
SELECT tenant_id, stream_id, event_type FROM eventsource.events
 WHERE stream_id LIKE 'Lc-%' AND event_type = '$StreamErased' ORDER BY global_position;

-- ---------------------------------------------------------------------------
-- retention rules are the tenant's: set, listed and cleared per tenant
-- ---------------------------------------------------------------------------
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT eventsource.set_category_retention('Lc', max_count => 1);
SELECT eventsource.set_retention('Lc-3', max_age => '1 day');
SELECT scope, name, max_age, max_count, tenant_id FROM eventsource.retention ORDER BY 1, 2;
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_b';
SELECT count(*) AS rules_b FROM eventsource.retention;
SELECT eventsource.clear_category_retention('Lc') AS cleared_in_b,
       eventsource.clear_retention('Lc-3') AS cleared_stream_in_b;
SELECT eventsource.set_retention('Lc-3', max_count => 2);
SELECT scope, name, max_age, max_count, tenant_id FROM eventsource.retention ORDER BY 1, 2;
COMMIT;
SELECT tenant_id, scope, name, max_age, max_count FROM eventsource.stream_retention
 WHERE name LIKE 'Lc%' ORDER BY 1, 2, 3;
-- stream_cleanup and cleanup_status: the current tenant's rows
BEGIN;
SET LOCAL eventsource.tenant = 'lc_b';
SELECT stream_id, hidden_through, tenant_id FROM eventsource.stream_cleanup
 WHERE stream_id LIKE 'Lc-%' ORDER BY 1;
SELECT streams_pending FROM eventsource.cleanup_status;
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT stream_id, hidden_through, tenant_id FROM eventsource.stream_cleanup
 WHERE stream_id LIKE 'Lc-%' ORDER BY 1;
COMMIT;

-- ---------------------------------------------------------------------------
-- a role bound to lc_b: every lifecycle function acts in lc_b, naming lc_a
-- is refused (42501), the tables and views show lc_b's rows only
-- ---------------------------------------------------------------------------
CREATE ROLE lc_op;
GRANT USAGE ON SCHEMA eventsource, t TO lc_op;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO lc_op;
GRANT SELECT, INSERT, UPDATE, DELETE ON eventsource.stream_lifecycle,
    eventsource.stream_retention TO lc_op;
GRANT SELECT ON eventsource.retention, eventsource.stream_cleanup, eventsource.cleanup_status,
    eventsource.events TO lc_op;
SELECT eventsource.bind_role_to_tenant('lc_op', 'lc_b') AS bound;
BEGIN;
SET LOCAL ROLE lc_op;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT t.try($$SELECT eventsource.delete_stream('Lc-1', -1)$$) AS delete_a,
       t.try($$SELECT eventsource.truncate_stream('Lc-3', 2)$$) AS truncate_a,
       t.try($$SELECT eventsource.erase_stream('Lc-1')$$) AS erase_a;
SELECT t.try($$SELECT eventsource.erase_by_metadata('subject', 's-1')$$) AS erase_by_metadata_a,
       t.try($$SELECT eventsource.set_retention('Lc-1', max_count => 1)$$) AS set_retention_a,
       t.try($$SELECT eventsource.clear_category_retention('Lc')$$) AS clear_a;
SELECT t.try($$SELECT count(*) FROM eventsource.stream_lifecycle$$) AS lifecycle_table_a,
       t.try($$SELECT count(*) FROM eventsource.retention$$) AS retention_view_a;
ROLLBACK;
BEGIN;
SET LOCAL ROLE lc_op;
-- no setting: its one tenant
SELECT DISTINCT tenant_id FROM eventsource.stream_lifecycle;
SELECT DISTINCT tenant_id FROM eventsource.stream_retention;
SELECT DISTINCT tenant_id FROM eventsource.retention;
SELECT DISTINCT tenant_id FROM eventsource.stream_cleanup;
-- the guards refuse a direct write of either table, whatever the policy
SELECT t.try($$UPDATE eventsource.stream_lifecycle SET hidden_through = 0$$) AS update_lifecycle,
       t.try($$DELETE FROM eventsource.stream_retention$$) AS delete_rules,
       t.try($$INSERT INTO eventsource.stream_retention (tenant_id, scope, name, max_count)
               VALUES ('lc_a', 'category', 'Lc', 1)$$) AS insert_rule_a;
-- the functions act in lc_b: erasing subject s-1 leaves lc_a's events
SELECT * FROM eventsource.erase_by_metadata('subject', 's-1');
SELECT eventsource.delete_stream('Lc-3', 3) > 0 AS deleted_b;
SELECT eventsource.clear_retention('Lc-3') AS cleared_b;
COMMIT;
SELECT tenant_id,
       count(*) FILTER (WHERE metadata @> '{"subject": "s-1"}' AND data <> '{"$erased": true}') AS s1_left,
       count(*) FILTER (WHERE metadata @> '{"subject": "s-1"}' AND data = '{"$erased": true}') AS s1_erased
  FROM eventsource.events WHERE stream_id LIKE 'Lc-%' AND stream_version > 0
 GROUP BY 1 ORDER BY 1;
SELECT tenant_id, stream_id, hidden_through, tombstoned FROM eventsource.stream_lifecycle
 WHERE stream_id = 'Lc-3' ORDER BY 1;
SELECT tenant_id, scope, name FROM eventsource.stream_retention WHERE name LIKE 'Lc%' ORDER BY 1, 2, 3;

-- ---------------------------------------------------------------------------
-- erasing and removing a whole tenant: the loop of the README, one
-- transaction per stream; another tenant's streams of the same ids stay
-- ---------------------------------------------------------------------------
SELECT eventsource.create_tenant('lc_gone') AS created;
BEGIN;
SET LOCAL eventsource.tenant = 'lc_gone';
SELECT (eventsource.append(s, 0, '[{"type": "A", "data": {"name": "x"}}, {"type": "B", "data": {"name": "y"}}]')).stream_version
  FROM unnest('{Lc-1,Lc-9}'::text[]) s;
SELECT eventsource.delete_stream('Lc-9', 2, hard => true) > 0 AS tombstoned_before;
COMMIT;
DO $$
DECLARE s text;
BEGIN
    FOR s IN SELECT DISTINCT stream_id FROM eventsource.events
              WHERE tenant_id = 'lc_gone' AND stream_version >= 1 ORDER BY 1 LOOP
        PERFORM set_config('eventsource.tenant', 'lc_gone', true);
        PERFORM eventsource.erase_stream(s);
        IF NOT EXISTS (SELECT FROM eventsource.stream_lifecycle
                        WHERE tenant_id = 'lc_gone' AND stream_id = s AND tombstoned) THEN
            PERFORM eventsource.delete_stream(s, -1, hard => true);
        END IF;
        COMMIT;
    END LOOP;
END $$;
SELECT stream_id, count(*) FILTER (WHERE data <> '{"$erased": true}' AND stream_version >= 1) AS not_erased,
       bool_and(l.tombstoned) AS tombstoned
  FROM eventsource.events e JOIN eventsource.stream_lifecycle l USING (tenant_id, stream_id)
 WHERE tenant_id = 'lc_gone' GROUP BY 1 ORDER BY 1;
SELECT tenant_id, count(*) FILTER (WHERE data = '{"$erased": true}') AS erased
  FROM eventsource.events WHERE stream_id = 'Lc-1' AND stream_version >= 1 GROUP BY 1 ORDER BY 1;

-- ---------------------------------------------------------------------------
-- dead letters of a stream id whose events the cleanup has removed: an
-- erasure matches them by their own tenant_id, so lc_b's stays as it was
-- and lc_a's is redacted
-- ---------------------------------------------------------------------------
INSERT INTO eventsource.dead_letters (subscription, partition, global_position, stream_id,
    stream_version, event_id, event_type, data, metadata, recorded_at, error_message,
    error_sqlstate, error_category, error_severity, retry_count, first_failed_at, tenant_id)
SELECT 'gone_sub', 0, 900000000 + i, 'Dl-1', 1, gen_random_uuid(), 'T',
       jsonb_build_object('secret', t), '{}', now(), 'boom ' || t, 'P0001', 'application', 'error', 0, now(), t
  FROM (VALUES (1, 'lc_a'), (2, 'lc_b')) v(i, t);
BEGIN;
SET LOCAL eventsource.tenant = 'lc_a';
SELECT stream_version FROM eventsource.append_event('Dl-1', 0, 'T', '{"secret": "a2"}');
SELECT events_erased FROM eventsource.erase_stream('Dl-1');
COMMIT;
SELECT tenant_id, data, error_message FROM eventsource.dead_letters
 WHERE stream_id = 'Dl-1' ORDER BY tenant_id;
DELETE FROM eventsource.dead_letters WHERE stream_id = 'Dl-1';

-- ---------------------------------------------------------------------------
-- clean up (the tenants stay: they cannot be removed)
-- ---------------------------------------------------------------------------
SELECT eventsource.unbind_role_from_tenant('lc_op', 'lc_b') AS unbound;
DROP OWNED BY lc_op;
DROP ROLE lc_op;
DROP FUNCTION t.lc_events(text);
