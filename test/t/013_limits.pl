# Bounded workers: eventsource.max_workers caps subscription partitions
# (53000 at creation), and too small a max_worker_processes is reported
# clearly (a WARNING at startup and when a worker cannot start, and the
# reason in the status view) instead of failing silently.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

# room for the two launchers (ours and logical replication's) and two workers
my $node = es_node('limits', qq{
max_worker_processes = 4
max_parallel_workers = 0
eventsource.max_workers = 4
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

like(slurp_file($node->logfile),
	qr/WARNING:  max_worker_processes \(4\) is lower than eventsource.max_workers \+ 1 \(5\)/,
	'a WARNING at startup names both settings');

sql(q{
CREATE EXTENSION eventsource;
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventsource.create_subscription('a', 'h(eventsource.events)');
SELECT eventsource.create_subscription('b', 'h(eventsource.events)');
});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM eventsource.subscription_status WHERE state = 'live'}),
	'two workers run');

my $offset = -s $node->logfile;
sql(q{SELECT eventsource.create_subscription('c', 'h(eventsource.events)')});
ok($node->poll_query_until('postgres',
		q{SELECT last_error LIKE 'no free background worker slot%' AND state = 'starting'
		    FROM eventsource.subscription_status WHERE name = 'c'}),
	'the third cannot start, and the status view says why');
$node->wait_for_log(qr/WARNING:  eventsource: cannot start a worker for subscription "c" partition 0: no free background worker slot/,
	$offset);
like(slurp_file($node->logfile, $offset), qr/HINT:  Raise max_worker_processes \(now 4\)/,
	'the log says which setting to raise');
is(sql(q{SELECT (eventsource.readiness()->>'ready')}), 'false', 'not ready while a subscription cannot start');

# a slot frees up: the waiting subscription starts
sql(q{SELECT eventsource.drop_subscription('a')});
ok($node->poll_query_until('postgres',
		q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'c'}),
	'when a worker slot frees up, it starts');

# max_workers: four partitions in all, then 53000
sql(q{SELECT eventsource.create_subscription('d', 'h(eventsource.events)', partitions => 2)});
my ($ret, $out, $err) = $node->psql('postgres',
	q{SELECT eventsource.create_subscription('e', 'h(eventsource.events)')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  53000: not enough subscription worker slots for "e"/, '53000 past eventsource.max_workers');
like($err, qr/It needs 1; 0 of eventsource.max_workers = 4 are free/, 'with the numbers');

$node->stop;
done_testing();
