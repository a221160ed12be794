# The status view and health() over many subscriptions whose rows carry
# strings (last shutdown records, errors): every value must come back
# intact, every time.  (Regressions: the rows used to be built in SPI's
# memory and read after it was freed; a long multibyte error was cut in the
# middle of a character.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('status_many');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION eventsource;
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Bad' THEN RAISE EXCEPTION 'bad event % with a long message %', e.event_id, repeat('é', 200); END IF;
END $$;
SELECT eventsource.create_subscription('sub_with_a_long_name_' || i, 'h(eventsource.events)',
       max_retries => 0) FROM generate_series(1, 12) i;
SELECT eventsource.append_event('S-1', 0, 'Bad', '{}');
SELECT eventsource.append_event('S-1', 1, 'Good', '{}');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 12 FROM eventsource.subscription_status
	WHERE state = 'live' AND checkpoint = head_position AND dead_letters = 1}), 'twelve subscriptions ran');
sql(q{SELECT eventsource.pause_subscription(name) FROM eventsource.subscriptions});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 12 FROM eventsource.subscription_status
	WHERE state = 'paused' AND last_shutdown IS NOT NULL}), 'all paused, each with its shutdown record');

my $bad = 0;
for my $i (1 .. 20)
{
	my ($ret, $out, $err) = $node->psql('postgres', q{
		SELECT count(*) = 12
		   AND bool_and(name ~ '^sub_with_a_long_name_\d+$')
		   AND bool_and(last_shutdown->>'reason' = 'pause' AND last_shutdown->>'phase' = 'completed')
		   AND bool_and(last_error LIKE 'bad event % with a long message éé%')
		   AND bool_and(octet_length(last_error) <= 255 AND last_error::bytea::text <> '')
		   AND bool_and(pid IS NULL)
		  FROM eventsource.subscription_status});
	$bad++ unless $ret == 0 && $out eq 't';
	($ret, $out, $err) = $node->psql('postgres', q{
		SELECT count(*) = 12 AND bool_and(k ~ '^subscription:sub_with_a_long_name_\d+$')
		  FROM jsonb_object_keys(eventsource.health()->'checks') k WHERE k LIKE 'subscription:%'});
	$bad++ unless $ret == 0 && $out eq 't';
}
is($bad, 0, 'forty reads of the status view and health(): every row and key intact');

$node->stop;
done_testing();
