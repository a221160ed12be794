--
-- tenant_stats: the per-tenant counters of store_stats (plus streams_created)
-- from shared memory; which tenant a count goes to; what a role that is not
-- the store's owner sees; stat_reset()
--
\d+ eventsource.tenant_stats
SELECT eventsource.stat_reset();
SELECT count(*) AS rows_after_reset FROM eventsource.tenant_stats;

-- appends: two new streams, a third append to one of them
SELECT stream_version, first_position - 1 AS before_ten
  FROM eventsource.append('Ten-1', 0, '[
    {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-00000000b001"},
    {"type": "B", "data": {}, "id": "00000000-0000-4000-8000-00000000b002"}]') \gset
SELECT :stream_version AS stream_version;
SELECT stream_version FROM eventsource.append_event('Ten-2', -1, 'A', '{}');
SELECT stream_version FROM eventsource.append_event('Ten-1', 2, 'C', '{}');
-- a conflict, an idempotent retry, an event id reused elsewhere
SELECT t.try($$SELECT eventsource.append_event('Ten-1', 0, 'D', '{}')$$);
SELECT stream_version FROM eventsource.append('Ten-1', 0, '[
    {"type": "A", "data": {}, "id": "00000000-0000-4000-8000-00000000b001"},
    {"type": "B", "data": {}, "id": "00000000-0000-4000-8000-00000000b002"}]');
SELECT t.try($$SELECT eventsource.append('Ten-3', 0, '[{"type": "A", "data": {},
    "id": "00000000-0000-4000-8000-00000000b001"}]')$$);
-- reads
SELECT count(*) FROM eventsource.read_stream('Ten-1');
SELECT count(*) FROM eventsource.read_all(:before_ten, 5);
SELECT tenant_id, appends, events_appended, streams_created, expected_version_conflicts,
       idempotent_retries, duplicate_event_ids, stream_reads, global_reads, events_read,
       stats_reset BETWEEN now() - interval '1 hour' AND clock_timestamp() AS reset_recent
  FROM eventsource.tenant_stats ORDER BY tenant_id;
-- the tenants' rows add up to store_stats
SELECT s.appends = t.appends AS appends_agree, s.events_appended = t.events_appended AS events_agree,
       s.events_read = t.events_read AS reads_agree
  FROM eventsource.store_stats s,
       (SELECT sum(appends) AS appends, sum(events_appended) AS events_appended,
               sum(events_read) AS events_read FROM eventsource.tenant_stats) t;

-- a stream soft-deleted and written again is not created again
SELECT eventsource.delete_stream('Ten-2', 1) > 0 AS deleted;
SELECT stream_version FROM eventsource.append_event('Ten-2', 0, 'A', '{}');
SELECT appends, streams_created FROM eventsource.tenant_stats WHERE tenant_id = 'default';

-- two tenants, the same stream id in each: every count goes to the tenant
-- the call worked in
SELECT eventsource.create_tenant('ts_a'), eventsource.create_tenant('ts_b');
BEGIN;
SET LOCAL eventsource.tenant = 'ts_a';
SELECT stream_version FROM eventsource.append_event('Ten-1', 0, 'A', '{}');
SELECT stream_version FROM eventsource.append('Ten-1', 1, '[{"type": "B", "data": {}}, {"type": "C", "data": {}}]');
SELECT t.try($$SELECT eventsource.append_event('Ten-1', 0, 'D', '{}')$$);
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'ts_b';
SELECT stream_version FROM eventsource.append_event('Ten-1', 0, 'A', '{}');
COMMIT;
BEGIN;
SET LOCAL eventsource.tenant = 'ts_b';
SELECT count(*) FROM eventsource.read_stream('Ten-1');
SELECT count(*) FROM eventsource.read_all(0, 10);
COMMIT;
SELECT tenant_id, appends, events_appended, streams_created, expected_version_conflicts,
       stream_reads, global_reads, events_read
  FROM eventsource.tenant_stats ORDER BY tenant_id;
SELECT s.appends = t.appends AS appends_agree, s.events_read = t.events_read AS reads_agree
  FROM eventsource.store_stats s,
       (SELECT sum(appends) AS appends, sum(events_read) AS events_read
          FROM eventsource.tenant_stats) t;

-- a role that is not the owner: nothing without grants; with them, only
-- the row of its own tenant
CREATE ROLE regress_es_tenant_reader;
GRANT USAGE ON SCHEMA t TO regress_es_tenant_reader;
SET ROLE regress_es_tenant_reader;
SELECT t.try('SELECT count(*) FROM eventsource.tenant_stats');
RESET ROLE;
GRANT SELECT ON eventsource.tenant_stats TO regress_es_tenant_reader;
GRANT EXECUTE ON FUNCTION eventsource.tenant_stats_rows() TO regress_es_tenant_reader;
SET ROLE regress_es_tenant_reader;
SELECT tenant_id, appends FROM eventsource.tenant_stats;
-- an application role chooses its tenant per transaction
BEGIN;
SET LOCAL eventsource.tenant = 'ts_a';
SELECT tenant_id, appends FROM eventsource.tenant_stats;
COMMIT;
SELECT t.try('SELECT eventsource.stat_reset()');
RESET ROLE;
-- a role bound to a tenant sees that tenant's row, and may not name another
CREATE ROLE regress_es_tenant_bound;
GRANT USAGE ON SCHEMA t TO regress_es_tenant_bound;
GRANT SELECT ON eventsource.tenant_stats TO regress_es_tenant_bound;
GRANT EXECUTE ON FUNCTION eventsource.tenant_stats_rows() TO regress_es_tenant_bound;
SELECT eventsource.bind_role_to_tenant('regress_es_tenant_bound', 'ts_b');
SET ROLE regress_es_tenant_bound;
SELECT tenant_id, appends FROM eventsource.tenant_stats;
BEGIN;
SET LOCAL eventsource.tenant = 'ts_a';
SELECT t.try('SELECT count(*) FROM eventsource.tenant_stats');
COMMIT;
RESET ROLE;
SELECT eventsource.unbind_role_from_tenant('regress_es_tenant_bound', 'ts_b');

-- stat_reset(): every row of the database starts over
SELECT stats_reset AS first_reset FROM eventsource.tenant_stats WHERE tenant_id = 'default' \gset
SELECT pg_sleep(0.01);
SELECT eventsource.stat_reset();
SELECT count(*) AS rows_after_reset FROM eventsource.tenant_stats;
SELECT stream_version FROM eventsource.append_event('Ten-1', -1, 'E', '{}');
SELECT tenant_id, appends, streams_created, stats_reset > :'first_reset' AS reset_moved
  FROM eventsource.tenant_stats;
-- the first count of a tenant after the reset gives it a row again
BEGIN;
SET LOCAL eventsource.tenant = 'ts_b';
SELECT stream_version FROM eventsource.append_event('Ten-1', -1, 'E', '{}');
COMMIT;
SELECT tenant_id, appends, streams_created FROM eventsource.tenant_stats ORDER BY tenant_id;

-- clean up
REVOKE ALL ON eventsource.tenant_stats FROM regress_es_tenant_reader;
REVOKE ALL ON FUNCTION eventsource.tenant_stats_rows() FROM regress_es_tenant_reader;
REVOKE ALL ON SCHEMA t FROM regress_es_tenant_reader;
DROP ROLE regress_es_tenant_reader;
REVOKE ALL ON eventsource.tenant_stats FROM regress_es_tenant_bound;
REVOKE ALL ON FUNCTION eventsource.tenant_stats_rows() FROM regress_es_tenant_bound;
REVOKE ALL ON SCHEMA t FROM regress_es_tenant_bound;
DROP ROLE regress_es_tenant_bound;
