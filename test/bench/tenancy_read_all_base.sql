-- Baseline for the read_all of run_tenancy.sh: the raw query on the plain
-- table, a page of 1,000 after a random position of the default tenant's
-- range [:pmin, :pmax] (as read_all_base.sql).
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM bench.plain_events WHERE global_position > :p
 ORDER BY global_position LIMIT 1000;
