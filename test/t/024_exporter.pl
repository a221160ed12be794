# monitoring/: the postgres_exporter queries file and the README that
# documents it.
#  - the YAML has the exporter's shape (namespace: query, master, metrics of
#    column: usage LABEL/GAUGE/COUNTER + description);
#  - every query runs under the README's GRANTs (a role that is not a
#    superuser), returns exactly the declared columns, no NULL metric value,
#    and the values describe the server's state (a live, a circuit-open, a
#    paused lagging subscription, an open appending transaction);
#  - the README lists exactly the metric names the file produces;
#  - when prometheus-postgres-exporter (or postgres_exporter) is installed,
#    the real exporter loads the file and serves every metric;
#  - the README's readiness and liveness probe commands exit 0 and 1 when
#    they should, also when the server is down.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use CPAN::Meta::YAML;
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(time usleep);

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $yaml_file = "$root/monitoring/postgres_exporter_queries.yaml";
my $readme_file = "$root/monitoring/README.md";

sub slurp
{
	my ($f) = @_;
	open my $fh, '<', $f or die "$f: $!";
	local $/;
	return <$fh>;
}

# --------------------------------------------------------------------------
# the file's shape
# --------------------------------------------------------------------------
my $doc = CPAN::Meta::YAML->read_string(slurp($yaml_file))
  or die 'YAML: ' . CPAN::Meta::YAML->errstr;
my $queries = $doc->[0];
my @namespaces = sort keys %$queries;
ok(@namespaces >= 5, 'the queries file parses: ' . join(', ', @namespaces));

