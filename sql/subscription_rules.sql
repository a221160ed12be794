--
-- subscription_rules: the columns of eventsource.subscriptions obey the rules
-- of create_subscription()'s arguments (issue 9), and filter arrays have a
-- size limit (54000 beyond 10,000 elements) and are matched by hash.
--
-- Subscriptions here are created paused in their creating transaction, so
-- no worker ever runs them; every one is named sr_*.
--
SET client_min_messages = warning;
CREATE SCHEMA sr;
CREATE FUNCTION sr.h(e eventsource.events) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END $$;
BEGIN;
SELECT eventsource.create_subscription('sr_ok', 'sr.h(eventsource.events)');
SELECT eventsource.pause_subscription('sr_ok');
COMMIT;

-- the constraints, one per column
SELECT conname, convalidated FROM pg_catalog.pg_constraint
 WHERE conrelid = 'eventsource.subscriptions'::regclass AND contype = 'c'
 ORDER BY conname;

-- every value create_subscription() refuses, the table refuses too (23514;
-- the detail, which shows the row and its timestamps, is left out)
SELECT u AS "update",
       split_part(t.try(format('UPDATE eventsource.subscriptions SET %s WHERE name = %L', u, 'sr_ok')), ' | ', 1) AS result
  FROM (VALUES
    ('batch_size = 0'), ('batch_size = 10001'), ('batch_size = -1'),
    ('max_retries = -1'), ('max_retries = 101'),
    ('circuit_breaker_threshold = -1'), ('circuit_breaker_threshold = 1000001'),
    ('partitions = 0'), ('partitions = 1025'),
    ($$checkpoint_interval = '0'$$), ($$checkpoint_interval = '0.5 ms'$$),
    ($$checkpoint_interval = '8 days'$$), ($$checkpoint_interval = '-1 s'$$),
    ($$processing_timeout = '0'$$), ($$processing_timeout = '1 mon'$$),
    ($$retry_backoff = '-1 ms'$$), ($$retry_backoff = '0.1 ms'$$),
    ($$circuit_breaker_reset = '0'$$),
    ($$event_types = '{A,NULL}'$$), ($$event_types = '{{A},{B}}'$$),
    ($$categories = ARRAY[NULL]::text[]$$),
    ('event_types = (SELECT array_agg(i::text) FROM generate_series(1, 10001) i)'),
    ($$start_from = 'soon'$$), ($$start_from = '99999999999999999999'$$),
    ('start_position = -1'),
    ($$name = 'sr/1'$$), ($$name = ''$$), ($$name = repeat('n', 251)$$)
  ) v(u);

-- and what it accepts, the table accepts
SELECT u AS "update",
       split_part(t.try(format('UPDATE eventsource.subscriptions SET %s WHERE name = %L', u, 'sr_ok')), ' | ', 1) AS result
  FROM (VALUES
    ('batch_size = 10000'), ('max_retries = 0'), ('circuit_breaker_threshold = 0'),
    ($$retry_backoff = '0'$$), ($$retry_backoff = '1 ms'$$), ($$processing_timeout = '7 days'$$),
    ($$checkpoint_interval = '1 day -23 hours'$$),
    ($$event_types = '{}'$$), ('event_types = (SELECT array_agg(i::text) FROM generate_series(1, 10000) i)'),
    ('categories = NULL'), ($$start_from = '42'$$), ($$start_from = 'end'$$)
  ) v(u);

-- ---------------------------------------------------------------------------
-- filter arrays: at most 10,000 elements
-- ---------------------------------------------------------------------------
SELECT t.try($$SELECT count(*) FROM eventsource.read_all(
    event_types => (SELECT array_agg('T' || i) FROM generate_series(1, 10001) i))$$);
SELECT t.try($$SELECT count(*) FROM eventsource.read_all(
    categories => (SELECT array_agg('C' || i) FROM generate_series(1, 10001) i))$$);
SELECT t.try($$SELECT eventsource.create_subscription('sr_big', 'sr.h(eventsource.events)',
    event_types => (SELECT array_agg('T' || i) FROM generate_series(1, 10001) i))$$);
SELECT t.try($$SELECT eventsource.create_subscription('sr_big', 'sr.h(eventsource.events)',
    categories => (SELECT array_agg('C' || i) FROM generate_series(1, 10001) i))$$);

-- 10,000 are matched exactly (through a hash: the cost per event does not
-- grow with the array; README, read_all, gives the numbers)
SELECT eventsource.append('SrOrder-1', -1, '[{"type": "SrA", "data": {}}, {"type": "SrB", "data": {}},
    {"type": "SrC", "data": {}}]') IS NOT NULL AS appended;
SELECT event_type FROM eventsource.read_all(max_count => 100000,
    event_types => (SELECT array_agg('T' || i) FROM generate_series(1, 9998) i) || ARRAY['SrC', 'SrA'])
 WHERE stream_id = 'SrOrder-1' ORDER BY global_position;
SELECT count(*) FROM eventsource.read_all(max_count => 100000,
    categories => (SELECT array_agg('C' || i) FROM generate_series(1, 9999) i) || ARRAY['SrOrder'])
 WHERE stream_id = 'SrOrder-1';
SELECT count(*) AS matched_none FROM eventsource.read_all(max_count => 100000, event_types => '{}');

SELECT eventsource.drop_subscription('sr_ok');
DROP SCHEMA sr CASCADE;
