-- Baseline for scale_read_all.sql: the raw query on the plain copy.
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM bench.plain_events WHERE tenant_id = 'default' AND global_position > :p
 ORDER BY global_position LIMIT 1000;
