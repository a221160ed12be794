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
 * events; each section says which issue it serves and which table locks it
 * takes (README.md, "Upgrading", lists them).  All the rules, and how the C
 * library serves 1.0 and 1.1 at once: CONTRIBUTING.md.
 */

\echo Use "ALTER EXTENSION eventsource UPDATE TO '1.1'" to load this file. \quit

-- ==== upgrade helpers (dropped at the end of this script) ====
-- A function whose arguments change is dropped and created again (its
-- arguments cannot change in place):
--   SELECT eventsource.upgrade_drop_function('<old signature>');
--   CREATE FUNCTION ... (the new one);
--   SELECT eventsource.upgrade_grant_again('<new signature>');
-- The first refuses, naming them, when objects of the database depend on
-- the function (a view, or a function with a SQL-standard body, calling
-- it: DROP would drop them or fail), and keeps its privileges
-- (upgrade_keep_grants); the second grants them again on the new function,
-- out of its initial privileges so that pg_dump keeps dumping them as the
-- users' own, each by its grantor.  A new overload that should be granted
-- to whoever may call the 1.0 function: upgrade_keep_grants('<1.0>'),
-- CREATE FUNCTION, upgrade_grant_again('<overload>').  The grants are kept
-- under the function's name: keep one function of a name at a time.
CREATE FUNCTION eventsource.upgrade_keep_grants(fn pg_catalog.regprocedure)
    RETURNS void LANGUAGE sql AS $$
    SELECT pg_catalog.set_config('eventsource_upgrade.acl_' OPERATOR(pg_catalog.||) p.proname,
                                 COALESCE(p.proacl::pg_catalog.text, ''), true)
      FROM pg_catalog.pg_proc p
     WHERE p.oid OPERATOR(pg_catalog.=) fn;
$$;

CREATE FUNCTION eventsource.upgrade_drop_function(fn pg_catalog.regprocedure)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    deps text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid), ', ')
      INTO deps
      FROM pg_catalog.pg_depend d
     WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) fn
       AND d.deptype OPERATOR(pg_catalog.=) 'n';
    IF deps IS NOT NULL THEN
        RAISE EXCEPTION 'cannot update eventsource: % is replaced, and other objects depend on it', fn
              USING ERRCODE = 'dependent_objects_still_exist',
                    DETAIL = 'Depending on it: ' || deps || '.',
                    HINT = 'Drop those objects, run ALTER EXTENSION eventsource UPDATE, then create them again (README "Upgrading" says how the function changes).';
    END IF;
    PERFORM eventsource.upgrade_keep_grants(fn);
    EXECUTE pg_catalog.format('DROP FUNCTION %s', fn);
END $$;

CREATE FUNCTION eventsource.upgrade_grant_again(fn pg_catalog.regprocedure)
    RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    acl text;
    initial pg_catalog.aclitem[];
    fn_owner pg_catalog.oid;
    pending pg_catalog.aclitem[];
    left_over pg_catalog.aclitem[];
    item pg_catalog.aclitem;
    g record;
    by_grantor boolean;
    as_runner boolean := false;
    runner pg_catalog.oid := (SELECT r.oid FROM pg_catalog.pg_roles r
                               WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER);
BEGIN
    SELECT pg_catalog.current_setting('eventsource_upgrade.acl_' OPERATOR(pg_catalog.||) p.proname),
           p.proowner
      INTO acl, fn_owner
      FROM pg_catalog.pg_proc p
     WHERE p.oid OPERATOR(pg_catalog.=) fn;
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    SELECT p.proacl INTO initial FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) fn;
    IF acl OPERATOR(pg_catalog.=) '' THEN
        RETURN;
    END IF;
    SELECT COALESCE(pg_catalog.array_agg(i), '{}') INTO pending
      FROM pg_catalog.unnest(acl::pg_catalog.aclitem[]) i
     WHERE EXISTS (SELECT FROM pg_catalog.aclexplode(ARRAY[i]) a
                    WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
                      AND a.grantee OPERATOR(pg_catalog.<>) a.grantor);
    -- Each grant is made by its grantor (SET ROLE), so that a REVOKE ...
    -- CASCADE of a grant option reaches the new function too: first the
    -- owner's, then those of roles that hold the grant option by then.  A
    -- grant whose grantor cannot make it (the 1.0 function had another
    -- owner) is made by the one running the update.
    WHILE pg_catalog.cardinality(pending) OPERATOR(pg_catalog.>) 0 LOOP
        left_over := '{}';
        FOREACH item IN ARRAY pending LOOP
            SELECT a.grantor, a.grantee, a.is_grantable INTO g
              FROM pg_catalog.aclexplode(ARRAY[item]) a
             WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE';
            by_grantor := NOT as_runner AND g.grantor OPERATOR(pg_catalog.<>) fn_owner;
            IF by_grantor
               AND NOT (pg_catalog.has_function_privilege(g.grantor, fn, 'EXECUTE WITH GRANT OPTION')
                        AND pg_catalog.has_schema_privilege(g.grantor, 'eventsource', 'USAGE')) THEN
                left_over := left_over OPERATOR(pg_catalog.||) item;
                CONTINUE;
            END IF;
            IF by_grantor THEN
                EXECUTE pg_catalog.format('SET LOCAL ROLE %s', g.grantor::pg_catalog.regrole);
            END IF;
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', fn,
                CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                     ELSE g.grantee::pg_catalog.regrole::pg_catalog.text END,
                CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            IF by_grantor THEN
                EXECUTE pg_catalog.format('SET LOCAL ROLE %s', runner::pg_catalog.regrole);
            END IF;
        END LOOP;
        -- no grantor left can make the rest: the runner makes them
        as_runner := pg_catalog.cardinality(left_over) OPERATOR(pg_catalog.=) pg_catalog.cardinality(pending);
        pending := left_over;
    END LOOP;
    -- the grants are the users', not the extension's
    UPDATE pg_catalog.pg_init_privs SET initprivs = initial
     WHERE objoid OPERATOR(pg_catalog.=) fn
       AND classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND objsubid OPERATOR(pg_catalog.=) 0;
END $$;

-- ==== issue 10: monitoring that stays instant at any size and lag ====
--
-- eventsource.subscription_status gains three columns at its end:
--   lag_positions     head_position - checkpoint (O(1)): positions still to
--                     walk, an upper bound of lag_events
--   lag_events_exact  whether lag_events is the exact count (true) or a lower
--                     bound (false: the backlog is longer than the
--                     eventsource.lag_count_limit events the status looks at)
--   lag_events_estimate  lag_events when exact, else extrapolated from the
--                     events looked at over lag_positions; the health
--                     thresholds compare with it
--
-- Nothing is dropped.  A function's output columns cannot change, so 1.0's
-- subscription_status_rows() stays as it was (the library still serves its
-- 26 columns) and the view reads a new function with the added columns at
-- the end; CREATE OR REPLACE VIEW may append columns, and the view keeps its
-- OID, its grants and the views users built on it.  Nothing is granted here
-- either (grants made by an extension script are "initial privileges",
-- which pg_dump leaves out): the new function keeps the default EXECUTE for
-- PUBLIC and checks itself that its caller may EXECUTE
-- subscription_status_rows() (status.c), so reading the status still takes
-- exactly the grants 1.0 documented.  Locks: CREATE OR REPLACE VIEW takes
-- ACCESS EXCLUSIVE on the view (not on any table) until the update commits.
CREATE FUNCTION eventsource.subscription_status_rows_v2(
    OUT name text, OUT partition integer, OUT pid integer, OUT state text,
    OUT checkpoint bigint, OUT last_position bigint, OUT head_position bigint,
    OUT lag_events bigint, OUT lag_seconds double precision,
    OUT events_processed bigint, OUT events_failed bigint, OUT events_retried bigint,
    OUT dead_letters bigint, OUT consecutive_failures bigint,
    OUT error_rate_per_minute bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT started_at timestamptz, OUT last_activity_at timestamptz, OUT health text,
    OUT health_reason text, OUT last_sqlstate text, OUT heartbeat_at timestamptz,
    OUT circuit_open_until timestamptz, OUT last_shutdown jsonb, OUT partitions integer,
    OUT lag_positions bigint, OUT lag_events_exact boolean, OUT lag_events_estimate bigint)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_subscription_status';
