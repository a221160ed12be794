--
-- subscription_api: the SQL surface of subscriptions (DESIGN.md section 5)
-- and every error path with its SQLSTATE.
--
-- The library is preloaded, so workers run whatever commits active.  The
-- output must not depend on them: what is checked is written by the API
-- functions themselves and read in the same transaction, or belongs to
-- subscriptions paused in the transaction that created them (no worker ever
-- attaches to those), or is rolled back.  Every subscription here is named
-- sa_*, so the final counts find anything left behind.
--
-- A subscription's progress is the position of each of its partitions in
-- eventsource.subscription_partitions.  The checkpoints of
-- eventsource.checkpoints are the users' own (save_checkpoint()): no
-- subscription function writes them; start_from => 'checkpoint' reads them.
--
SET client_min_messages = warning;

CREATE SCHEMA sa;
-- handlers: per event, per batch, variadic batch, and wrong ones
CREATE FUNCTION sa.h(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.hb(es eventsource.events[]) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.hv(VARIADIC es eventsource.events[]) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.hsql(eventsource.events) RETURNS void
    LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION sa.h_two(e eventsource.events, x integer) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_default(e eventsource.events, x integer DEFAULT 1) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_none() RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_int(x integer) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_json(e jsonb) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_2d(es eventsource.events[][]) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.h_returns_int(e eventsource.events) RETURNS integer
    LANGUAGE sql AS $$ SELECT 1 $$;
CREATE FUNCTION sa.h_returns_bool_batch(es eventsource.events[]) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE FUNCTION sa.h_setof(e eventsource.events) RETURNS SETOF void
    LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION sa.h_out(e eventsource.events, OUT n integer)
    LANGUAGE sql AS $$ SELECT 1 $$;
CREATE PROCEDURE sa.p(e eventsource.events)
    LANGUAGE plpgsql AS $$ BEGIN END $$;
CREATE FUNCTION sa.agg_step(s integer, e eventsource.events) RETURNS integer
    LANGUAGE sql AS $$ SELECT s + 1 $$;
CREATE AGGREGATE sa.agg(eventsource.events) (SFUNC = sa.agg_step, STYPE = integer);
-- a handler nobody but its owner may execute
CREATE FUNCTION sa.h_secret(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
REVOKE EXECUTE ON FUNCTION sa.h_secret(eventsource.events) FROM PUBLIC;

-- like t.try, but an accepted call is rolled back too (so one wrongly
-- accepted value cannot change what the next call reports)
CREATE FUNCTION sa.check(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
BEGIN
    EXECUTE cmd;
    RAISE EXCEPTION 'accepted' USING ERRCODE = 'SA000';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL;
    IF st = 'SA000' THEN
        RETURN 'ok';
    END IF;
    RETURN st || ': ' || msg || coalesce(' | ' || nullif(det, ''), '');
END $$;

-- rows the API writes, for one subscription
CREATE FUNCTION sa.partitions(sub text)
    RETURNS TABLE (partition integer, state text, failed_position bigint, error_message text,
                   last_shutdown jsonb)
    LANGUAGE sql AS $$
    SELECT partition, state, failed_position, error_message, last_shutdown
      FROM eventsource.subscription_partitions WHERE subscription = sub ORDER BY partition $$;
-- a subscription's progress: the position of each partition (in
-- eventsource.subscription_partitions), labelled "name" when it has one
-- partition, else "name/k" (the checkpoint start_from => 'checkpoint' reads)
CREATE FUNCTION sa.checkpoints(sub text) RETURNS TABLE (name text, "position" bigint)
    LANGUAGE sql AS $$
    SELECT CASE WHEN s.partitions > 1 THEN s.name || '/' || p.partition ELSE s.name END,
           p.position
      FROM eventsource.subscriptions s
      JOIN eventsource.subscription_partitions p ON p.subscription = s.name
     WHERE s.name = sub
     ORDER BY p.partition $$;
-- everything any sa_* subscription left behind anywhere (its progress is in
-- its partitions' rows)
CREATE VIEW sa.leftovers AS
    SELECT (SELECT count(*) FROM eventsource.subscriptions WHERE name LIKE 'sa\_%') AS subscriptions,
           (SELECT count(*) FROM eventsource.subscription_partitions
             WHERE subscription LIKE 'sa\_%') AS partitions,
           (SELECT count(*) FROM eventsource.dead_letters WHERE subscription LIKE 'sa\_%') AS dead_letters,
           (SELECT count(*) FROM eventsource.subscription_status WHERE name LIKE 'sa\_%') AS worker_slots;
-- the users' checkpoints named sa_* (eventsource.checkpoints), against the
-- last sa.note_checkpoints(): a row written since, even with the same
-- values, is a new row version (another ctid)
CREATE TABLE sa.noted_checkpoints (name text PRIMARY KEY, "position" bigint, row_version tid);
CREATE FUNCTION sa.note_checkpoints() RETURNS void LANGUAGE sql AS $$
    DELETE FROM sa.noted_checkpoints;
    INSERT INTO sa.noted_checkpoints
        SELECT name, position, ctid FROM eventsource.checkpoints WHERE name LIKE 'sa\_%' $$;
CREATE VIEW sa.user_checkpoints AS
    SELECT coalesce(c.name, n.name) AS name, c.position,
           CASE WHEN n.name IS NULL THEN 'new'
                WHEN c.name IS NULL THEN 'deleted'
                WHEN c.ctid = n.row_version THEN 'untouched'
                ELSE 'rewritten' END AS since_noted
      FROM (SELECT name, position, ctid FROM eventsource.checkpoints WHERE name LIKE 'sa\_%') c
      FULL JOIN sa.noted_checkpoints n ON n.name = c.name;
-- a dead letter for "sub" (written directly: no worker is involved)
CREATE FUNCTION sa.dead_letter(sub text, part integer) RETURNS bigint
    LANGUAGE sql AS $$
    INSERT INTO eventsource.dead_letters (subscription, partition, global_position, stream_id,
        stream_version, event_id, event_type, data, metadata, recorded_at, error_message,
        error_sqlstate, error_category, error_severity, retry_count, first_failed_at)
    VALUES (sub, part, 1, 'Order-1', 1, gen_random_uuid(), 'OrderCreated', '{}', '{}', now(),
        'boom', 'P0001', 'application', 'medium', 5, now())
    RETURNING id $$;

SELECT * FROM sa.leftovers;

--
-- create_subscription with the defaults: the rows it writes
--
BEGIN;
SELECT eventsource.create_subscription('sa_default', 'sa.h(eventsource.events)');
\x on
SELECT name, handler, owner = current_user::regrole AS owner_is_creator, batch_handler,
       start_from, start_position, batch_size, checkpoint_strategy, checkpoint_interval,
       processing_timeout, max_retries, retry_backoff, continue_on_error,
       circuit_breaker_threshold, circuit_breaker_reset, event_types, categories, partitions,
       state, created_at = now() AS created_now, updated_at = now() AS updated_now
  FROM eventsource.subscriptions WHERE name = 'sa_default';
\x off
SELECT * FROM sa.partitions('sa_default');
SELECT * FROM sa.checkpoints('sa_default');
-- the partition's row carries the subscription's id; nothing is written to
-- eventsource.checkpoints
SELECT p.partition, p.subscription_id = s.id AS subscription_id_matches,
       p.checkpointed_at = now() AS checkpointed_now
  FROM eventsource.subscriptions s
  JOIN eventsource.subscription_partitions p ON p.subscription = s.name
 WHERE s.name = 'sa_default';
SELECT count(*) AS user_checkpoints FROM eventsource.checkpoints WHERE name LIKE 'sa\_%';
ROLLBACK;

--
-- every parameter given, by name: a batch handler, filters, three partitions
--
BEGIN;
SELECT eventsource.create_subscription('sa_full', 'sa.hb(eventsource.events[])',
    start_from => '5', batch_size => 500, checkpoint_strategy => 'periodic',
    checkpoint_interval => '2 seconds', processing_timeout => '1 minute', max_retries => 0,
    retry_backoff => '0', continue_on_error => false, circuit_breaker_threshold => 0,
    circuit_breaker_reset => '7 days', event_types => '{OrderCreated,OrderShipped}',
    categories => '{Order}', partitions => 3);
\x on
SELECT name, handler, batch_handler, start_from, start_position, batch_size,
       checkpoint_strategy, checkpoint_interval, processing_timeout, max_retries,
       retry_backoff, continue_on_error, circuit_breaker_threshold, circuit_breaker_reset,
       event_types, categories, partitions, state
  FROM eventsource.subscriptions WHERE name = 'sa_full';
\x off
SELECT * FROM sa.partitions('sa_full');
SELECT * FROM sa.checkpoints('sa_full');
-- the same, positionally: the argument order of the contract
SELECT eventsource.create_subscription('sa_positional', 'sa.h(eventsource.events)', 'end', 7,
    'every_event', '3 seconds', '4 seconds', 8, '9 seconds', false, 10, '11 seconds',
    '{A}', '{B}', 2);
SELECT start_from, start_position = eventsource.head_position() AS at_head, batch_size,
       checkpoint_strategy, checkpoint_interval, processing_timeout, max_retries,
       retry_backoff, continue_on_error, circuit_breaker_threshold, circuit_breaker_reset,
       event_types, categories, partitions
  FROM eventsource.subscriptions WHERE name = 'sa_positional';
-- batch handlers are recognised by their argument type
SELECT eventsource.create_subscription('sa_variadic', 'sa.hv(eventsource.events[])');
SELECT eventsource.create_subscription('sa_sql', 'sa.hsql(eventsource.events)');
SELECT name, handler, batch_handler FROM eventsource.subscriptions
 WHERE name IN ('sa_full', 'sa_positional', 'sa_variadic', 'sa_sql') ORDER BY name;
-- every partition of each carries its own subscription's id
SELECT s.name, count(*) AS partitions, bool_and(p.subscription_id = s.id) AS subscription_id_matches,
       count(DISTINCT s.id) AS ids
  FROM eventsource.subscriptions s
  JOIN eventsource.subscription_partitions p ON p.subscription = s.name
 WHERE s.name LIKE 'sa\_%' GROUP BY s.name ORDER BY s.name;
SELECT count(DISTINCT id) AS distinct_ids FROM eventsource.subscriptions WHERE name LIKE 'sa\_%';
SELECT count(*) AS user_checkpoints FROM eventsource.checkpoints WHERE name LIKE 'sa\_%';
ROLLBACK;
SELECT * FROM sa.leftovers;

--
-- argument validation: NULL 22004, out of range 22023, names 22023/54000
-- (sa.check rolls every call back, so a wrongly accepted value leaves
-- nothing behind)
--
SELECT c AS call, sa.check(format('SELECT eventsource.create_subscription(%s)', c))
  FROM (VALUES
    -- the name
    ($$NULL, 'sa.h(eventsource.events)'$$),
    ($$'', 'sa.h(eventsource.events)'$$),
    ($$'sa_a/b', 'sa.h(eventsource.events)'$$),
    ($$'/', 'sa.h(eventsource.events)'$$),
    -- the handler
    ($$'sa_v', NULL$$),
    ($$'sa_v', 0$$),
    -- start_from
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => ''$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => 'BEGINNING'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => 'now'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '-1'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '+5'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => ' 5'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '5 '$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '5x'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '1e3'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '0x10'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', start_from => '9223372036854775808'$$),
    -- batch_size: 1 .. 10000
    ($$'sa_v', 'sa.h(eventsource.events)', batch_size => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', batch_size => 0$$),
    ($$'sa_v', 'sa.h(eventsource.events)', batch_size => -1$$),
    ($$'sa_v', 'sa.h(eventsource.events)', batch_size => 10001$$),
    -- checkpoint_strategy
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_strategy => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_strategy => ''$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_strategy => 'EVERY_EVENT'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_strategy => 'sometimes'$$),
    -- checkpoint_interval: between 1 millisecond and 7 days (months count
    -- as 30 days, as interval comparisons do)
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '0'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '1 microsecond'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '0.5 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '0.999 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '7 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '6 days 24 hours'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '-1 mon 37 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '-1 second'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '7 days 1 second'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '8 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '169 hours'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '1 mon'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '-1 mon 40 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '1 year'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '1 day -25 hours'$$),
    -- just over 7 days, by less than a millisecond
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '7 days 0.0009 seconds'$$),
    -- about 5.9 million years, whose microseconds overflow 64 bits
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '2147483647 days -298651767:41:43.483904'$$),
    -- overflows: the days (months) alone, and days plus time (either sign)
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '178000000 years'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '-178000000 years'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '2147483647 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '106751991 days 04:00:00'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '-106751991 days -05:00:00'$$),
    -- huge days and time that add up to 1 millisecond, and to exactly 7 days
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '106751991 days -2562047783:59:59.999'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', checkpoint_interval => '106751991 days -2562047616:00:00'$$),
    -- processing_timeout: between 1 millisecond and 7 days
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '0'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '0.5 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '-30 seconds'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '8 days'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', processing_timeout => '7 days'$$),
    -- max_retries: 0 .. 100
    ($$'sa_v', 'sa.h(eventsource.events)', max_retries => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', max_retries => -1$$),
    ($$'sa_v', 'sa.h(eventsource.events)', max_retries => 101$$),
    -- retry_backoff: zero or between 1 millisecond and 7 days
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '-1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '-0.5 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '1 microsecond'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '0.5 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '7 days 1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '178000000 years'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '0'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '1 day -24 hours'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', retry_backoff => '7 days'$$),
    -- continue_on_error
    ($$'sa_v', 'sa.h(eventsource.events)', continue_on_error => NULL$$),
    -- circuit_breaker_threshold: 0 .. 1000000
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_threshold => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_threshold => -1$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_threshold => 1000001$$),
    -- circuit_breaker_reset: between 1 millisecond and 7 days
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '0'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '0.5 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '-5 minutes'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '2 weeks'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '1 ms'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', circuit_breaker_reset => '7 days'$$),
    -- filters: one dimension, no NULL element
    ($$'sa_v', 'sa.h(eventsource.events)', event_types => '{A,NULL}'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', event_types => '{{A},{B}}'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', categories => '{NULL}'$$),
    ($$'sa_v', 'sa.h(eventsource.events)', categories => '{{Order,User}}'$$),
    -- partitions: 1 .. eventsource.max_workers (12 here)
    ($$'sa_v', 'sa.h(eventsource.events)', partitions => NULL$$),
    ($$'sa_v', 'sa.h(eventsource.events)', partitions => 0$$),
    ($$'sa_v', 'sa.h(eventsource.events)', partitions => -1$$),
    ($$'sa_v', 'sa.h(eventsource.events)', partitions => 13$$),
    ($$'sa_v', 'sa.h(eventsource.events)', partitions => 1025$$)
  ) v(c);
