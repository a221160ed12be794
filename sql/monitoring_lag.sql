--
-- monitoring_lag: the lag figures of eventsource.subscription_status
-- (lag_events exact up to eventsource.lag_count_limit events after the
-- checkpoint, a lower bound beyond; lag_positions; lag_seconds) with filters
-- and partitions; the health thresholds compare with the figure shown;
-- readiness() and liveness() never read eventsource.events; and a database
-- still on the 1.0 SQL is served its 26 columns, then updated with its
-- grants kept.
--
-- The subscriptions are created paused at position 0, so nothing here
-- depends on timing.
--
CREATE SCHEMA ml;
CREATE FUNCTION ml.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;

-- 40 events after position :base: MlOrder-1..4 and MlCart-1..4 in turns,
-- five events each; type B every fourth event, A otherwise
SELECT eventsource.head_position() AS base \gset
SELECT count(*) AS appended
  FROM generate_series(0, 39) i,
       LATERAL eventsource.append_event(
           CASE WHEN i % 2 = 0 THEN 'MlOrder-' ELSE 'MlCart-' END || (i / 2 % 4 + 1), -1,
           CASE WHEN i % 4 = 3 THEN 'B' ELSE 'A' END, '{}');
SELECT eventsource.head_position() - :base AS span;

CREATE FUNCTION ml.make(name text, partitions integer, types text[], cats text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM eventsource.create_subscription(name, 'ml.h(eventsource.events)',
        start_from => 'end', partitions => partitions, event_types => types, categories => cats);
    PERFORM eventsource.pause_subscription(name);
END $$;
BEGIN;
SELECT ml.make('ml_all', 1, NULL, NULL), ml.make('ml_parts', 4, NULL, NULL),
       ml.make('ml_type', 1, '{B}', NULL), ml.make('ml_cat', 2, NULL, '{MlCart}'),
       ml.make('ml_none', 1, '{Nope}', NULL);
COMMIT;
-- every partition 40 events behind: just before the first of them
SELECT eventsource.reset_subscription(s, :base)
  FROM unnest('{ml_all,ml_parts,ml_type,ml_cat,ml_none}'::text[]) s;

SELECT set_config('ml.base', :'base', false) IS NOT NULL AS set;
SELECT t.wait_until($$(SELECT bool_and(state = 'paused' AND pid IS NULL
                                  AND checkpoint = current_setting('ml.base')::bigint)
                         FROM eventsource.subscription_status WHERE name LIKE 'ml\_%')$$) AS settled;

-- What each partition has to deliver, counted the slow way: its events
-- after the checkpoint that pass its filters, all of them or only among the
-- first "window" events after the checkpoint.
CREATE FUNCTION ml.expected(sub text, part integer, ceiling bigint, window_size bigint)
RETURNS bigint LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                              AND (s.categories IS NULL OR eventsource.category(e.stream_id) = ANY (s.categories))
                              AND eventsource.stream_partition(e.stream_id, s.partitions) = part)
      FROM eventsource.subscriptions s, eventsource.subscription_partitions p,
           LATERAL (SELECT * FROM eventsource.events e
                     WHERE e.global_position > p.position AND e.global_position <= ceiling
                     ORDER BY e.global_position LIMIT window_size) e
     WHERE s.name = sub AND p.subscription = sub AND p.partition = part
$$;

CREATE VIEW ml.lag AS
    SELECT name, partition, lag_events,
           lag_events = ml.expected(name, partition, head_position,
                                    current_setting('eventsource.lag_count_limit')::bigint) AS as_expected,
           lag_events_exact AS exact, lag_positions, lag_events_estimate AS estimate,
           lag_seconds > 0 AS behind_in_time,
           lag_seconds < 600 AS sane_age, health, health_reason
      FROM eventsource.subscription_status WHERE name LIKE 'ml\_%' ORDER BY name, partition;

-- below the limit (250): exact counts, filters and partitions applied
SHOW eventsource.lag_count_limit;
SELECT * FROM ml.lag;
SELECT sum(lag_events) AS parts_sum FROM eventsource.subscription_status WHERE name = 'ml_parts';

-- the limit exactly at the backlog (40 positions): still exact
SET eventsource.lag_count_limit = 40;
SELECT name, partition, lag_events, as_expected, exact FROM ml.lag;

-- beyond it: the counts among the first 10 events only, flagged as lower
-- bounds; lag_positions unchanged; ml_none found nothing among them, and
-- its lag_seconds is the age of the last event it looked at
SET eventsource.lag_count_limit = 10;
SELECT * FROM ml.lag;
-- the smallest window, one event: every partition is still seen behind in
-- time (lag_seconds > 0), even ml_none; 0 and more than 100,000 are refused
SET eventsource.lag_count_limit = 0;
SET eventsource.lag_count_limit = 100001;
SET eventsource.lag_count_limit = 1;
SELECT name, partition, lag_events, exact, lag_positions, behind_in_time FROM ml.lag;