-- One row per subscription partition, like the pg_stat_* views.
CREATE OR REPLACE VIEW eventsource.subscription_status AS
    SELECT * FROM eventsource.subscription_status_rows_v2();

-- ==== issue 9: subscriptions that nothing can wedge ====
-- Every column of eventsource.subscriptions obeys the rule of the
-- create_subscription() argument it comes from (the C spelling of the same
-- rules is src/subscription_rules.c, which the worker also applies to what it
-- loads: that protects a database still on the 1.0 SQL, and covers what no
-- constraint can say, the handler's signature and the owner's rights).
-- NOT VALID: a store may already hold a row that breaks one (an UPDATE made
-- under 1.0), and ALTER EXTENSION UPDATE must not fail on it.  Such a row is
-- kept; its worker refuses it (state failed, "invalid configuration: ..." in
-- subscription_status.last_error) and every later change to the row must
-- satisfy all of them.  Once corrected:
-- ALTER TABLE eventsource.subscriptions VALIDATE CONSTRAINT <name>.
-- (partitions is also limited by eventsource.max_workers, a setting: the
-- worker checks that, and that the count did not change.)
ALTER TABLE eventsource.subscriptions
    ADD CONSTRAINT subscriptions_name_check
        CHECK (pg_catalog.octet_length(name) BETWEEN 1 AND 250
               AND pg_catalog.strpos(name, '/') = 0) NOT VALID,
    ADD CONSTRAINT subscriptions_start_from_check
        CHECK (start_position >= 0 AND
               CASE WHEN start_from IN ('beginning', 'end', 'checkpoint') THEN true
                    WHEN start_from ~ '^[0-9]{1,19}$'
                    THEN start_from::pg_catalog.numeric <= 9223372036854775807
                    ELSE false END) NOT VALID,
    ADD CONSTRAINT subscriptions_batch_size_check
        CHECK (batch_size BETWEEN 1 AND 10000) NOT VALID,
    ADD CONSTRAINT subscriptions_checkpoint_interval_check
        CHECK (checkpoint_interval BETWEEN interval '1 millisecond' AND interval '7 days') NOT VALID,
    ADD CONSTRAINT subscriptions_processing_timeout_check
        CHECK (processing_timeout BETWEEN interval '1 millisecond' AND interval '7 days') NOT VALID,
    ADD CONSTRAINT subscriptions_max_retries_check
        CHECK (max_retries BETWEEN 0 AND 100) NOT VALID,
    ADD CONSTRAINT subscriptions_retry_backoff_check
        CHECK (retry_backoff = interval '0'
               OR retry_backoff BETWEEN interval '1 millisecond' AND interval '7 days') NOT VALID,
    ADD CONSTRAINT subscriptions_circuit_breaker_threshold_check
        CHECK (circuit_breaker_threshold BETWEEN 0 AND 1000000) NOT VALID,
    ADD CONSTRAINT subscriptions_circuit_breaker_reset_check
        CHECK (circuit_breaker_reset BETWEEN interval '1 millisecond' AND interval '7 days') NOT VALID,
    ADD CONSTRAINT subscriptions_event_types_check
        CHECK (CASE WHEN event_types IS NULL THEN true
                    WHEN pg_catalog.array_ndims(event_types) > 1 THEN false
                    ELSE pg_catalog.array_position(event_types, NULL::text) IS NULL
                         AND pg_catalog.cardinality(event_types) <= 10000 END) NOT VALID,
    ADD CONSTRAINT subscriptions_categories_check
        CHECK (CASE WHEN categories IS NULL THEN true
                    WHEN pg_catalog.array_ndims(categories) > 1 THEN false
                    ELSE pg_catalog.array_position(categories, NULL::text) IS NULL
                         AND pg_catalog.cardinality(categories) <= 10000 END) NOT VALID,
    ADD CONSTRAINT subscriptions_partitions_check
        CHECK (partitions BETWEEN 1 AND 1024) NOT VALID;

-- ==== issue 13: tracing ====
-- The OTLP span exporter of the subscription workers and its queue (one for
-- the whole server).  spans_dropped counts the spans that never reached the
-- collector: the queue was full, or their export failed (down, slow, non-2xx).
-- Locks: new objects only, no lock on any table of the store.  The C
-- function refuses (55000) in a database still on 1.0, where only a hand
-- declaration could reach it.
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

-- ==== issue 14: stream lifecycle ====
-- Soft delete, hard delete (tombstone) and truncate-before of a stream; see
-- docs/lifecycle.md for the design.  One row per stream that ever had a
-- lifecycle operation; streams without a row are untouched.  Versions
-- 1 .. hidden_through of the stream are hidden everywhere; a lifecycle
-- operation's own system event ($StreamDeleted, $StreamTruncated) is stored
-- in the stream it concerns with a negative version (-1, -2, ...: the n-th
-- operation), so it is delivered in log order, to the same partition as the
-- stream's events, and never takes a version of the stream.
CREATE TABLE eventsource.stream_lifecycle (
    stream_id      text        NOT NULL,
    -- versions 1 .. hidden_through are hidden (0: none)
    hidden_through bigint      NOT NULL,
    -- the highest version the stream ever had when the row last changed:
    -- appends continue after it even once the hidden rows are removed
    last_version   bigint      NOT NULL,
    -- hard-deleted: never written again
    tombstoned     boolean     NOT NULL DEFAULT false,
    -- lifecycle operations so far; the n-th system event has version -n
    operations     integer     NOT NULL,
    -- position of the last operation's system event
    last_position  bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT stream_lifecycle_pkey PRIMARY KEY (stream_id),
    CONSTRAINT stream_lifecycle_versions_check
        CHECK (hidden_through >= 0 AND hidden_through <= last_version AND operations >= 1)
);
COMMENT ON TABLE eventsource.stream_lifecycle IS
    'Per-stream lifecycle state: hidden versions, tombstones (written only by the lifecycle functions)';
SELECT pg_catalog.pg_extension_config_dump('eventsource.stream_lifecycle', '');

-- The newest system event's position: every hidden event is older than it.
CREATE INDEX stream_lifecycle_last_position_idx
    ON eventsource.stream_lifecycle (last_position);

-- THE hiding predicate, spelled once: every read path of the extension
-- (read_stream, read_all, load, load_snapshot, streams, the subscription
-- workers, subscription_status) reads this view, never the table.  An event
-- is visible when, cheapest test first:
--   1. it is newer than every lifecycle operation (one comparison with an
--      InitPlan: the tail of the log, where subscriptions read, pays nothing
--      more), or
--   2. it is a system event (negative version), or
--   3. no lifecycle row of its stream hides its version: one probe of
--      stream_lifecycle's primary key per event that reaches this test.
-- The cost of a query grows with the events it returns, never with the
-- number of lifecycle rows (no hash or list of all of them is built: with
-- a million rows that list outgrew work_mem and was rescanned per event).
-- docs/lifecycle.md has the plans and the measurements.
CREATE VIEW eventsource.visible_events AS
    SELECT e.*
      FROM eventsource.events e
     WHERE e.global_position OPERATOR(pg_catalog.>)
               (SELECT COALESCE(pg_catalog.max(l.last_position), 0)
                  FROM eventsource.stream_lifecycle l)
        OR e.stream_version OPERATOR(pg_catalog.<) 1
        OR NOT EXISTS
               (SELECT FROM eventsource.stream_lifecycle l
                 WHERE l.stream_id OPERATOR(pg_catalog.=) e.stream_id
                   AND e.stream_version OPERATOR(pg_catalog.<=) l.hidden_through);
