--
-- save_snapshot, load_snapshot, load
--
SET client_min_messages = warning;

SELECT t.try($$SELECT eventsource.append('Inv-1', 0, '[
    {"type": "Created", "data": {"qty": 1}}, {"type": "Added", "data": {"qty": 2}},
    {"type": "Added", "data": {"qty": 3}}, {"type": "Added", "data": {"qty": 4}}]')$$);

-- the version must be between 1 and the stream's current version
SELECT t.try($$SELECT eventsource.save_snapshot('Inv-1', 0, '{}')$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Inv-1', 5, '{}')$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Inv-1', -1, '{}')$$);
SELECT t.try($$SELECT eventsource.save_snapshot('Nope-1', 1, '{}')$$);

-- no snapshot yet: no row
SELECT count(*) FROM eventsource.load_snapshot('Inv-1');

SELECT eventsource.save_snapshot('Inv-1', 2, '{"qty": 3}');
SELECT stream_version, state, schema_version FROM eventsource.load_snapshot('Inv-1');
SELECT eventsource.save_snapshot('Inv-1', 3, '{"qty": 6}');
SELECT stream_version, state FROM eventsource.load_snapshot('Inv-1');
-- an older snapshot never replaces a newer one
SELECT eventsource.save_snapshot('Inv-1', 1, '{"qty": 1}');
SELECT stream_version, state FROM eventsource.load_snapshot('Inv-1');
SELECT stream_version FROM eventsource.snapshots WHERE stream_id = 'Inv-1' ORDER BY 1;
-- saving the same version again replaces its state
SELECT eventsource.save_snapshot('Inv-1', 3, '{"qty": 6, "again": true}');
SELECT stream_version, state FROM eventsource.load_snapshot('Inv-1');

-- snapshots_to_keep keeps the newest n
SET eventsource.snapshots_to_keep = 2;
SELECT eventsource.save_snapshot('Inv-1', 4, '{"qty": 10}');
SELECT eventsource.save_snapshot('Inv-1', 1, '{"qty": 1}');
SELECT stream_version FROM eventsource.snapshots WHERE stream_id = 'Inv-1' ORDER BY 1;
RESET eventsource.snapshots_to_keep;
SELECT t.try($$SET eventsource.snapshots_to_keep = 0$$);

-- another schema version is ignored, not deleted
SELECT eventsource.save_snapshot('Inv-1', 2, '{"quantity": 3}', 2);
SELECT stream_version, state, schema_version FROM eventsource.load_snapshot('Inv-1', 2);
SELECT stream_version, state, schema_version FROM eventsource.load_snapshot('Inv-1');
SELECT eventsource.save_snapshot('Inv-1', 4, '{"qty": 10}', 1);
SELECT schema_version, stream_version FROM eventsource.snapshots WHERE stream_id = 'Inv-1' ORDER BY 1, 2;
SELECT count(*) FROM eventsource.load_snapshot('Inv-1', 3);

-- load(): the newest snapshot of that schema version and only the events after it
SELECT t.try($$SELECT eventsource.append_event('Inv-1', 4, 'Added', '{"qty": 5}')$$);
SELECT l->'stream_id' AS stream_id, l->'version' AS version, l->'snapshot' AS snapshot,
       (SELECT jsonb_agg(e->'version') FROM jsonb_array_elements(l->'events') e) AS event_versions
  FROM eventsource.load('Inv-1') l;
SELECT l->'version' AS version, l->'snapshot' AS snapshot,
       (SELECT jsonb_agg(e->'version') FROM jsonb_array_elements(l->'events') e) AS event_versions
  FROM eventsource.load('Inv-1', 2) l;
SELECT l->'snapshot' AS snapshot, jsonb_array_length(l->'events') AS n
  FROM eventsource.load('Inv-1', 7) l;
-- a snapshot at the stream's current version: no events, version from the snapshot
SELECT eventsource.save_snapshot('Inv-1', 5, '{"qty": 15}');
SELECT l->'version' AS version, l->'snapshot'->'version' AS snap, l->'events' AS events
  FROM eventsource.load('Inv-1') l;
