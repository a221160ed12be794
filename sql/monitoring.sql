--
-- monitoring: the columns of the monitoring views, the JSON shapes of
-- health(), readiness(), liveness() and error_stats(), store_stats counting
-- and stat_reset(), wait_for_subscription() arguments, and the privileges a
-- monitoring role needs (the GRANTs monitoring/README.md documents).
--
-- Nothing printed here depends on timing: the one subscription is created
-- paused, and we wait until no worker runs it before looking at it.
--

\d+ eventsource.subscription_status
\d+ eventsource.horizon_blockers
\d+ eventsource.store_stats

-- the contract's column names (DESIGN.md section 6), in order
SELECT string_agg(attname, ', ' ORDER BY attnum) AS status_columns
  FROM pg_attribute
 WHERE attrelid = 'eventsource.subscription_status'::regclass AND attnum > 0
   AND attname IN ('name', 'partition', 'pid', 'state', 'checkpoint', 'last_position',
                   'head_position', 'lag_events', 'lag_seconds', 'events_processed',
                   'events_failed', 'events_retried', 'dead_letters',
                   'consecutive_failures', 'error_rate_per_minute', 'last_error',
                   'last_error_at', 'started_at', 'last_activity_at', 'health');

-- the threshold settings and their defaults
SELECT name, setting, context FROM pg_settings
 WHERE name IN ('eventsource.max_error_rate_per_minute', 'eventsource.max_errors_warning',
                'eventsource.max_errors_critical', 'eventsource.max_lag_events_warning',
                'eventsource.max_lag_events_critical', 'eventsource.max_dead_letters_warning',
                'eventsource.max_dead_letters_critical', 'eventsource.notify_min_severity',
                'eventsource.liveness_timeout', 'eventsource.recent_errors_kept')
 ORDER BY name;

--
-- a paused subscription, started after the current head: its status row is
-- steady once no worker holds it
--
CREATE SCHEMA mon;
CREATE FUNCTION mon.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT eventsource.append_event('Mon-0', 0, 'Seed', '{}') IS NOT NULL AS seeded;
BEGIN;
SELECT eventsource.create_subscription('mon_sub', 'mon.h(eventsource.events)',
    start_from => 'end', partitions => 2);
SELECT eventsource.pause_subscription('mon_sub');
COMMIT;

SELECT t.wait_until($$(SELECT bool_and(state = 'paused' AND pid IS NULL)
                         FROM eventsource.subscription_status WHERE name = 'mon_sub')$$) AS settled;

SELECT name, partition, pid, state, checkpoint = eventsource.head_position() AS at_head,
       last_position = checkpoint AS last_is_checkpoint,
       head_position = eventsource.head_position() AS head_ok,
       lag_events, lag_seconds, events_processed, events_failed, events_retried,
       dead_letters, consecutive_failures, error_rate_per_minute, last_error,
       last_error_at, health, health_reason, partitions
  FROM eventsource.subscription_status WHERE name = 'mon_sub' ORDER BY partition;

-- thresholds use >=: lag_events is 0, so a critical threshold of 1 is not met
SET eventsource.max_lag_events_critical = 1;
SELECT health FROM eventsource.subscription_status WHERE name = 'mon_sub' ORDER BY partition;
RESET eventsource.max_lag_events_critical;

-- a JSON value's type; "string or null" for the keys that may be either
CREATE FUNCTION t.json_type(v jsonb, nullable boolean) RETURNS text LANGUAGE sql AS $$
    SELECT CASE WHEN nullable AND jsonb_typeof(v) IN ('string', 'null') THEN 'string or null'
                ELSE jsonb_typeof(v) END $$;

--
-- health(): the keys and their JSON types
--
SELECT k, jsonb_typeof(eventsource.health() -> k) AS type
  FROM jsonb_object_keys(eventsource.health()) k ORDER BY k;