COMMENT ON VIEW eventsource.visible_events IS
    'The events no lifecycle operation has hidden (what every read path of the store reads)';

-- The streams view lists only streams that read as present: visible
-- events with a positive version (system events are not part of a stream's
-- history).  Same columns as in 1.0.
CREATE OR REPLACE VIEW eventsource.streams AS
    SELECT e.stream_id,
           pg_catalog.split_part(e.stream_id, '-', 1) AS category,
           pg_catalog.max(e.stream_version) AS version,
           pg_catalog.min(e.global_position) AS first_position,
           pg_catalog.max(e.global_position) AS last_position,
           pg_catalog.min(e.recorded_at) AS created_at,
           pg_catalog.max(e.recorded_at) AS updated_at
      FROM eventsource.visible_events e
     WHERE e.stream_version OPERATOR(pg_catalog.>=) 1
     GROUP BY e.stream_id;

CREATE FUNCTION eventsource.delete_stream(
    stream_id text, expected_version bigint, hard boolean DEFAULT false)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_delete_stream';
COMMENT ON FUNCTION eventsource.delete_stream(text, bigint, boolean) IS
    'Soft-delete a stream (hard: tombstone it); returns the position of its $StreamDeleted event';

CREATE FUNCTION eventsource.truncate_stream(
    stream_id text, before_version bigint, expected_version bigint DEFAULT -1)
    RETURNS bigint
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_truncate_stream';
COMMENT ON FUNCTION eventsource.truncate_stream(text, bigint, bigint) IS
    'Hide the versions of a stream before before_version; returns the position of its $StreamTruncated event';

-- Only the lifecycle functions write stream_lifecycle (and a restore's COPY
-- into the empty table): the trigger function of the log's guard refuses
-- every other INSERT, UPDATE, DELETE and TRUNCATE, from any role, also in
-- replica mode (src/guard.c).  A direct write would change what is hidden.
CREATE TRIGGER stream_lifecycle_guard
    BEFORE INSERT OR UPDATE OR DELETE ON eventsource.stream_lifecycle
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
CREATE TRIGGER stream_lifecycle_guard_truncate
    BEFORE TRUNCATE ON eventsource.stream_lifecycle
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.stream_lifecycle ENABLE ALWAYS TRIGGER stream_lifecycle_guard;
ALTER TABLE eventsource.stream_lifecycle ENABLE ALWAYS TRIGGER stream_lifecycle_guard_truncate;

REVOKE ALL ON eventsource.stream_lifecycle, eventsource.visible_events FROM PUBLIC;
REVOKE ALL ON FUNCTION eventsource.delete_stream(text, bigint, boolean),
    eventsource.truncate_stream(text, bigint, bigint) FROM PUBLIC;

-- ==== issue 14: erasure ====
-- Erasure of personal data by redaction in place (src/erasure.c; README
-- "Erasure", docs/lifecycle.md).  An erased event keeps its position,
-- stream, version, type, id and time; its data and the chosen top-level
-- metadata keys become {"$erased": true}.  Each call appends $StreamErased
-- to every stream it erased from (at the stream's next negative version,
-- counted in stream_lifecycle.operations like the other lifecycle
-- operations), deletes those streams' snapshots and redacts the copies in
-- dead_letters, recent_errors and subscription_partitions.  The UPDATE of
-- eventsource.events is let through by the guard trigger only for the
-- erasure's own statement.  Locks: new functions only, no lock on any table.
CREATE FUNCTION eventsource.erase_stream(
    stream_id text, metadata_keys text[] DEFAULT NULL,
    expected_version bigint DEFAULT -1,
    OUT events_erased bigint, OUT "position" bigint)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_erase_stream';
COMMENT ON FUNCTION eventsource.erase_stream(text, text[], bigint) IS
    'Erase the data (and the given metadata keys) of every event of a stream; returns how many and the position of its $StreamErased event';

CREATE FUNCTION eventsource.erase_by_metadata(
    key text, value text, metadata_keys text[] DEFAULT NULL,
    max_events integer DEFAULT 1000,
    OUT events_erased bigint, OUT streams bigint, OUT more boolean)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_erase_by_metadata';
COMMENT ON FUNCTION eventsource.erase_by_metadata(text, text, text[], integer) IS
    'Erase at most max_events events whose metadata has key = value; more: call again';

-- never the writer's, nor PUBLIC's: docs/privileges.md (role es_eraser)
REVOKE ALL ON FUNCTION eventsource.erase_stream(text, text[], bigint),
    eventsource.erase_by_metadata(text, text, text[], integer) FROM PUBLIC;

