--
-- save_checkpoint, get_checkpoint, reset_checkpoint
--
SET client_min_messages = warning;

SELECT eventsource.get_checkpoint('orders') IS NULL AS none_yet;
SELECT eventsource.save_checkpoint('orders', 5);
SELECT eventsource.get_checkpoint('orders');
SELECT eventsource.save_checkpoint('orders', 5);
SELECT eventsource.save_checkpoint('orders', 9);
SELECT eventsource.get_checkpoint('orders');
-- monotonic: moving backwards is refused and changes nothing
SELECT t.try($$SELECT eventsource.save_checkpoint('orders', 3)$$);
SELECT eventsource.get_checkpoint('orders');
-- reset is the explicit way back
SELECT eventsource.reset_checkpoint('orders');
SELECT eventsource.get_checkpoint('orders');
SELECT eventsource.reset_checkpoint('orders', 4);
SELECT eventsource.get_checkpoint('orders');
SELECT eventsource.reset_checkpoint('fresh', 7);
SELECT left(name, 10) AS name, length(name), position FROM eventsource.checkpoints ORDER BY name;

-- bad input
SELECT t.try($$SELECT eventsource.save_checkpoint('orders', -1)$$);
SELECT t.try($$SELECT eventsource.reset_checkpoint('orders', -1)$$);
SELECT t.try($$SELECT eventsource.save_checkpoint(NULL, 1)$$);
SELECT t.try($$SELECT eventsource.save_checkpoint('orders', NULL)$$);
SELECT t.try($$SELECT eventsource.save_checkpoint('', 1)$$);
SELECT t.try($$SELECT eventsource.get_checkpoint(NULL)$$);
SELECT t.try($$SELECT eventsource.get_checkpoint('')$$);
SELECT t.try($$SELECT eventsource.reset_checkpoint(NULL)$$);
SELECT t.try($$SELECT eventsource.reset_checkpoint('orders', NULL)$$);
SELECT t.try(format('SELECT eventsource.save_checkpoint(%L, 1)', repeat('n', 256)));
SELECT eventsource.save_checkpoint(repeat('n', 255), 1);
SELECT left(name, 10) AS name, length(name), position FROM eventsource.checkpoints ORDER BY name;

-- The version of the SQL objects (pg_extension.extversion) is read again
-- only when a snapshot could see another row (extversion.c), not on every
-- call: 200 saves in one statement are not 200 probes of the catalog's
-- index (rolled back: no checkpoint stays)
SELECT pg_stat_force_next_flush();
SELECT idx_scan AS ext_scans FROM pg_stat_sys_indexes
 WHERE indexrelname = 'pg_extension_name_index' \gset
BEGIN;
SELECT count(eventsource.save_checkpoint('ver-' || g, g)) FROM generate_series(1, 200) g;
ROLLBACK;
SELECT pg_stat_force_next_flush();
SELECT idx_scan - :ext_scans < 50 AS version_read_once_per_snapshot
  FROM pg_stat_sys_indexes WHERE indexrelname = 'pg_extension_name_index';
