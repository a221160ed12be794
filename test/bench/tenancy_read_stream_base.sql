-- Baseline for the read_stream of run_tenancy.sh: the raw query on the
-- plain table (today's shape; it holds a copy of every event).
\set n random(1, :read_streams)
SELECT * FROM bench.plain_events WHERE stream_id = 'Read-' || :n
 ORDER BY stream_version LIMIT 1000;