-- ==== issue 14: retention and cleanup ====
-- Max age / max count retention (per stream and per category) and the
-- physical removal of hidden rows by the cleanup worker (src/retention.c,
-- src/cleanup.c; docs/lifecycle.md, "Background cleanup" and "Max age / max
-- count").  Retention never changes the hiding predicate: the worker turns
-- expiry into truncate_stream() calls ($StreamTruncated in the log,
-- hidden_through moves up), in log order.  The cleanup deletes the hidden
-- rows (versions 1 .. hidden_through, which covers deleted and tombstoned
-- streams) in bounded batches, and records how far it got in
-- cleaned_through, in the batch's own transaction.
-- Locks: ADD COLUMN with a constant default and ADD CONSTRAINT take ACCESS
-- EXCLUSIVE on stream_lifecycle (one row per touched stream; no rewrite, the
-- CHECK scans it once); nothing on eventsource.events.
ALTER TABLE eventsource.stream_lifecycle
    -- versions 1 .. cleaned_through were removed from eventsource.events
    ADD COLUMN cleaned_through bigint NOT NULL DEFAULT 0,
    -- when the cleanup last removed rows of the stream
    ADD COLUMN cleaned_at timestamptz,
    ADD CONSTRAINT stream_lifecycle_cleaned_check
        CHECK (cleaned_through >= 0 AND cleaned_through <= hidden_through);

-- The streams with rows still to remove, oldest operation first: the
-- cleanup's work list (a partial index: streams done leave it).
CREATE INDEX stream_lifecycle_cleanup_idx
    ON eventsource.stream_lifecycle (last_position)
    WHERE cleaned_through < hidden_through;

-- Retention rules: scope 'stream' (name = a stream id, which need not exist
-- yet) or 'category' (name = the part of stream ids before the first '-').
-- A stream's own rule replaces its category's.  Written only by
-- set_retention(), set_category_retention() and the clear functions (the
-- guard below); a direct write would hide events.
CREATE TABLE eventsource.stream_retention (
    scope      text        NOT NULL,
    name       text        NOT NULL,
    -- events recorded longer ago than this are truncated away
    max_age    interval,
    -- the stream keeps at most this many of its newest versions
    max_count  bigint,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT stream_retention_pkey PRIMARY KEY (scope, name),
    CONSTRAINT stream_retention_scope_check CHECK (scope IN ('stream', 'category')),
    CONSTRAINT stream_retention_rule_check
        CHECK ((max_age IS NOT NULL OR max_count IS NOT NULL)
               AND (max_count IS NULL OR max_count >= 1)
               AND (max_age IS NULL OR (max_age > interval '0'
                                        AND max_age <= interval '1000 years')))
);
COMMENT ON TABLE eventsource.stream_retention IS
    'Max age / max count retention rules per stream and per category (written only by the retention functions)';
SELECT pg_catalog.pg_extension_config_dump('eventsource.stream_retention', '');

CREATE TRIGGER stream_retention_guard
    BEFORE INSERT OR UPDATE OR DELETE ON eventsource.stream_retention
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
CREATE TRIGGER stream_retention_guard_truncate
    BEFORE TRUNCATE ON eventsource.stream_retention
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.stream_retention ENABLE ALWAYS TRIGGER stream_retention_guard;
ALTER TABLE eventsource.stream_retention ENABLE ALWAYS TRIGGER stream_retention_guard_truncate;

CREATE VIEW eventsource.retention AS
    SELECT r.scope, r.name, r.max_age, r.max_count, r.updated_at
      FROM eventsource.stream_retention r;
COMMENT ON VIEW eventsource.retention IS
    'The retention rules the cleanup worker enforces';

CREATE FUNCTION eventsource.set_retention(
    stream_id text, max_age interval DEFAULT NULL, max_count bigint DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_set_stream_retention';
COMMENT ON FUNCTION eventsource.set_retention(text, interval, bigint) IS
    'Set the max age / max count of a stream (replacing its category''s rule)';
CREATE FUNCTION eventsource.set_category_retention(
    category text, max_age interval DEFAULT NULL, max_count bigint DEFAULT NULL)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_set_category_retention';
COMMENT ON FUNCTION eventsource.set_category_retention(text, interval, bigint) IS
    'Set the max age / max count of every stream of a category';
CREATE FUNCTION eventsource.clear_retention(stream_id text)
    RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_clear_stream_retention';
COMMENT ON FUNCTION eventsource.clear_retention(text) IS
    'Remove the retention rule of a stream; returns whether it had one';
CREATE FUNCTION eventsource.clear_category_retention(category text)
    RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_clear_category_retention';
COMMENT ON FUNCTION eventsource.clear_category_retention(text) IS
    'Remove the retention rule of a category; returns whether it had one';

-- What the cleanup has done and has left to do, per stream (from the
-- lifecycle rows: one row per touched stream, no scan of the log).
CREATE VIEW eventsource.stream_cleanup AS
    SELECT l.stream_id, l.hidden_through, l.cleaned_through,
           l.hidden_through - l.cleaned_through AS pending_versions,
           l.tombstoned, l.updated_at AS hidden_at, l.cleaned_at
      FROM eventsource.stream_lifecycle l;
COMMENT ON VIEW eventsource.stream_cleanup IS
    'Per stream: versions hidden, versions physically removed, and when';

-- The cleanup worker of this database (shared memory; one row) and its
-- backlog (the partial index above: the streams still to clean).
CREATE FUNCTION eventsource.cleanup_worker(
    OUT pid integer, OUT state text, OUT started_at timestamptz,
    OUT last_retention_pass_at timestamptz, OUT next_retention_pass_at timestamptz,
    OUT last_batch_at timestamptz, OUT rows_removed bigint, OUT batches bigint,
    OUT truncations bigint, OUT last_error text, OUT last_error_at timestamptz)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_cleanup_worker_status';
CREATE VIEW eventsource.cleanup_status AS
    SELECT w.*, p.streams_pending, p.versions_pending
      FROM eventsource.cleanup_worker() w,
           (SELECT pg_catalog.count(*) AS streams_pending,
                   COALESCE(pg_catalog.sum(l.hidden_through - l.cleaned_through), 0)::bigint
                       AS versions_pending
              FROM eventsource.stream_lifecycle l
             WHERE l.cleaned_through OPERATOR(pg_catalog.<) l.hidden_through) p;
COMMENT ON VIEW eventsource.cleanup_status IS
    'The cleanup worker of this database: what it removed, when, and what is pending';

REVOKE ALL ON eventsource.stream_retention, eventsource.retention,
    eventsource.stream_cleanup, eventsource.cleanup_status FROM PUBLIC;
REVOKE ALL ON FUNCTION eventsource.set_retention(text, interval, bigint),
    eventsource.set_category_retention(text, interval, bigint),
    eventsource.clear_retention(text), eventsource.clear_category_retention(text),
    eventsource.cleanup_worker() FROM PUBLIC;

-- ==== issue 15: tenancy (foundation) ====
-- One store, many tenants (docs/tenancy.md; README "Multi-tenancy").  A
-- transaction chooses its tenant with SET LOCAL eventsource.tenant; every
-- function of the store resolves it once, as the caller
-- (eventsource.current_tenant(), src/tenant.c), and reads and writes that
-- tenant's rows only.  Row-level security applies the same rule to every
-- role but the store's owner (and superusers, BYPASSRLS roles) when it
-- reads the tables directly, through COPY or a view.
--
-- Keys: tenant_id in every unique key (first in all but the event id's:
-- see "The keys" below), so that a later distribution
-- by tenant (Citus) keeps each tenant's rows, uniqueness checks and stream
-- locks on one node.  The one exception, events_global_position_key
-- UNIQUE (global_position), is kept on a single node: it is the log's
-- integrity check and serves the cross-tenant order of subscriptions and
-- the horizon; a distributed store replaces it by a plain index, the
-- sequence carrying the uniqueness (docs/architecture.md).
--
-- Locks and cost: ADD COLUMN with a constant default is a catalog change
-- (no rewrite; on a table with no page, a column without a missing value,
-- below); the new primary key and unique keys of events are index
-- builds holding ACCESS EXCLUSIVE on eventsource.events for their duration
-- (README "Upgrading" gives the time on 1M events); snapshots and
-- checkpoints the same, usually small.  Existing rows are tenant 'default'.

-- The registered tenants: using any other is an error (ES005), so a typo
-- never starts a new tenant.
CREATE TABLE eventsource.tenants (
    tenant_id  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT tenants_pkey PRIMARY KEY (tenant_id),
    CONSTRAINT tenants_tenant_id_check
        CHECK (pg_catalog.octet_length(tenant_id) BETWEEN 1 AND 63
               AND tenant_id OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.:-]+$')
);
COMMENT ON TABLE eventsource.tenants IS
    'The registered tenants (written only by eventsource.create_tenant())';
INSERT INTO eventsource.tenants (tenant_id) VALUES ('default');

-- Roles bound to tenants: a member of a role named here (inheriting or
-- not) may use only that role's tenants, and so may every role in a
-- session of such a role (src/tenant.c).
CREATE TABLE eventsource.tenant_roles (
    role       regrole     NOT NULL,
    tenant_id  text        NOT NULL REFERENCES eventsource.tenants (tenant_id),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT tenant_roles_pkey PRIMARY KEY (role, tenant_id)
);
COMMENT ON TABLE eventsource.tenant_roles IS
    'Roles bound to tenants (written only by eventsource.bind_role_to_tenant() and unbind_role_from_tenant())';
CREATE INDEX tenant_roles_tenant_idx ON eventsource.tenant_roles (tenant_id);

-- the 'default' row is CREATE EXTENSION's: a dump leaves it out
SELECT pg_catalog.pg_extension_config_dump('eventsource.tenants',
                                           'WHERE tenant_id <> ''default''');
SELECT pg_catalog.pg_extension_config_dump('eventsource.tenant_roles', '');

-- Only the tenant functions write them (and a restore's COPY), src/guard.c;
-- each write also drops every backend's cache of them when it commits.
CREATE TRIGGER tenants_guard
    BEFORE INSERT OR UPDATE OR DELETE ON eventsource.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
CREATE TRIGGER tenants_guard_truncate
    BEFORE TRUNCATE ON eventsource.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.tenants ENABLE ALWAYS TRIGGER tenants_guard;
ALTER TABLE eventsource.tenants ENABLE ALWAYS TRIGGER tenants_guard_truncate;
CREATE TRIGGER tenant_roles_guard
    BEFORE INSERT OR UPDATE OR DELETE ON eventsource.tenant_roles
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
CREATE TRIGGER tenant_roles_guard_truncate
    BEFORE TRUNCATE ON eventsource.tenant_roles
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.tenant_roles ENABLE ALWAYS TRIGGER tenant_roles_guard;
ALTER TABLE eventsource.tenant_roles ENABLE ALWAYS TRIGGER tenant_roles_guard_truncate;

-- Row-level security does not apply to TRUNCATE: only the owner (and
-- superusers, BYPASSRLS roles) may empty snapshots or checkpoints, which
-- hold every tenant's rows (src/guard.c).  events, tenants and tenant_roles
-- refuse it to everyone already.
CREATE TRIGGER snapshots_guard_truncate
    BEFORE TRUNCATE ON eventsource.snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.snapshots ENABLE ALWAYS TRIGGER snapshots_guard_truncate;
CREATE TRIGGER checkpoints_guard_truncate
    BEFORE TRUNCATE ON eventsource.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION eventsource.events_guard();
ALTER TABLE eventsource.checkpoints ENABLE ALWAYS TRIGGER checkpoints_guard_truncate;

-- The caller's tenant: the setting eventsource.tenant checked against the
-- registered tenants and the caller's bindings.  Every role calls it (the
-- policies below do), so it keeps the default EXECUTE for PUBLIC; it tells
-- a role nothing but its own tenant.
CREATE FUNCTION eventsource.current_tenant() RETURNS text
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'es_current_tenant_sql';
COMMENT ON FUNCTION eventsource.current_tenant() IS
    'The tenant the caller works in (eventsource.tenant, checked against the registered tenants and the role''s bindings)';

CREATE FUNCTION eventsource.create_tenant(tenant_id text) RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_create_tenant';
COMMENT ON FUNCTION eventsource.create_tenant(text) IS
    'Register a tenant; false when it already was';
CREATE FUNCTION eventsource.bind_role_to_tenant(role regrole, tenant_id text) RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_bind_role_to_tenant';
COMMENT ON FUNCTION eventsource.bind_role_to_tenant(regrole, text) IS
    'Let the role (and every member of it) use this tenant, and only its bound tenants; false when it already was bound';
CREATE FUNCTION eventsource.unbind_role_from_tenant(role regrole, tenant_id text) RETURNS boolean
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_unbind_role_from_tenant';
COMMENT ON FUNCTION eventsource.unbind_role_from_tenant(regrole, text) IS
    'Remove a binding of a role to a tenant; false when there was none';

REVOKE ALL ON eventsource.tenants, eventsource.tenant_roles FROM PUBLIC;
REVOKE ALL ON FUNCTION eventsource.create_tenant(text),
    eventsource.bind_role_to_tenant(regrole, text),
    eventsource.unbind_role_from_tenant(regrole, text) FROM PUBLIC;

-- The tenant column, last (the 1.0 column order is frozen: SETOF
-- eventsource.events gains a trailing column).  No CHECK on it: only the
-- store's functions write these tables (events through the guard), with a
-- tenant current_tenant() validated, and row-level security's WITH CHECK
-- holds any other role to its current tenant.  No foreign key to tenants
-- either: it would cost a lookup per appended event.
--
-- Into a table with rows, ADD COLUMN with a constant default is a catalog
-- change: the rows written before read the default as a "missing" value
-- (pg_attribute.atthasmissing).  That flag costs every scan of the table
-- for good (until a rewrite): the executor no longer passes the table's
-- rows on as they are but projects each one into a new tuple
-- (tlist_matches_tupdesc), which cost read_all() a tenth of its time, a
-- page of 1,000 events copied twice (test/bench/run_tenancy.sh, perf).  So
-- a table with no page yet (CREATE EXTENSION, a restore, an update of an
-- unused store) gets the column without a stored default first, then the
-- default and NOT NULL: the same column, no missing value.  Under ACCESS
-- EXCLUSIVE, so no row can arrive between the test and the change.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['events', 'snapshots', 'checkpoints'] LOOP
        EXECUTE pg_catalog.format('LOCK TABLE eventsource.%I IN ACCESS EXCLUSIVE MODE', t);
        IF pg_catalog.pg_relation_size(pg_catalog.format('eventsource.%I', t)::pg_catalog.regclass) = 0 THEN
            EXECUTE pg_catalog.format('ALTER TABLE eventsource.%I ADD COLUMN tenant_id text', t);
            EXECUTE pg_catalog.format('ALTER TABLE eventsource.%I ALTER COLUMN tenant_id SET DEFAULT %L,'
                                      ' ALTER COLUMN tenant_id SET NOT NULL', t, 'default');
        ELSE
            EXECUTE pg_catalog.format('ALTER TABLE eventsource.%I ADD COLUMN tenant_id text NOT NULL DEFAULT %L',
                                      t, 'default');
        END IF;
    END LOOP;
END
$$;

-- The keys (the names stay: the code matches events_event_id_key).  Every
-- unique key contains tenant_id (what a later distribution by tenant
-- needs: docs/architecture.md).  The event id's key has it second: the ids
-- the store generates are time-ordered (UUIDv7, append.c), so with the id
-- first an append adds its entry at the index's right edge, as in 1.0,
-- whichever tenant it writes; with the tenant first it would land at one
-- of as many places as there are tenants (a descent from the root instead
-- of the cached rightmost page, and a full-page image per tenant's leaf
-- after each checkpoint).  The idempotency probe states both columns, so
-- it reads the same entries either way.
ALTER TABLE eventsource.events
    DROP CONSTRAINT events_pkey,
    DROP CONSTRAINT events_event_id_key;
ALTER TABLE eventsource.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (tenant_id, stream_id, stream_version),
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id, tenant_id),
    -- a tenant's read_all() page
    ADD CONSTRAINT events_tenant_global_position_key UNIQUE (tenant_id, global_position);
ALTER TABLE eventsource.snapshots
    DROP CONSTRAINT snapshots_pkey,
    ADD CONSTRAINT snapshots_pkey
        PRIMARY KEY (tenant_id, stream_id, schema_version, stream_version);
ALTER TABLE eventsource.checkpoints
    DROP CONSTRAINT checkpoints_pkey,
    ADD CONSTRAINT checkpoints_pkey PRIMARY KEY (tenant_id, name);

-- Row-level security: a role other than the owner (superusers and
-- BYPASSRLS roles bypass it too) reads and writes only its current
-- tenant's rows, whatever SQL it sends.  Not FORCEd: the store's functions
-- run their queries as the owner with an explicit tenant_id = $n.  The
-- tenant is a scalar subquery, an InitPlan evaluated once per query (a
-- bare call would be evaluated for every row: 2.4-3.0 s instead of
-- 0.14-0.21 s for a count over 1M events).
ALTER TABLE eventsource.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_tenant ON eventsource.events
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY snapshots_tenant ON eventsource.snapshots
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY checkpoints_tenant ON eventsource.checkpoints
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
-- a bound role must not learn which other tenants exist or who is bound
ALTER TABLE eventsource.tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenants_tenant ON eventsource.tenants
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.tenant_roles ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_roles_tenant ON eventsource.tenant_roles
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));

