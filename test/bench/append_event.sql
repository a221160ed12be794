-- eventsource.append_event of one ~200-byte event to a random stream
-- "Order-<n>" (expected_version -1 = any).  Client k uses the streams
-- n = k (mod nclients) out of :streams, so that no two clients ever race on a
-- stream (the baseline could not handle the race; see README.md).
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
SELECT * FROM eventsource.append_event('Order-' || :n, -1, 'OrderPlaced', :data);
