/*
 * eventsource--1.0--1.1.sql: from the released 1.0 to 1.1.
 *
 * 1.0 is frozen: eventsource--1.0.sql stays byte for byte what 1.0 users
 * installed.  Every change to the SQL surface or the schema goes here (and,
 * after 1.1 is released, into eventsource--1.1--1.2.sql).  A fresh
 * CREATE EXTENSION runs 1.0 then this script, so a fresh 1.1 and an updated
 * 1.0 are the same by construction; the upgrade walk test
 * (test/t/040_upgrade.pl) checks it.
 *
 * Rules for this file: every name schema-qualified; no table rewrite of
 * eventsource.events unless the release notes say so with its time on 10M
 * events; each section says which issue it serves.
 */

\echo Use "ALTER EXTENSION eventsource UPDATE TO '1.1'" to load this file. \quit

-- ==== issue 13: tracing ====
-- The OTLP span exporter of the subscription workers and its queue (one for
-- the whole server).  spans_dropped counts the spans that never reached the
-- collector: the queue was full, or their export failed (down, slow, non-2xx).
CREATE FUNCTION eventsource.tracing_stats(
    OUT enabled boolean, OUT exporter_pid integer, OUT queued integer,
    OUT queue_size integer, OUT spans_queued bigint, OUT spans_exported bigint,
    OUT spans_dropped bigint, OUT spans_dropped_queue_full bigint,
    OUT exports bigint, OUT export_errors bigint,
    OUT last_export_at timestamptz, OUT last_export_error text,
    OUT last_export_error_at timestamptz)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_tracing_stats';

CREATE VIEW eventsource.tracing AS
    SELECT * FROM eventsource.tracing_stats();

-- like every monitoring object of 1.0: not for PUBLIC (see README, privileges)
REVOKE ALL ON FUNCTION eventsource.tracing_stats() FROM PUBLIC;
REVOKE ALL ON eventsource.tracing FROM PUBLIC;