-- visible_events was created with the columns events had then: the same
-- definition again appends tenant_id (SELECT e.* is expanded when a view is
-- created).  It stays tenant-agnostic: it is not granted to anyone, and the
-- cross-tenant readers (subscription workers, the status) read it as the
-- owner; the store's functions add their own tenant_id = $n.  Its lifecycle
-- probe still matches stream_id alone until stream_lifecycle is keyed by
-- (tenant_id, stream_id): the lifecycle section for tenants (issue 15,
-- part 2) replaces this definition.
CREATE OR REPLACE VIEW eventsource.visible_events AS
    SELECT e.*
      FROM eventsource.events e
     WHERE e.global_position OPERATOR(pg_catalog.>)
               (SELECT COALESCE(pg_catalog.max(l.last_position), 0)
                  FROM eventsource.stream_lifecycle l)
        OR e.stream_version OPERATOR(pg_catalog.<) 1
        OR NOT EXISTS
               (SELECT FROM eventsource.stream_lifecycle l
                 WHERE l.stream_id OPERATOR(pg_catalog.=) e.stream_id
                   AND e.stream_version OPERATOR(pg_catalog.<=) l.hidden_through);

-- streams: the current tenant's streams.  The view runs with its owner's
-- rights (so the readers keep needing SELECT on the view only, as in 1.0),
-- which bypass row-level security: the predicate is explicit, and
-- current_tenant() in it runs as the querying role (once per query: a
-- scalar subquery).  security_barrier: a reader's own condition (a cheap
-- function of its own that reports its argument) must not run below that
-- predicate, on other tenants' rows; only leakproof ones (=, <, ...) are
-- still pushed down, so stream_id = '...' reads the tenant's stream only.
-- A later CREATE OR REPLACE VIEW of streams must repeat the option:
-- replacing a view resets its options (pgTAP 04_tenancy would fail).
-- tenant_id is appended (CREATE OR REPLACE VIEW may only add columns at
-- the end).
CREATE OR REPLACE VIEW eventsource.streams WITH (security_barrier = true) AS
    SELECT e.stream_id,
           pg_catalog.split_part(e.stream_id, '-', 1) AS category,
           pg_catalog.max(e.stream_version) AS version,
           pg_catalog.min(e.global_position) AS first_position,
           pg_catalog.max(e.global_position) AS last_position,
           pg_catalog.min(e.recorded_at) AS created_at,
           pg_catalog.max(e.recorded_at) AS updated_at,
           e.tenant_id
      FROM eventsource.visible_events e
     WHERE e.stream_version OPERATOR(pg_catalog.>=) 1
       AND e.tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant())
     GROUP BY e.tenant_id, e.stream_id;

