-- Least privilege: a role that may only EXECUTE the append/read functions
-- appends and reads through them, but cannot touch the tables directly; a
-- reader cannot append; PUBLIC gets only the pure helpers.
BEGIN;
SELECT plan(30);

CREATE ROLE es_writer;
CREATE ROLE es_reader;
CREATE ROLE es_nobody;
GRANT EXECUTE ON FUNCTION
    eventsource.append(text, bigint, jsonb),
    eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[]),
    eventsource.stream_version(text),
    eventsource.load(text, integer),
    eventsource.save_snapshot(text, bigint, jsonb, integer)
    TO es_writer;
GRANT EXECUTE ON FUNCTION
    eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_all(bigint, integer, text[], text[]),
    eventsource.head_position(),
    eventsource.load(text, integer),
    eventsource.get_checkpoint(text),
    eventsource.save_checkpoint(text, bigint)
    TO es_reader;

-- PUBLIC
SELECT ok(NOT has_function_privilege('public', 'eventsource.append(text,bigint,jsonb)', 'EXECUTE'),
    'PUBLIC cannot append');
SELECT ok(NOT has_function_privilege('public', 'eventsource.read_all(bigint,integer,text[],text[])', 'EXECUTE'),
    'PUBLIC cannot read the log');
SELECT ok(NOT has_function_privilege('public', 'eventsource.reset_checkpoint(text,bigint)', 'EXECUTE'),
    'PUBLIC cannot reset checkpoints');
SELECT ok(has_function_privilege('public', 'eventsource.stream_partition(text,integer)', 'EXECUTE'),
    'PUBLIC may use stream_partition');
SELECT ok(NOT has_function_privilege('public', 'eventsource.erase_stream(text,text[],bigint)', 'EXECUTE')
          AND NOT has_function_privilege('public', 'eventsource.erase_by_metadata(text,text,text[],integer)', 'EXECUTE'),
    'PUBLIC cannot erase');
SELECT ok(NOT has_table_privilege('public', 'eventsource.events', 'SELECT'), 'PUBLIC cannot read the table');
SELECT ok(NOT has_sequence_privilege('public', 'eventsource.events_global_position_seq', 'USAGE'),
    'PUBLIC cannot use the position sequence');

-- the writer
SET ROLE es_writer;
SELECT is((SELECT stream_version FROM eventsource.append_event('Priv-1', 0, 'Created', '{}')), 1::bigint,
    'writer appends through the function');
SELECT is((SELECT stream_version FROM eventsource.append('Priv-1', 1, '[{"type": "Shipped", "data": {}}]')), 2::bigint,
    'writer appends a batch');
SELECT is((SELECT count(*)::int FROM eventsource.read_stream('Priv-1')), 2, 'writer reads the stream');
SELECT is((eventsource.load('Priv-1')->>'version')::int, 2, 'writer loads the aggregate');
SELECT lives_ok($$SELECT eventsource.save_snapshot('Priv-1', 2, '{"status": "shipped"}')$$, 'writer saves a snapshot');
SELECT throws_ok($$INSERT INTO eventsource.events VALUES (1, 'X', 1, gen_random_uuid(), 'T', '{}', '{}', now())$$,
    '42501', NULL, 'writer cannot insert into the table');
SELECT throws_ok($$UPDATE eventsource.events SET data = '{}'$$, '42501', NULL, 'writer cannot update');
SELECT throws_ok($$DELETE FROM eventsource.events$$, '42501', NULL, 'writer cannot delete');
SELECT throws_ok($$TRUNCATE eventsource.events$$, '42501', NULL, 'writer cannot truncate');
SELECT throws_ok($$SELECT count(*) FROM eventsource.events$$, '42501', NULL, 'writer cannot read the table directly');
SELECT throws_ok($$DELETE FROM eventsource.snapshots$$, '42501', NULL, 'writer cannot delete snapshots');
SELECT throws_ok($$SELECT nextval('eventsource.events_global_position_seq')$$, '42501', NULL,
    'writer cannot take positions from the sequence');
SELECT throws_ok($$SELECT eventsource.reset_checkpoint('x')$$, '42501', NULL, 'writer cannot reset checkpoints');
SELECT throws_ok($$SELECT eventsource.erase_stream('Priv-1')$$, '42501', NULL, 'writer cannot erase a stream');
SELECT throws_ok($$SELECT eventsource.erase_by_metadata('subject_id', 'x')$$, '42501', NULL,
    'writer cannot erase by metadata');
RESET ROLE;

-- the reader (the writer's events are not committed yet, so the horizon is
-- still below them: read_all() returns what is final)
SET ROLE es_reader;
SELECT is((SELECT count(*)::int FROM eventsource.read_all()), 0, 'reader reads the log up to the horizon');
SELECT is((SELECT count(*)::int FROM eventsource.read_stream('Priv-1')), 2, 'reader reads the stream');
SELECT is(eventsource.head_position(), 0::bigint, 'reader sees the horizon, below the open appends');
SELECT lives_ok($$SELECT eventsource.save_checkpoint('priv-reader', 1)$$, 'reader keeps a checkpoint');
SELECT throws_ok($$SELECT eventsource.append_event('Priv-1', 2, 'Cancelled', '{}')$$, '42501', NULL,
    'reader cannot append');
SELECT throws_ok($$INSERT INTO eventsource.checkpoints VALUES ('x', 1)$$, '42501', NULL,
    'reader cannot write the checkpoints table');
RESET ROLE;

-- a role with nothing
SET ROLE es_nobody;
SELECT throws_ok($$SELECT * FROM eventsource.read_stream('Priv-1')$$, '42501', NULL, 'nobody cannot read');
RESET ROLE;

-- the superuser is refused too: the log only grows through append()
SELECT throws_ok($$DELETE FROM eventsource.events$$, '0A000', NULL, 'even the owner cannot delete events');

SELECT * FROM finish();
ROLLBACK;
