# checkpoint_strategy every_event: each event's effects and checkpoint commit
# on their own, in the one delivery loop (delivery.c) that every_batch uses.
# A stop that outlives drain_timeout rolls back only the event in flight; a
# batch handler's failed batch is delivered again one event at a time, each
# committed; a dead-lettered event is passed in its own commit.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('every_event', "eventsource.drain_timeout = '700ms'\n");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

sub cp
{
	return sql("SELECT position FROM eventsource.subscription_partitions WHERE subscription = '$_[0]'");
}

# One-event handler: sleeps on streams listed in "slow", fails on "poison".
# Batch handler: logs the size of each call, fails if any event is poisoned.
sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE slow (stream text PRIMARY KEY);
CREATE TABLE poison (stream text PRIMARY KEY);
CREATE TABLE applied (sub text, pos bigint);
CREATE TABLE calls (sub text, n int);
CREATE SEQUENCE batch_calls;  -- calls of more than one event, also rolled-back ones
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT FROM slow s WHERE s.stream = e.stream_id) THEN
    PERFORM pg_sleep(30);
  END IF;
  IF EXISTS (SELECT FROM poison p WHERE p.stream = e.stream_id) THEN
    RAISE EXCEPTION 'poisoned %', e.stream_id;
  END IF;
  INSERT INTO applied VALUES (current_setting('eventsource.subscription'), e.global_position);
END $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO calls VALUES (current_setting('eventsource.subscription'), cardinality(es));
  IF cardinality(es) > 1 THEN
    PERFORM nextval('batch_calls');
  END IF;
  IF EXISTS (SELECT FROM unnest(es) e JOIN poison p ON p.stream = e.stream_id) THEN
    RAISE EXCEPTION 'poisoned batch';
  END IF;
  INSERT INTO applied SELECT current_setting('eventsource.subscription'), e.global_position
    FROM unnest(es) e;
END $$;
});

# ---------------------------------------------------------------------------
# a forced stop in the middle of an every_event batch
# ---------------------------------------------------------------------------
sql(q{INSERT INTO slow VALUES ('S-3');
      SELECT eventsource.create_subscription('ee_forced', 'h(eventsource.events)',
             checkpoint_strategy => 'every_event', batch_size => 5,
             processing_timeout => '1 minute')});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'ee_forced'},
	'the subscription is live');
my $first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('S-' || i, 0, 'A', '{}') FROM generate_series(1, 5) i});
wait_until(q{SELECT count(*) = 2 FROM applied WHERE sub = 'ee_forced'},
	'the two events before the slow one are committed');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE application_name = 'eventsource ee_forced/0' AND wait_event = 'PgSleep'}),
	'the slow handler is running');
sql(q{SELECT eventsource.pause_subscription('ee_forced')});
wait_until(q{SELECT state = 'paused' AND pid IS NULL FROM eventsource.subscription_status
              WHERE name = 'ee_forced'}, 'the pause completes');
is(cp('ee_forced'), $first + 2, 'the checkpoint is at the last committed event');
is(sql(q{SELECT (last_shutdown->>'forced') || ' ' || (last_shutdown->>'events_in_flight')
               || ' ' || (last_shutdown->>'checkpoint')
           FROM eventsource.subscription_status WHERE name = 'ee_forced'}),
	'true 3 ' . ($first + 2), 'forced, with the three events not committed in flight');
sql(q{DELETE FROM slow; SELECT eventsource.resume_subscription('ee_forced')});
wait_until(q{SELECT count(*) = 5 FROM applied WHERE sub = 'ee_forced'},
	'resumed: the rest is delivered');
wait_until(q{SELECT position = eventsource.head_position() FROM eventsource.subscription_partitions
              WHERE subscription = 'ee_forced'}, 'and checkpointed to the head');
is(sql(q{SELECT count(*) || ' ' || count(DISTINCT pos) FROM applied WHERE sub = 'ee_forced'}), '5 5',
	'each once (no event applied twice, also once caught up)');
sql(q{SELECT eventsource.drop_subscription('ee_forced')});

# ---------------------------------------------------------------------------
# a batch handler: one call per batch; a failed batch goes one event at a
# time, each committed, and stops at the poison event
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('ee_batch', 'hb(eventsource.events[])', start_from => 'end',
             checkpoint_strategy => 'every_event', batch_size => 5, max_retries => 0,
             continue_on_error => false)});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'ee_batch'},
	'the batch subscription is live');
$first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('B-' || i, 0, 'A', '{}') FROM generate_series(1, 5) i});
wait_until(q{SELECT count(*) = 5 FROM applied WHERE sub = 'ee_batch'}, 'a clean batch is delivered');
is(sql(q{SELECT string_agg(n::text, ',') FROM calls WHERE sub = 'ee_batch'}), '5', 'in one call');
wait_until("SELECT position = $first + 5 FROM eventsource.subscription_partitions WHERE subscription = 'ee_batch'",
	'and checkpointed');

sql(q{TRUNCATE calls; INSERT INTO poison VALUES ('P-3')});
$first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('P-' || i, 0, 'A', '{}') FROM generate_series(1, 5) i});
wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status WHERE name = 'ee_batch'},
	'the poisoned batch stops the partition');
is(sql(q{SELECT string_agg(n::text, ',') FROM calls WHERE sub = 'ee_batch'}), '1,1',
	'then one event at a time, each committed, up to the poison event');
is(sql(q{SELECT last_value FROM batch_calls}), '2', 'the failed batch was tried whole once');
is(sql("SELECT count(*) FROM applied WHERE sub = 'ee_batch' AND pos > $first"), '2',
	'the events before it are applied');
is(cp('ee_batch'), $first + 2, 'and checkpointed, the poison event not');
is(sql(q{SELECT failed_position FROM eventsource.subscription_partitions WHERE subscription = 'ee_batch'}),
	$first + 3, 'it stopped at the poison event');
sql(q{SELECT eventsource.drop_subscription('ee_batch')});

# ---------------------------------------------------------------------------
# continue_on_error: the poison event is dead-lettered and passed
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('ee_dlq', 'h(eventsource.events)', start_from => 'end',
             checkpoint_strategy => 'every_event', batch_size => 5, max_retries => 0,
             circuit_breaker_threshold => 0)});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'ee_dlq'},
	'the dead-letter subscription is live');
$first = sql(q{SELECT eventsource.head_position()});
sql(q{INSERT INTO poison VALUES ('D-2');
      SELECT eventsource.append_event('D-' || i, 0, 'A', '{}') FROM generate_series(1, 4) i});
wait_until("SELECT position = $first + 4 FROM eventsource.subscription_partitions WHERE subscription = 'ee_dlq'",
	'the batch is passed');
is(sql("SELECT string_agg((pos - $first)::text, ',' ORDER BY pos) FROM applied WHERE sub = 'ee_dlq'"),
	'1,3,4', 'the others are applied');
is(sql(q{SELECT global_position FROM eventsource.dead_letters WHERE subscription = 'ee_dlq'}),
	$first + 2, 'the poison event is a dead letter');

$node->stop;
done_testing();
