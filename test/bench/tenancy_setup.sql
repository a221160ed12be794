-- test/bench/tenancy_setup.sql: the extension, the plain-table baseline, the
-- application role of run_tenancy.sh.
-- Run once with psql -v ON_ERROR_STOP=1 on a fresh database;
-- the read data comes after (run_tenancy.sh, read_data.sql).
CREATE EXTENSION eventsource;

\ir baseline.sql

-- The application role of the tenancy side: not the owner, not a superuser,
-- no BYPASSRLS (so row-level security applies to it), bound to no tenant (it
-- names one per call, or per transaction with SET LOCAL
-- eventsource.tenant); the writer's and reader's grants of
-- docs/privileges.md.
CREATE ROLE es_bench_app LOGIN NOSUPERUSER NOBYPASSRLS;
GRANT EXECUTE ON FUNCTION
    eventsource.append(text, bigint, jsonb),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[]),
    eventsource.append(text, bigint, jsonb, text),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid, text),
    eventsource.read_stream(text, bigint, integer, boolean, text),
    eventsource.read_all(bigint, integer, text[], text[], text)
    TO es_bench_app;
-- only for run_tenancy.sh's check that row-level security applies to it
GRANT SELECT ON eventsource.events TO es_bench_app;
