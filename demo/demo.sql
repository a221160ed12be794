-- The reference scenario, in SQL: an Order aggregate appended with expected
-- versions, a conflict, a snapshot and load(), a global read, and two
-- projections ("orders" and "customers") kept by subscriptions running in
-- the database, with one poisoned event going to the dead letters; then the
-- health checks a Kubernetes probe would run.
--
-- Run by scripts/demo.sh in a throwaway database.

\set ON_ERROR_STOP 1
\pset footer off
SET client_min_messages = notice;

\echo
\echo '== 1. The store and the read models'
CREATE EXTENSION eventsource;
CREATE SCHEMA shop;

CREATE TABLE shop.orders (
    order_id    text PRIMARY KEY,
    customer_id text NOT NULL,
    status      text NOT NULL,
    total       numeric NOT NULL,
    tracking    text,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE shop.customers (
    customer_id text PRIMARY KEY,
    orders      integer NOT NULL,
    total       numeric NOT NULL
);

-- Projection "orders": one row per order with its status.
CREATE FUNCTION shop.project_orders(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE e.event_type
    WHEN 'OrderCreated' THEN
        INSERT INTO shop.orders VALUES (e.stream_id, e.data->>'customer_id', 'created',
                                        (e.data->>'total')::numeric, NULL, e.recorded_at);
    WHEN 'OrderShipped' THEN
        UPDATE shop.orders SET status = 'shipped', tracking = e.data->>'tracking_number',
                               updated_at = e.recorded_at
         WHERE order_id = e.stream_id;
    ELSE NULL;
    END CASE;
END $$;

-- Projection "customers": orders and total per customer.  It refuses a
-- negative total: that event will end up in the dead letters.
CREATE FUNCTION shop.project_customers(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'OrderCreated' THEN
        IF (e.data->>'total')::numeric < 0 THEN
            RAISE EXCEPTION 'order % has a negative total', e.stream_id
                USING ERRCODE = 'check_violation';
        END IF;
        INSERT INTO shop.customers VALUES (e.data->>'customer_id', 1, (e.data->>'total')::numeric)
        ON CONFLICT (customer_id) DO UPDATE
           SET orders = shop.customers.orders + 1,
               total = shop.customers.total + excluded.total;
    END IF;
END $$;

\echo
\echo '== 2. Subscriptions: the projections follow the log from inside the database'
SELECT eventsource.create_subscription('orders', 'shop.project_orders(eventsource.events)');
SELECT eventsource.create_subscription('customers', 'shop.project_customers(eventsource.events)',
                                       max_retries => 2, retry_backoff => '50 ms');

-- The Order aggregate: its state is a fold over its events (from a snapshot
-- on), and its commands check that state and append with the version they saw.
CREATE FUNCTION shop.order_state(p_order text) RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'version', l->'version',
        'status', COALESCE(
            (SELECT CASE ev->>'type' WHEN 'OrderShipped' THEN 'shipped' ELSE 'created' END
               FROM jsonb_array_elements(l->'events') ev ORDER BY (ev->>'version')::int DESC LIMIT 1),
            l->'snapshot'->'state'->>'status',
            'draft'))
      FROM eventsource.load(p_order) l
$$;

CREATE FUNCTION shop.create_order(p_order text, p_customer text, p_total numeric)
RETURNS bigint LANGUAGE sql AS $$
    SELECT first_position FROM eventsource.append_event(
        p_order, 0, 'OrderCreated',
        jsonb_build_object('customer_id', p_customer, 'total', p_total),
        jsonb_build_object('correlation_id', 'checkout-' || p_order))
$$;

CREATE FUNCTION shop.ship_order(p_order text, p_tracking text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s jsonb := shop.order_state(p_order);
BEGIN
    IF s->>'status' = 'shipped' THEN
        RAISE EXCEPTION 'order % is already shipped', p_order USING ERRCODE = 'P0001';
    ELSIF s->>'status' = 'draft' THEN
        RAISE EXCEPTION 'order % does not exist', p_order USING ERRCODE = 'P0001';
    END IF;
    RETURN (SELECT stream_version FROM eventsource.append_event(
        p_order, (s->>'version')::bigint, 'OrderShipped',
        jsonb_build_object('tracking_number', p_tracking)));
END $$;

\echo
\echo '== 3. Commands: three orders created, one shipped'
SELECT shop.create_order('Order-1f3e', 'alice', 120.00) AS position;
SELECT shop.create_order('Order-2a7b', 'bob', 35.50) AS position;
SELECT shop.create_order('Order-3c9d', 'alice', 15.25) AS position;
SELECT shop.ship_order('Order-1f3e', 'TRK-001') AS version;
SELECT shop.order_state('Order-1f3e') AS "Order-1f3e";

\echo
\echo '== 4. The aggregate refuses to ship twice'
DO $$
BEGIN
    PERFORM shop.ship_order('Order-1f3e', 'TRK-002');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'refused: % (SQLSTATE %)', SQLERRM, SQLSTATE;
END $$;

\echo
\echo '== 5. Optimistic concurrency: two writers saw version 1 of Order-2a7b'
SELECT stream_version FROM eventsource.append_event('Order-2a7b', 1, 'OrderShipped',
                                                    '{"tracking_number": "TRK-101"}');
DO $$
BEGIN
    PERFORM eventsource.append_event('Order-2a7b', 1, 'OrderShipped', '{"tracking_number": "TRK-102"}');
EXCEPTION WHEN SQLSTATE 'ES001' THEN
    DECLARE d text;
    BEGIN
        GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
        RAISE NOTICE 'conflict: % (SQLSTATE %) %', SQLERRM, SQLSTATE, d;
    END;
END $$;
\echo 'The second writer re-reads the stream and decides again: already shipped.'
SELECT shop.order_state('Order-2a7b') AS "Order-2a7b";

\echo
\echo '== 6. A retried request is idempotent: same event id, same result, nothing written twice'
SELECT * FROM eventsource.append_event('Order-4e5f', 0, 'OrderCreated',
    '{"customer_id": "carol", "total": 60}', '{}', 'b1f4c6e0-5a39-4c2f-9d0b-2f6f0e1d7a11');
SELECT * FROM eventsource.append_event('Order-4e5f', 0, 'OrderCreated',
    '{"customer_id": "carol", "total": 60}', '{}', 'b1f4c6e0-5a39-4c2f-9d0b-2f6f0e1d7a11');

\echo
\echo '== 7. A snapshot, then load(): the snapshot plus only the events after it'
SELECT eventsource.save_snapshot('Order-1f3e', 1, '{"status": "created", "total": 120.00}');
SELECT jsonb_pretty(eventsource.load('Order-1f3e') #- '{events,0,recorded_at}' #- '{events,0,id}') AS load;

\echo
\echo '== 8. A poisoned event (negative total) and a few more orders'
SELECT shop.create_order('Order-5bad', 'mallory', -10) AS position;
SELECT shop.create_order('Order-6d1a', 'bob', 42.00) AS position;

\echo
\echo '== 9. The global log, read in position order up to the safe horizon'
SELECT global_position, stream_id, stream_version, event_type
  FROM eventsource.read_all(0, 20);

\echo
\echo '== 10. Read-your-writes: wait until both projections have caught up'
SELECT eventsource.wait_for_subscription('orders', eventsource.head_position(), '10 seconds') AS orders_caught_up,
       eventsource.wait_for_subscription('customers', eventsource.head_position(), '10 seconds') AS customers_caught_up;

\echo
\echo '== 11. The read models'
SELECT order_id, customer_id, status, total, tracking FROM shop.orders ORDER BY order_id;
SELECT * FROM shop.customers ORDER BY customer_id;

\echo
\echo '== 12. The poisoned event is parked in the dead letters, after its retries'
SELECT subscription, stream_id, event_type, error_sqlstate, error_category, retry_count,
       error_message
  FROM eventsource.dead_letters;

\echo
\echo '== 13. Monitoring: the status view (one row per subscription partition)'
SELECT name, state, checkpoint, head_position, lag_events, events_processed,
       events_failed, events_retried, dead_letters, health
  FROM eventsource.subscription_status;

\echo
\echo '== 14. health(), readiness() and liveness(), as a Kubernetes probe reads them'
SELECT jsonb_pretty(eventsource.health() - 'timestamp' - 'uptime_seconds') AS health;
SELECT eventsource.readiness() - 'timestamp' AS readiness,
       eventsource.liveness() - 'timestamp' AS liveness;
