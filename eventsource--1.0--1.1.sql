/*
 * eventsource--1.0--1.1.sql: from the released 1.0 to 1.1.
 *
 * 1.0 is frozen: eventsource--1.0.sql stays byte for byte what 1.0 users
 * installed.  Every change to the SQL surface or the schema goes here (and,
 * after 1.1 is released, into eventsource--1.1--1.2.sql).  A fresh
 * CREATE EXTENSION runs 1.0 then this script, so a fresh 1.1 and an updated
 * 1.0 are the same by construction; the upgrade walk test
 * (test/t/040_upgrade.pl) checks it.
 *
 * Rules for this file: every name schema-qualified; no table rewrite of
 * eventsource.events unless the release notes say so with its time on 10M
 * events; each section says which issue it serves and which table locks it
 * takes (README.md, "Upgrading", lists them).  All the rules, and how the C
 * library serves 1.0 and 1.1 at once: CONTRIBUTING.md.
 */

\echo Use "ALTER EXTENSION eventsource UPDATE TO '1.1'" to load this file. \quit

-- ==== issue 10: monitoring that stays instant at any size and lag ====
--
-- eventsource.subscription_status gains two columns at its end:
--   lag_positions     head_position - checkpoint (O(1)): positions still to
--                     walk, an upper bound of lag_events
--   lag_events_exact  whether lag_events is the exact count (true) or a lower
--                     bound (false: the backlog is longer than the
--                     eventsource.lag_count_limit events the status looks at)
-- A function's output columns cannot be changed in place, so the view and
-- its function are dropped and created again; the privileges granted on
-- them are carried over.  (A view of your own built on subscription_status
-- makes the update fail with "other objects depend on it": drop it first and
-- create it again afterwards.)
DO $issue10$
DECLARE
    fn_acl   aclitem[];
    view_acl aclitem[];
    g        record;
BEGIN
    SELECT proacl INTO fn_acl FROM pg_catalog.pg_proc
     WHERE oid OPERATOR(pg_catalog.=) 'eventsource.subscription_status_rows()'::pg_catalog.regprocedure;
    SELECT relacl INTO view_acl FROM pg_catalog.pg_class
     WHERE oid OPERATOR(pg_catalog.=) 'eventsource.subscription_status'::pg_catalog.regclass;

    DROP VIEW eventsource.subscription_status;
    DROP FUNCTION eventsource.subscription_status_rows();
    CREATE FUNCTION eventsource.subscription_status_rows(
        OUT name text, OUT partition integer, OUT pid integer, OUT state text,
        OUT checkpoint bigint, OUT last_position bigint, OUT head_position bigint,
        OUT lag_events bigint, OUT lag_seconds double precision,
        OUT events_processed bigint, OUT events_failed bigint, OUT events_retried bigint,
        OUT dead_letters bigint, OUT consecutive_failures bigint,
        OUT error_rate_per_minute bigint, OUT last_error text, OUT last_error_at timestamptz,
        OUT started_at timestamptz, OUT last_activity_at timestamptz, OUT health text,
        OUT health_reason text, OUT last_sqlstate text, OUT heartbeat_at timestamptz,
        OUT circuit_open_until timestamptz, OUT last_shutdown jsonb, OUT partitions integer,
        OUT lag_positions bigint, OUT lag_events_exact boolean)
        RETURNS SETOF record
        LANGUAGE c VOLATILE PARALLEL UNSAFE
        AS 'MODULE_PATHNAME', 'es_subscription_status';
    -- One row per subscription partition, like the pg_stat_* views.
    CREATE VIEW eventsource.subscription_status AS
        SELECT * FROM eventsource.subscription_status_rows();
    REVOKE ALL ON FUNCTION eventsource.subscription_status_rows() FROM PUBLIC;
    REVOKE ALL ON eventsource.subscription_status FROM PUBLIC;

    -- the grants of 1.0's function and view (grantee 0 is PUBLIC)
    FOR g IN SELECT 'FUNCTION eventsource.subscription_status_rows()' AS object, a.*
               FROM pg_catalog.aclexplode(fn_acl) a
             UNION ALL
             SELECT 'eventsource.subscription_status', a.*
               FROM pg_catalog.aclexplode(view_acl) a LOOP
        CONTINUE WHEN g.grantee OPERATOR(pg_catalog.=) g.grantor;
        EXECUTE pg_catalog.format('GRANT %s ON %s TO %s%s', g.privilege_type, g.object,
            CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE g.grantee::pg_catalog.regrole::pg_catalog.text END,
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$issue10$;
