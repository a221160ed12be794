# wait_for_subscription(): true once the checkpoint reaches the position,
# woken by the worker's checkpoint commit (not by polling), false on
# timeout, false when the subscription is dropped meanwhile, and true for a
# position a paused subscription had passed before a restart.
# horizon_blockers: the open transactions whose appends hold the safe
# horizon back, with their positions and current query.
# store_stats: a database created after max_databases others were dropped
# is still counted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use Time::HiRes qw(time usleep);

my $node = es_node('waiting');

my $db = 'postgres';
sub sql { my ($sql, $d) = @_; return $node->safe_psql($d // $db, $sql); }

sql(q{
	CREATE EXTENSION eventsource;
	CREATE TABLE public.seen (pos bigint PRIMARY KEY);
	CREATE FUNCTION public.ok_handler(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen VALUES (e.global_position);
	END $$;
	SELECT eventsource.create_subscription('waiter', 'public.ok_handler(eventsource.events)',
		max_retries => 0, retry_backoff => '10ms');
});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'waiter'}), 'the subscription is live');

# pump a background session until its output matches, for at most $secs
sub wait_output
{
	my ($bg, $re, $secs) = @_;
	my $deadline = time + $secs;
	until ($bg->{stdout} =~ $re)
	{
		if (time > $deadline)
		{
			diag("no match for $re; stdout: $bg->{stdout}; stderr: $bg->{stderr}");
			return 0;
		}
		$bg->{run}->pump_nb;
		usleep(10_000);
	}
	return 1;
}

# --------------------------------------------------------------------------
# wait_for_subscription
# --------------------------------------------------------------------------
my $p1 = sql(q{SELECT last_position FROM eventsource.append_event('Order-1', 0, 'A', '{}')});
ok( $node->poll_query_until($db, qq{SELECT checkpoint >= $p1 FROM eventsource.subscription_status}),
	'the first event was delivered');
is(sql(qq{SELECT eventsource.wait_for_subscription('waiter', $p1, '0s')}), 't',
	'a position already reached: true at once, even with a zero timeout');
is(sql(q{SELECT eventsource.wait_for_subscription('waiter', 0, '0s')}), 't', 'position 0: true');

# timeout: false, after the timeout and not much later
my $t0 = time;
is(sql(qq{SELECT eventsource.wait_for_subscription('waiter', $p1 + 1000, '300ms')}), 'f',
	'a position never reached: false');
my $took = time - $t0;
cmp_ok($took, '>=', 0.3, sprintf('false only once the timeout ran out (%.2f s)', $took));
cmp_ok($took, '<', 5, 'and not much later');

# woken by delivery: a waiter with a 60 s timeout returns as soon as the
# worker committed the checkpoint past the position
my $waiter = $node->background_psql($db);
my $next = sql(q{SELECT eventsource.head_position() + 1});
$waiter->query_until(qr/waiting/, qq{\\echo waiting
	SELECT eventsource.wait_for_subscription('waiter', $next, '60s') || '|'
		|| extract(epoch FROM clock_timestamp());
});
usleep(500_000);
$waiter->{run}->pump_nb;
is($waiter->{stdout}, q{}, 'the waiter is still waiting before the append');
my $appended = sql(q{SELECT p.last_position || '|' || extract(epoch FROM clock_timestamp())
	FROM eventsource.append_event('Order-1', 1, 'B', '{}') p});
my ($p2, $append_at) = split /\|/, $appended;
cmp_ok($p2, '>=', $next, "the append got position $p2");
ok(wait_output($waiter, qr/^(true|false)\|[\d.]+$/m, 30), 'the waiter returned');
my ($reached, $returned_at) = $waiter->{stdout} =~ /^(true|false)\|([\d.]+)$/m;
is($reached, q{true}, 'the waiter saw the delivery: true');
my $latency = $returned_at - $append_at;
cmp_ok($latency, '>', 0, 'it returned after the append');
cmp_ok($latency, '<', 2,
	sprintf('it returned %.1f ms after the append, far below the 60 s timeout '
		  . '(and below the worker\'s 10 s idle wait): woken, not polling', $latency * 1000));
is(sql(qq{SELECT checkpoint >= $p2 FROM eventsource.subscription_status WHERE name = 'waiter'}), 't',
	'the checkpoint is at the position when it returns');
$waiter->{stdout} = '';

# a dropped subscription wakes its waiters: false
sql(q{SELECT eventsource.create_subscription('dropme', 'public.ok_handler(eventsource.events)',
	start_from => 'end', max_retries => 0, retry_backoff => '10ms')});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'dropme'}), 'dropme is live');
$waiter->query_until(qr/waiting/, qq{\\echo waiting
	SELECT 'dropped:' || eventsource.wait_for_subscription('dropme', $p2 + 1000, '60s');
});
usleep(300_000);
$t0 = time;
sql(q{SELECT eventsource.drop_subscription('dropme')});
ok(wait_output($waiter, qr/^dropped:false$/m, 30), 'dropped while waiting: false');
cmp_ok(time - $t0, '<', 10, 'dropped while waiting: returned at once, not at the timeout');
$waiter->quit;

# a paused subscription across a restart: its slot knows no checkpoint until
# a worker runs, the saved checkpoint answers
sql(q{SELECT eventsource.pause_subscription('waiter')});
ok( $node->poll_query_until($db, q{SELECT state = 'paused' AND pid IS NULL
		FROM eventsource.subscription_status WHERE name = 'waiter'}), 'waiter paused');
