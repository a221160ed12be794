# Health levels of subscriptions, driven for real by background workers:
# healthy; degraded by the error rate; critical by lag; unhealthy by an open
# circuit breaker; a failed subscription (continue_on_error off) that makes
# readiness() false.  The thresholds are lowered with the PGC_USERSET
# eventsource.max_* settings in the querying session: the status is computed
# by the backend that reads it.
#
# Each scenario runs in its own database, because health(), readiness() and
# the status view cover the subscriptions of the current database.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;

my $node = es_node('monitoring');

# A database with the extension and the handlers:
#   ok_handler     records the event in public.seen
#   picky_handler  fails on events of type 'Bad' (SQLSTATE P0001)
#   gated_handler  fails while public.gate.closed is true
sub new_db
{
	my ($db) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, q{
		CREATE EXTENSION eventsource;
		CREATE TABLE public.seen (pos bigint PRIMARY KEY, type text);
		CREATE TABLE public.gate (closed boolean NOT NULL);
		INSERT INTO public.gate VALUES (true);
		CREATE FUNCTION public.ok_handler(e eventsource.events) RETURNS void
		LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO public.seen VALUES (e.global_position, e.event_type);
		END $$;
		CREATE FUNCTION public.picky_handler(e eventsource.events) RETURNS void
		LANGUAGE plpgsql AS $$
		BEGIN
			IF e.event_type = 'Bad' THEN
				RAISE EXCEPTION 'poison event at %', e.global_position;
			END IF;
			INSERT INTO public.seen VALUES (e.global_position, e.event_type);
		END $$;
		CREATE FUNCTION public.gated_handler(e eventsource.events) RETURNS void
		LANGUAGE plpgsql AS $$
		BEGIN
			IF (SELECT closed FROM public.gate) THEN
				RAISE EXCEPTION 'gate closed at %', e.global_position;
			END IF;
			INSERT INTO public.seen VALUES (e.global_position, e.event_type);
		END $$;
	});
	return $db;
}

sub sql { my ($db, $sql) = @_; return $node->safe_psql($db, $sql); }

sub json_of { my ($db, $sql) = @_; return decode_json(sql($db, $sql)); }

# one status row as "col|col|..." for the subscription (partition 0)
sub status
{
	my ($db, $name, $cols, $set) = @_;
	$set //= '';
	return sql($db, "$set SELECT $cols FROM eventsource.subscription_status"
		  . " WHERE name = '$name' ORDER BY partition LIMIT 1");
}

sub wait_until { es_wait_until($node, @_) }

sub events_json
{
	my @types = @_;
	return '[' . join(', ', map { qq({"type": "$_", "data": {}}) } @types) . ']';
}

