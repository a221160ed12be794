-- run_scale.sh: eventsource.read_all, a page of 1,000 after a random position.
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM eventsource.read_all(:p, 1000);