SHOW eventsource.max_workers;

-- subscription names over 250 bytes: 54000, so that every partition's
-- checkpoint name "name/k" (k < 1024) fits the 255-byte limit of checkpoint
-- names.  The limit counts bytes, not characters.
BEGIN;
SELECT octet_length(name) AS name_bytes, length(name) AS name_chars,
       t.try(format($$SELECT eventsource.create_subscription(%L, 'sa.h(eventsource.events)')$$, name))
  FROM (VALUES (1, 'sa_' || repeat('n', 253)),
               (2, 'sa_' || repeat('é', 127)),
               (3, 'sa_' || repeat('n', 252)),
               (4, 'sa_' || repeat('n', 248)),
               (5, 'sa_' || repeat('é', 124))) v(i, name)
 ORDER BY i;
-- 250 bytes are fine, also with partitions: start_from => 'checkpoint' reads
-- "name/0".."name/9" (up to 252 bytes) in eventsource.checkpoints
SELECT eventsource.save_checkpoint('sa_' || repeat('n', 247) || '/9', 6);
SELECT eventsource.save_checkpoint('sa_' || repeat('n', 247), 2);
SELECT sa.note_checkpoints();
SELECT t.try(format($$SELECT eventsource.create_subscription(%L, 'sa.h(eventsource.events)',
                                                             start_from => 'checkpoint', partitions => 10)$$,
                    'sa_' || repeat('n', 247)));
