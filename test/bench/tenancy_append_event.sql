-- eventsource.append_event of one ~200-byte event to a random stream
-- "Order-<n>" (as append_event.sql) of a random tenant, run as the
-- application role.  The tenant is chosen per call:
--   set_local = 0: named in the call (append_event's overload with a last
--                  argument, tenant): one statement;
--   set_local = 1: with SET LOCAL eventsource.tenant (as set_config(.., true):
--                  a SET cannot take a parameter under -M prepared), the four
--                  statements sent as one pipeline.
\set t random(:tenant_min, :tenants)
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
\if :set_local
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END, true);
SELECT * FROM eventsource.append_event('Order-' || :n, -1, 'OrderPlaced', :data);
COMMIT;
\endpipeline
\else
SELECT * FROM eventsource.append_event('Order-' || :n, -1, 'OrderPlaced', :data, '{}', NULL,
                                       CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END);
\endif
