-- Placeholder demo (scripts/demo.sh runs this file in database "demo");
-- the real walkthrough replaces it.
CREATE EXTENSION eventsource;
SELECT * FROM eventsource.append_event('Order-1', 0, 'OrderCreated', '{"customer_id":"c1","total":10}');