SELECT t.try(format($$SELECT eventsource.create_subscription(%L, 'sa.h(eventsource.events)')$$,
                    'sa_' || repeat('é', 123) || 'n'));
SELECT octet_length(name) AS name_bytes, length(name) AS name_chars, partitions
  FROM eventsource.subscriptions WHERE name LIKE 'sa\_%' ORDER BY name_bytes, name_chars;
SELECT replace(name, repeat('n', 247), '<247 n>') AS name, octet_length(name) AS name_bytes, position
  FROM sa.checkpoints('sa_' || repeat('n', 247));
SELECT count(*) AS partitions FROM eventsource.subscription_partitions WHERE subscription LIKE 'sa\_%';
-- the checkpoints were read, not written
SELECT replace(name, repeat('n', 247), '<247 n>') AS name, octet_length(name) AS name_bytes,
       position, since_noted
  FROM sa.user_checkpoints ORDER BY name COLLATE "C";
-- other checkpoint names keep the 255-byte limit
SELECT t.try(format('SELECT eventsource.save_checkpoint(%L, 1)', 'sa_' || repeat('c', 252)));
SELECT t.try(format('SELECT eventsource.save_checkpoint(%L, 1)', 'sa_' || repeat('c', 253)));
ROLLBACK;
-- the other functions apply the same limit (54000, not 42704)
SELECT f, n AS name_bytes,
       replace(t.try(format('SELECT eventsource.%s(%L)', f, 'sa_' || repeat('x', n - 3))),
               'sa_' || repeat('x', n - 3), '<name>') AS try
  FROM (VALUES ('drop_subscription'), ('pause_subscription'), ('resume_subscription'),
               ('reset_subscription'), ('retry_dead_letters')) v(f),
       (VALUES (250), (251)) w(n)
 ORDER BY n, f COLLATE "C";

-- the boundaries themselves are accepted
BEGIN;
SELECT c AS call, t.try(format('SELECT eventsource.create_subscription(%s)', c))
  FROM (VALUES
    ($$'sa_b1', 'sa.h(eventsource.events)', batch_size => 1, max_retries => 0, circuit_breaker_threshold => 0, partitions => 1$$),
    ($$'sa_b2', 'sa.h(eventsource.events)', batch_size => 10000, max_retries => 100, circuit_breaker_threshold => 1000000$$),
    ($$'sa_b3', 'sa.h(eventsource.events)', checkpoint_interval => '7 days', processing_timeout => '168 hours', retry_backoff => '0', circuit_breaker_reset => '604800 seconds'$$),
    ($$'sa_b4', 'sa.h(eventsource.events)', checkpoint_interval => '1 millisecond', processing_timeout => '1 millisecond', retry_backoff => '1 millisecond', circuit_breaker_reset => '1 millisecond'$$),
    ($$'sa_b5', 'sa.h(eventsource.events)', checkpoint_interval => '8 days -24 hours', processing_timeout => '1 mon -23 days'$$),
    ($$'sa_b6', 'sa.h(eventsource.events)', event_types => '{}', categories => '{}'$$),
    ($$'sa_b7', 'sa.h(eventsource.events)', event_types => NULL, categories => NULL$$),
    ($$'sa_b8', 'sa.h(eventsource.events)', checkpoint_strategy => 'every_event'$$),
    ($$'sa_b9', 'sa.h(eventsource.events)', checkpoint_strategy => 'every_batch'$$),
    ($$'sa_B9', 'sa.h(eventsource.events)'$$),
    ($$'sa_ with space', 'sa.h(eventsource.events)'$$),
    ($$'sa_b10', 'sa.h(eventsource.events)', start_from => '9223372036854775807'$$)
  ) v(c);
SELECT name, batch_size, max_retries, circuit_breaker_threshold, checkpoint_strategy,
       checkpoint_interval, processing_timeout, retry_backoff, circuit_breaker_reset,
       event_types, categories, start_position
  FROM eventsource.subscriptions WHERE name LIKE 'sa\_%' ORDER BY name COLLATE "C";
ROLLBACK;

--
-- handlers: f(eventsource.events) or f(eventsource.events[]) returning void,
-- a plain function the creator may execute
--
BEGIN;
SELECT c AS handler, t.try(format($$SELECT eventsource.create_subscription('sa_hd', %L)$$, c))
  FROM (VALUES
    ('sa.h_two(eventsource.events,integer)'),
    ('sa.h_default(eventsource.events,integer)'),
    ('sa.h_none()'),
    ('sa.h_int(integer)'),
    ('sa.h_json(jsonb)'),
    ('sa.h_returns_int(eventsource.events)'),
    ('sa.h_returns_bool_batch(eventsource.events[])'),
    ('sa.h_setof(eventsource.events)'),
    ('sa.h_out(eventsource.events)'),
    ('sa.p(eventsource.events)'),
    ('sa.agg(eventsource.events)'),
    ('eventsource.head_position()'),
    ('eventsource.category(text)')
  ) v(c);
