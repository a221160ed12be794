# Structured logs: with log_destination = 'jsonlog' the worker's log entries
# carry their fields in the JSON object's "detail" as key=value pairs: a
# failing handler gives subscription, partition, event_id, position and
# sqlstate (matching the dead letters), a graceful shutdown gives reason,
# phase, duration_ms, forced, events_in_flight and checkpoints_saved.  The
# jsonlog file is parsed line by line with JSON::PP.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;

my $node = es_node('jsonlog', qq{
logging_collector = on
log_destination = 'jsonlog'
log_directory = 'log'
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

my $logfile = $node->data_dir . '/' . sql(q{SELECT pg_current_logfile('jsonlog')});
like($logfile, qr/\.json$/, "the server writes a jsonlog file ($logfile)");

# The log entries, decoded.  Every line of the file must be a JSON object in
# UTF-8; a line that is not valid UTF-8 is counted as bad and decoded again
# byte by byte, so that the other checks still see it.
sub entries
{
	my @entries;
	my @bad;
	for my $line (split /\n/, slurp_file($logfile))
	{
		my $e = eval { decode_json($line) };
		if (ref $e ne 'HASH')
		{
			push @bad, $line;
			$e = eval { JSON::PP->new->decode($line) };
		}
		next unless ref $e eq 'HASH';
		$e->{_raw} = $line;
		push @entries, $e;
	}
	return (\@bad, @entries);
}

# key=value fields of a detail; values may be "quoted" (logfmt)
sub fields
{
	my ($detail) = @_;
	my %f;
	return \%f unless defined $detail;
	while ($detail =~ /(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)
	{
		my ($k, $v) = ($1, $2);
		if ($v =~ /^"(.*)"$/s) { $v = $1; $v =~ s/\\(.)/$1/g; }
		$f{$k} = $v;
	}
	return \%f;
}

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE poison (stream text PRIMARY KEY, code text NOT NULL);
CREATE TABLE applied (sub text, pos bigint);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE c text;
BEGIN
  SELECT code INTO c FROM poison WHERE stream = e.stream_id;
  IF c = '22012' THEN PERFORM 1 / 0; END IF;
  IF c IS NOT NULL THEN
    RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = c;
  END IF;
  INSERT INTO applied VALUES (current_setting('eventsource.subscription'), e.global_position);
END $$;
INSERT INTO poison VALUES ('Bad-1', 'P0001'), ('Div-1', '22012'), ('Stop-1', 'P0002');
SELECT eventsource.create_subscription('proj', 'h(eventsource.events)', max_retries => 1,
  retry_backoff => '10ms', circuit_breaker_threshold => 0);
SELECT eventsource.create_subscription('order projection', 'h(eventsource.events)', max_retries => 0,
  circuit_breaker_threshold => 0);
SELECT eventsource.create_subscription('stopper', 'h(eventsource.events)', max_retries => 0,
  continue_on_error => false, categories => ARRAY['Stop']);
});
sql(q{
SELECT eventsource.append_event('Good-1', 0, 'A', '{}');
SELECT eventsource.append_event('Bad-1', 0, 'A', '{}');
SELECT eventsource.append_event('Div-1', 0, 'A', '{}');
SELECT eventsource.append_event('Stop-1', 0, 'A', '{}');
SELECT eventsource.append_event('Good-2', 0, 'A', '{}');
});
wait_until(q{SELECT count(*) = 3 FROM eventsource.dead_letters WHERE subscription = 'proj'},
	'proj: three dead letters');
wait_until(q{SELECT count(*) = 3 FROM eventsource.dead_letters WHERE subscription = 'order projection'},
	'order projection: three dead letters');
wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status WHERE name = 'stopper'},
	'stopper: stopped at its failed event');

# what the log must say: the dead letters (position -> event_id sqlstate)
my %dead;
for my $row (split /\n/, sql(q{SELECT subscription, global_position, event_id, error_sqlstate
                                FROM eventsource.dead_letters ORDER BY id}))
{
	my ($sub, $pos, $id, $state) = split /\|/, $row;
	$dead{$sub}{$pos} = "$id $state";
}
is(join(' ', map { (split / /, $dead{proj}{$_})[1] } sort keys %{ $dead{proj} }), 'P0001 22012 P0002',
	'the dead letters of proj: P0001, 22012, P0002');
{
	# the message of the failed event is what the failed partition records
	my ($ret, $out, $err) = $node->psql('postgres',
		q{SELECT error_sqlstate || ' ' || error_message FROM eventsource.subscription_partitions WHERE subscription = 'stopper'});
	is($out, 'P0002 poisoned stream Stop-1', 'subscription_partitions records the error of the failed event')
	  or diag($err);
}
my $stop_pos = sql(q{SELECT global_position FROM eventsource.events WHERE stream_id = 'Stop-1'});
my $stop_id = sql(q{SELECT event_id FROM eventsource.events WHERE stream_id = 'Stop-1'});

# a graceful stop by pause, then the server stop (drains the others)
sql(q{SELECT eventsource.pause_subscription('proj')});
wait_until(q{SELECT last_shutdown->>'reason' = 'pause' FROM eventsource.subscription_status WHERE name = 'proj'},
	'proj stopped for the pause');
$node->stop;

