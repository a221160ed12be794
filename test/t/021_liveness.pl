# liveness() comes from heartbeats that the launcher and the workers write,
# so a frozen launcher, a stuck worker and a crash-looping worker read as
# not alive within eventsource.liveness_timeout (2 s here), and alive again
# once they recover.
#
# The launcher is frozen with SIGSTOP: SIGKILL of any server process makes
# the postmaster restart the whole cluster, which would hide what liveness
# says.  While it is frozen, a new subscription stays "starting", which makes
# readiness() false.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;
use Time::HiRes qw(time usleep);

my $node = es_node('liveness', qq{
eventsource.liveness_timeout = '2s'
});

my $db = 'postgres';
sub sql { my ($sql) = @_; return $node->safe_psql($db, $sql); }
sub json_of { my ($sql) = @_; return decode_json(sql($sql)); }

# poll a boolean query for at most $secs seconds (EsTest.pm)
sub poll_for { my ($query, $secs) = @_; return es_poll_for($node, $db, $query, $secs); }

sql(q{
	CREATE EXTENSION eventsource;
	CREATE TABLE public.seen (pos bigint PRIMARY KEY);
	CREATE FUNCTION public.ok_handler(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO public.seen VALUES (e.global_position);
	END $$;
	-- sleeps for the event's data.sleep seconds
	CREATE FUNCTION public.slow_handler(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM pg_sleep((e.data->>'sleep')::float8);
		INSERT INTO public.seen VALUES (e.global_position);
	END $$;
});

my $launcher = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventsource launcher'});
like($launcher, qr/^\d+$/, "the launcher runs (pid $launcher)");
ok(poll_for(q{SELECT (eventsource.liveness()->>'alive')::boolean}, 30), 'alive at the start');

# never leave the launcher frozen, whatever happens below
my $stopped = 0;
END { kill 'CONT', $launcher if $stopped; }

# --------------------------------------------------------------------------
# 1. a frozen launcher: its heartbeat stops
# --------------------------------------------------------------------------
kill 'STOP', $launcher or die "cannot stop the launcher: $!";
$stopped = 1;
my $t0 = time;
ok( $node->poll_query_until($db, q{SELECT NOT (eventsource.liveness()->>'alive')::boolean}),
	'frozen launcher: liveness() turns false');
my $took = time - $t0;
cmp_ok($took, '<', 15, sprintf('frozen launcher: noticed %.1f s after the stop', $took));
my $l = json_of(q{SELECT eventsource.liveness()});
like($l->{reason}, qr/^the launcher has not written a heartbeat for (\d+) s$/,
	'frozen launcher: the reason names the launcher');
my ($age) = $l->{reason} =~ /for (\d+) s/;
cmp_ok($age, '>=', 2, 'frozen launcher: the heartbeat is older than liveness_timeout');

my $h = json_of(q{SELECT eventsource.health()});
is($h->{status}, 'unhealthy', 'frozen launcher: health() is unhealthy');
like($h->{checks}{heartbeats}, qr/^unhealthy: the launcher has not written a heartbeat/,
	'frozen launcher: the heartbeats check says why');
is($h->{checks}{launcher}, 'healthy', 'frozen launcher: it is still registered as running');

# a subscription created now cannot start: readiness says so
sql(q{SELECT eventsource.create_subscription('late', 'public.ok_handler(eventsource.events)',
	max_retries => 0, retry_backoff => '10ms')});
is_deeply(json_of(q{SELECT eventsource.readiness() - 'timestamp'}),
	{ ready => JSON::PP::false, reason => 'subscription late partition 0 is starting' },
	'frozen launcher: a starting subscription makes readiness() false');
is(sql(q{SELECT state || ':' || health || ':' || health_reason FROM eventsource.subscription_status}),
	'starting:degraded:starting', 'frozen launcher: the new subscription is starting');

kill 'CONT', $launcher;
$stopped = 0;
ok($node->poll_query_until($db, q{SELECT (eventsource.liveness()->>'alive')::boolean}),
	'launcher resumed: alive again');
ok( $node->poll_query_until($db, q{SELECT (eventsource.readiness()->>'ready')::boolean
		AND (SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'late')}),
	'launcher resumed: the subscription started, ready again');
is(json_of(q{SELECT eventsource.health()})->{status}, 'healthy', 'launcher resumed: healthy');

# --------------------------------------------------------------------------
# 2. a stuck worker: a handler that runs longer than liveness_timeout
# --------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('sleeper', 'public.slow_handler(eventsource.events)',
	processing_timeout => '5 minutes', max_retries => 0, retry_backoff => '10ms')});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'sleeper'}), 'stuck worker: the subscription is live');
