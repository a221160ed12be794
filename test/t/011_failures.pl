# Handler failures: retries with backoff, dead letters, stop-at-event and
# resume, the circuit breaker (open, half-open probe, closed), the
# processing timeout, retry_dead_letters().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use Time::HiRes qw(time);

my $node = es_node('failures');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

sub status
{
	my ($name, $col) = @_;
	return sql("SELECT $col FROM eventsource.subscription_status WHERE name = '$name'");
}

# A handler that fails on events listed in "poison", and logs each call.
sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE poison (stream text PRIMARY KEY);
CREATE TABLE applied (sub text, pos bigint, stream text);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  -- written before failing: a failed call must leave no effect behind
  INSERT INTO applied VALUES (current_setting('eventsource.subscription'), e.global_position, e.stream_id);
  IF EXISTS (SELECT 1 FROM poison p WHERE p.stream = e.stream_id) THEN
    RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = 'P0001';
  END IF;
END $$;
});

# ---------------------------------------------------------------------------
# poison event -> retries with backoff -> dead letter -> processing continues
# ---------------------------------------------------------------------------
sql(q{INSERT INTO poison VALUES ('Bad-1')});
sql(q{SELECT eventsource.create_subscription('dlq', 'h(eventsource.events)',
      max_retries => 3, retry_backoff => '100ms', circuit_breaker_threshold => 0)});
my $t0 = time;
sql(q{SELECT eventsource.append_event('Good-1', 0, 'A', '{}');
      SELECT eventsource.append_event('Bad-1', 0, 'A', '{}');
      SELECT eventsource.append_event('Good-2', 0, 'A', '{}')});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE subscription = 'dlq'},
	'the poison event reaches the dead letters');
my $elapsed = time - $t0;
wait_until(q{SELECT count(*) = 2 FROM applied WHERE sub = 'dlq'},
	'the events around it are applied');
is(sql(q{SELECT string_agg(stream, ',' ORDER BY pos) FROM applied WHERE sub = 'dlq'}),
	'Good-1,Good-2', 'in order, and the failed calls left no effect');
is( sql(q{SELECT stream_id || ' ' || retry_count || ' ' || error_sqlstate || ' ' || error_category
                 || ' ' || error_severity || ' ' || (error_message LIKE 'poisoned stream Bad-1%')
            FROM eventsource.dead_letters WHERE subscription = 'dlq'}),
	'Bad-1 3 P0001 application medium true', 'the dead letter has the event, the error and the retries');
cmp_ok($elapsed, '>=', 0.7, 'retries waited 100 + 200 + 400 ms of backoff');
is(sql(q{SELECT string_agg(attempt::text, ',' ORDER BY id) FROM eventsource.recent_errors WHERE subscription = 'dlq'}),
	'1,2,3,4', 'each attempt is in recent_errors');
is(status('dlq', q{events_retried || ' ' || events_failed || ' ' || dead_letters || ' ' || state}),
	'3 1 1 live', 'the status view counts retries, failures and dead letters');
is(status('dlq', 'checkpoint = head_position'), 't', 'the checkpoint moved past the dead letter');

# retry_dead_letters: fixed cause, redelivered, gone from the table
sql(q{DELETE FROM poison});
is(sql(q{SELECT eventsource.retry_dead_letters('dlq')}), '1', 'one dead letter marked for retry');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 'dlq'},
	'retry_dead_letters redelivers it');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'dlq' AND stream = 'Bad-1'}), '1',
	'and the handler applied it');

# a retry that fails again stays, with its new error and a higher retry count
sql(q{INSERT INTO poison VALUES ('Bad-2'); SELECT eventsource.append_event('Bad-2', 0, 'A', '{}')});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE stream_id = 'Bad-2'},
	'a second poison event');
my $id = sql(q{SELECT id FROM eventsource.dead_letters WHERE stream_id = 'Bad-2'});
is(sql(qq{SELECT eventsource.retry_dead_letters('dlq', ARRAY[$id])}), '1', 'retry by id');
wait_until(qq{SELECT retry_count = 4 AND NOT retry_requested FROM eventsource.dead_letters WHERE id = $id},
	'a failed retry keeps the dead letter with its retry count raised');

# ---------------------------------------------------------------------------
# continue_on_error = false: stop at the event; resume retries it
# ---------------------------------------------------------------------------
sql(q{INSERT INTO poison VALUES ('Stop-1')});
sql(q{SELECT eventsource.create_subscription('stop', 'h(eventsource.events)', start_from => 'end',
      max_retries => 1, retry_backoff => '10ms', continue_on_error => false)});
sql(q{SELECT eventsource.append_event('Before-1', 0, 'A', '{}');
      SELECT eventsource.append_event('Stop-1', 0, 'A', '{}');
      SELECT eventsource.append_event('After-1', 0, 'A', '{}')});