# --------------------------------------------------------------------------
# 1. healthy: a two-partition subscription that delivered everything
# --------------------------------------------------------------------------
{
	my $db = new_db('healthy');
	sql($db, q{SELECT eventsource.create_subscription('projection',
		'public.ok_handler(eventsource.events)', max_retries => 0,
		retry_backoff => '10ms', partitions => 2)});
	# streams in both partitions
	my ($s0, $s1);
	for my $i (1 .. 50)
	{
		my $p = sql($db, "SELECT eventsource.stream_partition('Order-$i', 2)");
		$s0 //= "Order-$i" if $p == 0;
		$s1 //= "Order-$i" if $p == 1;
	}
	sql($db, "SELECT eventsource.append('$s0', 0, '" . events_json('A', 'B') . "')");
	sql($db, "SELECT eventsource.append('$s1', 0, '" . events_json('C') . "')");
	wait_until($db, q{SELECT count(*) = 2 AND bool_and(state = 'live'
		AND checkpoint = eventsource.head_position())
		FROM eventsource.subscription_status WHERE name = 'projection'},
		'healthy: both partitions caught up and live');

	is(sql($db, 'SELECT count(*) FROM public.seen'), '3', 'healthy: the handler saw the 3 events');
	is( sql($db, q{SELECT string_agg(concat_ws(':', partition, state, health,
			coalesce(health_reason, '-'), checkpoint, head_position, lag_events,
			events_failed, events_retried, dead_letters, consecutive_failures,
			error_rate_per_minute, coalesce(last_error, '-'), pid > 0,
			started_at <= now(), last_activity_at >= started_at,
			heartbeat_at IS NOT NULL, partitions), ' ' ORDER BY partition)
			FROM eventsource.subscription_status WHERE name = 'projection'}),
		'0:live:healthy:-:3:3:0:0:0:0:0:0:-:t:t:t:t:2 1:live:healthy:-:3:3:0:0:0:0:0:0:-:t:t:t:t:2',
		'healthy: one status row per partition, no lag, no errors, healthy');
	is( sql($db, q{SELECT string_agg(events_processed::text, ',' ORDER BY partition)
			FROM eventsource.subscription_status}),
		'2,1', 'healthy: events_processed counts per partition');

	my $h = json_of($db, 'SELECT eventsource.health()');
	is($h->{status}, 'healthy', 'healthy: health() status');
	ok($h->{running}, 'healthy: health() running');
	is( join(',', map { $h->{$_} } qw(subscription_count healthy_count degraded_count
			unhealthy_count critical_count total_events_processed total_events_failed
			total_lag_events)),
		'1,1,0,0,0,3,0,0', 'healthy: health() counts and totals');
	cmp_ok($h->{uptime_seconds}, '>=', 0, 'healthy: uptime_seconds');
	is(scalar @{ $h->{subscriptions} }, 1, 'healthy: one entry per subscription (not per partition)');
	is( join(',', map { $h->{subscriptions}[0]{$_} // 'null' }
			qw(name status state partitions events_processed lag_events reason)),
		'projection,healthy,live,2,3,0,null', 'healthy: the subscription entry');
	is_deeply(
		$h->{checks},
		{
			launcher => 'healthy',
			heartbeats => 'healthy',
			dead_letters => 'healthy',
			sql_version => 'healthy',
			'subscription:projection' => 'healthy'
		},
		'healthy: every check healthy');

	is_deeply(json_of($db, q{SELECT eventsource.readiness() - 'timestamp'}),
		{ ready => JSON::PP::true, reason => undef }, 'healthy: ready');
	is_deeply(json_of($db, q{SELECT eventsource.liveness() - 'timestamp'}),
		{ alive => JSON::PP::true, reason => undef }, 'healthy: alive');

	# the workers are visible in pg_stat_activity under a readable name
	is( sql($db, q{SELECT string_agg(a.application_name || '/' || a.backend_type, ','
			ORDER BY s.partition)
			FROM eventsource.subscription_status s
			JOIN pg_stat_activity a ON a.pid = s.pid}),
		'eventsource projection/0/eventsource worker,eventsource projection/1/eventsource worker',
		'healthy: workers in pg_stat_activity');
}

# --------------------------------------------------------------------------
# 2. degraded by the error rate (and the error-count and dead-letter
#    thresholds, which the same failures feed)
# --------------------------------------------------------------------------
{
	my $db = new_db('degraded');
	# each Bad event fails twice (one retry), then goes to the dead letters;
	# the breaker is off so that only the rate matters
	sql($db, q{SELECT eventsource.create_subscription('picky',
		'public.picky_handler(eventsource.events)', max_retries => 1,
		retry_backoff => '10ms', circuit_breaker_threshold => 0)});
	sql($db, "SELECT eventsource.append('Order-1', 0, '"
		  . events_json('Good', 'Bad', 'Good', 'Bad', 'Good') . "')");
	wait_until($db, q{SELECT state = 'live' AND checkpoint = 5
		FROM eventsource.subscription_status WHERE name = 'picky'},
		'degraded: the subscription passed all 5 events');

	is( status('degraded', 'picky', q{concat_ws(':', events_processed, events_failed,
			events_retried, dead_letters, consecutive_failures, error_rate_per_minute,
			lag_events, last_error, last_sqlstate, last_error_at IS NOT NULL)}),
		'3:2:2:2:0:4:0:poison event at 4:P0001:t',
		'degraded: 4 failed calls in the last minute, 2 retried, 2 dead letters');
	is( sql($db, q{SELECT string_agg(concat_ws(':', global_position, attempt, error_sqlstate,
			error_category, error_severity), ' ' ORDER BY id) FROM eventsource.recent_errors}),
		'2:1:P0001:application:medium 2:2:P0001:application:medium '
		  . '4:1:P0001:application:medium 4:2:P0001:application:medium',
		'degraded: every failed call is in recent_errors, classified');
	is( sql($db, q{SELECT string_agg(concat_ws(':', global_position, retry_count, error_sqlstate,
			error_message), ' ' ORDER BY id) FROM eventsource.dead_letters}),
		'2:1:P0001:poison event at 2 4:1:P0001:poison event at 4',
		'degraded: the dead letters');

	# default thresholds (10 per minute, 50 failed, 10 dead letters): healthy
	is(status($db, 'picky', 'health'), 'healthy', 'degraded: healthy under the default thresholds');
	is( status($db, 'picky', q{health || ':' || health_reason},
			'SET eventsource.max_error_rate_per_minute = 4;'),
		'degraded:error rate', 'degraded: error rate 4 >= max_error_rate_per_minute 4');
	is(status($db, 'picky', 'health', 'SET eventsource.max_error_rate_per_minute = 5;'),
		'healthy', 'degraded: error rate 4 < 5 is healthy');

	my $h = json_of($db, q{SET eventsource.max_error_rate_per_minute = 4;
		SELECT eventsource.health()});
	is( join(',', map { $h->{$_} } qw(status degraded_count healthy_count total_events_failed
			total_dead_letters)),
		'degraded,1,0,2,2', 'degraded: health() status and counts');
	is( join(',', map { $h->{subscriptions}[0]{$_} } qw(status reason error_rate_per_minute)),
		'degraded,error rate,4', 'degraded: health() subscription entry');
	is($h->{checks}{'subscription:picky'}, 'unhealthy: error rate (degraded)',
		'degraded: the check names the reason and the level');

	# the other thresholds fed by the same failures
	is( status($db, 'picky', q{health || ':' || health_reason},
			'SET eventsource.max_errors_warning = 2;'),
		'degraded:failed events', 'degraded: events_failed 2 >= max_errors_warning 2');
	is( status($db, 'picky', q{health || ':' || health_reason},
			'SET eventsource.max_errors_critical = 2;'),
		'critical:failed events', 'critical: events_failed 2 >= max_errors_critical 2');
	is( status($db, 'picky', q{health || ':' || health_reason},
			'SET eventsource.max_dead_letters_warning = 2;'),
		'degraded:dead letters', 'degraded: dead_letters 2 >= max_dead_letters_warning 2');
	is( status($db, 'picky', q{health || ':' || health_reason},
			'SET eventsource.max_dead_letters_critical = 2;'),
		'critical:dead letters', 'critical: dead_letters 2 >= max_dead_letters_critical 2');
	is( sql($db, q{SET eventsource.max_dead_letters_warning = 2;
			SELECT eventsource.health()->'checks'->>'dead_letters'}),
		'unhealthy: 2 dead letters waiting', 'degraded: the dead-letter check');

	# a degraded subscription does not make the service unready or dead
	is(sql($db, q{SET eventsource.max_error_rate_per_minute = 4;
		SELECT eventsource.readiness()->>'ready'}), 'true', 'degraded: still ready');

	my $es = json_of($db, 'SELECT eventsource.error_stats()');
	is( join(',', $es->{total_errors}, $es->{by_category}{application},
			$es->{by_severity}{medium}, $es->{by_subscription}{picky}{errors},
			$es->{dead_letters}),
		'4,4,4,4,2', 'degraded: error_stats() totals and per subscription');
}

# --------------------------------------------------------------------------
# 3. critical by lag: a paused subscription falls behind
# --------------------------------------------------------------------------
{
	my $db = new_db('lagging');
	sql($db, q{SELECT eventsource.create_subscription('lagging',
		'public.ok_handler(eventsource.events)', max_retries => 0, retry_backoff => '10ms')});
	sql($db, "SELECT eventsource.append('Order-1', 0, '" . events_json('A') . "')");
	wait_until($db, q{SELECT state = 'live' AND checkpoint = 1
		FROM eventsource.subscription_status WHERE name = 'lagging'},
		'lag: delivered the first event');
	sql($db, q{SELECT eventsource.pause_subscription('lagging')});
	wait_until($db, q{SELECT state = 'paused' AND pid IS NULL
		FROM eventsource.subscription_status WHERE name = 'lagging'},
		'lag: the worker stopped for the pause');
	sql($db, "SELECT eventsource.append('Order-1', 1, '"
		  . events_json('B', 'C', 'D', 'E', 'F') . "')");

	is( status($db, 'lagging', q{concat_ws(':', state, checkpoint, head_position, lag_events,
			lag_seconds >= 0 AND lag_seconds < 600, health, health_reason)}),
		'paused:1:6:5:t:degraded:paused',
		'lag: 5 events behind; paused is degraded under the default thresholds');
	is( status($db, 'lagging', q{health || ':' || health_reason},
			'SET eventsource.max_lag_events_critical = 5;'),
		'critical:lag', 'lag: lag_events 5 >= max_lag_events_critical 5 is critical');
	is(status($db, 'lagging', 'health', 'SET eventsource.max_lag_events_critical = 6;'),
		'degraded', 'lag: 5 < 6 is not critical');
	is( status($db, 'lagging', 'health',
			'SET eventsource.max_lag_events_warning = 5; SET eventsource.max_lag_events_critical = 6;'),
		'degraded', 'lag: the warning threshold gives degraded');

	my $h = json_of($db, q{SET eventsource.max_lag_events_critical = 5;
		SELECT eventsource.health()});
	is( join(',', map { $h->{$_} } qw(status critical_count total_lag_events)),
		'critical,1,5', 'lag: health() is critical');
	is( join(',', map { $h->{subscriptions}[0]{$_} } qw(status reason state lag_events)),
		'critical,lag,paused,5', 'lag: health() subscription entry');
	is($h->{checks}{'subscription:lagging'}, 'unhealthy: lag (critical)', 'lag: the check');
	is(sql($db, q{SELECT eventsource.readiness()->>'ready'}), 'true', 'lag: a paused subscription is ready');

	# resumed, it catches up and is healthy again, even with the low threshold
	sql($db, q{SELECT eventsource.resume_subscription('lagging')});
	wait_until($db, q{SELECT state = 'live' AND checkpoint = 6
		FROM eventsource.subscription_status WHERE name = 'lagging'},
		'lag: resumed and caught up');
	is( status($db, 'lagging', q{lag_events || ':' || health},
			'SET eventsource.max_lag_events_critical = 1;'),
		'0:healthy', 'lag: no lag, healthy again');
}

# --------------------------------------------------------------------------
# 4. unhealthy by an open circuit breaker
# --------------------------------------------------------------------------
{
	my $db = new_db('breaker');
	sql($db, q{SELECT eventsource.create_subscription('breaker',
		'public.gated_handler(eventsource.events)', max_retries => 0,
		retry_backoff => '10ms', circuit_breaker_threshold => 3,
		circuit_breaker_reset => '1 hour')});
	sql($db, "SELECT eventsource.append('Order-1', 0, '"
		  . events_json('A', 'B', 'C', 'D', 'E') . "')");
	wait_until($db, q{SELECT state = 'circuit_open'
		FROM eventsource.subscription_status WHERE name = 'breaker'},
		'breaker: opened');
	# delivery pauses: nothing more happens while it is open
	select(undef, undef, undef, 0.5);
	is( status($db, 'breaker', q{concat_ws(':', state, pid > 0, checkpoint, lag_events,
			events_processed, events_failed, dead_letters, consecutive_failures,
			circuit_open_until > now() + interval '55 minutes'
			AND circuit_open_until < now() + interval '61 minutes',
			health, health_reason)}),
		'circuit_open:t:3:2:0:3:3:3:t:unhealthy:circuit breaker open',
		'breaker: 3 consecutive dead letters opened it for an hour; 2 events wait');
	is(sql($db, 'SELECT count(*) FROM eventsource.dead_letters'), '3', 'breaker: no 4th attempt while open');

	my $h = json_of($db, 'SELECT eventsource.health()');
	is( join(',', map { $h->{$_} } qw(status unhealthy_count healthy_count)),
		'unhealthy,1,0', 'breaker: health() is unhealthy');
	is( join(',', map { $h->{subscriptions}[0]{$_} } qw(status reason state dead_letters)),
		'unhealthy,circuit breaker open,circuit_open,3', 'breaker: health() subscription entry');
	is( $h->{checks}{'subscription:breaker'},
		'unhealthy: circuit breaker open (unhealthy)', 'breaker: the check');
	is(sql($db, q{SELECT eventsource.readiness()->>'ready'}), 'true',
		'breaker: an open breaker is not a reason to be unready');
	is(sql($db, q{SELECT eventsource.liveness()->>'alive'}), 'true',
		'breaker: a worker waiting on an open breaker is alive');
}

# --------------------------------------------------------------------------
# 5. failed: continue_on_error off stops the subscription; not ready
# --------------------------------------------------------------------------
{
	my $db = new_db('failing');
	sql($db, q{SELECT eventsource.create_subscription('stopper',
		'public.gated_handler(eventsource.events)', max_retries => 0,
		retry_backoff => '10ms', continue_on_error => false)});
	sql($db, "SELECT eventsource.append('Order-1', 0, '" . events_json('A', 'B') . "')");
	wait_until($db, q{SELECT state = 'failed' AND pid IS NULL
		FROM eventsource.subscription_status WHERE name = 'stopper'},
		'failed: stopped at the event');

	is_deeply(json_of($db, q{SELECT eventsource.readiness() - 'timestamp'}),
		{ ready => JSON::PP::false, reason => 'subscription stopper partition 0 is failed' },
		'failed: readiness() is false and names the partition');
	is( status($db, 'stopper', q{concat_ws(':', checkpoint, lag_events, events_failed,
			dead_letters, health, health_reason, last_error, last_sqlstate)}),
		'0:2:1:0:critical:stopped at a failed event:gate closed at 1:P0001',
		'failed: nothing passed, nothing dead-lettered, critical');
	is( sql($db, q{SELECT concat_ws(':', state, failed_position, error_sqlstate)
			FROM eventsource.subscription_partitions WHERE subscription = 'stopper'}),
		'failed:1:P0001', 'failed: the partition row keeps the failed event');
	is(sql($db, q{SELECT eventsource.health()->>'status'}), 'critical', 'failed: health() is critical');
	is(sql($db, q{SELECT eventsource.liveness()->>'alive'}), 'true', 'failed: still alive');
	is(sql('healthy', q{SELECT eventsource.readiness()->>'ready'}), 'true',
		'failed: readiness is per database: the other database is ready');

	# fixed and resumed: the event is retried, and the service is ready again
	sql($db, 'UPDATE public.gate SET closed = false');
	sql($db, q{SELECT eventsource.resume_subscription('stopper')});
	wait_until($db, q{SELECT state = 'live' AND checkpoint = 2
		FROM eventsource.subscription_status WHERE name = 'stopper'},
		'failed: resumed and delivered');
	is_deeply(json_of($db, q{SELECT eventsource.readiness() - 'timestamp'}),
		{ ready => JSON::PP::true, reason => undef }, 'failed: ready again after the resume');
	is(sql($db, 'SELECT string_agg(pos::text, \',\' ORDER BY pos) FROM public.seen'), '1,2',
		'failed: the failed event was delivered after the resume');
}

$node->stop;
done_testing();
