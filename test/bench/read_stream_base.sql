-- Baseline for read_stream.sql: the raw query on the same table.
\set n random(1, 1000)
SELECT * FROM eventsource.events WHERE tenant_id = 'default' AND stream_id = 'Read-' || :n
 ORDER BY stream_version LIMIT 1000;