my ($bad, @entries) = entries();
{
	is(scalar @$bad, 0, 'every line of the jsonlog file is a JSON object in valid UTF-8')
	  or diag(join("\n", @$bad));
}
my @worker = grep { ($_->{backend_type} // '') eq 'eventsource worker' } @entries;
cmp_ok(scalar @worker, '>', 10, 'the workers wrote entries (' . scalar(@worker) . ')');

# ---------------------------------------------------------------------------
# handler failures
# ---------------------------------------------------------------------------
my @failures = grep { $_->{message} =~ /handler failed on event/ } @worker;
my @proj = grep { fields($_->{detail})->{subscription} eq 'proj' } @failures;
is(scalar @proj, 6, 'proj: one entry per failed attempt (3 events x 2 attempts)');
my %seen;
for my $e (@proj)
{
	my $f = fields($e->{detail});
	$seen{ $f->{position} }++;
	is("$f->{event_id} $f->{sqlstate}", $dead{proj}{ $f->{position} } // 'no dead letter',
		"proj, position $f->{position}: event_id and sqlstate in the detail match the dead letter");
	is($f->{partition}, '0', 'partition=0');
	like("$f->{category} $f->{severity}", qr/^\w+ \w+$/, 'category and severity are fields too');
	is($e->{error_severity} . ' ' . $e->{application_name}, 'LOG eventsource proj/0',
		'severity and application_name are the JSON object\'s own keys');
	like($e->{message}, qr/^eventsource: subscription "proj" handler failed on event at position $f->{position} \(attempt [12](, will retry)?\): /,
		'the message says what failed, for humans');
}
is(join(',', map { "$_:$seen{$_}" } sort keys %seen),
	join(',', map { "$_:2" } sort keys %{ $dead{proj} }), 'each dead-lettered position logged twice (retry)');
my ($example) = grep { $_->{message} =~ /attempt 2/ && fields($_->{detail})->{sqlstate} eq '22012' } @proj;
ok($example, 'an entry for the division by zero');
like($example->{message}, qr/division by zero$/, 'its message carries the error text');
note('example jsonlog line: ' . $example->{_raw});

# a subscription name with a space is still one field
{
	my @spaced = grep { $_->{message} =~ /subscription "order projection" handler failed/ } @failures;
	is(scalar @spaced, 3, 'order projection: one entry per failed event');
	is(fields($spaced[0]->{detail})->{subscription}, 'order projection',
		'the subscription field holds the whole name');
}

# ---------------------------------------------------------------------------
# every worker entry about an event carries the event's fields
# ---------------------------------------------------------------------------
my @about_event = grep { $_->{message} =~ /at (the event at )?position \d+/ } @worker;
cmp_ok(scalar @about_event, '>=', 10, 'worker entries about an event: ' . scalar @about_event);
my ($stop_entry) = grep { $_->{message} =~ /"stopper" partition 0 stopped at the event at position $stop_pos/ } @worker;
ok($stop_entry, 'the stop-at-event entry of continue_on_error = false is logged');
is($stop_entry->{error_severity}, 'WARNING', 'as a WARNING');
like($stop_entry->{message}, qr/after 1 failed attempts \(continue_on_error is off\): poisoned stream Stop-1$/,
	'its message quotes the handler\'s error, intact');
{
	my $f = fields($stop_entry->{detail});
	is(join(' ', map { $f->{$_} // '-' } qw(subscription partition event_id position sqlstate)),
		"stopper 0 $stop_id $stop_pos P0002", 'it carries subscription, partition, event_id, position and sqlstate');
	my @missing = grep {
		my $f = fields($_->{detail});
		!(defined $f->{subscription} && defined $f->{event_id} && defined $f->{position} && defined $f->{sqlstate})
	} @about_event;
	is(join("\n", map { $_->{message} } @missing), '', 'no worker entry about an event lacks the fields');
}

# ---------------------------------------------------------------------------
# graceful shutdown: pause, then server stop
# ---------------------------------------------------------------------------
my @stops = grep { $_->{message} =~ /^eventsource: subscription "[^"]+" partition \d+ stopped \(/ } @worker;
my ($pause) = grep { $_->{message} =~ /"proj" partition 0 stopped \(pause, completed\)/ } @stops;
ok($pause, 'the pause of proj is logged');
my $pf = fields($pause->{detail});
is(join(' ', map { "$_=" . ($pf->{$_} // '?') } qw(subscription partition reason phase forced events_in_flight)),
	'subscription=proj partition=0 reason=pause phase=completed forced=false events_in_flight=0',
	'its detail: subscription, partition, reason, phase, forced, events_in_flight');
like($pf->{duration_ms}, qr/^\d+$/, "duration_ms=$pf->{duration_ms}");
like($pf->{checkpoints_saved}, qr/^\d+$/, "checkpoints_saved=$pf->{checkpoints_saved}");
my ($server_stop) = grep { $_->{message} =~ /"order projection" partition 0 stopped \(server stop, completed\)/ } @stops;
ok($server_stop, 'the server stop drained order projection and logged it');
like($server_stop->{detail},
	qr/reason="server stop" phase=completed duration_ms=\d+ forced=false events_in_flight=0 checkpoints_saved=\d+/,
	'its detail has reason/phase/duration_ms/forced/events_in_flight/checkpoints_saved');
is(fields($server_stop->{detail})->{reason}, 'server stop', 'the reason field holds the whole reason');
note('example shutdown line: ' . $pause->{_raw});

done_testing();
