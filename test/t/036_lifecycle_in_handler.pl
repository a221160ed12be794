# Lifecycle calls from inside a subscription's own handler (issue 9, 3):
# reset, pause, resume, drop and retry_dead_letters of the subscription
# whose handler is running are refused with 55006 (object_in_use), so none
# is silently lost; the failed call goes the usual way (here: dead letter).
# The same calls on another subscription take effect.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('lifecycle');
my $db = 'postgres';
sub sql { return $node->safe_psql($db, $_[0]); }
sub wait_until { es_wait_until($node, $db, @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (sub text, pos bigint);
-- runs the statement in the event's data, if any
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.data ? 'call' THEN
    EXECUTE e.data->>'call';
  END IF;
  INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position);
END $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE e eventsource.events;
BEGIN
  FOREACH e IN ARRAY es LOOP PERFORM h(e); END LOOP;
END $$;
SELECT eventsource.create_subscription('other', 'h(eventsource.events)',
  event_types => ARRAY['Plain']);
SELECT eventsource.append_event('O-1', -1, 'Plain', '{}');
});
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'other'},
	'the other subscription caught up');
sql(q{SELECT eventsource.pause_subscription('other')});
wait_until(q{SELECT state = 'paused' FROM eventsource.subscription_status WHERE name = 'other'},
	'and is paused');

sql(q{SELECT eventsource.create_subscription('own', 'h(eventsource.events)',
      max_retries => 0, circuit_breaker_threshold => 0, event_types => ARRAY['Call'])});
my @calls = (
	q{SELECT eventsource.reset_subscription('own', 0)},
	q{SELECT eventsource.pause_subscription('own')},
	q{SELECT eventsource.resume_subscription('own')},
	q{SELECT eventsource.retry_dead_letters('own')},
	q{SELECT eventsource.drop_subscription('own')});
for my $call (@calls)
{
	(my $json = $call) =~ s/'/''/g;
	sql(qq{SELECT eventsource.append_event('C-1', -1, 'Call', '{"call": "$json"}')});
}
wait_until(q{SELECT count(*) = 5 FROM eventsource.dead_letters WHERE subscription = 'own'},
	'each call from inside the own handler failed the event');
is( sql(q{SELECT string_agg(DISTINCT error_sqlstate || ' ' || error_message, '; ')
          FROM eventsource.dead_letters WHERE subscription = 'own'}),
	'55006 subscription "own" cannot be changed from inside its own handler',
	'refused with 55006 and a clear message');
is(sql(q{SELECT count(*) FROM seen WHERE sub = 'own'}), '0', 'none of those calls took effect');
is(sql(q{SELECT state || ' ' || (checkpoint = head_position)
         FROM eventsource.subscription_status WHERE name = 'own'}),
	'live true', 'the subscription runs on, past the events');

# the same from a batch handler
sql(q{SELECT eventsource.create_subscription('batch', 'hb(eventsource.events[])',
      max_retries => 0, circuit_breaker_threshold => 0, event_types => ARRAY['BatchCall'])});
sql(q{SELECT eventsource.append_event('B-1', -1, 'BatchCall',
      '{"call": "SELECT eventsource.reset_subscription(''batch'', 0)"}')});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters
             WHERE subscription = 'batch' AND error_sqlstate = '55006'},
	'a batch handler is refused too');

# another subscription's lifecycle from inside a handler takes effect
sql(q{SELECT eventsource.append_event('C-2', -1, 'Call',
      '{"call": "SELECT eventsource.reset_subscription(''other'', 0)"}')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE sub = 'own'},
	'a handler resets another subscription');
is(sql(q{SELECT position FROM eventsource.subscription_partitions WHERE subscription = 'other'}),
	'0', 'and the reset took effect');

$node->stop;
done_testing();
