-- Baseline for append_batch.sql: one multi-row INSERT of the same :batch rows
-- built from the same jsonb array argument (so the client sends exactly the
-- same bytes), with one stream-version probe and consecutive versions.
-- Rows come out of the function scan in array order, so positions ascend
-- with versions as in append().
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
INSERT INTO bench.plain_events
       (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
SELECT nextval('bench.plain_seq'), s.id, v.cur + e.ord, bench.uuid_time_ordered(),
       e.ev ->> 'type', e.ev -> 'data', coalesce(e.ev -> 'metadata', '{}'), now()
  FROM (SELECT 'Cart' || :batch || '-' || :n AS id) s
 CROSS JOIN LATERAL (SELECT coalesce(max(p.stream_version), 0) AS cur
                       FROM bench.plain_events p
                      WHERE p.tenant_id = 'default' AND p.stream_id = s.id) v
 CROSS JOIN LATERAL jsonb_array_elements(:events) WITH ORDINALITY AS e(ev, ord);
