-- Generated event ids (src/append.c): time-ordered UUIDs (version 7, RFC
-- 4122 variant) whose random bits come from the backend's pool of strong
-- random bytes (strong_random_bytes: 4,096 bytes, 10 per id), refilled when
-- a call's ids need more than it holds.  Ids stay distinct within a call
-- and across calls and refills, and keep their format.
BEGIN;
SELECT plan(6);

-- 1,000 events in one call: 10,000 random bytes, more than two refills
SELECT eventsource.append('Pool-1', 0,
    (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', k)) FROM generate_series(1, 1000) k));
-- then 500 single-event calls, which draw from the pool 10 bytes at a time
SELECT count(eventsource.append_event('Pool-2', -1, 'E', pg_catalog.to_jsonb(k)))
  FROM generate_series(1, 500) k;

SELECT is((SELECT count(DISTINCT event_id) FROM eventsource.events
            WHERE stream_id IN ('Pool-1', 'Pool-2')), 1500::bigint,
          'the 1,500 generated ids are distinct');
-- the random part (after the version nibble) is distinct too: no byte run
-- was handed out twice
SELECT is((SELECT count(DISTINCT substr(event_id::text, 16)) FROM eventsource.events
            WHERE stream_id IN ('Pool-1', 'Pool-2')), 1500::bigint,
          'their random parts are distinct');
SELECT ok((SELECT bool_and(substr(event_id::text, 15, 1) = '7') FROM eventsource.events
            WHERE stream_id IN ('Pool-1', 'Pool-2')),
          'every generated id is version 7');
SELECT ok((SELECT bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) FROM eventsource.events
            WHERE stream_id IN ('Pool-1', 'Pool-2')),
          'every generated id has the RFC 4122 variant');
-- the random bits are not a counter: the pool holds pg_strong_random()'s bytes
SELECT cmp_ok((SELECT count(DISTINCT substr(event_id::text, 35, 2)) FROM eventsource.events
                WHERE stream_id IN ('Pool-1', 'Pool-2')), '>', 200::bigint,
              'the last random byte takes more than 200 of its 256 values');
SELECT is(eventsource.stream_version('Pool-1') + eventsource.stream_version('Pool-2'), 1500::bigint,
          'both streams hold every event');

SELECT * FROM finish();
ROLLBACK;
