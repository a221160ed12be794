--
-- append / append_event: expected versions, batches, idempotent retries,
-- immutability of the log.
--
SET client_min_messages = warning;

-- expected version 0: the stream must not exist
SELECT * FROM eventsource.append('Order-1', 0,
    '[{"type": "OrderCreated", "data": {"customer_id": "c1", "total": 10}}]');
SELECT t.try($$SELECT eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {}}]')$$);

-- n > 0: exactly the current version
SELECT * FROM eventsource.append_event('Order-1', 1, 'OrderShipped', '{"tracking_number": "T1"}');
SELECT t.try($$SELECT eventsource.append_event('Order-1', 1, 'OrderShipped', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Order-1', 3, 'OrderShipped', '{}')$$);

-- -2: the stream must exist
SELECT t.try($$SELECT eventsource.append_event('Order-2', -2, 'OrderCreated', '{}')$$);
SELECT * FROM eventsource.append_event('Order-1', -2, 'OrderNoted', '{"note": "x"}');

-- -1 and NULL: any
SELECT * FROM eventsource.append_event('Order-2', -1, 'OrderCreated', '{"total": 5}');
SELECT * FROM eventsource.append_event('Order-2', NULL, 'OrderNoted', '{}');

-- anything else is not a version
SELECT t.try($$SELECT eventsource.append_event('Order-2', -3, 'OrderNoted', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Order-2', -9223372036854775808, 'OrderNoted', '{}')$$);
SELECT t.try($$SELECT eventsource.append_event('Order-2', 9223372036854775807, 'OrderNoted', '{}')$$);

-- the full error, as a client sees it (the SQLSTATE is ES001, shown above)
\set SHOW_CONTEXT never
SELECT eventsource.append_event('Order-2', 7, 'OrderNoted', '{}');
SELECT eventsource.append_event('Order-9', -2, 'OrderNoted', '{}');

-- a batch: dense versions, increasing positions, one call
SELECT * FROM eventsource.append('Cart-1', 0, '[
    {"type": "CartOpened", "data": {}},
    {"type": "ItemAdded", "data": {"sku": "a"}, "metadata": {"correlation_id": "k1"}},
    {"type": "ItemAdded", "data": {"sku": "b"}, "metadata": null}
]');
SELECT stream_version, event_type, data, metadata
  FROM eventsource.read_stream('Cart-1');
SELECT count(DISTINCT global_position) = 3 AS distinct_positions,
       bool_and(global_position > 0) AS positive
  FROM eventsource.read_stream('Cart-1');

-- a failing batch writes nothing (atomic)
SELECT count(*) AS before FROM eventsource.events \gset
SELECT t.try($$SELECT eventsource.append('Cart-1', 3, '[{"type": "ItemAdded", "data": {}}, {"type": "", "data": {}}]')$$);
SELECT count(*) = :before AS unchanged, eventsource.stream_version('Cart-1') FROM eventsource.events;

-- generated ids are time-ordered UUIDs (version 7)
SELECT bool_and(substr(event_id::text, 15, 1) = '7') AS uuid_v7 FROM eventsource.events;

-- JSON null data is data; metadata defaults to {}
SELECT * FROM eventsource.append_event('Misc', -1, 'Nothing', 'null');
SELECT * FROM eventsource.append_event('Misc', -1, 'Nothing2', '[]', NULL);
SELECT stream_version, data, metadata FROM eventsource.read_stream('Misc');

-- category of a stream: before the first '-', else the whole id
SELECT id, eventsource.category(id)
  FROM (VALUES ('Order-1f3e'), ('Order-a-b'), ('Misc'), ('-x'), ('x-')) v(id);

-- stream_partition: FNV-1a 64 of the UTF-8 bytes, mod n (documented; stable)
SELECT id, eventsource.stream_partition(id, 1) AS p1, eventsource.stream_partition(id, 4) AS p4,
       eventsource.stream_partition(id, 7) AS p7, eventsource.stream_partition(id, 1024) AS p1024
  FROM (VALUES ('Order-1'), ('Order-2'), ('Cart-1'), ('a'), ('Ünïcode-ß')) v(id);

--
-- idempotent retries
--
SELECT * FROM eventsource.append('Pay-1', 0, '[
    {"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}},
    {"id": "22222222-2222-4222-8222-222222222222", "type": "PaymentDone", "data": {}}
]');
SELECT count(*) AS n FROM eventsource.events \gset
-- the exact retry returns the original result and writes nothing
SELECT * FROM eventsource.append('Pay-1', 0, '[
    {"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}},
    {"id": "22222222-2222-4222-8222-222222222222", "type": "PaymentDone", "data": {}}
]');
-- also with "any", and also after the stream moved on
SELECT * FROM eventsource.append_event('Pay-1', 2, 'PaymentSettled', '{}');
SELECT * FROM eventsource.append('Pay-1', -1, '[
    {"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}},
    {"id": "22222222-2222-4222-8222-222222222222", "type": "PaymentDone", "data": {}}
]');
SELECT * FROM eventsource.append_event('Pay-1', 0, 'PaymentStarted', '{}', '{}',
    '11111111-1111-4111-8111-111111111111');
SELECT count(*) - :n AS new_rows FROM eventsource.events;
-- -2 accepts a retry only if the stream existed before the original call
SELECT t.try($$SELECT eventsource.append_event('Pay-1', -2, 'PaymentStarted', '{}', '{}', '11111111-1111-4111-8111-111111111111')$$);
SELECT * FROM eventsource.append_event('Pay-1', -2, 'PaymentDone', '{}', '{}', '22222222-2222-4222-8222-222222222222');
-- any other reuse of a stored id is ES002
SELECT t.try($$SELECT eventsource.append('Pay-1', 3, '[{"id": "22222222-2222-4222-8222-222222222222", "type": "PaymentDone", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('Pay-1', 0, '[{"id": "22222222-2222-4222-8222-222222222222", "type": "PaymentDone", "data": {}}, {"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('Pay-1', -1, '[{"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}}, {"type": "New", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('Pay-2', 0, '[{"id": "11111111-1111-4111-8111-111111111111", "type": "PaymentStarted", "data": {}}]')$$);
SELECT t.try($$SELECT eventsource.append('Pay-3', 0, '[{"id": "33333333-3333-4333-8333-333333333333", "type": "A", "data": {}}, {"id": "33333333-3333-4333-8333-333333333333", "type": "B", "data": {}}]')$$);
SELECT count(*) - :n AS new_rows FROM eventsource.events;

--
-- the log is append-only
--
SELECT t.try($$INSERT INTO eventsource.events VALUES (999, 'X', 1, gen_random_uuid(), 'T', '{}', '{}', now())$$);
SELECT t.try($$UPDATE eventsource.events SET data = '{}' WHERE stream_id = 'Order-1'$$);
SELECT t.try($$DELETE FROM eventsource.events WHERE stream_id = 'Order-1'$$);
SELECT t.try($$TRUNCATE eventsource.events$$);
SELECT t.try($$UPDATE eventsource.events SET data = '{}' WHERE false$$);
-- COPY is only for restoring a dump into an empty store
COPY eventsource.events FROM stdin;
999	X-1	1	b7b4a3a0-0000-4000-8000-000000000001	T	{}	{}	2026-01-01 00:00:00+00
\.
SELECT count(*) - :n AS new_rows FROM eventsource.events;

--
-- transactions: savepoints, read-only, PREPARE
--
SELECT eventsource.head_position() AS head0 \gset
BEGIN;
SAVEPOINT s;
SELECT stream_version FROM eventsource.append_event('Sp-1', 0, 'E', '{}');
ROLLBACK TO SAVEPOINT s;
-- the rolled-back position does not hold the horizon back
SELECT eventsource.head_position() > :head0 AS head_moved_past_gap;
SELECT stream_version FROM eventsource.append_event('Sp-1', 0, 'E', '{}');
-- inside the appending transaction the horizon stays below its own position
SELECT eventsource.head_position() < max(global_position) AS head_below_own_event
  FROM eventsource.events;
COMMIT;
SELECT stream_version, global_position > :head0 + 1 AS after_gap FROM eventsource.read_stream('Sp-1');
SELECT eventsource.head_position() = max(global_position) AS head_is_last FROM eventsource.events;

BEGIN READ ONLY;
SELECT t.try($$SELECT eventsource.append_event('Ro-1', 0, 'E', '{}')$$);
ROLLBACK;

BEGIN;
SELECT stream_version FROM eventsource.append_event('Prep-1', 0, 'E', '{}');
PREPARE TRANSACTION 'es_prep';
SELECT count(*) FROM pg_prepared_xacts;
SELECT eventsource.stream_version('Prep-1');
-- a transaction that did not append can be prepared
BEGIN;
SELECT eventsource.stream_version('Order-1');
PREPARE TRANSACTION 'es_prep2';
COMMIT PREPARED 'es_prep2';
