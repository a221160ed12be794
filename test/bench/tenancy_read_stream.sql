-- eventsource.read_stream of a random 100-event stream "Read-<n>" of a random
-- tenant (see tenancy_append_event.sql).
\set t random(1, :tenants)
\set n random(1, 10)
\startpipeline
BEGIN;
SELECT set_config('eventsource.tenant', 'tenant-' || :t, true);
SELECT * FROM eventsource.read_stream('Read-' || :n);
COMMIT;
\endpipeline
