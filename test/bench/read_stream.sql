-- eventsource.read_stream of a random 100-event stream "Read-<n>".
\set n random(1, 1000)
SELECT * FROM eventsource.read_stream('Read-' || :n);
