# The worker checks what it loads from eventsource.subscriptions by the
# rules of create_subscription()'s arguments (issue 9, 2).  A database still
# on the 1.0 SQL has no CHECK constraints, so an owner's UPDATE can put
# batch_size = 0 or another handler into a row: the worker then never runs
# the subscription, it goes to "failed" with the reason in the status view.
# Corrected and resumed, it runs.  ALTER EXTENSION UPDATE to 1.1 keeps such
# a row (the constraints are NOT VALID) and the row then takes no other bad
# value.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('invalid');
my $db = 'postgres';
sub sql { return $node->safe_psql($db, $_[0]); }
sub wait_until { es_wait_until($node, $db, @_) }

sql(q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE TABLE seen (pos bigint);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO seen VALUES (e.global_position) $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO seen SELECT (unnest(es)).global_position $$;
SELECT eventsource.create_subscription('sub', 'h(eventsource.events)');
SELECT eventsource.append_event('S-1', -1, 'T', '{}');
});
wait_until(q{SELECT checkpoint = 1 AND state = 'live' FROM eventsource.subscription_status},
	'the subscription delivers');

# Put a value into the row, restart the worker (pause + resume), and expect
# it to refuse with this reason.
my $round = 0;
sub refused
{
	my ($set, $reason, $what) = @_;
	$round++;
	sql(qq{SELECT eventsource.pause_subscription('sub')});
	wait_until(q{SELECT state = 'paused' FROM eventsource.subscription_status}, "$what: paused");
	sql(qq{UPDATE eventsource.subscriptions SET $set WHERE name = 'sub'});
	sql(qq{SELECT eventsource.append_event('R-$round', -1, 'T', '{}')});
	my $seen = sql('SELECT count(*) FROM seen');
	sql(qq{SELECT eventsource.resume_subscription('sub')});
	wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status},
		"$what: the worker refuses to run it");
	is(sql(q{SELECT last_error FROM eventsource.subscription_status}),
		"invalid configuration: $reason", "$what: the status view says why");
	is(sql(q{SELECT state || ' ' || coalesce(failed_position::text, '-') || ' ' || error_message
	         FROM eventsource.subscription_partitions}),
		"failed - invalid configuration: $reason", "$what: so does its partition row");
	is(sql('SELECT count(*) FROM seen'), $seen, "$what: nothing was delivered");
	is(sql(q{SELECT checkpoint FROM eventsource.subscription_status}), '1',
		"$what: the checkpoint did not move");
}

refused('batch_size = 0', 'batch_size must be between 1 and 10000', 'batch_size 0');
sql(q{UPDATE eventsource.subscriptions SET batch_size = 100});
refused(q{handler = 'pg_catalog.int4_avg_accum(bigint[], integer)'},
	'function int4_avg_accum(bigint[],integer) cannot be a subscription handler',
	'an aggregate transition function as handler');
refused(q{handler = 'hb(eventsource.events[])'}, 'batch_handler is false, but the handler takes a batch',
	'a batch handler where one per event was declared');
sql(q{UPDATE eventsource.subscriptions SET handler = 'h(eventsource.events)'});
refused(q{processing_timeout = '-1 s'}, 'processing_timeout must be between 1 millisecond and 7 days',
	'a negative interval');
sql(q{UPDATE eventsource.subscriptions SET processing_timeout = '30 s'});
refused(q{event_types = '{A,NULL}'}, 'event_types must not contain null elements', 'a NULL filter element');
sql(q{UPDATE eventsource.subscriptions SET event_types = NULL});
refused(q{partitions = 2}, 'partitions is 2, but the subscription was created with 1',
	'a changed partition count');
ok($node->log_contains(qr/WARNING:  eventsource: subscription "sub" partition 0 does not run: invalid configuration: batch_size must be between 1 and 10000/),
	'the refusal is logged');

# a server restart: discovery sees the failed row, no worker starts
$node->restart;
wait_until(q{SELECT state = 'failed' AND pid IS NULL FROM eventsource.subscription_status},
	'after a restart it stays failed');

# corrected and resumed: it runs
sql(q{UPDATE eventsource.subscriptions SET partitions = 1});
sql(q{SELECT eventsource.resume_subscription('sub')});
wait_until(q{SELECT state = 'live' AND checkpoint = head_position FROM eventsource.subscription_status},
	'corrected and resumed, it delivers again');

# the upgrade to 1.1 keeps a bad row (put there under 1.0 while the worker
# ran with what it had loaded), which then takes no other bad value; the
# worker refuses it at its next start
sql(q{UPDATE eventsource.subscriptions SET batch_size = 0});
sql(q{ALTER EXTENSION eventsource UPDATE TO '1.1'});
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.1',
	'ALTER EXTENSION UPDATE succeeds with a row that breaks a rule');
my ($rc, $out, $err) = $node->psql($db, q{UPDATE eventsource.subscriptions SET batch_size = 20000});
like($err, qr/violates check constraint "subscriptions_batch_size_check"/, 'a new bad value is refused');
$node->restart;
wait_until(q{SELECT state = 'failed' AND last_error LIKE 'invalid configuration: batch_size%'
             FROM eventsource.subscription_status},
	'after a restart the worker refuses the old one');
($rc, $out, $err) = $node->psql($db, q{SELECT eventsource.resume_subscription('sub')});
like($err, qr/violates check constraint "subscriptions_batch_size_check"/,
	'resume_subscription() asks for the row to be corrected first');
sql(q{UPDATE eventsource.subscriptions SET batch_size = 10;
      ALTER TABLE eventsource.subscriptions VALIDATE CONSTRAINT subscriptions_batch_size_check;
      SELECT eventsource.resume_subscription('sub')});
sql(q{SELECT eventsource.append_event('Z-1', -1, 'T', '{}')});
wait_until(q{SELECT state = 'live' AND checkpoint = head_position FROM eventsource.subscription_status},
	'corrected, the constraint validated, it runs');

$node->stop;
done_testing();
