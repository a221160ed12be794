-- Baseline for scale_read_stream.sql: the raw query on the plain copy.
\set n random(1, :nstreams)
SELECT * FROM bench.plain_events WHERE tenant_id = 'default' AND stream_id = 'Order-' || :n
 ORDER BY stream_version LIMIT 1000;
