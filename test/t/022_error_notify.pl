# Handler failures are classified from their SQLSTATE (category, severity),
# kept in the bounded eventsource.recent_errors table, counted by
# error_stats(), and published by the worker with
# pg_notify('eventsource_errors', json) when their severity ranks at or
# above eventsource.notify_min_severity (a SIGHUP setting, changed here with
# ALTER SYSTEM and a reload).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;
use Time::HiRes qw(time usleep);

my $node = es_node('notify');

my $db = 'postgres';
sub sql { my ($sql) = @_; return $node->safe_psql($db, $sql); }

sql(q{
	CREATE EXTENSION eventsource;
	-- fails with the SQLSTATE in the event's data, or sleeps data.sleep seconds
	CREATE FUNCTION public.raiser(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		IF e.data ? 'sleep' THEN
			PERFORM pg_sleep((e.data->>'sleep')::float8);
		ELSIF e.data ? 'sqlstate' THEN
			RAISE EXCEPTION USING ERRCODE = e.data->>'sqlstate',
				MESSAGE = 'failing with ' || (e.data->>'sqlstate');
		END IF;
	END $$;
	SELECT eventsource.create_subscription('alerts', 'public.raiser(eventsource.events)',
		max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 0,
		processing_timeout => '300ms');
});
ok( $node->poll_query_until($db, q{SELECT state = 'live' FROM eventsource.subscription_status}),
	'the subscription is live');
my $worker = sql(q{SELECT pid FROM eventsource.subscription_status WHERE name = 'alerts'});

# append one event per SQLSTATE; returns the last position
sub append_failures
{
	my @states = @_;
	my $events = join(', ', map { qq({"type": "Fail", "data": {"sqlstate": "$_"}}) } @states);
	return sql(qq{SELECT last_position FROM eventsource.append('Alerts-1', -1, '[$events]')});
}

sub wait_delivered
{
	my ($pos, $what) = @_;
	ok( $node->poll_query_until($db,
			qq{SELECT checkpoint >= $pos FROM eventsource.subscription_status WHERE name = 'alerts'}),
		"$what: delivered up to $pos");
}

# --------------------------------------------------------------------------
# classification: every class of the table in the README
# --------------------------------------------------------------------------
my %expected = (
	'40001' => 'transient:low',
	'40P01' => 'transient:low',
	'55P03' => 'transient:low',
	'57014' => 'transient:low',
	'08006' => 'transient:low',
	'53100' => 'infrastructure:critical',
	'58030' => 'infrastructure:critical',
	'XX001' => 'infrastructure:critical',
	'22012' => 'application:medium',
	'23505' => 'application:medium',
	'P0001' => 'application:medium',
	'P0004' => 'application:medium',
	'42501' => 'application:high',
	'42P01' => 'application:high',
	'0A000' => 'unknown:medium',
	'25006' => 'unknown:medium');
my @states = sort keys %expected;

# the listener, before the failures happen
my $listener = $node->background_psql($db);
$listener->query_safe('LISTEN eventsource_errors');
my @notes;    # [pid, payload hash]

# Collect notifications for up to $secs seconds, until $want of them arrived
# in total (EsTest.pm); keeps [pid, decoded payload].
sub collect
{
	my ($want, $secs) = @_;
	push @notes, map { [ $_->[0], decode_json($_->[1]) ] }
	  es_collect_notifications($listener, $want - @notes, $secs);
	return scalar @notes;
}

my $last = append_failures(@states);
wait_delivered($last, 'classification');
is( sql(q{SELECT string_agg(error_sqlstate || '=' || error_category || ':' || error_severity,
		' ' ORDER BY error_sqlstate) FROM eventsource.recent_errors}),
	join(' ', map { "$_=$expected{$_}" } @states),
	'every SQLSTATE class is classified as documented');
is( sql(q{SELECT count(*) FILTER (WHERE d.error_category = r.error_category
		AND d.error_severity = r.error_severity) || '/' || count(*)
		FROM eventsource.dead_letters d JOIN eventsource.recent_errors r USING (global_position)}),
	scalar(@states) . '/' . scalar(@states), 'the dead letters carry the same classification');

# a processing_timeout is a transient 57014 too
my $slow = sql(q{SELECT last_position FROM eventsource.append_event('Alerts-1', -1, 'Slow', '{"sleep": 5}')});
wait_delivered($slow, 'timeout');
is( sql(qq{SELECT concat_ws(':', error_sqlstate, error_category, error_severity, error_message)
		FROM eventsource.recent_errors WHERE global_position = $slow}),
	'57014:transient:low:handler exceeded processing_timeout (300 ms)',
	'a processing_timeout is classified transient/low');

# --------------------------------------------------------------------------
# notify_min_severity = high (the default): only high and critical are
# published; critical ranks above high although it sorts before it
# --------------------------------------------------------------------------
my @published = sort grep { $expected{$_} =~ /:(high|critical)$/ } @states;
collect(scalar @published, 30);
collect(scalar @published + 1, 1);    # anything more would show up now
is( join(' ', sort map { $_->[1]{sqlstate} } @notes),
	join(' ', @published),
	'high: exactly the high and critical failures were published');
my ($infra) = grep { $_->[1]{sqlstate} eq '53100' } @notes;
my $pos53 = sql(q{SELECT global_position FROM eventsource.events WHERE data->>'sqlstate' = '53100'});
my $id53 = sql(q{SELECT event_id FROM eventsource.events WHERE data->>'sqlstate' = '53100'});
is_deeply(
	$infra->[1],
	{
		subscription => 'alerts',
		partition => 0,
		position => $pos53 + 0,
		event_id => $id53,
		sqlstate => '53100',
		category => 'infrastructure',
		severity => 'critical',
		attempt => 1,
		will_retry => JSON::PP::false,
		message => 'failing with 53100',
		message_truncated => JSON::PP::false,
		message_bytes => length('failing with 53100')
	},
	'the payload of a 53100 failure: infrastructure/critical, with the event');
is( join(',', sort { $a <=> $b } keys %{ { map { $_->[0] => 1 } @notes } }), $worker,
	'published by the worker process, not by the appender');

# --------------------------------------------------------------------------
# notify_min_severity = medium: medium is published, low is not
# --------------------------------------------------------------------------
sub set_min_severity
{
	my ($level) = @_;
	sql(qq{ALTER SYSTEM SET eventsource.notify_min_severity = '$level'});
	sql('SELECT pg_reload_conf()');
	# a new backend sees it once the postmaster has reloaded, and the
	# postmaster signals the worker in the same step; the worker's latch
	# wakes it to read the file
	$node->poll_query_until($db, "SELECT current_setting('eventsource.notify_min_severity') = '$level'")
	  or die "reload of notify_min_severity = $level not seen";
	usleep(500_000);
}

set_min_severity('medium');
@notes = ();
$last = append_failures('40001', 'P0001', '57014', '0A000');
wait_delivered($last, 'medium');
collect(2, 30);
collect(3, 1);
is( join(' ', map { "$_->[1]{sqlstate}=$_->[1]{category}:$_->[1]{severity}" } @notes),
	'P0001=application:medium 0A000=unknown:medium',
	'medium: medium failures are published in order, low ones are not');

# --------------------------------------------------------------------------
# none: nothing is published; then critical again
# --------------------------------------------------------------------------
set_min_severity('none');
@notes = ();
$last = append_failures('XX000', '53000');
wait_delivered($last, 'none');
is(collect(1, 2), 0, 'none: not even critical failures are published');

set_min_severity('critical');
$last = append_failures('42501', '58000');
wait_delivered($last, 'critical');
collect(1, 30);
collect(2, 1);
is( join(' ', map { "$_->[1]{sqlstate}=$_->[1]{severity}" } @notes),
	'58000=critical', 'critical: only critical failures are published (high is not)');

# --------------------------------------------------------------------------
# tenancy in use (a role bound to a tenant): any role may LISTEN, so the
# payload leaves the error text out (it may quote any tenant's events); it
# is back once no role is bound
# --------------------------------------------------------------------------
sql(q{CREATE ROLE notify_tenant_app;
      SELECT eventsource.create_tenant('acme');
      SELECT eventsource.bind_role_to_tenant('notify_tenant_app', 'acme');});
@notes = ();
$last = append_failures('58000');
wait_delivered($last, 'withheld');
collect(1, 30);
is_deeply(
	[ map { [ $_->[1]{message}, $_->[1]{message_withheld}, $_->[1]{message_truncated}, $_->[1]{message_bytes} ] } @notes ],
	[ [ undef, JSON::PP::true, JSON::PP::false, length('failing with 58000') ] ],
	'with a role bound to a tenant the notification withholds the message (null, message_withheld)');
is( sql(qq{SELECT error_message FROM eventsource.recent_errors WHERE global_position = $last}),
	'failing with 58000', 'recent_errors keeps the text');
sql(q{SELECT eventsource.unbind_role_from_tenant('notify_tenant_app', 'acme')});
@notes = ();
$last = append_failures('58000');
wait_delivered($last, 'no binding');
collect(1, 30);
is( join(' ', map { ($_->[1]{message} // 'null') . ':' . (exists $_->[1]{message_withheld} ? 'withheld' : '-') } @notes),
	'failing with 58000:-', 'with no role bound the message is published again');
$listener->quit;

# --------------------------------------------------------------------------
# error_stats() and the bound of recent_errors
# --------------------------------------------------------------------------
my $n = sql('SELECT count(*) FROM eventsource.recent_errors');
my $es = decode_json(sql('SELECT eventsource.error_stats()'));
is($es->{total_errors}, $n, "error_stats(): total_errors is the $n recent errors");
is( join(',', map { "$_=" . ($es->{by_category}{$_} // 0) } qw(application infrastructure transient unknown)),
	join(',', map { "$_=" . sql("SELECT count(*) FROM eventsource.recent_errors WHERE error_category = '$_'") }
		  qw(application infrastructure transient unknown)),
	'error_stats(): by_category');
is( join(',', map { "$_=" . ($es->{by_severity}{$_} // 0) } qw(low medium high critical)),
	join(',', map { "$_=" . sql("SELECT count(*) FROM eventsource.recent_errors WHERE error_severity = '$_'") }
		  qw(low medium high critical)),
	'error_stats(): by_severity');
is($es->{by_subscription}{alerts}{errors}, $n, 'error_stats(): per subscription');
is($es->{dead_letters}, sql('SELECT count(*) FROM eventsource.dead_letters'), 'error_stats(): dead letters');
is($es->{kept}, 1000, 'error_stats(): kept is eventsource.recent_errors_kept');

cmp_ok($n, '>', 10, "more than 10 errors so far ($n)");
sql(q{ALTER SYSTEM SET eventsource.recent_errors_kept = 10});
sql('SELECT pg_reload_conf()');
$node->poll_query_until($db, q{SELECT current_setting('eventsource.recent_errors_kept') = '10'})
  or die 'reload not seen';
usleep(500_000);
my $max_before = sql('SELECT max(id) FROM eventsource.recent_errors');
$last = append_failures('P0001');
wait_delivered($last, 'bounded');
is( sql('SELECT count(*) || \':\' || (max(id) - min(id) + 1) FROM eventsource.recent_errors'),
	'10:10', 'recent_errors keeps only the newest eventsource.recent_errors_kept rows');
is( sql(qq{SELECT count(*) FROM eventsource.recent_errors WHERE id > $max_before}), '1',
	'the newest error is among them');

$node->stop;
done_testing();
