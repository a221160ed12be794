-- eventsource.read_all: one page of 1,000 events after a random position in
-- the populated range [:pmin, :pmax] (always a full page).
\set p random(:pmin - 1, :pmax - 1000)
SELECT * FROM eventsource.read_all(:p, 1000);
