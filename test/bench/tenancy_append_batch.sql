-- eventsource.append of :batch events in one call to a random stream
-- "Cart<batch>-<n>" of a random tenant (see tenancy_append_event.sql).
\set t random(1, :tenants)
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', 'tenant-' || :t, true);
SELECT * FROM eventsource.append('Cart' || :batch || '-' || :n, -1, :events);
COMMIT;
\endpipeline
