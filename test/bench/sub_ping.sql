-- One single-event append for the wake-latency measurement of
-- run_subscriptions.sh: the event's metadata carries "t0", the clock read
-- while the append runs, in the (implicit) transaction that commits right
-- after it; then a pause, so that every append is an isolated wake-up.
SELECT eventsource.append_event('Ping-' || :client_id, -1, 'Ping', '{}',
                                jsonb_build_object('t0', clock_timestamp()));
\sleep :gap ms