-- the counts add up to the subscriptions of this database
SELECT (h->>'subscription_count')::int = (SELECT count(*) FROM eventsource.subscriptions) AS count_ok,
       (h->>'healthy_count')::int + (h->>'degraded_count')::int + (h->>'unhealthy_count')::int
         + (h->>'critical_count')::int = (h->>'subscription_count')::int AS levels_add_up,
       jsonb_array_length(h->'subscriptions') = (h->>'subscription_count')::int AS one_entry_each,
       (h->>'uptime_seconds')::bigint >= 0 AS uptime_ok,
       (h->>'timestamp')::timestamptz <= clock_timestamp() AS timestamp_ok,
       h->>'status' IN ('healthy', 'degraded', 'unhealthy', 'critical') AS status_ok
  FROM eventsource.health() h;
-- a subscription's entry, and its check
SELECT s AS mon_sub_entry
  FROM jsonb_array_elements(eventsource.health()->'subscriptions') s
 WHERE s->>'name' = 'mon_sub';
SELECT k, eventsource.health()->'checks'->>k AS "check"
  FROM jsonb_object_keys(eventsource.health()->'checks') k
 WHERE k IN ('launcher', 'heartbeats', 'subscription:mon_sub')
 ORDER BY k;
SELECT eventsource.health()->'checks' ? 'dead_letters' AS has_dead_letter_check;

--
-- readiness() and liveness(): keys, types; a paused subscription is neither
-- a reason to be unready nor dead
--
SELECT k, t.json_type(eventsource.readiness() -> k, k IN ('reason', 'oldest')) AS type
  FROM jsonb_object_keys(eventsource.readiness()) k ORDER BY k;
SELECT k, t.json_type(eventsource.liveness() -> k, k IN ('reason', 'oldest')) AS type
  FROM jsonb_object_keys(eventsource.liveness()) k ORDER BY k;
SELECT eventsource.readiness() - 'timestamp' AS readiness,
       eventsource.liveness() - 'timestamp' AS liveness;

--
-- error_stats(): keys and types
--
SELECT k, t.json_type(eventsource.error_stats() -> k, k IN ('reason', 'oldest')) AS type
  FROM jsonb_object_keys(eventsource.error_stats()) k ORDER BY k;
SELECT (e->>'total_errors')::bigint = (SELECT count(*) FROM eventsource.recent_errors) AS total_ok,
       (e->>'dead_letters')::bigint = (SELECT count(*) FROM eventsource.dead_letters) AS dead_ok,
       e->>'kept' AS kept
  FROM eventsource.error_stats() e;
-- its content, built in C (json.c), against its definition in SQL, on
-- errors of three subscriptions, three categories and four severities
BEGIN;
SET LOCAL timezone = 'UTC';
INSERT INTO eventsource.recent_errors (subscription, partition, global_position,
    event_id, event_type, error_message, error_sqlstate, error_category,
    error_severity, attempt, occurred_at)
SELECT 'mon_err_' || (i % 3), 0, i, gen_random_uuid(), 'T', 'm', 'P0001',
       (ARRAY['application', 'timeout', 'data'])[1 + i % 5 % 3],
       (ARRAY['low', 'medium', 'high', 'critical'])[1 + i % 4], 1,
       '2026-01-01 00:00+00'::timestamptz + i * interval '1 minute'
  FROM generate_series(1, 50) i;
-- and errors recorded at or before 2000-01-01 00:00 UTC (PostgreSQL's
-- timestamp zero), whose times are shown like any other, not as null
INSERT INTO eventsource.recent_errors (subscription, partition, global_position,
    event_id, event_type, error_message, error_sqlstate, error_category,
    error_severity, attempt, occurred_at)
SELECT s, 0, i, gen_random_uuid(), 'T', 'm', 'P0001', 'application', 'medium', 1, t
  FROM (VALUES (51, 'mon_err_old', '1999-06-01 00:00+00'::timestamptz),
               (52, 'mon_err_old', '1999-06-01 00:05+00'),
               (53, 'mon_err_zero', '2000-01-01 00:00+00')) v(i, s, t);