ROLLBACK;
-- a function that does not exist fails in the regprocedure input (42883)
SELECT t.try($$SELECT eventsource.create_subscription('sa_hd', 'sa.nope(eventsource.events)')$$);
SELECT t.try($$SELECT eventsource.create_subscription('sa_hd', 'sa.h(integer)')$$);
SELECT t.try($$SELECT eventsource.create_subscription('sa_hd', 'sa.h')$$);
-- events[][] is the same type as events[]: a batch handler
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_hd', 'sa.h_2d(eventsource.events[])')$$);
SELECT batch_handler FROM eventsource.subscriptions WHERE name = 'sa_hd';
ROLLBACK;
SELECT * FROM sa.leftovers;

--
-- privileges: EXECUTE on create_subscription, then EXECUTE on the handler;
-- the subscription belongs to (and its handler runs as) the creating role
--
CREATE ROLE regress_es_alice;
CREATE ROLE regress_es_bob;
GRANT USAGE ON SCHEMA sa, t TO regress_es_alice, regress_es_bob;
GRANT EXECUTE ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
    interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)
    TO regress_es_alice;
BEGIN;
SET LOCAL ROLE regress_es_bob;
SELECT t.try($$SELECT eventsource.create_subscription('sa_bob', 'sa.h(eventsource.events)')$$);
SELECT t.try($$SELECT eventsource.pause_subscription('sa_bob')$$);
SET LOCAL ROLE regress_es_alice;
SELECT t.try($$SELECT eventsource.create_subscription('sa_alice', 'sa.h_secret(eventsource.events)')$$);
SELECT t.try($$SELECT eventsource.create_subscription('sa_alice', 'sa.h(eventsource.events)')$$);
-- alice may not read the tables, nor change them
SELECT t.try($$SELECT count(*) FROM eventsource.subscriptions$$);
SELECT t.try($$UPDATE eventsource.subscriptions SET state = 'paused'$$);
RESET ROLE;
SELECT name, handler, owner::text AS owner, owner = 'regress_es_alice'::regrole AS owned_by_alice
  FROM eventsource.subscriptions WHERE name = 'sa_alice';
ROLLBACK;
-- as the handler's owner it is fine
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_secret', 'sa.h_secret(eventsource.events)')$$);
ROLLBACK;

-- drop, pause, resume, reset and retry_dead_letters need the privileges of
-- the subscription's owner (42501), beyond EXECUTE on the function;
-- membership in the owning role gives them, and superusers have them
CREATE ROLE regress_es_carol;
GRANT USAGE ON SCHEMA t TO regress_es_carol;
GRANT EXECUTE ON FUNCTION eventsource.drop_subscription(text), eventsource.pause_subscription(text),
    eventsource.resume_subscription(text), eventsource.reset_subscription(text, bigint),
    eventsource.retry_dead_letters(text, bigint[])
    TO regress_es_carol;
BEGIN;
SET LOCAL ROLE regress_es_alice;
SELECT eventsource.create_subscription('sa_alice', 'sa.h(eventsource.events)', partitions => 2);
RESET ROLE;
SELECT eventsource.create_subscription('sa_su', 'sa.h(eventsource.events)');
SET LOCAL ROLE regress_es_carol;
SELECT f, t.try(format('SELECT eventsource.%s(%L)', f, s))
  FROM (VALUES ('pause_subscription'), ('resume_subscription'), ('reset_subscription'),
               ('retry_dead_letters'), ('drop_subscription')) v(f),
       (VALUES ('sa_alice'), ('sa_su'), ('sa_nope')) w(s)
 ORDER BY s COLLATE "C", f COLLATE "C";
-- the hint names the role to be granted
SAVEPOINT direct;
SELECT eventsource.pause_subscription('sa_alice');
ROLLBACK TO SAVEPOINT direct;
RESET ROLE;
SELECT name, state FROM eventsource.subscriptions WHERE name IN ('sa_alice', 'sa_su') ORDER BY name;
SELECT * FROM sa.checkpoints('sa_alice');
-- save_checkpoint() and reset_checkpoint() (granted to carol here, as to a
-- reader) write the users' checkpoints only: those named like alice's
-- subscription do not move it
GRANT EXECUTE ON FUNCTION eventsource.save_checkpoint(text, bigint),
    eventsource.reset_checkpoint(text, bigint) TO regress_es_carol;
SET LOCAL ROLE regress_es_carol;
SELECT eventsource.save_checkpoint('sa_alice/0', 40);
SELECT eventsource.reset_checkpoint('sa_alice/1', 41);
SELECT eventsource.reset_checkpoint('sa_alice', 42);
RESET ROLE;
SELECT * FROM sa.checkpoints('sa_alice');
SELECT sa.note_checkpoints();
-- a superuser needs no membership
SELECT rolsuper FROM pg_roles WHERE rolname = current_user;
SELECT eventsource.pause_subscription('sa_alice');
SELECT eventsource.resume_subscription('sa_alice');
SELECT eventsource.reset_subscription('sa_alice', 1);
SELECT eventsource.retry_dead_letters('sa_alice') AS marked;
SELECT name, state FROM eventsource.subscriptions WHERE name = 'sa_alice';
SELECT * FROM sa.checkpoints('sa_alice');
-- a member of the owning role may
GRANT regress_es_alice TO regress_es_carol;
SET LOCAL ROLE regress_es_carol;
SELECT eventsource.pause_subscription('sa_alice');
SELECT eventsource.resume_subscription('sa_alice');
SELECT eventsource.pause_subscription('sa_alice');
SELECT eventsource.reset_subscription('sa_alice', 3);
SELECT eventsource.retry_dead_letters('sa_alice') AS marked;
-- still not the superuser's subscription
SELECT t.try($$SELECT eventsource.pause_subscription('sa_su')$$);
SELECT t.try($$SELECT eventsource.drop_subscription('sa_su')$$);
RESET ROLE;
SELECT name, state FROM eventsource.subscriptions WHERE name IN ('sa_alice', 'sa_su') ORDER BY name;
SELECT * FROM sa.checkpoints('sa_alice');
SET LOCAL ROLE regress_es_carol;
SELECT eventsource.drop_subscription('sa_alice');
RESET ROLE;
SELECT count(*) AS sa_alice FROM eventsource.subscriptions WHERE name = 'sa_alice';
SELECT * FROM sa.checkpoints('sa_alice');
SELECT eventsource.drop_subscription('sa_su');
-- neither the resets nor the drops touched the checkpoints named like them
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
ROLLBACK;
SELECT * FROM sa.leftovers;

