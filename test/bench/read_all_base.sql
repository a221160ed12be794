-- Baseline for read_all.sql: the raw query on the same table.
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM eventsource.events WHERE tenant_id = 'default' AND global_position > :p
 ORDER BY global_position LIMIT 1000;
