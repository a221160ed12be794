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
