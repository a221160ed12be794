# A DROP EXTENSION or DROP DATABASE cancelled while it waits for the
# workers to drain (statement_timeout here; Ctrl-C is the same) leaves the
# subscriptions running: the workers it stopped are discovered again.
# (Before, the cancel came before the drop was recorded, and the database's
# subscriptions stayed stopped until something else rediscovered them.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('dropcancel', "eventsource.drain_timeout = '30s'\n");
sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }
sub wait_until { my $db = shift; es_wait_until($node, $db, @_) }

for my $what ('DROP EXTENSION eventsource CASCADE', 'DROP DATABASE dc')
{
	$node->safe_psql('postgres', 'CREATE DATABASE dc');
	sql('dc', q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (v bigint);
-- slow on stream Slow-*: the worker is mid-batch when the drop comes
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_id LIKE 'Slow-%' THEN PERFORM pg_sleep(3); END IF;
  INSERT INTO seen VALUES (e.global_position);
END $$;
SELECT eventsource.create_subscription('s', 'h(eventsource.events)');
SELECT eventsource.append_event('Slow-1', 0, 'T', '{}');
});
	wait_until('dc', q{SELECT count(*) = 1 FROM pg_stat_activity
	  WHERE datname = 'dc' AND backend_type = 'eventsource worker' AND wait_event = 'PgSleep'},
		"$what: the worker is mid-batch");
	my $db = $what =~ /DATABASE/ ? 'postgres' : 'dc';
	my ($rc, $out, $err) = $node->psql($db, "SET statement_timeout = '300ms'; $what");
	like($err, qr/canceling statement due to statement timeout/, "$what: cancelled while it waits");
	sql('dc', q{SELECT eventsource.append_event('Fast-1', 0, 'T', '{}')});
	wait_until('dc', q{SELECT count(*) = 2 FROM seen},
		"$what: the subscription runs again and delivers what came after");
	is(sql('dc', q{SELECT count(DISTINCT v) FROM seen}), '2', "$what: each event once");
	$node->safe_psql('postgres', 'DROP DATABASE dc WITH (FORCE)');
}

done_testing();
