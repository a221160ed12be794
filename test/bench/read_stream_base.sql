-- Baseline for read_stream.sql: the raw query on the plain table (a copy of
-- the events, keyed as eventsource.events was before tenancy).
\set n random(1, :read_streams)
SELECT * FROM bench.plain_events WHERE stream_id = 'Read-' || :n
 ORDER BY stream_version LIMIT 1000;
