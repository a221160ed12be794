-- Baseline for append_event.sql: one INSERT of the same row into the plain
-- table: position from a CACHE 1 sequence, next stream version computed from
-- the primary key (the same backward index probe append() makes), a
-- time-ordered event id, the same event type, data, metadata and timestamp.
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
INSERT INTO bench.plain_events
       (global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at)
VALUES (nextval('bench.plain_seq'),
        'Order-' || :n,
        (SELECT coalesce(max(stream_version), 0) + 1 FROM bench.plain_events
          WHERE tenant_id = 'default' AND stream_id = 'Order-' || :n),
        bench.uuid_time_ordered(),
        'OrderPlaced', :data, '{}', now())
RETURNING stream_version, global_position AS first_position, global_position AS last_position;