SELECT eventsource.error_stats() = jsonb_build_object(
    'total_errors', (SELECT count(*) FROM eventsource.recent_errors),
    'by_category', COALESCE((SELECT jsonb_object_agg(error_category, n)
        FROM (SELECT error_category, count(*) n FROM eventsource.recent_errors
              GROUP BY error_category) c), '{}'),
    'by_severity', COALESCE((SELECT jsonb_object_agg(error_severity, n)
        FROM (SELECT error_severity, count(*) n FROM eventsource.recent_errors
              GROUP BY error_severity) s), '{}'),
    'by_subscription', COALESCE((SELECT jsonb_object_agg(subscription, j)
        FROM (SELECT subscription, jsonb_build_object('errors', sum(n),
                     'last_error_at', max(last_at),
                     'by_category', jsonb_object_agg(error_category, n)) j
                FROM (SELECT subscription, error_category, count(*) n,
                             max(occurred_at) last_at
                        FROM eventsource.recent_errors
                       GROUP BY subscription, error_category) c
               GROUP BY subscription) x), '{}'),
    'dead_letters', (SELECT count(*) FROM eventsource.dead_letters),
    'kept', current_setting('eventsource.recent_errors_kept')::int4,
    'oldest', (SELECT min(occurred_at) FROM eventsource.recent_errors)) AS same_as_sql;
SELECT eventsource.error_stats() -> 'by_subscription' -> 'mon_err_1' AS mon_err_1;
SELECT e -> 'by_subscription' -> 'mon_err_old' ->> 'last_error_at' AS old_last,
       e -> 'by_subscription' -> 'mon_err_zero' ->> 'last_error_at' AS zero_last,
       e ->> 'oldest' AS oldest
  FROM eventsource.error_stats() e;
ROLLBACK;

--
-- horizon_blockers: none outside a transaction; this session's own open
-- append shows up with its positions and query
--
SELECT count(*) AS blockers FROM eventsource.horizon_blockers;
BEGIN;
SELECT stream_version FROM eventsource.append('Mon-blocker', 0,
    '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]') \gset
SELECT pid = pg_backend_pid() AS me, database = current_database() AS this_db, positions,
       max_position - min_position AS span, eventsource.head_position() = min_position - 1 AS holds_head,
       xid = pg_current_xact_id()::xid AS my_xid, state, query LIKE '%horizon_blockers%' AS query_shown
  FROM eventsource.horizon_blockers;
ROLLBACK;
SELECT count(*) AS blockers FROM eventsource.horizon_blockers;

--
-- store_stats: appends, events, conflicts, idempotent retries, duplicate ids,
-- reads; stat_reset() starts over
--
SELECT eventsource.stat_reset();
SELECT appends, events_appended, expected_version_conflicts, idempotent_retries,
       duplicate_event_ids, stream_reads, global_reads, events_read,
       stats_reset BETWEEN now() - interval '1 hour' AND clock_timestamp() AS reset_recent
  FROM eventsource.store_stats;