-- the thresholds compare with the figure shown, lag_events_estimate:
-- lag_events when it is exact; when it is not, the count extrapolated from
-- the window over the 40 positions (ml_all: 39 of 39 looked at, 40; ml_none:
-- none among them, 0)
SET eventsource.max_lag_events_critical = 40;
RESET eventsource.lag_count_limit;
SELECT name, partition, lag_events, exact, lag_positions, estimate, health, health_reason FROM ml.lag;
SET eventsource.lag_count_limit = 39;
SELECT name, partition, lag_events, exact, lag_positions, estimate, health, health_reason FROM ml.lag;
-- health() carries the same per subscription
SELECT s->>'name' AS name, s->>'status' AS status, s->>'reason' AS reason, s->'lag_events' AS lag_events,
       s->'lag_events_exact' AS exact, s->'lag_positions' AS lag_positions
  FROM jsonb_array_elements(eventsource.health()->'subscriptions') s
 WHERE s->>'name' LIKE 'ml\_%' ORDER BY 1;
RESET eventsource.lag_count_limit;
RESET eventsource.max_lag_events_critical;

-- a rare filter far behind: 2,000 positions, 20 of them its events (one in
-- a hundred).  lag_events counts the few among the first 250; the estimate
-- extrapolates them over the 2,000 positions (not the positions
-- themselves), and the thresholds compare with it: not critical at a
-- critical threshold of 1,000 that lag_positions would cross (only degraded,
-- by being paused).  With a window that reaches the head the estimate is the
-- exact count, and the thresholds compare with that.
SELECT eventsource.head_position() AS rare_base \gset
SELECT count(*) AS appended
  FROM generate_series(1, 2000) i,
       LATERAL eventsource.append_event('MlRare-' || (i % 7), -1,
           CASE WHEN i % 100 = 0 THEN 'Rare' ELSE 'Common' END, '{}');
SELECT ml.make('ml_rare', 1, '{Rare}', NULL);
SELECT eventsource.reset_subscription('ml_rare', :rare_base);
SET eventsource.max_lag_events_critical = 1000;
SET eventsource.max_lag_events_warning = 100;
SELECT lag_positions, lag_events, lag_events_exact AS exact,
       lag_events_estimate BETWEEN 10 AND 40 AS estimate_near_20,
       lag_events_estimate >= lag_events AS at_least_counted, health, health_reason
  FROM eventsource.subscription_status WHERE name = 'ml_rare';
SELECT s->>'status' AS status, (s->>'lag_events_estimate')::bigint BETWEEN 10 AND 40 AS estimate_near_20
  FROM jsonb_array_elements(eventsource.health()->'subscriptions') s WHERE s->>'name' = 'ml_rare';
SET eventsource.lag_count_limit = 2000;
SELECT lag_positions, lag_events, lag_events_exact AS exact, lag_events_estimate, health
  FROM eventsource.subscription_status WHERE name = 'ml_rare';
SET eventsource.max_lag_events_critical = 20;
SELECT lag_events_estimate, health, health_reason
  FROM eventsource.subscription_status WHERE name = 'ml_rare';
RESET eventsource.lag_count_limit;
RESET eventsource.max_lag_events_critical;
RESET eventsource.max_lag_events_warning;
SELECT eventsource.drop_subscription('ml_rare');

-- caught up: nothing left, exact at any limit, lag_seconds 0
SELECT eventsource.reset_subscription('ml_none', eventsource.head_position());
SET eventsource.lag_count_limit = 1;
SELECT name, partition, lag_events, exact, lag_positions, behind_in_time FROM ml.lag WHERE name = 'ml_none';
RESET eventsource.lag_count_limit;

--
-- readiness() and liveness() read neither the log nor the dead letters: the
-- scan counters of those tables that the backend has not yet reported (they
-- are reported only outside a transaction block) do not move across the
-- calls, and the same counters do see the status view read the log
--
CREATE VIEW ml.scans AS
    SELECT sum(seq_scan + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'events') AS events,
           sum(seq_scan + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'dead_letters') AS dead_letters
      FROM pg_stat_xact_user_tables
     WHERE relid IN ('eventsource.events'::regclass, 'eventsource.dead_letters'::regclass);
BEGIN;
SELECT events AS events0, dead_letters AS dead0 FROM ml.scans \gset
SELECT eventsource.readiness() ? 'ready' AS readiness, eventsource.liveness() ? 'alive' AS liveness;
SELECT eventsource.readiness() ? 'ready' AS readiness, eventsource.liveness() ? 'alive' AS liveness;
SELECT events = :events0 AS events_untouched, dead_letters = :dead0 AS dead_letters_untouched FROM ml.scans;
SELECT count(*) > 0 AS status_rows FROM eventsource.subscription_status;
SELECT events > :events0 AS events_read, dead_letters > :dead0 AS dead_letters_read FROM ml.scans;
COMMIT;

