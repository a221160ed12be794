-- eventsource.append of :batch events in one call to a random stream
-- "Cart<batch>-<n>" of a tenant (streams_each and set_local: see
-- tenancy_append_event.sql).
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
SELECT * FROM eventsource.append('Cart' || :batch || '-' || :n, -1, :events);
COMMIT;
\endpipeline
\else
SELECT * FROM eventsource.append('Cart' || :batch || '-' || :n, -1, :events,
                                 CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END);
\endif