--
-- start_from, resolved once at creation: the partitions' positions and
-- start_position.  One transaction per kind, each within the twelve worker
-- slots (the creations of a transaction all count against them).  The
-- users' checkpoints of eventsource.checkpoints are read by 'checkpoint',
-- and written by none.
--
CREATE VIEW sa.start_checkpoints AS
    SELECT c.name,
           CASE WHEN c.position = eventsource.head_position() THEN 'head'
                ELSE c.position::text END AS position,
           s.start_from
      FROM eventsource.subscriptions s
      CROSS JOIN LATERAL sa.checkpoints(s.name) c
     WHERE s.name LIKE 'sa\_%';
CREATE VIEW sa.start_positions AS
    SELECT name, start_from, partitions,
           CASE WHEN start_position = eventsource.head_position() THEN 'head'
                ELSE start_position::text END AS start_position
      FROM eventsource.subscriptions WHERE name LIKE 'sa\_%';
SELECT eventsource.head_position() > 12 AS head_is_past_the_positions_used_here;
-- beginning: 0, also when a checkpoint of that name exists (which stays)
BEGIN;
SELECT eventsource.save_checkpoint('sa_beg', 11);
SELECT eventsource.save_checkpoint('sa_end3/1', 12);
SELECT sa.note_checkpoints();
SELECT eventsource.create_subscription('sa_beg', 'sa.h(eventsource.events)', start_from => 'beginning');
-- end: the head position; for every partition
SELECT eventsource.create_subscription('sa_end', 'sa.h(eventsource.events)', start_from => 'end');
SELECT eventsource.create_subscription('sa_end3', 'sa.h(eventsource.events)', start_from => 'end',
                                       partitions => 3);
SELECT * FROM sa.start_checkpoints ORDER BY name COLLATE "C";
SELECT * FROM sa.start_positions ORDER BY name COLLATE "C";
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
ROLLBACK;
-- checkpoint: the existing one, else 0; partitions > 1: "name/k", else
-- "name", else 0.  start_position is where partition 0 resumes after.
BEGIN;
SELECT eventsource.save_checkpoint('sa_ck', 7);
SELECT eventsource.save_checkpoint('sa_ck3', 4);
SELECT eventsource.save_checkpoint('sa_ck3/1', 9);
SELECT eventsource.save_checkpoint('sa_ckp', 2);
SELECT eventsource.save_checkpoint('sa_ckp/0', 5);
SELECT sa.note_checkpoints();
SELECT eventsource.create_subscription('sa_ck', 'sa.h(eventsource.events)', start_from => 'checkpoint');
SELECT eventsource.create_subscription('sa_ck0', 'sa.h(eventsource.events)', start_from => 'checkpoint');
SELECT eventsource.create_subscription('sa_ck3', 'sa.h(eventsource.events)', start_from => 'checkpoint',
                                       partitions => 3);
SELECT eventsource.create_subscription('sa_ck2', 'sa.h(eventsource.events)', start_from => 'checkpoint',
                                       partitions => 2);
SELECT eventsource.create_subscription('sa_ckp', 'sa.h(eventsource.events)', start_from => 'checkpoint',
                                       partitions => 2);
SELECT * FROM sa.start_checkpoints ORDER BY name COLLATE "C";
SELECT * FROM sa.start_positions ORDER BY name COLLATE "C";
-- read, not written: no new checkpoint ("sa_ck0", "sa_ck2/0", "sa_ck3/0",
-- ...), none rewritten
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
-- later changes of a checkpoint do not move the subscription that read it
SELECT eventsource.save_checkpoint('sa_ck', 10);
SELECT eventsource.reset_checkpoint('sa_ck3/1', 1);
SELECT * FROM sa.start_checkpoints WHERE name LIKE 'sa\_ck' OR name LIKE 'sa\_ck3/%'
 ORDER BY name COLLATE "C";
ROLLBACK;
-- a position: resume after it (a checkpoint of that name stays as it is)
BEGIN;
SELECT eventsource.save_checkpoint('sa_n', 12);
SELECT eventsource.save_checkpoint('sa_n007/0', 12);
SELECT sa.note_checkpoints();
SELECT eventsource.create_subscription('sa_n', 'sa.h(eventsource.events)', start_from => '3');
SELECT eventsource.create_subscription('sa_n0', 'sa.h(eventsource.events)', start_from => '0');
SELECT eventsource.create_subscription('sa_n007', 'sa.h(eventsource.events)', start_from => '007',
                                       partitions => 2);
SELECT * FROM sa.start_checkpoints ORDER BY name COLLATE "C";
SELECT * FROM sa.start_positions ORDER BY name COLLATE "C";
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
ROLLBACK;
SELECT * FROM sa.leftovers;

--
-- duplicates (42710) and worker slots (53000)
--
BEGIN;
SELECT eventsource.create_subscription('sa_dup', 'sa.h(eventsource.events)');
SELECT t.try($$SELECT eventsource.create_subscription('sa_dup', 'sa.hb(eventsource.events[])')$$);
-- names are case sensitive
SELECT t.try($$SELECT eventsource.create_subscription('SA_DUP', 'sa.h(eventsource.events)')$$);
ROLLBACK;

-- a committed subscription, paused in the transaction that created it: no
-- worker ever runs it; it takes two worker slots of twelve
BEGIN;
SELECT eventsource.create_subscription('sa_life', 'sa.h(eventsource.events)', partitions => 2);
SELECT eventsource.pause_subscription('sa_life');
COMMIT;
SELECT name, state, partitions FROM eventsource.subscriptions WHERE name LIKE 'sa\_%';
SELECT name, partition, state, pid FROM eventsource.subscription_status
 WHERE name LIKE 'sa\_%' ORDER BY partition;
SELECT t.try($$SELECT eventsource.create_subscription('sa_life', 'sa.h(eventsource.events)')$$);
-- 2 of 12 slots are taken: 11 partitions do not fit, 10 do
SELECT t.try($$SELECT eventsource.create_subscription('sa_big', 'sa.h(eventsource.events)', partitions => 11)$$);
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_big', 'sa.h(eventsource.events)', partitions => 10)$$);
-- the slots the first one will take at commit are not free for a second one
SELECT t.try($$SELECT eventsource.create_subscription('sa_big2', 'sa.h(eventsource.events)')$$);
ROLLBACK;
-- two creations in one transaction whose sum exceeds the 10 free slots: the
-- second gets 53000, counting what the first one will take
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_big', 'sa.h(eventsource.events)', partitions => 6)$$);
SELECT t.try($$SELECT eventsource.create_subscription('sa_big2', 'sa.h(eventsource.events)', partitions => 5)$$);
-- a creation rolled back to its savepoint gives its slots back at once
SAVEPOINT s;
SELECT eventsource.create_subscription('sa_big2', 'sa.h(eventsource.events)', partitions => 4);
ROLLBACK TO SAVEPOINT s;
SELECT t.try($$SELECT eventsource.create_subscription('sa_big3', 'sa.h(eventsource.events)', partitions => 4)$$);
SELECT t.try($$SELECT eventsource.create_subscription('sa_big4', 'sa.h(eventsource.events)')$$);
SELECT name, partitions FROM eventsource.subscriptions WHERE name LIKE 'sa\_big%' ORDER BY name;
ROLLBACK;
-- after ROLLBACK all ten are free again
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_big', 'sa.h(eventsource.events)', partitions => 10)$$);
ROLLBACK;
SELECT name, partition, state, pid FROM eventsource.subscription_status
 WHERE name LIKE 'sa\_%' ORDER BY name, partition;

