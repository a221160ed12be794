-- eventsource.read_stream of a random 100-event stream "Read-<n>" of a random
-- tenant, among its :tenant_streams (set_local: see tenancy_append_event.sql).
\set t random(:tenant_min, :tenants)
\set n random(1, :tenant_streams)
\if :set_local
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END, true);
SELECT * FROM eventsource.read_stream('Read-' || :n);
COMMIT;
\endpipeline
\else
SELECT * FROM eventsource.read_stream('Read-' || :n, NULL, 1000, false,
                                      CASE WHEN :t = 0 THEN 'default' ELSE 'tenant-' || :t END);
\endif