SELECT stats_reset AS first_reset FROM eventsource.store_stats \gset
SELECT * FROM eventsource.append('Mon-1', 0, '[
    {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-00000000a001"},
    {"type": "B", "data": {}, "id": "00000000-0000-4000-8000-00000000a002"}]') \gset first_
SELECT stream_version FROM eventsource.append_event('Mon-1', 2, 'C', '{}');
-- a conflict, twice
SELECT t.try($$SELECT eventsource.append_event('Mon-1', 1, 'D', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Mon-1', 0, 'D', '{}')$$);
-- an idempotent retry returns the first result and writes nothing
SELECT stream_version, first_position = :first_first_position AS same_first,
       last_position = :first_last_position AS same_last
  FROM eventsource.append('Mon-1', 0, '[
    {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-00000000a001"},
    {"type": "B", "data": {}, "id": "00000000-0000-4000-8000-00000000a002"}]');
-- an event id reused elsewhere
SELECT t.try($$SELECT eventsource.append('Mon-2', 0, '[{"type": "A", "data": {},
    "id": "00000000-0000-4000-8000-00000000a001"}]')$$);
-- reads: one stream read of 3 events, one global read of 3
SELECT count(*) FROM eventsource.read_stream('Mon-1');
SELECT count(*) FROM eventsource.read_all(:first_first_position - 1, 100, categories => ARRAY['Mon']);
SELECT appends, events_appended, expected_version_conflicts, idempotent_retries,
       duplicate_event_ids, stream_reads, global_reads, events_read,
       stats_reset = :'first_reset' AS same_reset
  FROM eventsource.store_stats;
SELECT pg_sleep(0.01);
SELECT eventsource.stat_reset();
SELECT appends + events_appended + expected_version_conflicts + idempotent_retries
         + duplicate_event_ids + stream_reads + global_reads + events_read AS all_counters,
       stats_reset > :'first_reset' AS reset_moved
  FROM eventsource.store_stats;

--
-- wait_for_subscription()
--
SELECT checkpoint AS mon_cp FROM eventsource.subscription_status
 WHERE name = 'mon_sub' AND partition = 0 \gset
-- reached (the saved checkpoints of both partitions): true at once
SELECT eventsource.wait_for_subscription('mon_sub', :mon_cp, '0s');
SELECT eventsource.wait_for_subscription('mon_sub', 0, '0s');
-- not reached by a paused subscription: false at the timeout
SELECT eventsource.wait_for_subscription('mon_sub', :mon_cp + 1, '10ms');
-- errors
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_nope', 1, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription(NULL, 1, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('', 1, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription(repeat('x', 300), 1, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_sub', NULL, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_sub', -1, '1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_sub', 1, NULL)$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_sub', 1, '-1s')$$);
SELECT t.try($$SELECT eventsource.wait_for_subscription('mon_sub', 1, '-1 day 23 hours')$$);

--
-- privileges: a plain role sees nothing; with the GRANTs of
-- monitoring/README.md it can run every exporter query and probe
--
CREATE ROLE regress_es_monitor;
GRANT USAGE ON SCHEMA t TO regress_es_monitor;
SET ROLE regress_es_monitor;
SELECT t.try('SELECT count(*) FROM eventsource.subscription_status');
SELECT t.try('SELECT eventsource.health()');
SELECT t.try('SELECT eventsource.readiness()');
SELECT t.try('SELECT count(*) FROM eventsource.store_stats');
SELECT t.try('SELECT eventsource.stat_reset()');
RESET ROLE;
GRANT pg_monitor TO regress_es_monitor;
GRANT SELECT ON eventsource.subscription_status, eventsource.horizon_blockers,
    eventsource.store_stats TO regress_es_monitor;
GRANT EXECUTE ON FUNCTION eventsource.subscription_status_rows(), eventsource.horizon_blocker_rows(),
    eventsource.store_stats_row(), eventsource.health(), eventsource.readiness(),
    eventsource.liveness(), eventsource.error_stats() TO regress_es_monitor;
SET ROLE regress_es_monitor;
SELECT t.try('SELECT count(*) FROM eventsource.subscription_status');
SELECT t.try('SELECT count(*) FROM eventsource.horizon_blockers');
SELECT t.try('SELECT count(*) FROM eventsource.store_stats');
SELECT t.try('SELECT eventsource.health()');
SELECT t.try('SELECT eventsource.readiness()');
SELECT t.try('SELECT eventsource.liveness()');
SELECT t.try('SELECT eventsource.error_stats()');
-- but not reset the counters
SELECT t.try('SELECT eventsource.stat_reset()');
RESET ROLE;

-- clean up
SELECT eventsource.drop_subscription('mon_sub');
DROP SCHEMA mon CASCADE;
REVOKE ALL ON eventsource.subscription_status, eventsource.horizon_blockers,
    eventsource.store_stats FROM regress_es_monitor;
REVOKE ALL ON FUNCTION eventsource.subscription_status_rows(), eventsource.horizon_blocker_rows(),
    eventsource.store_stats_row(), eventsource.health(), eventsource.readiness(),
    eventsource.liveness(), eventsource.error_stats() FROM regress_es_monitor;
REVOKE ALL ON SCHEMA t FROM regress_es_monitor;
DROP ROLE regress_es_monitor;
DROP FUNCTION t.json_type(jsonb, boolean);
SELECT count(*) AS subscriptions_left FROM eventsource.subscriptions;