--
-- pause_subscription / resume_subscription
--
SELECT eventsource.pause_subscription('sa_life');	-- already paused: fine
SELECT state FROM eventsource.subscriptions WHERE name = 'sa_life';
BEGIN;
-- a partition that stopped at an event (written here as a worker would)
UPDATE eventsource.subscription_partitions
   SET state = 'failed', failed_position = 3, failed_event_id = gen_random_uuid(),
       error_message = 'boom', error_sqlstate = 'P0001', failed_at = now()
 WHERE subscription = 'sa_life' AND partition = 1;
SELECT eventsource.resume_subscription('sa_life');
SELECT state, updated_at = now() AS updated_now FROM eventsource.subscriptions WHERE name = 'sa_life';
SELECT partition, state, failed_position, failed_event_id, error_message, error_sqlstate, failed_at
  FROM eventsource.subscription_partitions WHERE subscription = 'sa_life' ORDER BY partition;
SELECT eventsource.resume_subscription('sa_life');	-- already active: fine
SELECT eventsource.pause_subscription('sa_life');
SELECT state FROM eventsource.subscriptions WHERE name = 'sa_life';
ROLLBACK;
SELECT state FROM eventsource.subscriptions WHERE name = 'sa_life';
SELECT t.try($$SELECT eventsource.pause_subscription('sa_nope')$$);
SELECT t.try($$SELECT eventsource.resume_subscription('sa_nope')$$);
SELECT t.try($$SELECT eventsource.pause_subscription(NULL)$$);
SELECT t.try($$SELECT eventsource.resume_subscription(NULL)$$);
SELECT t.try($$SELECT eventsource.pause_subscription('')$$);
SELECT t.try($$SELECT eventsource.resume_subscription('sa_life/0')$$);
SELECT t.try(format('SELECT eventsource.pause_subscription(%L)', repeat('x', 256)));

--
-- reset_subscription: every partition's position, default 0
--
BEGIN;
SELECT eventsource.reset_subscription('sa_life', 25);
SELECT * FROM sa.checkpoints('sa_life');
SELECT partition, checkpointed_at = now() AS checkpointed_now
  FROM eventsource.subscription_partitions WHERE subscription = 'sa_life' ORDER BY partition;
-- the status view reports it
SELECT name, partition, checkpoint FROM eventsource.subscription_status
 WHERE name = 'sa_life' ORDER BY partition;
SELECT eventsource.reset_subscription('sa_life');
SELECT * FROM sa.checkpoints('sa_life');
-- forward past the head is allowed (it resumes after that position)
SELECT eventsource.reset_subscription('sa_life', 1000000);
SELECT * FROM sa.checkpoints('sa_life');
ROLLBACK;
SELECT * FROM sa.checkpoints('sa_life');
SELECT t.try($$SELECT eventsource.reset_subscription('sa_life', -1)$$);
SELECT t.try($$SELECT eventsource.reset_subscription('sa_life', NULL)$$);
SELECT t.try($$SELECT eventsource.reset_subscription(NULL)$$);
SELECT t.try($$SELECT eventsource.reset_subscription(NULL, -1)$$);
SELECT t.try($$SELECT eventsource.reset_subscription('sa_nope')$$);
SELECT t.try($$SELECT eventsource.reset_subscription('sa_nope', -1)$$);
SELECT t.try($$SELECT eventsource.reset_subscription('')$$);
SELECT t.try($$SELECT eventsource.reset_subscription('sa_life/1', 5)$$);
-- the users' checkpoints are not the subscription's, not even those named
-- like its partitions ("sa_life/0", "sa_life/1") or like it ("sa_life"):
-- saving them does not move it, resetting it does not touch them
BEGIN;
SELECT eventsource.save_checkpoint('sa_life/manual', 8);
SELECT eventsource.save_checkpoint('sa_life/0', 8);
SELECT eventsource.save_checkpoint('sa_life/1', 8);
SELECT eventsource.save_checkpoint('sa_life/2', 8);
SELECT eventsource.save_checkpoint('sa_life', 8);
SELECT eventsource.save_checkpoint('sa_life_2', 8);
SELECT * FROM sa.checkpoints('sa_life');
SELECT sa.note_checkpoints();
SELECT eventsource.reset_subscription('sa_life', 2);
SELECT * FROM sa.checkpoints('sa_life');
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
SELECT name, partition, checkpoint FROM eventsource.subscription_status
 WHERE name = 'sa_life' ORDER BY partition;
ROLLBACK;

--
-- retry_dead_letters: marks the subscription's dead letters (all, or the
-- given ids) and returns how many.  The rows are written here, in a
-- transaction that rolls back: no worker sees them.
--
SELECT eventsource.retry_dead_letters('sa_life');	-- none
BEGIN;
SELECT sa.dead_letter('sa_life', 0) AS dl1 \gset
SELECT sa.dead_letter('sa_life', 1) AS dl2 \gset
SELECT sa.dead_letter('sa_life', 1) AS dl3 \gset
SELECT sa.dead_letter('sa_other', 0) AS dl_other \gset
SELECT eventsource.retry_dead_letters('sa_life') AS all_of_them;
SELECT id = :dl1 AS dl1, id = :dl2 AS dl2, id = :dl3 AS dl3, subscription, retry_requested
  FROM eventsource.dead_letters WHERE subscription IN ('sa_life', 'sa_other') ORDER BY id;
UPDATE eventsource.dead_letters SET retry_requested = false WHERE subscription LIKE 'sa\_%';
SELECT eventsource.retry_dead_letters('sa_life', ARRAY[:dl1, :dl3]) AS two;
SELECT id = :dl1 AS dl1, id = :dl2 AS dl2, id = :dl3 AS dl3, subscription, retry_requested
  FROM eventsource.dead_letters WHERE subscription IN ('sa_life', 'sa_other') ORDER BY id;
-- another subscription's id and unknown ids are not counted
SELECT eventsource.retry_dead_letters('sa_life', ARRAY[:dl2, :dl_other, -5, 0]) AS one;
SELECT eventsource.retry_dead_letters('sa_life', '{}') AS none;
SELECT eventsource.retry_dead_letters('sa_life', NULL) AS all_again;
SELECT eventsource.retry_dead_letters('sa_life', ARRAY[:dl1, :dl1]) AS duplicate_id_once;
SELECT count(*) FILTER (WHERE retry_requested) AS requested, count(*) AS dead_letters
  FROM eventsource.dead_letters WHERE subscription = 'sa_other';
ROLLBACK;
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_nope')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_nope', '{1}')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters(NULL)$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life/0')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life', '{1,NULL}')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life', '{NULL}')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life', '{{1,2},{3,4}}')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_nope', '{{1},{2}}')$$);

