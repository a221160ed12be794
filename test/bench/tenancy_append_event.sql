-- eventsource.append_event of one ~200-byte event to a random stream
-- "Order-<n>" (as append_event.sql) of a random tenant, run as the
-- application role: the tenant is chosen per transaction with
-- SET LOCAL eventsource.tenant (set_config(.., true): a SET cannot take a
-- parameter under -M prepared), the statements sent as one pipeline.
\set t random(:tenant_min, :tenants)
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END, true);
SELECT * FROM eventsource.append_event('Order-' || :n, -1, 'OrderPlaced', :data);
COMMIT;
\endpipeline
