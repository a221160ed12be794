-- eventsource.read_stream of a random 100-event stream "Read-<n>" of the
-- :read_streams populated (run.sh: 1,000).
\set n random(1, :read_streams)
SELECT * FROM eventsource.read_stream('Read-' || :n);