my $first = sql(q{SELECT last_position FROM eventsource.append_event('Nap-1', 0, 'Nap', '{"sleep": 8}')});
ok( $node->poll_query_until($db, q{SELECT NOT (eventsource.liveness()->>'alive')::boolean}),
	'stuck worker: liveness() turns false');
$l = json_of(q{SELECT eventsource.liveness()});
like($l->{reason}, qr{^worker sleeper/0 has not written a heartbeat for \d+ s$},
	'stuck worker: the reason names the worker');
is( sql(q{SELECT concat_ws(':', s.state, s.health, s.health_reason, a.wait_event)
		FROM eventsource.subscription_status s JOIN pg_stat_activity a ON a.pid = s.pid
		WHERE s.name = 'sleeper'}),
	'catching_up:unhealthy:no heartbeat: the worker is stuck:PgSleep',
	'stuck worker: unhealthy in the status view, and really inside the handler');
is(json_of(q{SELECT eventsource.health()})->{status}, 'unhealthy', 'stuck worker: health() is unhealthy');
ok( $node->poll_query_until($db, q{SELECT (eventsource.liveness()->>'alive')::boolean}),
	'stuck worker: alive again once the handler returned');
is( sql(qq{SELECT count(*) FROM public.seen WHERE pos = $first}), '1',
	'stuck worker: the slow event was delivered');

# --------------------------------------------------------------------------
# 3. a crash-looping worker: its handler vanished, it fails at every start.
#    DROP FUNCTION of a handler is refused, so the subscription row is
#    pointed at a function OID that does not exist.
# --------------------------------------------------------------------------
sql(q{CREATE FUNCTION public.doomed_handler(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$ BEGIN NULL; END $$});
sql(q{SELECT eventsource.create_subscription('doomed', 'public.doomed_handler(eventsource.events)',
	max_retries => 0, retry_backoff => '10ms')});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'doomed'}), 'crash loop: the subscription is live');
sql(q{SELECT eventsource.pause_subscription('doomed')});
ok( $node->poll_query_until($db, q{SELECT pid IS NULL FROM eventsource.subscription_status
		WHERE name = 'doomed'}), 'crash loop: paused');
sql(q{UPDATE eventsource.subscriptions SET handler = 4000000000::oid::regprocedure
	WHERE name = 'doomed'});
sql(q{SELECT eventsource.resume_subscription('doomed')});
ok( $node->poll_query_until($db, q{SELECT NOT (eventsource.liveness()->>'alive')::boolean}),
	'crash loop: liveness() turns false');
like(json_of(q{SELECT eventsource.liveness()})->{reason},
	qr{^worker doomed/0 is crash-looping \(\d+ failed starts\)$},
	'crash loop: the reason says so');
like(sql(q{SELECT last_sqlstate || ' ' || last_error FROM eventsource.subscription_status
		WHERE name = 'doomed'}),
	qr/^[0-9A-Z]{5} .*\b4000000000\b/, 'crash loop: the status view shows the start error');

# the handler is back (as the worker sees it at its next start): the worker
# runs, and once it has been up for a liveness_timeout it is alive again,
# although its crash count is only cleared when it exits
sql(q{UPDATE eventsource.subscriptions SET handler = 'public.doomed_handler(eventsource.events)'
	WHERE name = 'doomed'});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status
		WHERE name = 'doomed'}), 'crash loop: recovered, live');
ok( $node->poll_query_until($db, q{SELECT (eventsource.liveness()->>'alive')::boolean}),
	'crash loop: a recovered worker is alive');
cmp_ok( sql(q{SELECT extract(epoch FROM now() - started_at) FROM eventsource.subscription_status
		WHERE name = 'doomed'}), '>=', 2,
	'crash loop: alive after a liveness_timeout of steady running');

# --------------------------------------------------------------------------
# 4. the launcher terminated with SIGTERM (pg_terminate_backend) must come
#    back: readiness must not stay "shutting down" while the server runs.
# --------------------------------------------------------------------------
sql(qq{SELECT pg_terminate_backend($launcher)});
ok( poll_for(q{SELECT (eventsource.readiness()->>'ready')::boolean
		AND (eventsource.liveness()->>'alive')::boolean}, 12),
	'terminated launcher: restarted, ready and alive again');

$node->stop;
done_testing();
