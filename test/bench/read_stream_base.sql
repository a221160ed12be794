-- Baseline for read_stream.sql: the raw query on the same table.
\set n random(1, :read_streams)
SELECT * FROM eventsource.events WHERE stream_id = 'Read-' || :n
 ORDER BY stream_version LIMIT 1000;