--
-- The status calls plan with jit off and plan_cache_mode force_custom_plan
-- for themselves only: inside the caller's transaction block, its own
-- settings are still there after each of them (view, health(), readiness(),
-- liveness(), error_stats())
--
SET jit = on;
SET plan_cache_mode = force_generic_plan;
BEGIN;
SELECT count(*) > 0 AS status_rows FROM eventsource.subscription_status;
SELECT current_setting('jit') AS jit, current_setting('plan_cache_mode') AS plan_cache_mode;
SELECT eventsource.health() ? 'status' AS health;
SELECT current_setting('jit') AS jit, current_setting('plan_cache_mode') AS plan_cache_mode;
SELECT eventsource.readiness() ? 'ready' AS readiness;
SELECT current_setting('jit') AS jit, current_setting('plan_cache_mode') AS plan_cache_mode;
SELECT eventsource.liveness() ? 'alive' AS liveness;
SELECT current_setting('jit') AS jit, current_setting('plan_cache_mode') AS plan_cache_mode;
SELECT eventsource.error_stats() ? 'total_errors' AS error_stats;
SELECT current_setting('jit') AS jit, current_setting('plan_cache_mode') AS plan_cache_mode;
COMMIT;
SHOW jit;
SHOW plan_cache_mode;
RESET jit;
RESET plan_cache_mode;

-- clean up
SELECT eventsource.drop_subscription(s)
  FROM unnest('{ml_all,ml_parts,ml_type,ml_cat,ml_none}'::text[]) s;
DROP SCHEMA ml CASCADE;

--
-- A database still on the 1.0 SQL: the status function declares 26
-- columns and gets them; the update to 1.1 points the view at a new
-- function with the added columns, keeping what was granted on the view and
-- on 1.0's function, which is still there (test/t/042 dumps the grants).
--
SELECT current_database() AS regdb \gset
CREATE DATABASE es_lag_v10;
\c es_lag_v10
CREATE EXTENSION eventsource VERSION '1.0';
CREATE ROLE regress_es_lag_reader;
GRANT USAGE ON SCHEMA eventsource TO regress_es_lag_reader;
GRANT SELECT ON eventsource.subscription_status TO regress_es_lag_reader;
GRANT EXECUTE ON FUNCTION eventsource.subscription_status_rows() TO regress_es_lag_reader WITH GRANT OPTION;
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT eventsource.append_event('V10-1', -1, 'A', '{}') IS NOT NULL AS appended;
BEGIN;
SELECT eventsource.create_subscription('v10', 'h(eventsource.events)', start_from => 'beginning');
SELECT eventsource.pause_subscription('v10');
COMMIT;
SELECT count(*) AS columns FROM pg_attribute
 WHERE attrelid = 'eventsource.subscription_status'::regclass AND attnum > 0;
SELECT name, partition, checkpoint, lag_events FROM eventsource.subscription_status;
ALTER EXTENSION eventsource UPDATE TO '1.1';
SELECT count(*) AS columns FROM pg_attribute
 WHERE attrelid = 'eventsource.subscription_status'::regclass AND attnum > 0;
SELECT name, partition, checkpoint, lag_events, lag_events_exact, lag_positions
  FROM eventsource.subscription_status;
-- the grants are still there, and nothing more (no EXECUTE or SELECT for
-- PUBLIC on the view or on 1.0's function)
SELECT has_table_privilege('regress_es_lag_reader', 'eventsource.subscription_status', 'SELECT') AS sel,
       has_function_privilege('regress_es_lag_reader', 'eventsource.subscription_status_rows()', 'EXECUTE') AS exec,
       has_function_privilege('regress_es_lag_reader', 'eventsource.subscription_status_rows()',
                              'EXECUTE WITH GRANT OPTION') AS exec_grant;
SELECT (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'eventsource.subscription_status'::regclass AND a.grantee = 0) AS public_view_grants,
       (SELECT count(*) FROM pg_proc p, aclexplode(p.proacl) a
         WHERE p.oid = 'eventsource.subscription_status_rows()'::regprocedure AND a.grantee = 0) AS public_function_grants;
SET ROLE regress_es_lag_reader;
SELECT count(*) AS rows_seen FROM eventsource.subscription_status;
RESET ROLE;
SELECT eventsource.drop_subscription('v10');
\c :regdb
DROP DATABASE es_lag_v10 WITH (FORCE);
DROP ROLE regress_es_lag_reader;