-- ==== issue 15: tenancy (per-tenant stats) ====
-- The counters of store_stats per tenant of this database, plus
-- streams_created (appends to a stream that had never been written), from a
-- bounded table in shared memory (eventsource.max_tenant_stats rows; the
-- counts of tenants beyond it go to the row '(other)' of their database).
-- The function reads shared memory only: its cost is one pass over that
-- table, whatever the store holds.  A caller who is not the store's owner
-- (or a superuser) gets only the row of its current tenant; stat_reset()
-- starts every row of the database over.  Locks: new objects only, no lock
-- on any table of the store.
CREATE FUNCTION eventsource.tenant_stats_rows(
    OUT tenant_id text, OUT appends bigint, OUT events_appended bigint,
    OUT streams_created bigint, OUT expected_version_conflicts bigint,
    OUT idempotent_retries bigint, OUT duplicate_event_ids bigint,
    OUT stream_reads bigint, OUT global_reads bigint, OUT events_read bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_tenant_stats_rows';

CREATE VIEW eventsource.tenant_stats AS
    SELECT * FROM eventsource.tenant_stats_rows();
COMMENT ON VIEW eventsource.tenant_stats IS
    'Cumulative counters per tenant of this database since stat_reset() or the server start (shared memory)';

-- like every monitoring object: not for PUBLIC (see README, privileges)
REVOKE ALL ON FUNCTION eventsource.tenant_stats_rows() FROM PUBLIC;
REVOKE ALL ON eventsource.tenant_stats FROM PUBLIC;

-- ==== issue 15: tenancy (lifecycle) ====
-- The lifecycle state is per (tenant, stream) (docs/tenancy.md section 6,
-- docs/lifecycle.md): stream_lifecycle and stream_retention gain tenant_id,
-- first in their keys, the hiding view's probe matches the tenant, and the
-- lifecycle, erasure and retention functions act in the caller's current
-- tenant (src/lifecycle.c, erasure.c, retention.c).  The cleanup worker and
-- the retention pass serve every tenant, each action one (tenant, stream).
-- Existing rows are tenant 'default' (every 1.0 and pre-tenancy stream is).
-- Locks and cost: ADD COLUMN with a constant default (no rewrite) and the
-- key rebuilds hold ACCESS EXCLUSIVE on the two tables, one row per touched
-- stream or rule; nothing on eventsource.events.  No foreign key to
-- tenants, as on events (the functions write a validated tenant only).
ALTER TABLE eventsource.stream_lifecycle
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE eventsource.stream_lifecycle
    DROP CONSTRAINT stream_lifecycle_pkey,
    ADD CONSTRAINT stream_lifecycle_pkey PRIMARY KEY (tenant_id, stream_id);
ALTER TABLE eventsource.stream_retention
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE eventsource.stream_retention
    DROP CONSTRAINT stream_retention_pkey,
    ADD CONSTRAINT stream_retention_pkey PRIMARY KEY (tenant_id, scope, name);

-- Row-level security as on events: a role other than the owner reads (and,
-- were the guards not there, would write) only its current tenant's rows.
ALTER TABLE eventsource.stream_lifecycle ENABLE ROW LEVEL SECURITY;
CREATE POLICY stream_lifecycle_tenant ON eventsource.stream_lifecycle
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.stream_retention ENABLE ROW LEVEL SECURITY;
CREATE POLICY stream_retention_tenant ON eventsource.stream_retention
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));

-- The hiding view (replacing the foundation's definition): an event's
-- lifecycle row is its tenant's row of its stream.  Still one probe of
-- stream_lifecycle's primary key per event that reaches the third test.
-- It is cross-tenant for the store's owner (the functions and the workers
-- read it as the owner) and the current tenant's for anyone else: it is
-- internal and granted to nobody, but a GRANT SELECT ON ALL TABLES IN
-- SCHEMA eventsource must not hand a tenant's role every tenant's events
-- through it (the view runs with its owner's rights, past row-level
-- security).  Both tests are scalar subqueries, evaluated once per query,
-- the owner's first: the owner's reads never ask for a tenant.
CREATE OR REPLACE VIEW eventsource.visible_events AS
    SELECT e.*
      FROM eventsource.events e
     WHERE (e.global_position OPERATOR(pg_catalog.>)
               (SELECT COALESCE(pg_catalog.max(l.last_position), 0)
                  FROM eventsource.stream_lifecycle l)
        OR e.stream_version OPERATOR(pg_catalog.<) 1
        OR NOT EXISTS
               (SELECT FROM eventsource.stream_lifecycle l
                 WHERE l.tenant_id OPERATOR(pg_catalog.=) e.tenant_id
                   AND l.stream_id OPERATOR(pg_catalog.=) e.stream_id
                   AND e.stream_version OPERATOR(pg_catalog.<=) l.hidden_through))
       AND ((SELECT pg_catalog.pg_has_role(CURRENT_USER, c.relowner, 'USAGE')
               FROM pg_catalog.pg_class c
              WHERE c.oid OPERATOR(pg_catalog.=) 'eventsource.events'::pg_catalog.regclass)
        OR e.tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));

-- The views a lifecycle operator reads: the current tenant's rows, as the
-- streams view does (they run with their owner's rights, past row-level
-- security, so the predicate is explicit; current_tenant() in it runs as
-- the querying role, once per query as a scalar subquery).  Security
-- barriers, as streams: a reader's own condition never runs on another
-- tenant's rows.  tenant_id is appended (CREATE OR REPLACE VIEW may only
-- add columns at the end).
CREATE OR REPLACE VIEW eventsource.retention WITH (security_barrier = true) AS
    SELECT r.scope, r.name, r.max_age, r.max_count, r.updated_at, r.tenant_id
      FROM eventsource.stream_retention r
     WHERE r.tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant());
CREATE OR REPLACE VIEW eventsource.stream_cleanup WITH (security_barrier = true) AS
    SELECT l.stream_id, l.hidden_through, l.cleaned_through,
           l.hidden_through - l.cleaned_through AS pending_versions,
           l.tombstoned, l.updated_at AS hidden_at, l.cleaned_at, l.tenant_id
      FROM eventsource.stream_lifecycle l
     WHERE l.tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant());
-- The worker's figures are the database's (one worker serves every
-- tenant); what is pending is the current tenant's.
CREATE OR REPLACE VIEW eventsource.cleanup_status WITH (security_barrier = true) AS
    SELECT w.*, p.streams_pending, p.versions_pending
      FROM eventsource.cleanup_worker() w,
           (SELECT pg_catalog.count(*) AS streams_pending,
                   COALESCE(pg_catalog.sum(l.hidden_through - l.cleaned_through), 0)::bigint
                       AS versions_pending
              FROM eventsource.stream_lifecycle l
             WHERE l.cleaned_through OPERATOR(pg_catalog.<) l.hidden_through
               AND l.tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant())) p;

