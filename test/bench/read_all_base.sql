-- Baseline for read_all.sql: the raw query on the plain table (a copy of the
-- events), a page of 1,000 after a random position of [:pmin, :pmax].
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM bench.plain_events WHERE global_position > :p
 ORDER BY global_position LIMIT 1000;