$node->restart;
is(sql(qq{SELECT checkpoint || ':' || state FROM eventsource.subscription_status WHERE name = 'waiter'}),
	"$p2:paused", 'after the restart: paused at its checkpoint');
is(sql(qq{SELECT eventsource.wait_for_subscription('waiter', $p2, '2s')}), 't',
	'after the restart: a position the paused subscription passed is reached');
is(sql(qq{SELECT eventsource.wait_for_subscription('waiter', $p2 + 1, '100ms')}), 'f',
	'after the restart: one past it is not');
sql(q{SELECT eventsource.resume_subscription('waiter')});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'waiter'}), 'waiter resumed');

# --------------------------------------------------------------------------
# horizon_blockers
# --------------------------------------------------------------------------
sql('CREATE DATABASE other');
sql('CREATE EXTENSION eventsource', 'other');

my $sa = $node->background_psql($db);
my $apid = $sa->query_safe('SELECT pg_backend_pid()');
$sa->query_safe('BEGIN');
my ($afirst, $alast) = split /\|/, $sa->query_safe(
	q{SELECT first_position || '|' || last_position FROM eventsource.append('Blocker-1', 0,
		'[{"type": "A", "data": {}}, {"type": "B", "data": {}}]')});
# an open transaction that did not append, and one in another database
my $idle = $node->background_psql($db);
$idle->query_safe('BEGIN');
$idle->query_safe('SELECT txid_current()');
my $elsewhere = $node->background_psql('other');
my $epid = $elsewhere->query_safe('SELECT pg_backend_pid()');
$elsewhere->query_safe('BEGIN');
$elsewhere->query_safe(q{SELECT eventsource.append_event('Far-1', 0, 'A', '{}')});

is( sql(q{SELECT concat_ws('|', pid, database, positions, min_position, max_position,
		holding_since <= now(), xid IS NOT NULL, xid_age >= 0, transaction_age >= '0s',
		xact_start <= holding_since, state)
		FROM eventsource.horizon_blockers}),
	"$apid|postgres|2|$afirst|$alast|t|t|t|t|t|idle in transaction",
	'horizon_blockers: the appending transaction, its 2 positions and its age');
like(sql(q{SELECT query FROM eventsource.horizon_blockers}),
	qr/eventsource\.append\('Blocker-1', 0,/, 'horizon_blockers: its current query');
is(sql('SELECT eventsource.head_position()'), $afirst - 1, 'the horizon stops right below it');
is( sql(q{SELECT pid || '|' || database || '|' || positions FROM eventsource.horizon_blockers}, 'other'),
	"$epid|other|1", 'horizon_blockers of the other database show its own blocker only');

# a second appender: both are listed
my $sb = $node->background_psql($db);
my $bpid = $sb->query_safe('SELECT pg_backend_pid()');
$sb->query_safe('BEGIN');
my $bpos = $sb->query_safe(q{SELECT first_position FROM eventsource.append_event('Blocker-2', 0, 'C', '{}')});
is( sql(q{SELECT string_agg(pid || ':' || min_position || '-' || max_position, ' ' ORDER BY min_position)
		FROM eventsource.horizon_blockers}),
	"$apid:$afirst-$alast $bpid:$bpos-$bpos", 'horizon_blockers: two appenders');

$sa->query_safe('COMMIT');
is(sql(q{SELECT string_agg(pid::text, ',') FROM eventsource.horizon_blockers}), $bpid,
	'after the first commits, only the second blocks');
is(sql('SELECT eventsource.head_position()'), $bpos - 1, 'the horizon moved up to the second');
$sb->query_safe('ROLLBACK');
is(sql('SELECT count(*) FROM eventsource.horizon_blockers'), '0', 'no blocker left');
is(sql('SELECT eventsource.head_position() >= ' . $bpos), 't', 'the horizon passed the aborted position');
ok( $node->poll_query_until($db, qq{SELECT checkpoint >= $alast FROM eventsource.subscription_status
		WHERE name = 'waiter'}), 'the subscription delivered the unblocked events');
$idle->quit;
$sa->quit;
$sb->quit;
$elsewhere->query_safe('ROLLBACK');
$elsewhere->quit;
$node->stop;

# --------------------------------------------------------------------------
# store_stats when databases come and go (eventsource.max_databases = 2)
# --------------------------------------------------------------------------
my $small = es_node('few_databases', "eventsource.max_databases = 2\n");
for my $d (qw(first second))
{
	$small->safe_psql('postgres', "CREATE DATABASE $d");
	$small->safe_psql($d, q{CREATE EXTENSION eventsource;
		SELECT eventsource.append_event('S-1', 0, 'A', '{}')});
	is($small->safe_psql($d, 'SELECT appends FROM eventsource.store_stats'), '1', "store_stats of $d");
}
$small->safe_psql('postgres', 'DROP DATABASE first');
$small->safe_psql('postgres', 'DROP DATABASE second');
$small->safe_psql('postgres', 'CREATE DATABASE third');
$small->safe_psql('third', q{CREATE EXTENSION eventsource;
	SELECT eventsource.append_event('S-1', 0, 'A', '{}');
	SELECT eventsource.append('S-1', 1, '[{"type": "B", "data": {}}, {"type": "C", "data": {}}]')});
is( $small->safe_psql('third', q{SELECT appends || ':' || events_appended || ':'
		|| (stats_reset IS NOT NULL) FROM eventsource.store_stats}),
	'2:3:true', 'a database created after others were dropped is counted from zero');
$small->stop;

done_testing();
