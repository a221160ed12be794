-- eventsource.append_event of one ~200-byte event to a random stream
-- "Order-<n>" (as append_event.sql) of a tenant, run as the application
-- role.  streams_each = 0: the :streams streams of append_event.sql, spread
-- over the tenants (stream n belongs to tenant-<1 + n mod the tenants>): as many
-- streams as the side without tenancy writes; streams_each = 1: a random
-- tenant, each with :streams streams of its own (1,000 tenants: 1,000 times
-- as many streams).  The tenant is named:
--   set_local = 0: named in the call (append_event's overload with a last
--                  argument, tenant): one statement;
--   set_local = 1: with SET LOCAL eventsource.tenant (as set_config(.., true):
--                  a SET cannot take a parameter under -M prepared), the four
--                  statements sent as one pipeline.
\set n :client_id + :nclients * random(0, :streams / :nclients - 1)
\if :streams_each
\set t random(:tenant_min, :tenants)
\else
\set t :tenant_min + :n % (:tenants - :tenant_min + 1)
\endif
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
