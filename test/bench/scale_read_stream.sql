-- run_scale.sh: eventsource.read_stream of a random loaded stream "Order-<n>".
\set n random(1, :nstreams)
SELECT * FROM eventsource.read_stream('Order-' || :n);
