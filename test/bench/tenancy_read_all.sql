-- eventsource.read_all: one page of 1,000 events, a random tenant's whole log
-- (see tenancy_append_event.sql).
\set t random(:tenant_min, :tenants)
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END, true);
SELECT * FROM eventsource.read_all(0, 1000);
COMMIT;
\endpipeline
