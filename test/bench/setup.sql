-- test/bench/setup.sql: the extension, the baseline table and the read data.
-- Run once by run.sh with psql -v ON_ERROR_STOP=1 on a fresh database.
CREATE EXTENSION eventsource;

\ir baseline.sql

-- Read data: 1,000 streams "Read-<n>" x 100 events (read_data.sql).
\set first 0
\set last 0
\set streams 1000
\ir read_data.sql

-- The baseline table starts with the same rows, so both tables (and their
-- indexes) have the same size when the append measurements start.
INSERT INTO bench.plain_events
SELECT global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at
  FROM eventsource.events;
SELECT setval('bench.plain_seq', (SELECT max(global_position) FROM bench.plain_events));