--
-- read-only transactions: 25006 for every function that writes
--
BEGIN READ ONLY;
SELECT t.try($$SELECT eventsource.create_subscription('sa_ro', 'sa.h(eventsource.events)')$$);
SELECT t.try($$SELECT eventsource.drop_subscription('sa_life')$$);
SELECT t.try($$SELECT eventsource.pause_subscription('sa_life')$$);
SELECT t.try($$SELECT eventsource.resume_subscription('sa_life')$$);
SELECT t.try($$SELECT eventsource.reset_subscription('sa_life', 1)$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life')$$);
ROLLBACK;
SET default_transaction_read_only = on;
SELECT t.try($$SELECT eventsource.create_subscription('sa_ro', 'sa.h(eventsource.events)')$$);
SELECT t.try($$SELECT eventsource.resume_subscription('sa_life')$$);
RESET default_transaction_read_only;
SELECT name, state FROM eventsource.subscriptions WHERE name LIKE 'sa\_%';

--
-- transactions: nothing of a rolled back create, savepoint or PREPARE stays
--
BEGIN;
SELECT eventsource.create_subscription('sa_tx', 'sa.h(eventsource.events)', partitions => 4);
SELECT count(*) AS subscriptions FROM eventsource.subscriptions WHERE name = 'sa_tx';
ROLLBACK;
SELECT (SELECT count(*) FROM eventsource.subscriptions WHERE name = 'sa_tx') AS subscriptions,
       (SELECT count(*) FROM eventsource.subscription_partitions
         WHERE subscription = 'sa_tx') AS partitions,
       (SELECT count(*) FROM eventsource.subscription_status WHERE name = 'sa_tx') AS worker_slots;

BEGIN;
SAVEPOINT s1;
SELECT eventsource.create_subscription('sa_sp', 'sa.h(eventsource.events)', partitions => 2);
ROLLBACK TO SAVEPOINT s1;
SELECT count(*) AS subscriptions FROM eventsource.subscriptions WHERE name = 'sa_sp';
-- the name is free again in the same transaction
SAVEPOINT s2;
SELECT eventsource.create_subscription('sa_sp', 'sa.h(eventsource.events)');
SELECT eventsource.pause_subscription('sa_sp');
RELEASE SAVEPOINT s2;
-- a pause rolled back to its savepoint leaves the subscription as it was
SAVEPOINT s3;
SELECT eventsource.resume_subscription('sa_sp');
ROLLBACK TO SAVEPOINT s3;
SELECT name, state FROM eventsource.subscriptions WHERE name = 'sa_sp';
-- a drop rolled back to its savepoint, too
SAVEPOINT s4;
SELECT eventsource.drop_subscription('sa_sp');
ROLLBACK TO SAVEPOINT s4;
COMMIT;
SELECT name, state, partitions FROM eventsource.subscriptions WHERE name = 'sa_sp';
SELECT * FROM sa.partitions('sa_sp');
SELECT * FROM sa.checkpoints('sa_sp');
SELECT name, partition, state FROM eventsource.subscription_status
 WHERE name LIKE 'sa\_%' ORDER BY name, partition;

-- PREPARE TRANSACTION of a transaction that changed subscriptions: 0A000,
-- and the transaction is rolled back
BEGIN;
SELECT eventsource.create_subscription('sa_2pc', 'sa.h(eventsource.events)');
SELECT eventsource.pause_subscription('sa_2pc');
PREPARE TRANSACTION 'sa_create';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
SELECT count(*) AS subscriptions FROM eventsource.subscriptions WHERE name = 'sa_2pc';
BEGIN;
SELECT eventsource.pause_subscription('sa_sp');
PREPARE TRANSACTION 'sa_pause';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
BEGIN;
SELECT eventsource.resume_subscription('sa_sp');
PREPARE TRANSACTION 'sa_resume';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
BEGIN;
SELECT eventsource.reset_subscription('sa_sp', 2);
PREPARE TRANSACTION 'sa_reset';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
BEGIN;
SELECT eventsource.drop_subscription('sa_sp');
PREPARE TRANSACTION 'sa_drop';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
BEGIN;
SELECT sa.dead_letter('sa_sp', 0) IS NOT NULL AS inserted;
SELECT eventsource.retry_dead_letters('sa_sp');
PREPARE TRANSACTION 'sa_retry';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- a create that was made in a savepoint and released is refused too
BEGIN;
SAVEPOINT s;
SELECT eventsource.create_subscription('sa_2pc', 'sa.h(eventsource.events)');
RELEASE SAVEPOINT s;
PREPARE TRANSACTION 'sa_released';
SELECT :'LAST_ERROR_SQLSTATE' AS sqlstate;
-- nothing left to tell the workers: PREPARE is fine
BEGIN;
SAVEPOINT s;
SELECT eventsource.create_subscription('sa_2pc', 'sa.h(eventsource.events)');
ROLLBACK TO SAVEPOINT s;
SELECT eventsource.retry_dead_letters('sa_sp') AS marked;
PREPARE TRANSACTION 'sa_nothing';
COMMIT PREPARED 'sa_nothing';
SELECT count(*) AS prepared FROM pg_prepared_xacts;
SELECT name, state FROM eventsource.subscriptions WHERE name LIKE 'sa\_%' ORDER BY name;
SELECT * FROM sa.checkpoints('sa_sp');
SELECT count(*) AS dead_letters FROM eventsource.dead_letters WHERE subscription LIKE 'sa\_%';
-- and the workers were told nothing: no slot for sa_2pc, sa_sp still paused
SELECT name, partition, state, pid FROM eventsource.subscription_status
 WHERE name LIKE 'sa\_%' ORDER BY name, partition;

--
-- drop_subscription: the subscription, its partitions (with their
-- positions) and its dead letters go; nothing else.  The users' checkpoints
-- stay, also those named like it ("name", "name/k").
--
SELECT t.try($$SELECT eventsource.drop_subscription('sa_nope')$$);
SELECT t.try($$SELECT eventsource.drop_subscription(NULL)$$);
SELECT t.try($$SELECT eventsource.drop_subscription('')$$);
SELECT t.try($$SELECT eventsource.drop_subscription('sa_life/0')$$);
SELECT t.try(format('SELECT eventsource.drop_subscription(%L)', repeat('x', 256)));
BEGIN;
SELECT sa.dead_letter('sa_life', 0) IS NOT NULL AS inserted;
SELECT sa.dead_letter('sa_life', 1) IS NOT NULL AS inserted;
SELECT sa.dead_letter('sa_sp', 0) IS NOT NULL AS inserted;
SELECT sa.dead_letter('sa_lifeline', 0) IS NOT NULL AS inserted;
SELECT eventsource.save_checkpoint('sa_lifeline', 3);
SELECT eventsource.save_checkpoint('sa_life_2', 3);
SELECT eventsource.save_checkpoint('sa_life/manual', 3);
SELECT eventsource.save_checkpoint('sa_life/02', 3);
SELECT eventsource.save_checkpoint('sa_life/2', 3);
SELECT eventsource.save_checkpoint('sa_life', 5);
SELECT eventsource.save_checkpoint('sa_life/0', 6);
SELECT eventsource.save_checkpoint('sa_sp', 7);
SELECT eventsource.save_checkpoint('sa_sp/0', 7);
SELECT sa.note_checkpoints();
COMMIT;
BEGIN;
SELECT id AS old_id FROM eventsource.subscriptions WHERE name = 'sa_life' \gset
SELECT eventsource.drop_subscription('sa_life');
SELECT count(*) AS subscriptions FROM eventsource.subscriptions WHERE name = 'sa_life';
SELECT count(*) AS partitions FROM eventsource.subscription_partitions WHERE subscription = 'sa_life';
SELECT count(*) AS dead_letters FROM eventsource.dead_letters WHERE subscription = 'sa_life';
-- the users' checkpoints, look-alikes and namesakes, all stay as they were
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
SELECT t.try($$SELECT eventsource.drop_subscription('sa_life')$$);
SELECT t.try($$SELECT eventsource.pause_subscription('sa_life')$$);
SELECT t.try($$SELECT eventsource.retry_dead_letters('sa_life')$$);
-- the name can be used again at once: a new subscription, with a new id
-- (its partition's row carries it), starting where it is told
SELECT eventsource.create_subscription('sa_life', 'sa.hb(eventsource.events[])', start_from => '4');
SELECT eventsource.pause_subscription('sa_life');
SELECT name, batch_handler, partitions, state, id <> :old_id AS new_id
  FROM eventsource.subscriptions WHERE name = 'sa_life';
SELECT p.partition, p.subscription_id = s.id AS subscription_id_matches
  FROM eventsource.subscriptions s
  JOIN eventsource.subscription_partitions p ON p.subscription = s.name
 WHERE s.name = 'sa_life' ORDER BY p.partition;
SELECT count(*) AS rows_of_the_dropped_one
  FROM eventsource.subscription_partitions WHERE subscription_id = :old_id;
SELECT * FROM sa.checkpoints('sa_life');
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
COMMIT;
-- the same across transactions: a committed drop, then a new subscription
-- of that name (paused where it is created: no worker runs it), which
-- starts from the users' checkpoints the drop left alone ("sa_life/0" for
-- partition 0; no "sa_life/1": "sa_life" for partition 1)
SELECT id AS old_id FROM eventsource.subscriptions WHERE name = 'sa_life' \gset
SELECT eventsource.drop_subscription('sa_life');
BEGIN;
SELECT eventsource.create_subscription('sa_life', 'sa.h(eventsource.events)', start_from => 'checkpoint',
                                       partitions => 2);
SELECT eventsource.pause_subscription('sa_life');
COMMIT;
SELECT s.id <> :old_id AS new_id, count(*) AS partitions,
       bool_and(p.subscription_id = s.id) AS subscription_id_matches
  FROM eventsource.subscriptions s
  JOIN eventsource.subscription_partitions p ON p.subscription = s.name
 WHERE s.name = 'sa_life' GROUP BY s.id;
SELECT * FROM sa.checkpoints('sa_life');
SELECT eventsource.drop_subscription('sa_life');
SELECT eventsource.drop_subscription('sa_sp');
-- what was not theirs is still there, untouched
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
SELECT subscription, partition FROM eventsource.dead_letters WHERE subscription LIKE 'sa\_%';
DELETE FROM eventsource.checkpoints WHERE name LIKE 'sa\_%';
DELETE FROM eventsource.dead_letters WHERE subscription LIKE 'sa\_%';

-- create and drop in one transaction
BEGIN;
SELECT eventsource.create_subscription('sa_brief', 'sa.h(eventsource.events)', partitions => 3);
SELECT eventsource.drop_subscription('sa_brief');
COMMIT;

--
-- a subscription that runs: dropping it removes its rows at once; its
-- workers (whatever they did meanwhile) leave and free their slots.  The
-- users' checkpoints it started from, and those named like it, are read
-- once at creation and never written, by the workers neither.
--
SELECT eventsource.save_checkpoint('sa_live', 1);
SELECT eventsource.save_checkpoint('sa_live/0', 2);
SELECT eventsource.save_checkpoint('sa_live/1', 3);
SELECT sa.note_checkpoints();
BEGIN;
SELECT eventsource.create_subscription('sa_live', 'sa.h(eventsource.events)', start_from => 'checkpoint',
                                       partitions => 2);
-- no worker runs before the commit
SELECT * FROM sa.checkpoints('sa_live');
COMMIT;
-- give the workers a chance to start and to process events, so that the
-- drop below usually meets running workers that have moved their positions;
-- the outcome is not part of the output
SELECT t.wait_until($$(SELECT count(*) FROM eventsource.subscription_status
                        WHERE name = 'sa_live' AND pid IS NOT NULL) = 2
                  AND (SELECT count(*) FROM eventsource.subscription_partitions
                        WHERE subscription = 'sa_live' AND position > 3) = 2$$, 10) IS NOT NULL AS waited;
SELECT eventsource.drop_subscription('sa_live');
SELECT subscriptions, partitions, dead_letters FROM sa.leftovers;
-- the status rows of a dropped subscription go with its rows, but its
-- workers keep their slots until they have drained and exited: probe the
-- free slots themselves, with a creation of twelve partitions that
-- sa.check rolls back
SELECT t.wait_until($$sa.check($q$SELECT eventsource.create_subscription('sa_probe', 'sa.h(eventsource.events)',
                                                                 partitions => 12)$q$) = 'ok'$$) AS slots_freed;
-- the workers are gone; the users' checkpoints are as they were
SELECT * FROM sa.user_checkpoints ORDER BY name COLLATE "C";
DELETE FROM eventsource.checkpoints WHERE name LIKE 'sa\_%';

--
-- nothing left behind: no rows, no worker slot, no prepared transaction;
-- all twelve slots are free again.  The users' checkpoints of this suite
-- were deleted by the suite itself.
--
SELECT * FROM sa.leftovers;
SELECT count(*) AS user_checkpoints FROM eventsource.checkpoints WHERE name LIKE 'sa\_%';
SELECT count(*) AS prepared FROM pg_prepared_xacts;
BEGIN;
SELECT t.try($$SELECT eventsource.create_subscription('sa_all', 'sa.h(eventsource.events)', partitions => 12)$$);
ROLLBACK;
SELECT * FROM sa.leftovers;

DROP SCHEMA sa CASCADE;
REVOKE ALL ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
    interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)
    FROM regress_es_alice;
REVOKE ALL ON FUNCTION eventsource.drop_subscription(text), eventsource.pause_subscription(text),
    eventsource.resume_subscription(text), eventsource.reset_subscription(text, bigint),
    eventsource.retry_dead_letters(text, bigint[])
    FROM regress_es_carol;
REVOKE ALL ON SCHEMA t FROM regress_es_alice, regress_es_bob, regress_es_carol;
DROP ROLE regress_es_alice;
DROP ROLE regress_es_bob;
DROP ROLE regress_es_carol;