-- ==== issue 15: tenancy (subscriptions) ====
-- A subscription is scoped to one tenant or cross-tenant (docs/tenancy.md
-- section 4; README "Multi-tenancy").  subscriptions.tenant names its
-- tenant; NULL is cross-tenant, what every subscription of 1.0 becomes
-- here, so each keeps running as it did (a store without tenants holds the
-- default tenant's events only).  The worker reads a tenant-scoped
-- subscription's events with tenant_id = its tenant (the key
-- events_tenant_global_position_key serves it) and runs every handler call
-- with eventsource.tenant set to the tenant of the events it hands over, so
-- a handler's own appends land in that tenant (src/delivery.c, handler.c).
-- The owner of a subscription must be allowed its tenant, and a role bound
-- to tenants never owns a cross-tenant one: create_subscription checks it,
-- and the worker checks it again before every batch
-- (src/subscription_rules.c), failing the partition with "invalid
-- configuration" when a binding changed.
--
-- Locks and cost: ADD COLUMN (nullable, or with a constant default) is a
-- catalog change on subscriptions, dead_letters and recent_errors; the CHECK
-- on subscriptions.tenant is validated against the (few, all NULL) rows.
-- create_subscription() is replaced (DROP and CREATE: a function's
-- arguments cannot change in place), keeping the privileges granted on it.
ALTER TABLE eventsource.subscriptions
    ADD COLUMN tenant text,
    ADD CONSTRAINT subscriptions_tenant_check
        CHECK (tenant IS NULL OR
               (pg_catalog.octet_length(tenant) BETWEEN 1 AND 63
                AND tenant OPERATOR(pg_catalog.~) '^[A-Za-z0-9_.:-]+$'));

-- The tenant of the event a dead letter or an error is about (the worker
-- writes it; 1.0's rows were the default tenant's, as every event was).
ALTER TABLE eventsource.dead_letters
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';
ALTER TABLE eventsource.recent_errors
    ADD COLUMN tenant_id text NOT NULL DEFAULT 'default';

-- Row-level security as for the log: a role other than the owner reads
-- these tables (if it was ever granted them) for its current tenant only
-- (dead_letters and recent_errors: and, for a role bound to tenants, only
-- a tenant-scoped subscription's rows; see right below the policies).
-- subscription_partitions holds copies of a failed event's error, so it
-- follows its subscription's tenant; a cross-tenant subscription's rows are
-- the owner's alone.  The store's functions and workers run as the owner.
ALTER TABLE eventsource.dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY dead_letters_tenant ON eventsource.dead_letters
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.recent_errors ENABLE ROW LEVEL SECURITY;
CREATE POLICY recent_errors_tenant ON eventsource.recent_errors
    USING (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY subscriptions_tenant ON eventsource.subscriptions
    USING (tenant OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()))
    WITH CHECK (tenant OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant()));
ALTER TABLE eventsource.subscription_partitions ENABLE ROW LEVEL SECURITY;
CREATE POLICY subscription_partitions_tenant ON eventsource.subscription_partitions
    USING (EXISTS (SELECT FROM eventsource.subscriptions s
                    WHERE s.name OPERATOR(pg_catalog.=) subscription
                      AND s.tenant OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant())));

-- A cross-tenant subscription's dead letters and errors carry the tenant of
-- their event, but their subscription's name and its handler's error text
-- (which may quote any tenant's events) are not that tenant's to read: a
-- role bound to tenants sees only the rows a subscription scoped to its
-- current tenant wrote.  subscription_tenant is that subscription's tenant
-- when the worker wrote the row (src/bookkeeping.c), NULL when it was
-- cross-tenant: every 1.0 row (every 1.0 subscription is cross-tenant
-- here) and any insert that does not name it, so a row of unknown origin
-- is never shown to a bound role.  Recorded at write time, not looked up
-- in subscriptions: a reader needs no privilege on subscriptions (1.0's
-- monitoring grants name dead_letters and recent_errors only), and a row
-- outlives its subscription (recent_errors) and its name's next owner.  A
-- subscription's tenant never changes (create_subscription sets it; only
-- drop and create again change it, and drop_subscription deletes its dead
-- letters).  The caller's binding is read when the row is read, so binding
-- a role to a tenant hides the cross-tenant rows from it at once.  Any
-- other role but the owner (such as 1.0's monitoring role) keeps seeing
-- its current tenant's rows of every subscription, as before.  Both
-- predicates are scalar subqueries, InitPlans evaluated once per query (as
-- for events_tenant).  The store's functions, retry_dead_letters() and the
-- workers run as the owner, whom no policy restricts.
--
-- Locks and cost: ADD COLUMN (nullable, no default) is a catalog change on
-- dead_letters and recent_errors (ACCESS EXCLUSIVE for that moment, no
-- rewrite); so is ALTER POLICY.
ALTER TABLE eventsource.dead_letters
    ADD COLUMN subscription_tenant text;
ALTER TABLE eventsource.recent_errors
    ADD COLUMN subscription_tenant text;
COMMENT ON COLUMN eventsource.dead_letters.subscription_tenant IS
    'The tenant of the subscription that parked the event (NULL: a cross-tenant subscription)';
COMMENT ON COLUMN eventsource.recent_errors.subscription_tenant IS
    'The tenant of the subscription whose handler failed (NULL: a cross-tenant subscription)';

-- Is the caller bound to tenants, as current_tenant() decides (its role's
-- bindings and its session's, src/tenant.c)?  Every role calls it (the
-- policies below do), so it keeps the default EXECUTE for PUBLIC; it tells
-- a role nothing but about itself.
CREATE FUNCTION eventsource.caller_bound_to_tenants() RETURNS boolean
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'es_caller_bound_to_tenants';
COMMENT ON FUNCTION eventsource.caller_bound_to_tenants() IS
    'Whether the caller (its role or its session''s) is bound to tenants (eventsource.tenant_roles)';

-- The same rule for both tables, and for what a role may write there
-- (WITH CHECK): a bound role cannot add a row its policy would hide.
DO $$
DECLARE
    rule text := 'tenant_id OPERATOR(pg_catalog.=) (SELECT eventsource.current_tenant())'
        ' AND (subscription_tenant OPERATOR(pg_catalog.=) tenant_id'
        '      OR NOT (SELECT eventsource.caller_bound_to_tenants()))';
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dead_letters', 'recent_errors'] LOOP
        EXECUTE pg_catalog.format('ALTER POLICY %I ON eventsource.%I USING (%s) WITH CHECK (%s)',
                                  t OPERATOR(pg_catalog.||) '_tenant', t, rule, rule);
    END LOOP;
END $$;

-- create_subscription(..., tenant): the new trailing argument defaults to
-- the caller's current tenant, so every call of 1.0 stays valid and makes
-- a subscription of the tenant the caller works in; tenant => NULL asks for
-- a cross-tenant one (the store's owner only).  The privileges granted on
-- the 1.0 function are granted again on the new one, and left out of its
-- initial privileges so that pg_dump keeps dumping them.
SELECT eventsource.upgrade_drop_function('eventsource.create_subscription(text, regprocedure, text, integer, text, interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer)');
CREATE FUNCTION eventsource.create_subscription(
    name text, handler regprocedure, start_from text DEFAULT 'beginning',
    batch_size integer DEFAULT 100, checkpoint_strategy text DEFAULT 'every_batch',
    checkpoint_interval interval DEFAULT '5 seconds',
    processing_timeout interval DEFAULT '30 seconds',
    max_retries integer DEFAULT 5, retry_backoff interval DEFAULT '1 second',
    continue_on_error boolean DEFAULT true, circuit_breaker_threshold integer DEFAULT 5,
    circuit_breaker_reset interval DEFAULT '30 seconds',
    event_types text[] DEFAULT NULL, categories text[] DEFAULT NULL,
    partitions integer DEFAULT 1, tenant text DEFAULT eventsource.current_tenant())
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_create_subscription';
COMMENT ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
    interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer,
    text) IS
    'Create a subscription of the tenant (default: the current one; NULL: every tenant, the owner only)';
REVOKE ALL ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
    interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer,
    text) FROM PUBLIC;
