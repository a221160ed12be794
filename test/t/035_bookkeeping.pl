# Nothing in the worker's own bookkeeping may stop delivery (issue 9, 1).
#
# - A handler error longer than a NOTIFY payload may be: the notification is
#   cut to fit, on a character boundary, and says so; the event is retried,
#   dead-lettered, and the events after it delivered.  retry_dead_letters()
#   goes the same way.
# - A write of the worker's own that fails (here: a trigger someone put on
#   eventsource.recent_errors, then on eventsource.dead_letters) is rolled
#   back alone, logged with the structured fields and counted; the event is
#   retried and dead-lettered like any handler failure, never lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;
use Time::HiRes qw(time usleep);

my $node = es_node('bookkeeping');
my $db = 'postgres';
sub sql { return $node->safe_psql($db, $_[0]); }
sub wait_until { es_wait_until($node, $db, @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE applied (pos bigint, type text);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Long' THEN
    RAISE EXCEPTION 'no table for %', repeat('x', 8200) USING ERRCODE = '42P01';
  ELSIF e.event_type = 'Wide' THEN
    -- two bytes a character: a cut in the middle of one is invalid UTF-8
    RAISE EXCEPTION 'no table for %', repeat(U&'\00E9', 5000) USING ERRCODE = '42P01';
  ELSIF e.event_type = 'Bad' THEN
    RAISE EXCEPTION 'bad event' USING ERRCODE = '42P01';
  END IF;
  INSERT INTO applied VALUES (e.global_position, e.event_type);
END $$;
});

my $listener = $node->background_psql($db);
$listener->query_safe('LISTEN eventsource_errors');
my @notes;

# Collect notifications until $want arrived in total (EsTest.pm); keeps
# the payloads.
sub collect
{
	my ($want, $secs) = @_;
	push @notes, map { $_->[1] } es_collect_notifications($listener, $want - @notes, $secs);
	return scalar @notes;
}

# --------------------------------------------------------------------------
# a long error: retried, dead-lettered, the next event delivered
# --------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('long', 'h(eventsource.events)',
      max_retries => 1, retry_backoff => '10ms', circuit_breaker_threshold => 0)});
sql(q{SELECT eventsource.append_event('S-1', -1, 'Long', '{}');
      SELECT eventsource.append_event('S-1', -1, 'Fine', '{}')});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE subscription = 'long'},
	'the event with the long error is dead-lettered');
wait_until(q{SELECT count(*) = 1 FROM applied WHERE type = 'Fine'},
	'the event after it is delivered');
is(sql(q{SELECT length(error_message) FROM eventsource.dead_letters WHERE subscription = 'long'}),
	length('no table for ') + 8200, 'the dead letter keeps the whole message');
is(sql(q{SELECT events_failed || ' ' || dead_letters || ' ' || events_retried
         FROM eventsource.subscription_status WHERE name = 'long'}),
	'1 1 1', 'the status view counts the failure, the retry and the dead letter');
is(sql(q{SELECT string_agg(attempt::text, ',' ORDER BY id) FROM eventsource.recent_errors}),
	'1,2', 'both attempts are in recent_errors');

is(collect(2, 30), 2, 'both attempts were notified');
for my $i (0, 1)
{
	my $n = decode_json($notes[$i]);
	cmp_ok(length($notes[$i]), '<', 8000, "notification $i fits NOTIFY's payload limit");
	is($n->{message_truncated}, JSON::PP::true, "notification $i says its message was cut");
	is($n->{message_bytes}, 8213, "notification $i gives the message's full length");
	like($n->{message}, qr/^no table for x{1000,}$/, "notification $i has the start of the message");
	is($n->{attempt}, $i + 1, "notification $i is attempt " . ($i + 1));
}

# multi-byte characters: the cut falls between two of them
sql(q{SELECT eventsource.append_event('S-2', -1, 'Wide', '{}')});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters WHERE subscription = 'long'},
	'the event with the long multi-byte error is dead-lettered');
is(collect(4, 30), 4, 'its attempts were notified');
{
	my $payload = $notes[2];
	utf8::decode($payload) or fail('the payload is valid UTF-8');
	my $n = JSON::PP->new->decode($payload);
	is($n->{message_truncated}, JSON::PP::true, 'the multi-byte message was cut');
	like($n->{message}, qr/^no table for \x{e9}+$/, 'on a character boundary');
}

# retry_dead_letters(): fails again with the long error, recorded as such
is(sql(q{SELECT eventsource.retry_dead_letters('long')}), '2', 'both dead letters marked for retry');
wait_until(q{SELECT bool_and(retry_count = 2 AND NOT retry_requested)
             FROM eventsource.dead_letters WHERE subscription = 'long'},
	'retry_dead_letters() records the new failure of both');
is(collect(6, 30), 6, 'and notifies them, cut to fit');
ok(!grep({ length($_) >= 8000 } @notes), 'no notification over the limit');
unlike(slurp_file($node->logfile), qr/payload string too long/, 'no "payload string too long" anywhere');

# --------------------------------------------------------------------------
# a failing bookkeeping write: logged, counted, delivery goes on
# --------------------------------------------------------------------------
sql(q{
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% refuses rows today', TG_TABLE_NAME USING ERRCODE = '42501'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON eventsource.recent_errors
  FOR EACH ROW EXECUTE FUNCTION refuse();
});
my $log_offset = -s $node->logfile;
sql(q{SELECT eventsource.append_event('S-3', -1, 'Bad', '{}');
      SELECT eventsource.append_event('S-3', -1, 'After', '{}')});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE stream_id = 'S-3'},
	'with recent_errors refusing rows, the failing event is still dead-lettered');
wait_until(q{SELECT count(*) = 1 FROM applied WHERE type = 'After'},
	'and the event after it delivered');
ok( $node->wait_for_log(
		qr/could not record the error in eventsource\.recent_errors: recent_errors refuses rows today.*\n.*DETAIL:  database=postgres subscription=long partition=0 event_id=\S+ position=\d+ sqlstate=42501 .* bookkeeping_failures=\d+/,
		$log_offset),
	'the failed write is logged with the structured fields and counted');
sql(q{DROP TRIGGER refuse ON eventsource.recent_errors});

# the dead letter itself cannot be written: the event is not passed (it
# would be lost), it is retried until it can be parked
sql(q{CREATE TRIGGER refuse BEFORE INSERT ON eventsource.dead_letters
      FOR EACH ROW EXECUTE FUNCTION refuse()});
$log_offset = -s $node->logfile;
sql(q{SELECT eventsource.append_event('S-4', -1, 'Bad', '{}');
      SELECT eventsource.append_event('S-4', -1, 'Later', '{}')});
ok( $node->wait_for_log(
		qr/could not park the event in eventsource\.dead_letters(.|\n)*could not park the event in eventsource\.dead_letters/,
		$log_offset),
	'parking the event fails, twice');
is(sql(q{SELECT count(*) FROM applied WHERE type = 'Later'}), '0',
	'the event is not passed while it cannot be parked');
sql(q{DROP TRIGGER refuse ON eventsource.dead_letters});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE stream_id = 'S-4'},
	'once it can be, it is parked');
wait_until(q{SELECT count(*) = 1 FROM applied WHERE type = 'Later'},
	'and the event after it delivered');
is(sql(q{SELECT state FROM eventsource.subscription_status WHERE name = 'long'}), 'live',
	'the subscription is live');

$listener->quit;
$node->stop;
done_testing();
