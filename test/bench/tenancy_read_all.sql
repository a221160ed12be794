-- eventsource.read_all: one page of 1,000 events, a random tenant's whole log
-- (set_local: see tenancy_append_event.sql); in the default tenant (t = 0) a
-- page after a random position of its range [:pmin, :pmax], as read_all.sql.
\set t random(:tenant_min, :tenants)
\set p random(:pmin - 1, :pmax - 1000)
\if :set_local
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END, true);
SELECT * FROM eventsource.read_all(CASE WHEN :t = 0 THEN :p ELSE 0 END, 1000);
COMMIT;
\endpipeline
\else
SELECT * FROM eventsource.read_all(CASE WHEN :t = 0 THEN :p ELSE 0 END, 1000, NULL, NULL,
                                   CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END);
\endif
