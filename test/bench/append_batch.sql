-- eventsource.append of :batch events (a jsonb array, ~200-byte data each)
-- in one call to a random stream "Cart<batch>-<n>" (expected_version -1).
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
SELECT * FROM eventsource.append('Cart' || :batch || '-' || :n, -1, :events);