my (%columns, %labels, @metric_names, %usage_of);
for my $ns (@namespaces)
{
	my $q = $queries->{$ns};
	like($ns, qr/^eventsource_[a-z_]+$/, "$ns: namespace name");
	ok(defined $q->{query} && $q->{query} =~ /\bSELECT\b/i, "$ns: has a query");
	is($q->{master}, 'true', "$ns: master: true (runs in the DSN's database only)");
	my @bad = grep {
		ref $_ ne 'HASH' || keys %$_ != 1 || do
		{
			my ($c) = keys %$_;
			my $m = $_->{$c};
			ref $m ne 'HASH' || ($m->{usage} // '') !~ /^(LABEL|GAUGE|COUNTER)$/
			  || ($m->{description} // '') eq '';
		}
	} @{ $q->{metrics} };
	is(scalar @bad, 0, "$ns: every metric is column: {usage, description}");
	for my $m (@{ $q->{metrics} })
	{
		my ($c) = keys %$m;
		push @{ $columns{$ns} }, $c;
		if ($m->{$c}{usage} eq 'LABEL')
		{
			push @{ $labels{$ns} }, $c;
		}
		else
		{
			push @metric_names, "${ns}_$c";
			$usage_of{"${ns}_$c"} = $m->{$c}{usage};
		}
	}
	ok((grep { $_ eq 'datname' } @{ $labels{$ns} }), "$ns: has the datname label");
}
my @counters_ok = grep { $usage_of{$_} ne 'COUNTER' || /_total$/ } @metric_names;
is(scalar @counters_ok, scalar @metric_names, 'counters (and only they may) end in _total')
  or diag(join ' ', grep { $usage_of{$_} eq 'COUNTER' && !/_total$/ } @metric_names);

# the README lists exactly these metric names
my $readme = slurp($readme_file);
my %documented = map { $_ => 1 } ($readme =~ /^\| `(eventsource_[a-z0-9_]+)` \|/mg);
is_deeply([ sort keys %documented ], [ sort @metric_names ],
	'monitoring/README.md documents exactly the metrics the file exports');
for my $name (@metric_names)
{
	my $type = lc $usage_of{$name};
	like($readme, qr/^\| `$name` \| $type \|/m, "README: $name is a $type");
}

# --------------------------------------------------------------------------
# a server in a known state
# --------------------------------------------------------------------------
my $node = es_node('exporter', qq{
eventsource.liveness_timeout = '2s'
});
my $db = 'postgres';
sub sql { my ($sql) = @_; return $node->safe_psql($db, $sql); }

# the README's GRANTs, as written there
my ($grants) = $readme =~ /```sql\n(CREATE ROLE es_exporter.*?)```/s;
ok(defined $grants, 'the README has the exporter role block');
sql('CREATE EXTENSION eventsource');
sql($grants);

sql(q{
	CREATE TABLE public.gate (closed boolean NOT NULL);
	INSERT INTO public.gate VALUES (true);
	CREATE FUNCTION public.ok_handler(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
	CREATE FUNCTION public.gated(e eventsource.events) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		IF (SELECT closed FROM public.gate) THEN
			RAISE EXCEPTION USING ERRCODE = '53100', MESSAGE = 'disk full';
		END IF;
	END $$;
	SELECT eventsource.create_subscription('fine', 'public.ok_handler(eventsource.events)',
		max_retries => 0, retry_backoff => '10ms', categories => ARRAY['Order']);
	SELECT eventsource.create_subscription('broken', 'public.gated(eventsource.events)',
		max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 2,
		circuit_breaker_reset => '1 hour', categories => ARRAY['Bad']);
	SELECT eventsource.create_subscription('behind', 'public.ok_handler(eventsource.events)',
		max_retries => 0, retry_backoff => '10ms', categories => ARRAY['Order']);
});
ok( $node->poll_query_until($db, q{SELECT bool_and(state = 'live') FROM eventsource.subscription_status}),
	'three live subscriptions');
sql(q{SELECT eventsource.pause_subscription('behind')});
ok( $node->poll_query_until($db, q{SELECT pid IS NULL FROM eventsource.subscription_status
		WHERE name = 'behind'}), 'behind is paused');
sql(q{SELECT eventsource.append('Order-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}},
	{"type": "C", "data": {}}]')});
sql(q{SELECT eventsource.append('Bad-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}},
	{"type": "C", "data": {}}]')});
sql(q{SELECT eventsource.append_event('Order-2', 0, 'A', '{}')});
ok( $node->poll_query_until($db, q{SELECT bool_and(CASE name WHEN 'broken' THEN state = 'circuit_open'
		WHEN 'fine' THEN checkpoint = eventsource.head_position() ELSE true END)
		FROM eventsource.subscription_status}), 'fine caught up, broken opened its breaker');
my $h = $node->background_psql($db);
$h->query_safe('BEGIN');
$h->query_safe(q{SELECT eventsource.append('Order-3', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]')});

# run one namespace's query as the exporter's role: rows as hashes
sub rows_of
{
	my ($ns) = @_;
	my $out = $node->safe_psql($db,
		"SELECT coalesce(json_agg(q), '[]') FROM ($queries->{$ns}{query}) q",
		extra_params => [ '-U', 'es_exporter' ]);
	return decode_json($out);
}

my %rows;
for my $ns (@namespaces)
{
	my $rows = rows_of($ns);
	$rows{$ns} = $rows;
	ok(@$rows > 0, "$ns: the query runs as es_exporter and returns rows");
	is_deeply([ sort keys %{ $rows->[0] } ], [ sort @{ $columns{$ns} } ],
		"$ns: it returns exactly the declared columns");
	my @nulls;
	for my $r (@$rows)
	{
		for my $c (@{ $columns{$ns} })
		{
			next if grep { $_ eq $c } @{ $labels{$ns} };
			push @nulls, $c if !defined $r->{$c} || $r->{$c} !~ /^-?[\d.]+(e[+-]?\d+)?$/i;
		}
	}
	is(join(',', @nulls), '', "$ns: every metric value is a number");
}

sub by_sub
{
	my ($ns, $name, $col) = @_;
	my ($r) = grep { $_->{subscription} eq $name } @{ $rows{$ns} };
	return $r->{$col};
}

is(join(',', map { by_sub('eventsource_subscription', $_, 'health_level') } qw(fine broken behind)),
	'0,2,1', 'subscription health levels: healthy, unhealthy (breaker), degraded (paused)');
is(join(',', map { by_sub('eventsource_subscription', $_, 'up') } qw(fine broken behind)),
	'1,1,0', 'subscription up: the paused one has no worker');
is(by_sub('eventsource_subscription', 'behind', 'lag_events'), 4, 'lag of the paused subscription');
is(by_sub('eventsource_subscription', 'broken', 'lag_events'), 1, 'the event behind the open breaker');
cmp_ok(by_sub('eventsource_subscription', 'behind', 'lag_seconds'), '>', 0, 'its lag in seconds');
is( join(',', map { by_sub('eventsource_subscription', 'broken', $_) }
		qw(dead_letters events_failed_total consecutive_failures error_rate_per_minute)),
	'2,2,2,2', 'the broken subscription: 2 dead letters, 2 failed, 2 in a row, 2 per minute');
my %current = map { ("$_->{subscription}/$_->{partition}/$_->{state}" => $_->{current}) }
  @{ $rows{eventsource_subscription_state} };
is(scalar(keys %current), 21, 'seven state series per partition');
is( join(',', grep { $current{$_} } sort keys %current),
	'behind/0/paused,broken/0/circuit_open,fine/0/live', 'exactly one current state each');
my $health = $rows{eventsource_health}[0];
is( join(',', map { $health->{$_} } qw(status_level running ready alive subscriptions
		subscriptions_healthy subscriptions_degraded subscriptions_unhealthy subscriptions_critical
		lag_events dead_letters)),
	'2,1,1,1,3,1,1,1,0,5,2', 'eventsource_health: the worst level, counts, lag, dead letters');
my $store = $rows{eventsource_store}[0];
is( join(',', map { $store->{$_} } qw(appends_total events_appended_total)),
	'4,9', 'eventsource_store: appends and events (the open append counts: counted at the call)');
is($store->{head_position}, sql('SELECT eventsource.head_position()'), 'eventsource_store: head position');
my $horizon = $rows{eventsource_horizon}[0];
is(join(',', map { $horizon->{$_} } qw(blockers blocked_positions)), '1,2',
	'eventsource_horizon: one open append of two positions');
cmp_ok($horizon->{oldest_blocker_seconds}, '>=', 0, 'eventsource_horizon: its age');
is( join(',', map { "$_->{subscription}:$_->{category}:$_->{severity}:$_->{last_5m}" }
		@{ $rows{eventsource_recent_errors} }),
	'broken:infrastructure:critical:2', 'eventsource_recent_errors: classified counts');

# --------------------------------------------------------------------------
# the real exporter, when installed
# --------------------------------------------------------------------------
my ($exporter) = grep { -x $_ }
  map { my $d = $_; map { "$d/$_" } qw(prometheus-postgres-exporter postgres_exporter) }
  split /:/, $ENV{PATH};
SKIP:
{
	skip 'prometheus-postgres-exporter is not installed', 4 unless $exporter;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my ($out, $err) = ('', '');
	local $ENV{DATA_SOURCE_NAME} =
	  'host=' . $node->host . ' port=' . $node->port . " user=es_exporter dbname=$db sslmode=disable";
	my $run = IPC::Run::start(
		[
			$exporter, "--extend.query-path=$yaml_file",
			"--web.listen-address=127.0.0.1:$port", '--disable-default-metrics',
			'--disable-settings-metrics'
		],
		'>', \$out, '2>', \$err);
	my $http = HTTP::Tiny->new(timeout => 10);
	my $body = '';
	my $deadline = time + 60;
	while (time < $deadline)
	{
		my $res = $http->get("http://127.0.0.1:$port/metrics");
		$body = $res->{content} if $res->{success};
		last if $body =~ /^eventsource_health_status_level/m;
		usleep(200_000);
	}
	$run->kill_kill;
	like($body, qr/^pg_exporter_user_queries_load_error\{[^}]*\} 0$/m, 'exporter: the file loads');
	like($body, qr/^pg_exporter_last_scrape_error 0$/m, 'exporter: the scrape has no error');
	my @missing = grep { $body !~ /^$_\{/m } @metric_names;
	is(join(' ', @missing), '', 'exporter: it serves every documented metric');
	like( $body,
		qr/^eventsource_subscription_health_level\{datname="$db",partition="0",server="[^"]*",subscription="broken"\} 2$/m,
		'exporter: a value, with its labels')
	  or diag("exporter stderr: $err");
}

$h->query_safe('COMMIT');
$h->quit;

# --------------------------------------------------------------------------
# the probe commands, as the README writes them, as es_exporter
# --------------------------------------------------------------------------
my ($ready_cmd) = $readme =~ /^(psql -XAtqc "SELECT \(eventsource\.readiness\(\).*)$/m;
my ($alive_cmd) = $readme =~ /^(psql -XAtqc "SELECT \(eventsource\.liveness\(\).*)$/m;
ok(defined $ready_cmd && defined $alive_cmd, 'the README has both probe commands');

sub probe
{
	my ($cmd) = @_;
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = $db;
	local $ENV{PGUSER} = 'es_exporter';
	system('bash', '-c', $cmd);
	return $? >> 8;
}

is(probe($ready_cmd), 0, 'readiness probe: exit 0 when ready');
is(probe($alive_cmd), 0, 'liveness probe: exit 0 when alive');

# not ready: a subscription stopped at an event
sql(q{SELECT eventsource.create_subscription('stopper', 'public.gated(eventsource.events)',
	max_retries => 0, retry_backoff => '10ms', continue_on_error => false, categories => ARRAY['Bad'])});
ok( $node->poll_query_until($db, q{SELECT state = 'failed' FROM eventsource.subscription_status
		WHERE name = 'stopper'}), 'stopper failed');
is(probe($ready_cmd), 1, 'readiness probe: exit 1 with a failed subscription');
is(probe($alive_cmd), 0, 'liveness probe: still exit 0');
sql(q{SELECT eventsource.drop_subscription('stopper')});
is(probe($ready_cmd), 0, 'readiness probe: exit 0 again once it is gone');

# not alive: the launcher frozen past liveness_timeout
my $launcher = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventsource launcher'});
my $stopped = 0;
END { kill 'CONT', $launcher if $stopped; }
kill 'STOP', $launcher or die "cannot stop the launcher: $!";
$stopped = 1;
ok( $node->poll_query_until($db, q{SELECT NOT (eventsource.liveness()->>'alive')::boolean}),
	'the frozen launcher is not alive');
is(probe($alive_cmd), 1, 'liveness probe: exit 1 with a frozen launcher');
kill 'CONT', $launcher;
$stopped = 0;
ok($node->poll_query_until($db, q{SELECT (eventsource.liveness()->>'alive')::boolean}), 'alive again');
is(probe($alive_cmd), 0, 'liveness probe: exit 0 again');

# the server down: both fail
$node->stop;
isnt(probe($ready_cmd), 0, 'readiness probe: non-zero when the server is down');
isnt(probe($alive_cmd), 0, 'liveness probe: non-zero when the server is down');

done_testing();
