-- eventsource.append_event of one ~200-byte event to a random stream
-- "Order-<n>" (as append_event.sql) of a random tenant, run as the
-- application role: the tenant is chosen per transaction with
-- SET LOCAL eventsource.tenant (set_config(.., true): a SET cannot take a
-- parameter under -M prepared), the statements sent as one pipeline.
\set t random(1, :tenants)
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', 'tenant-' || :t, true);
SELECT * FROM eventsource.append_event('Order-' || :n, -1, 'OrderPlaced', :data);
COMMIT;
\endpipeline