SELECT eventsource.upgrade_grant_again('eventsource.create_subscription(text, regprocedure, text, integer, text, interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)');

-- The status gains a trailing column: the subscription's tenant (NULL:
-- cross-tenant).  A role bound to tenants sees the subscriptions of its
-- current tenant only (src/status.c), as health() and error_stats() do.
CREATE FUNCTION eventsource.subscription_status_rows_v3(
    OUT name text, OUT partition integer, OUT pid integer, OUT state text,
    OUT checkpoint bigint, OUT last_position bigint, OUT head_position bigint,
    OUT lag_events bigint, OUT lag_seconds double precision,
    OUT events_processed bigint, OUT events_failed bigint, OUT events_retried bigint,
    OUT dead_letters bigint, OUT consecutive_failures bigint,
    OUT error_rate_per_minute bigint, OUT last_error text, OUT last_error_at timestamptz,
    OUT started_at timestamptz, OUT last_activity_at timestamptz, OUT health text,
    OUT health_reason text, OUT last_sqlstate text, OUT heartbeat_at timestamptz,
    OUT circuit_open_until timestamptz, OUT last_shutdown jsonb, OUT partitions integer,
    OUT lag_positions bigint, OUT lag_events_exact boolean, OUT lag_events_estimate bigint,
    OUT tenant text)
    RETURNS SETOF record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_subscription_status';
CREATE OR REPLACE VIEW eventsource.subscription_status AS
    SELECT * FROM eventsource.subscription_status_rows_v3();

-- ==== issue 15: tenancy (a tenant per call) ====
-- Each data function of the store gains an overload with one more
-- argument, "tenant", after all of the 1.0 function's:
--   append_event(stream_id, expected_version, event_type, data, metadata,
--                event_id, tenant)
-- and so on for append, read_stream, read_all, stream_version,
-- save_snapshot, load_snapshot, load, save_checkpoint, get_checkpoint and
-- reset_checkpoint.  A client that knows its tenant at each call names it
-- there instead of BEGIN; SET LOCAL eventsource.tenant = ...; <call>;
-- COMMIT: one statement instead of four, which is most of what tenancy
-- costs a client behind a transaction pooler (README "Multi-tenancy",
-- benchmark row T).  The argument is decided exactly as the setting would
-- be, for the caller (src/tenant.c es_tenant_for_call): an unknown tenant
-- is ES005, one a bound role may not use is 42501; NULL means the setting;
-- it holds for that call only.
--
-- Overloads, not a trailing DEFAULT argument on the 1.0 functions: those
-- stay exactly as 1.0 made them, so a GRANT or REVOKE that names their
-- arguments, a view or a SQL-standard function body calling them, and a
-- prepared call all keep working across the update.  Each overload takes
-- every argument (none has a default), so a call matches one function only
-- by its number of arguments, however its parameters are typed (an
-- overload with defaults would make a 1.0 call with unknown-typed
-- parameters ambiguous).  Whoever may execute the 1.0 function at the
-- update may execute its overload (upgrade_keep_grants /
-- upgrade_grant_again: granted again, out of the initial privileges); after
-- it, grant both (docs/privileges.md).  Locks: new functions only.

SELECT eventsource.upgrade_keep_grants('eventsource.append(text, bigint, jsonb)');
CREATE FUNCTION eventsource.append(
    stream_id text, expected_version bigint, events jsonb, tenant text,
    OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_append';
SELECT eventsource.upgrade_grant_again('eventsource.append(text, bigint, jsonb, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid)');
CREATE FUNCTION eventsource.append_event(
    stream_id text, expected_version bigint, event_type text, data jsonb,
    metadata jsonb, event_id uuid, tenant text,
    OUT stream_version bigint, OUT first_position bigint, OUT last_position bigint)
    RETURNS record
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_append_event';
SELECT eventsource.upgrade_grant_again('eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.read_stream(text, bigint, integer, boolean)');
CREATE FUNCTION eventsource.read_stream(
    stream_id text, from_version bigint,
    max_count integer, backwards boolean, tenant text)
    RETURNS SETOF eventsource.events
    LANGUAGE c STABLE PARALLEL UNSAFE ROWS 100
    AS 'MODULE_PATHNAME', 'es_read_stream';
SELECT eventsource.upgrade_grant_again('eventsource.read_stream(text, bigint, integer, boolean, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.read_all(bigint, integer, text[], text[])');
CREATE FUNCTION eventsource.read_all(
    after_position bigint, max_count integer,
    event_types text[], categories text[], tenant text)
    RETURNS SETOF eventsource.events
    LANGUAGE c VOLATILE PARALLEL UNSAFE ROWS 1000
    AS 'MODULE_PATHNAME', 'es_read_all';
SELECT eventsource.upgrade_grant_again('eventsource.read_all(bigint, integer, text[], text[], text)');

SELECT eventsource.upgrade_keep_grants('eventsource.stream_version(text)');
CREATE FUNCTION eventsource.stream_version(stream_id text, tenant text)
    RETURNS bigint
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_stream_version_sql';
SELECT eventsource.upgrade_grant_again('eventsource.stream_version(text, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.save_snapshot(text, bigint, jsonb, integer)');
CREATE FUNCTION eventsource.save_snapshot(
    stream_id text, stream_version bigint, state jsonb, schema_version integer,
    tenant text)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_save_snapshot';
SELECT eventsource.upgrade_grant_again('eventsource.save_snapshot(text, bigint, jsonb, integer, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.load_snapshot(text, integer)');
CREATE FUNCTION eventsource.load_snapshot(
    stream_id text, schema_version integer, tenant text)
    RETURNS TABLE (stream_version bigint, state jsonb, schema_version integer,
                   created_at timestamptz)
    LANGUAGE c STABLE PARALLEL UNSAFE ROWS 1
    AS 'MODULE_PATHNAME', 'es_load_snapshot';
SELECT eventsource.upgrade_grant_again('eventsource.load_snapshot(text, integer, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.load(text, integer)');
CREATE FUNCTION eventsource.load(
    stream_id text, schema_version integer, tenant text)
    RETURNS jsonb
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_load';
SELECT eventsource.upgrade_grant_again('eventsource.load(text, integer, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.save_checkpoint(text, bigint)');
CREATE FUNCTION eventsource.save_checkpoint(name text, "position" bigint, tenant text)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_save_checkpoint';
SELECT eventsource.upgrade_grant_again('eventsource.save_checkpoint(text, bigint, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.get_checkpoint(text)');
CREATE FUNCTION eventsource.get_checkpoint(name text, tenant text)
    RETURNS bigint
    LANGUAGE c STABLE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_get_checkpoint';
SELECT eventsource.upgrade_grant_again('eventsource.get_checkpoint(text, text)');

SELECT eventsource.upgrade_keep_grants('eventsource.reset_checkpoint(text, bigint)');
CREATE FUNCTION eventsource.reset_checkpoint(
    name text, "position" bigint, tenant text)
    RETURNS void
    LANGUAGE c VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'es_reset_checkpoint';
SELECT eventsource.upgrade_grant_again('eventsource.reset_checkpoint(text, bigint, text)');

-- ==== end: the upgrade helpers go ====
DROP FUNCTION eventsource.upgrade_drop_function(pg_catalog.regprocedure);
DROP FUNCTION eventsource.upgrade_keep_grants(pg_catalog.regprocedure);
DROP FUNCTION eventsource.upgrade_grant_again(pg_catalog.regprocedure);