wait_until(q{SELECT state = 'failed' AND pid IS NULL FROM eventsource.subscription_status WHERE name = 'stop'},
	'the partition stops in state failed');
is(sql(q{SELECT string_agg(stream, ',' ORDER BY pos) FROM applied WHERE sub = 'stop'}),
	'Before-1', 'nothing past the failed event was applied');
is( sql(q{SELECT checkpoint = (SELECT global_position FROM eventsource.events WHERE stream_id = 'Before-1')
            FROM eventsource.subscription_status WHERE name = 'stop'}),
	't', 'the checkpoint stays before the failed event');
is( sql(q{SELECT state || ' ' || (failed_position = (SELECT global_position FROM eventsource.events
                                                 WHERE stream_id = 'Stop-1'))
            FROM eventsource.subscription_partitions WHERE subscription = 'stop'}),
	'failed true', 'subscription_partitions records where it stopped');
is(status('stop', 'health'), 'critical', 'a failed subscription is critical');
is(sql(q{SELECT count(*) FROM eventsource.dead_letters WHERE subscription = 'stop'}), '0',
	'no dead letter in stop mode');
# it stays failed across a restart
$node->restart;
wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status WHERE name = 'stop'},
	'still failed after a restart');
sql(q{DELETE FROM poison WHERE stream = 'Stop-1'});
sql(q{SELECT eventsource.resume_subscription('stop')});
wait_until(q{SELECT count(*) = 3 FROM applied WHERE sub = 'stop'}, 'resume retries the event and goes on');
is(sql(q{SELECT string_agg(stream, ',' ORDER BY pos) FROM applied WHERE sub = 'stop'}),
	'Before-1,Stop-1,After-1', 'in order');
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'stop'}, 'live again');

# ---------------------------------------------------------------------------
# circuit breaker: open after N consecutive failed events, probe, close
# ---------------------------------------------------------------------------
sql(q{INSERT INTO poison SELECT 'Cb-' || i FROM generate_series(1, 3) i});
sql(q{SELECT eventsource.create_subscription('cb', 'h(eventsource.events)', start_from => 'end',
      max_retries => 0, circuit_breaker_threshold => 2, circuit_breaker_reset => '2 seconds')});
sql(q{SELECT eventsource.append_event('Cb-' || i, 0, 'A', '{}') FROM generate_series(1, 3) i;
      SELECT eventsource.append_event('CbOk-1', 0, 'A', '{}')});
wait_until(q{SELECT state = 'circuit_open' FROM eventsource.subscription_status WHERE name = 'cb'},
	'two consecutive failed events open the breaker');
is(status('cb', 'health'), 'unhealthy', 'an open breaker is unhealthy');
is(sql(q{SELECT count(*) FROM eventsource.dead_letters WHERE subscription = 'cb'}), '2',
	'it opened after two failed events, before the third');
sleep 1;
is(status('cb', 'state'), 'circuit_open', 'delivery stays paused while open');
# half-open: the probe (Cb-3) fails, the breaker opens again
wait_until(q{SELECT count(*) = 3 FROM eventsource.dead_letters WHERE subscription = 'cb'},
	'after circuit_breaker_reset one probe event is tried');
is(status('cb', 'state'), 'circuit_open', 'the failed probe opens the breaker again');
# next probe (CbOk-1) succeeds: closed
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'cb'},
	'a successful probe closes the breaker');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'cb' AND stream = 'CbOk-1'}), '1', 'the probe was applied');

# ---------------------------------------------------------------------------
# processing_timeout: a handler that runs too long is cancelled
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION h_slow(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_id LIKE 'Slow-%' THEN PERFORM pg_sleep(5); END IF;
  INSERT INTO applied VALUES ('slow', e.global_position, e.stream_id);
END $$;
SELECT eventsource.create_subscription('slow', 'h_slow(eventsource.events)', start_from => 'end',
  max_retries => 0, processing_timeout => '300ms');
});
$t0 = time;
sql(q{SELECT eventsource.append_event('Slow-1', 0, 'A', '{}');
      SELECT eventsource.append_event('Fast-1', 0, 'A', '{}')});
wait_until(q{SELECT count(*) = 1 FROM applied WHERE sub = 'slow' AND stream = 'Fast-1'},
	'the next event is delivered after the timed-out one');
cmp_ok(time - $t0, '<', 3, 'the slow call was cut short');
is( sql(q{SELECT error_sqlstate || ' ' || error_category || ' ' || error_message
            FROM eventsource.dead_letters WHERE subscription = 'slow'}),
	'57014 transient handler exceeded processing_timeout (300 ms)',
	'the timeout is recorded as such');

$node->stop;
done_testing();
