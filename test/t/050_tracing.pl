# Tracing (issue 13): the subscription workers' spans reach a real OTLP/HTTP
# receiver on loopback, and the exporter never slows or stops delivery.
#
# The receiver is a small HTTP server of the tests (test/perl/OtlpReceiver.pm:
# a forked child on an ephemeral 127.0.0.1 port, IO::Socket::INET): it keeps
# every request body it answers with 200 in a directory, and answers
# according to a mode file: "ok" (200), "503" (Service Unavailable) or "slow"
# (sleeps 3 s, longer than eventsource.otlp_timeout).  The bodies are decoded with JSON::PP against the
# OTLP JSON encoding (resourceSpans/scopeSpans/spans, hex ids, KeyValue
# attributes with AnyValue values, status, events, links).
#
# Checked: span names, kinds, attributes, parents (the event's traceparent;
# a chain of two subscriptions stays one trace; untraced events hang under
# the batch span), links to the batch span, the error status and exception
# event with the SQLSTATE, the retry count, the resource attributes, the
# trace_id/span_id log fields; then with the receiver answering 503, slow,
# or stopped: every event is still delivered exactly once, the drop counter
# rises, the last export error and health()'s "tracing" check say why, and
# delivery takes at most 3x + 5 s of its time with tracing off; a reload
# switches the endpoint to a second receiver (one Content-Type header after
# reloads); an empty endpoint turns spans off (the spans a worker still
# holds then are counted as dropped); a fast stop does not wait for
# a hung collector.  Also: the sampled flag, hostile strings and a LATIN1
# database (spans in valid UTF-8), a database still on 1.0; the spans of a
# long batch of slow calls are exported while it runs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;
use OtlpReceiver;
use Time::HiRes qw(time usleep);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# ---------------------------------------------------------------------------
# The receiver (test/perl/OtlpReceiver.pm)
# ---------------------------------------------------------------------------
sub start_receiver
{
	my ($name) = @_;
	my $dir = "$tmp/$name";
	mkdir $dir or die "mkdir $dir: $!";
	return OtlpReceiver::start($dir, keep => 1);
}

sub set_mode { OtlpReceiver::set_mode(@_) }
sub stop_receiver { OtlpReceiver::stop(@_) }

# The requests a receiver kept: [{path, content_type, request (decoded)}]
sub requests
{
	my ($r) = @_;
	my @out;
	opendir my $dh, $r->{dir} or die;
	for my $f (sort grep { /^req-\d+\.json$/ } readdir $dh)
	{
		my $rec = decode_json(slurp_file("$r->{dir}/$f"));
		$rec->{request} = decode_json($rec->{body});
		push @out, $rec;
	}
	closedir $dh;
	return @out;
}

sub attrs
{
	my ($list) = @_;
	my %a;
	for my $kv (@{ $list // [] })
	{
		my ($type, $v) = %{ $kv->{value} };
		$a{ $kv->{key} } = $v;
	}
	return \%a;
}

# Every span a receiver got, with its resource's attributes and its own
# attributes decoded into {resource}, {attr}
sub spans
{
	my ($r) = @_;
	my @spans;
	for my $req (requests($r))
	{
		for my $rs (@{ $req->{request}{resourceSpans} })
		{
			my $res = attrs($rs->{resource}{attributes});
			for my $ss (@{ $rs->{scopeSpans} })
			{
				for my $s (@{ $ss->{spans} })
				{
					$s->{resource} = $res;
					$s->{scope} = $ss->{scope};
					$s->{attr} = attrs($s->{attributes});
					push @spans, $s;
				}
			}
		}
	}
	return @spans;
}

sub wait_for
{
	my ($what, $cond) = @_;
	my $deadline = time + 60;
	while (time < $deadline)
	{
		return pass($what) if $cond->();
		usleep(100_000);
	}
	fail($what);
	return 0;
}

# ---------------------------------------------------------------------------
# The node, with a receiver from the start
# ---------------------------------------------------------------------------
my $rx = start_receiver('rx1');
my $node = es_node('tracing', qq{
eventsource.otlp_endpoint = '$rx->{url}'
eventsource.otlp_service_name = 'orders-db'
eventsource.otlp_resource_attributes = 'deployment.environment=test, team = es'
eventsource.otlp_flush_interval = 100ms
eventsource.otlp_timeout = 500ms
eventsource.otlp_queue_size = 64
log_min_messages = info
});

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE applied (sub text, position bigint, PRIMARY KEY (sub, position));
-- orders: applies Order events, ships them (a Shipment event), fails on "fail"
CREATE FUNCTION on_order(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data->>'fail' = 'yes' THEN
        RAISE EXCEPTION 'cannot ship order %', e.stream_id USING ERRCODE = '22012';
    END IF;
    INSERT INTO applied VALUES ('orders', e.global_position);
    IF e.event_type = 'Placed' THEN
        PERFORM eventsource.append_event('Shipment-' || e.stream_id, 0, 'Shipped', '{}');
    END IF;
END $$;
CREATE FUNCTION on_shipment(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied VALUES ('shipments', e.global_position);
END $$;
CREATE FUNCTION on_bulk(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied VALUES ('bulk', e.global_position);
END $$;
CREATE FUNCTION on_batch(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied SELECT 'batched', e.global_position FROM unnest(es) e;
END $$;
SELECT eventsource.create_subscription('orders', 'on_order(eventsource.events)',
    categories => ARRAY['Order'], max_retries => 1, retry_backoff => '10 ms');
SELECT eventsource.create_subscription('shipments', 'on_shipment(eventsource.events)',
    categories => ARRAY['Shipment']);
SELECT eventsource.create_subscription('bulk', 'on_bulk(eventsource.events)',
    categories => ARRAY['Bulk']);
SELECT eventsource.create_subscription('batched', 'on_batch(eventsource.events[])',
    categories => ARRAY['Batch']);
});
wait_until(q{SELECT count(*) = 4 FROM eventsource.subscription_status WHERE state = 'live'},
	'the four subscriptions are live');
wait_until(q{SELECT enabled AND exporter_pid IS NOT NULL FROM eventsource.tracing},
	'the exporter process runs, with an endpoint');

my $trace = '4bf92f3577b34da6a3ce929d0e0e4736';
my $parent = '00f067aa0ba902b7';
sql(qq{
BEGIN;
SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
SET LOCAL eventsource.tracestate = 'rojo=00f067aa0ba902b7';
SELECT eventsource.append_event('Order-1', 0, 'Placed', '{"total": 10}');
COMMIT;
SELECT eventsource.append_event('Order-2', 0, 'Placed', '{}');
SELECT eventsource.append_event('Order-3', 0, 'Placed', '{"fail": "yes"}',
    '{"traceparent": "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01"}');
});
wait_until(q{SELECT count(*) = 4 FROM applied}, 'orders 1 and 2 and their shipments applied');
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters}, 'order 3 dead-lettered after its retry');

my @spans;
wait_for('the receiver got the spans', sub {
	@spans = spans($rx);
	my %names;
	$names{ $_->{name} }++ for @spans;
	return ($names{'process orders'} // 0) >= 4 && ($names{'process shipments'} // 0) >= 2
	  && ($names{'receive orders'} // 0) >= 1;
});

my @reqs = requests($rx);
is($reqs[0]{path}, '/v1/traces', 'POST to the endpoint path');
is($reqs[0]{content_type}, 'application/json', 'OTLP/HTTP JSON content type');
is($spans[0]{resource}{'service.name'}, 'orders-db', 'resource: service.name from the setting');
is($spans[0]{resource}{'deployment.environment'}, 'test', 'resource: attributes from the setting');
is($spans[0]{resource}{team}, 'es', 'resource: spaces around key and value trimmed');
is($spans[0]{scope}{name}, 'eventsource', 'instrumentation scope');

my %by_id = map { $_->{spanId} => $_ } @spans;
for my $s (@spans)
{
	like($s->{traceId}, qr/^[0-9a-f]{32}$/, "$s->{name}: traceId is 32 hex digits") or last;
	like($s->{spanId}, qr/^[0-9a-f]{16}$/, "$s->{name}: spanId is 16 hex digits") or last;
	ok($s->{endTimeUnixNano} >= $s->{startTimeUnixNano}
		  && $s->{startTimeUnixNano} > 1.6e18, "$s->{name}: times in Unix nanoseconds") or last;
}

my $pos = sub { sql("SELECT global_position FROM eventsource.events WHERE stream_id = '$_[0]'") };
my $eid = sub { sql("SELECT event_id FROM eventsource.events WHERE stream_id = '$_[0]'") };
my ($o1) = grep { $_->{name} eq 'process orders' && $_->{attr}{'eventsource.stream.id'} eq 'Order-1' } @spans;
ok($o1, 'a span for order 1');
is($o1->{kind}, 5, 'handler span: kind CONSUMER');
is($o1->{traceId}, $trace, "handler span: the event's trace id");
is($o1->{parentSpanId}, $parent, "handler span: parented on the event's traceparent");
is($o1->{traceState}, 'rojo=00f067aa0ba902b7', "handler span: the event's tracestate");
is($o1->{attr}{'eventsource.event.id'}, $eid->('Order-1'), 'attribute eventsource.event.id');
is($o1->{attr}{'messaging.message.id'}, $eid->('Order-1'), 'attribute messaging.message.id');
is($o1->{attr}{'eventsource.event.type'}, 'Placed', 'attribute eventsource.event.type');
is($o1->{attr}{'eventsource.position'}, $pos->('Order-1'), 'attribute eventsource.position (intValue)');
is($o1->{attr}{'eventsource.stream.category'}, 'Order', 'attribute eventsource.stream.category (the aggregate type)');
is($o1->{attr}{'eventsource.subscription.name'}, 'orders', 'attribute eventsource.subscription.name');
is($o1->{attr}{'messaging.destination.name'}, 'orders', 'attribute messaging.destination.name');
is($o1->{attr}{'messaging.system'}, 'eventsource', 'attribute messaging.system');
is($o1->{attr}{'messaging.operation.type'}, 'process', 'attribute messaging.operation.type');
is($o1->{attr}{'eventsource.retry_count'}, '0', 'attribute eventsource.retry_count');
is($o1->{attr}{'eventsource.outcome'}, 'ok', 'attribute eventsource.outcome');
is($o1->{attr}{'db.namespace'}, 'postgres', 'attribute db.namespace');
is($o1->{status}{code} // 0, 0, 'handler span: status unset');

# the batch span it links to
my $link = $o1->{links}[0];
ok($link, 'handler span links to its batch span');
my $batch = $by_id{ $link->{spanId} };
ok($batch, 'the linked batch span was exported');
is($batch->{name}, 'receive orders', 'batch span name');
is($batch->{traceId}, $link->{traceId}, 'the link names the batch span\'s trace');
ok(!$batch->{parentSpanId}, 'batch span is a root span');
ok($batch->{attr}{'messaging.batch.message_count'} >= 1, 'batch span: handler calls counted');

# the shipment appended by order 1's handler: the same trace, parent = that handler span
my ($s1) = grep { $_->{name} eq 'process shipments' && $_->{attr}{'eventsource.stream.id'} eq 'Shipment-Order-1' } @spans;
ok($s1, 'a span for the shipment of order 1');
is($s1->{traceId}, $trace, 'the chain of projections stays one trace');
is($s1->{parentSpanId}, $o1->{spanId}, "the shipment's handler span is a child of the order's handler span");
is(sql(q{SELECT metadata->>'traceparent' FROM eventsource.events WHERE stream_id = 'Shipment-Order-1'}),
	"00-$trace-$o1->{spanId}-01", 'the shipment event carries the handler span as traceparent');

# order 2 had no trace context: its handler span hangs under the batch span
my ($o2) = grep { $_->{name} eq 'process orders' && $_->{attr}{'eventsource.stream.id'} eq 'Order-2' } @spans;
my $b2 = $by_id{ $o2->{parentSpanId} // '' };
ok($b2 && $b2->{name} eq 'receive orders', 'an untraced event: handler span is a child of the batch span');
is($o2->{traceId}, $b2 ? $b2->{traceId} : '', '... in the batch span\'s trace');
my ($s2) = grep { $_->{name} eq 'process shipments' && $_->{attr}{'eventsource.stream.id'} eq 'Shipment-Order-2' } @spans;
is($s2->{traceId}, $o2->{traceId}, '... and its shipment continues that trace');

# order 3 failed twice: error status, exception event with the SQLSTATE, retry count
my @o3 = sort { $a->{attr}{'eventsource.retry_count'} <=> $b->{attr}{'eventsource.retry_count'} }
  grep { $_->{name} eq 'process orders' && $_->{attr}{'eventsource.stream.id'} eq 'Order-3' } @spans;
is(scalar @o3, 2, 'order 3: two handler spans (first try and the retry)');
is_deeply([ map { $_->{attr}{'eventsource.retry_count'} } @o3 ], [ 0, 1 ], 'order 3: retry counts 0 and 1');
for my $s (@o3)
{
	is($s->{status}{code}, 2, 'failed call: status ERROR');
	like($s->{status}{message}, qr/cannot ship order Order-3/, 'failed call: status message');
	is($s->{attr}{'eventsource.outcome'}, 'error', 'failed call: outcome error');
	is($s->{attr}{'db.response.status_code'}, '22012', 'failed call: SQLSTATE attribute');
	my ($ex) = grep { $_->{name} eq 'exception' } @{ $s->{events} // [] };
	ok($ex, 'failed call: an exception event');
	is(attrs($ex->{attributes})->{'exception.type'}, '22012', 'exception.type is the SQLSTATE');
	like(attrs($ex->{attributes})->{'exception.message'}, qr/cannot ship order/, 'exception.message');
	is($s->{traceId}, 'a' x 32, "failed call: in the event's trace");
	is($s->{parentSpanId}, 'b' x 16, "failed call: parented on the event's traceparent");
}
my ($fb) = grep { $_->{name} eq 'receive orders' && $_->{attr}{'eventsource.batch.failed_calls'} > 0 } @spans;
ok($fb && $fb->{status}{code} == 2, 'a batch with a failed call has status ERROR');

# the worker's log line about the failure names the trace and the span
my $log = slurp_file($node->logfile);
like($log, qr/handler failed on event.*\n.*trace_id=a{32} span_id=\Q$o3[0]{spanId}\E/,
	'the failure log line carries trace_id and span_id');

my $stats = sql(q{SELECT enabled, exporter_pid IS NOT NULL, spans_exported > 0, spans_dropped,
	last_export_error IS NULL FROM eventsource.tracing});
is($stats, 't|t|t|0|t', 'eventsource.tracing: enabled, exporting, nothing dropped');
is(sql(q{SELECT eventsource.health()->'checks'->>'tracing'}), 'healthy', 'health(): tracing healthy');

# ---------------------------------------------------------------------------
# A collector that refuses (503), is slow, or is gone: delivery goes on
# ---------------------------------------------------------------------------
my $bulk_n = 0;
sub deliver_bulk
{
	my ($what, $n) = @_;
	my $from = $bulk_n + 1;
	$bulk_n += $n;
	my $t0 = time;
	sql(qq{SET eventsource.traceparent = '00-$trace-$parent-01';
		SELECT eventsource.append_event('Bulk-' || i, 0, 'Tick', '{}') FROM generate_series($from, $bulk_n) i});
	my $head = sql('SELECT eventsource.head_position()');
	is(sql(qq{SELECT eventsource.wait_for_subscription('bulk', $head, '120 s')}), 't',
		"$what: all $n events delivered");
	my $secs = time - $t0;
	is(sql(q{SELECT count(*) FROM applied WHERE sub = 'bulk'}), $bulk_n, "$what: each applied once");
	diag(sprintf('%s: %d events appended and delivered in %.2f s', $what, $n, $secs));
	return $secs;
}

sub dropped { sql('SELECT spans_dropped FROM eventsource.tracing') }

deliver_bulk('collector up', 500);
wait_until(q{SELECT queued = 0 FROM eventsource.tracing}, 'collector up: the queue drains');

# the ring (64 spans) wrapped around many times: every span that arrived is
# whole, and names its own event
my %bulk_ids = map { split /\|/ } split /\n/,
  sql(q{SELECT stream_id || '|' || event_id FROM eventsource.events WHERE stream_id LIKE 'Bulk-%'});
my @bulk = grep { $_->{name} eq 'process bulk' } spans($rx);
ok(@bulk >= 64, scalar(@bulk) . ' bulk handler spans arrived (more than the ring holds)');
my @bad = grep { ($bulk_ids{ $_->{attr}{'eventsource.stream.id'} // '' } // '') ne ($_->{attr}{'eventsource.event.id'} // 'x')
	  || $_->{traceId} ne $trace || $_->{parentSpanId} ne $parent } @bulk;
is(scalar @bad, 0, 'every bulk span carries its own event\'s stream and id, trace and parent');
my %seen;
$seen{ $_->{spanId} }++ for @bulk;
is(scalar(grep { $_ > 1 } values %seen), 0, 'no span arrived twice');

# a batch handler: one span per call, child of the batch span, no event attributes
sql(q{SELECT eventsource.append('Batch-1', -1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]')});
wait_until(q{SELECT count(*) = 3 FROM applied WHERE sub = 'batched'}, 'the batch handler ran');
my ($bc, $bb);
wait_for('the batch handler call and its batch span arrived', sub {
	my @s = spans($rx);
	($bc) = grep { $_->{name} eq 'process batched' } @s;
	($bb) = grep { $_->{name} eq 'receive batched' } @s;
	return $bc && $bb;
});
is($bc->{parentSpanId}, $bb->{spanId}, 'batch handler call: child of the batch span');
ok(!exists $bc->{attr}{'eventsource.event.id'}, 'batch handler call: no single-event attributes');
is($bb->{attr}{'messaging.batch.message_count'}, '1', 'batch span: one handler call');

# ---------------------------------------------------------------------------
# A worker hands its spans to the shared queue per batch, but not only when
# the batch ends: a batch of slow handler calls (8 x 0.5 s, one transaction)
# has its first spans exported while it still runs, not 4 s later
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION on_slow(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.5);
    INSERT INTO applied VALUES ('slow', e.global_position);
END $$;
SELECT eventsource.create_subscription('slow', 'on_slow(eventsource.events)',
    categories => ARRAY['Slow']);
});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'slow'},
	'the slow subscription is live');
sql(q{SELECT eventsource.append('Slow-1', -1, (SELECT jsonb_agg(jsonb_build_object('type', 'S', 'data', '{}'::jsonb)) FROM generate_series(1, 8)))});
my $slow_applied;
wait_for('a span of the slow batch arrived', sub {
	return 0 unless grep { $_->{name} eq 'process slow' } spans($rx);
	$slow_applied = sql(q{SELECT count(*) FROM applied WHERE sub = 'slow'});
	return 1;
});
is($slow_applied, '0', 'it arrived while the batch was still running (its 8 calls not yet committed)');
wait_until(q{SELECT count(*) = 8 FROM applied WHERE sub = 'slow'}, 'the slow batch committed');
wait_for('all 8 spans of the slow batch and its batch span arrived', sub {
	my @s = spans($rx);
	return (grep { $_->{name} eq 'process slow' } @s) == 8 && (grep { $_->{name} eq 'receive slow' } @s) == 1;
});

# ---------------------------------------------------------------------------
# The W3C sampled flag: an event whose traceparent is not sampled gets no
# exported span, but its context (flags included) is passed on
# ---------------------------------------------------------------------------
my $unsampled = '12121212121212121212121212121212';
my $after = '56565656565656565656565656565656';
sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$unsampled-3434343434343434-00';
	SELECT eventsource.append_event('Order-unsampled', 0, 'Placed', '{}'); COMMIT;
	BEGIN; SET LOCAL eventsource.traceparent = '00-$after-3434343434343434-01';
	SELECT eventsource.append_event('Order-sampled-after', 0, 'Placed', '{}'); COMMIT;});
wait_for('the sampled event after it: its shipment span arrived', sub {
	grep { $_->{traceId} eq $after && $_->{name} eq 'process shipments' } spans($rx) });
is(scalar(grep { $_->{traceId} eq $unsampled } spans($rx)), 0,
	'not sampled (flags 00): no span of that trace was exported');
like(sql(q{SELECT metadata->>'traceparent' FROM eventsource.events WHERE stream_id = 'Shipment-Order-unsampled'}),
	qr/^00-$unsampled-[0-9a-f]{16}-00$/, 'not sampled: the context and its flags are passed on to the handler\'s appends');

# ---------------------------------------------------------------------------
# Hostile strings and a LATIN1 database: every request is valid UTF-8 JSON
# and decodes to the strings of the database
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', q{CREATE DATABASE lat ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0});
my $e = "\xc3\xa9";    # é in UTF-8, as psql sends it (client_encoding UTF8)
my $lat = sub { $node->safe_psql('lat', "SET client_encoding = 'UTF8';\n" . $_[0]) };
$lat->(qq{
CREATE EXTENSION eventsource;
CREATE FUNCTION on_cafe(e eventsource.events) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF e.data->>'fail' = 'yes' THEN
        RAISE EXCEPTION 'caf$e "quoted" back\\slash%', E'\\ttab\\nnewline\\x01end' USING ERRCODE = '22012';
    END IF;
END \$\$;
SELECT eventsource.create_subscription('caf$e', 'on_cafe(eventsource.events)',
    max_retries => 1, retry_backoff => '10 ms');
});
$lat->(qq{SET eventsource.traceparent = '00-$trace-$parent-01';
SELECT eventsource.append_event('Caf$e-1', 0, 'Plac$e', '{}');
SELECT eventsource.append_event('Caf$e-' || repeat('$e', 200), 0, 'Plac$e', '{}');
SELECT eventsource.append_event(E'Caf$e-"q" \\\\ back\\tslash\\n\\x01end', 0, 'Plac$e', '{"fail": "yes"}');
});
my @lat;
wait_for('LATIN1 database: the spans arrived', sub {
	my $ok = eval { @lat = grep { $_->{attr}{'db.namespace'} eq 'lat' && $_->{name} =~ /^process/ } spans($rx); 1 };
	return !$ok || @lat >= 4;
});
my @bad_bodies = grep { my $b = $_; !utf8::decode($b) } map { decode_json(slurp_file($_))->{body} }
  glob("$rx->{dir}/req-*.json");
is(scalar @bad_bodies, 0, 'every request body is valid UTF-8');
my $E = "\x{e9}";
my ($c1) = grep { $_->{attr}{'eventsource.stream.id'} eq "Caf$E-1" } @lat;
ok($c1, 'LATIN1 database: the stream id arrives as UTF-8');
is($c1 && $c1->{name}, "process caf$E", '... the span name (the subscription)');
is($c1 && $c1->{attr}{'eventsource.event.type'}, "Plac$E", '... the event type');
my ($long) = grep { $_->{attr}{'eventsource.stream.id'} =~ /^Caf$E-$E$E/ } @lat;
is($long && $long->{attr}{'eventsource.stream.id'}, "Caf$E-" . ($E x 124),
	'a long stream id is cut to 255 bytes of UTF-8 on a character boundary');
my ($hostile) = grep { ($_->{status}{code} // 0) == 2 } @lat;
is($hostile && $hostile->{attr}{'eventsource.stream.id'}, "Caf$E-\"q\" \\ back\tslash\n\x01end",
	'quotes, backslashes and control characters in a stream id decode as they were');
is($hostile && $hostile->{status}{message}, "caf$E \"quoted\" back\\slash\ttab\nnewline\x01end",
	'... and in an error message');

my $d0 = dropped();

my %secs;
set_mode($rx->{dir}, '503');
$secs{'answering 503'} = deliver_bulk('collector answering 503', 500);
wait_until(qq{SELECT spans_dropped > $d0 FROM eventsource.tracing}, '503: the drop counter rises');
like(sql('SELECT last_export_error FROM eventsource.tracing'), qr/HTTP status 503/,
	'503: last_export_error names the status');
like(sql(q{SELECT eventsource.health()->'checks'->>'tracing'}), qr/^unhealthy: export failing \(HTTP status 503/,
	'503: health() check says unhealthy');
is(sql(q{SELECT eventsource.health()->>'status'}), 'healthy', '503: the store itself stays healthy');

# a response body of any bytes: the error keeps printable ASCII only
set_mode($rx->{dir}, '503bin');
my $binerr = '';
wait_for('503 with a binary body: the error shows it as printable ASCII', sub {
	sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
		SELECT eventsource.append_event('Order-bin-' || gen_random_uuid(), 0, 'Paid', '{}'); COMMIT;});
	$binerr = sql('SELECT last_export_error FROM eventsource.tracing');
	return $binerr =~ /bad/;
});
is($binerr, 'HTTP status 503: ??? bad ?? bytes', 'last_export_error: other bytes shown as ?');

my $d1 = dropped();
set_mode($rx->{dir}, 'slow');
$secs{slow} = deliver_bulk('collector slow (3 s > otlp_timeout 500 ms)', 500);
wait_until(qq{SELECT spans_dropped > $d1 AND last_export_error ~* 'timeout|timed out' FROM eventsource.tracing},
	'slow: exports time out and the drop counter rises');
ok(sql('SELECT spans_dropped_queue_full > 0 FROM eventsource.tracing') eq 't',
	'slow: the bounded queue filled up and dropped spans instead of waiting');

stop_receiver($rx);
my $d2 = dropped();
$secs{stopped} = deliver_bulk('collector stopped', 500);
wait_until(qq{SELECT spans_dropped > $d2 AND last_export_error ~* 'connect' FROM eventsource.tracing},
	'stopped: connection refused, the drop counter rises');

# ---------------------------------------------------------------------------
# A reload switches the endpoint
# ---------------------------------------------------------------------------
my $rx2 = start_receiver('rx2');
$node->append_conf('postgresql.conf', "eventsource.otlp_endpoint = '$rx2->{url}'\n");
$node->reload;
wait_until(qq{SELECT current_setting('eventsource.otlp_endpoint') = '$rx2->{url}'}, 'reloaded');
# the exporter picks up the reload; its next success clears the health check
my $tr2 = 'cccccccccccccccccccccccccccccccc';
my $ok = 0;
for my $i (1 .. 50)
{
	sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$tr2-dddddddddddddddd-01';
		SELECT eventsource.append_event('Order-r$i', 0, 'Paid', '{}'); COMMIT;});
	my $deadline = time + 2;
	while (time < $deadline)
	{
		last if ($ok = grep { $_->{traceId} eq $tr2 } spans($rx2));
		usleep(100_000);
	}
	last if $ok;
}
ok($ok, 'after a reload the spans go to the new endpoint');
wait_until(q{SELECT eventsource.health()->'checks'->>'tracing' = 'healthy'},
	'health(): tracing healthy again after a successful export');

# Reloads: each one is seen by the exporter (the service name changes with
# it, and the next span names it), which makes a new HTTP handle; the
# request still has one Content-Type header.
for my $i (1 .. 3)
{
	$node->append_conf('postgresql.conf', "eventsource.otlp_service_name = 'orders-db-r$i'\n");
	$node->reload;
	wait_for("reload $i: a span with the new service name arrives", sub {
		sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$tr2-dddddddddddddddd-01';
			SELECT eventsource.append_event('Order-reload-$i-' || gen_random_uuid(), 0, 'Paid', '{}'); COMMIT;});
		return grep { $_->{resource}{'service.name'} eq "orders-db-r$i" } spans($rx2);
	});
}
my @ct = map { $_->{content_types} } requests($rx2);
is_deeply([ grep { $_ != 1 } @ct ], [], 'after reloads every request has exactly one Content-Type header ('
	  . scalar(@ct) . ' requests)');

# the launcher restarts (terminated): the running exporter stays the only one
my $xpid = sql('SELECT exporter_pid FROM eventsource.tracing');
my $lpid = sql(q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventsource launcher'});
my $log_at = -s $node->logfile;
sql("SELECT pg_terminate_backend($lpid)");
$node->wait_for_log(qr/eventsource launcher started/, $log_at);
my $tr3 = 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee';
sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$tr3-dddddddddddddddd-01';
	SELECT eventsource.append_event('Order-after-launcher', 0, 'Paid', '{}'); COMMIT;});
wait_for('spans still arrive after the launcher restarted',
	sub { grep { $_->{traceId} eq $tr3 } spans($rx2) });
is(sql('SELECT exporter_pid FROM eventsource.tracing'), $xpid, '... from the same exporter');
unlike(slurp_file($node->logfile, $log_at), qr/OTLP exporter (started|is running)/,
	'the new launcher started no second exporter');

# an empty endpoint turns spans off.  A worker is in the middle of a batch
# meanwhile: a call has ended (its span waits in the worker) and the next
# one blocks; the spans it hands over once tracing is off are not exported,
# and are counted as dropped, as those still in the queue are
sql(q{
CREATE TABLE release_blocker (go boolean);
CREATE FUNCTION on_block(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WHILE e.event_type = 'Block' AND NOT EXISTS (SELECT FROM release_blocker) LOOP
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT eventsource.create_subscription('blocker', 'on_block(eventsource.events)',
    categories => ARRAY['Blocker']);
});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'blocker'},
	'the blocker subscription is live');
sql(qq{SET eventsource.traceparent = '00-$trace-$parent-01';
	SELECT eventsource.append('Blocker-1', -1, '[{"type": "Quick", "data": {}}, {"type": "Block", "data": {}}]')});
wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
	WHERE application_name = 'eventsource blocker/0' AND wait_event = 'PgSleep'},
	"the blocker's second call blocks (the first one's span waits in the worker)");
# (nothing left in the ring, whose spans the unset endpoint also drops)
wait_until(q{SELECT queued = 0 FROM eventsource.tracing}, 'the ring is empty');
my $dropped_before_off = dropped();
$node->append_conf('postgresql.conf', "eventsource.otlp_endpoint = ''\n");
$node->reload;
wait_until(q{SELECT NOT enabled AND exporter_pid IS NULL FROM eventsource.tracing},
	'an empty endpoint stops the exporter');
sql('INSERT INTO release_blocker VALUES (true)');
wait_until(qq{SELECT spans_dropped >= $dropped_before_off + 3 FROM eventsource.tracing},
	'tracing turned off mid-batch: the batch\'s 3 spans (2 calls, the batch) are counted as dropped');
like(slurp_file($node->logfile), qr/eventsource: OTLP exporter started, sending spans to \Q$rx->{url}\E/,
	'the exporter logged its endpoint when it started');
my $queued = sql('SELECT spans_queued FROM eventsource.tracing');
my $off = deliver_bulk('tracing off', 500);
is(sql('SELECT spans_queued FROM eventsource.tracing'), $queued, 'tracing off: no span is queued');
# a failing collector does not slow delivery: each time is bounded by the
# tracing-off time, generously (3x + 5 s: the machine is shared), so only a
# real stall (waiting for the collector: 3 s per slow request, 500 events)
# fails it
for my $mode (sort keys %secs)
{
	ok($secs{$mode} <= 3 * $off + 5,
		sprintf('collector %s: 500 events delivered in %.2f s, tracing off %.2f s (bound 3x + 5 s)',
			$mode, $secs{$mode}, $off));
}
ok(!defined(sql(q{SELECT eventsource.health()->'checks'->>'tracing'})) ||
	sql(q{SELECT eventsource.health()->'checks' ? 'tracing'}) eq 'f',
	'tracing off: no tracing check in health()');

# set again (a user and password in the URL): the launcher starts the
# exporter again; the log hides them, and only superusers see the setting
my $url_auth = $rx2->{url} =~ s{^http://}{http://user:secret\@}r;
$log_at = -s $node->logfile;
$node->append_conf('postgresql.conf', "eventsource.otlp_endpoint = '$url_auth'\n");
$node->reload;
wait_until(q{SELECT enabled AND exporter_pid IS NOT NULL FROM eventsource.tracing},
	'setting the endpoint again starts the exporter again');
$node->wait_for_log(qr/OTLP exporter started/, $log_at);
like(slurp_file($node->logfile, $log_at), qr{OTLP exporter started, sending spans to http://\*\*\*\@127\.0\.0\.1:},
	'the log shows the endpoint without its user and password');
# (PostgreSQL's own "parameter ... changed to" line of the reload shows the
# value, as for every setting: README says so)
unlike(slurp_file($node->logfile, $log_at), qr/eventsource: .*secret/, '... no eventsource line shows the password');
my ($src, $sout, $serr) = $node->psql('postgres',
	q{CREATE ROLE plain_user; SET ROLE plain_user; SHOW eventsource.otlp_endpoint});
like($serr, qr/must be superuser or have privileges of pg_read_all_settings/,
	'eventsource.otlp_endpoint is hidden from other roles (it may hold credentials)');
stop_receiver($rx2);

# A hung collector (accepts, never answers) with a 10-minute export time
# limit: a fast shutdown does not wait for the export
my $rx3 = start_receiver('rx3');
set_mode($rx3->{dir}, 'hang');
$node->append_conf('postgresql.conf', "eventsource.otlp_endpoint = '$rx3->{url}'\neventsource.otlp_timeout = '600s'\n");
$node->reload;
wait_until(qq{SELECT current_setting('eventsource.otlp_endpoint') = '$rx3->{url}'}, 'reloaded: a hung collector');
wait_for('an export hangs in the collector', sub {
	sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
		SELECT eventsource.append_event('Order-hang-' || gen_random_uuid(), 0, 'Paid', '{}'); COMMIT;});
	return -e "$rx3->{dir}/hung";
});
# a reload moves the endpoint away from the hung collector at once: the
# export in progress is abandoned, not waited for (600 s)
my $rx4 = start_receiver('rx4');
$node->append_conf('postgresql.conf', "eventsource.otlp_endpoint = '$rx4->{url}'\n");
$node->reload;
wait_for('after a reload away from a hung collector, spans arrive at the new endpoint', sub {
	sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
		SELECT eventsource.append_event('Order-away-' || gen_random_uuid(), 0, 'Paid', '{}'); COMMIT;});
	return scalar(requests($rx4)) > 0;
});
set_mode($rx4->{dir}, 'hang');
wait_for('the new collector hangs too', sub {
	sql(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
		SELECT eventsource.append_event('Order-hang2-' || gen_random_uuid(), 0, 'Paid', '{}'); COMMIT;});
	return -e "$rx4->{dir}/hung";
});
my $t0 = time;
$node->stop('fast');
my $stop_secs = time - $t0;
ok($stop_secs < 60, sprintf('pg_ctl stop -m fast returns promptly during a hung export (%.1f s; time limit 600 s)',
	$stop_secs));
stop_receiver($rx3);
stop_receiver($rx4);

# a server that does not trace runs no exporter (it takes no worker slot)
my $plain = es_node('plain');
$plain->safe_psql('postgres', 'CREATE EXTENSION eventsource');
is($plain->safe_psql('postgres', 'SELECT enabled, exporter_pid IS NULL FROM eventsource.tracing'), 'f|t',
	'no endpoint: no exporter process');
is($plain->safe_psql('postgres', q{SELECT eventsource.health()->'checks' ? 'tracing'}), 'f',
	'no endpoint: no tracing check in health()');

# A database still on the 1.0 SQL objects (the 1.1 library installed, no
# ALTER EXTENSION UPDATE yet): append() keeps 1.0's meaning, the metadata
# is stored as given and the settings add nothing; what only 1.1 declares
# refuses with 55000 and the hint to update.
$plain->safe_psql('postgres', 'CREATE DATABASE old');
my $old = sub { $plain->safe_psql('old', $_[0]) };
$old->(q{CREATE EXTENSION eventsource VERSION '1.0';
CREATE FUNCTION public.tracing_stats_c(
    OUT enabled boolean, OUT exporter_pid integer, OUT queued integer,
    OUT queue_size integer, OUT spans_queued bigint, OUT spans_exported bigint,
    OUT spans_dropped bigint, OUT spans_dropped_queue_full bigint,
    OUT exports bigint, OUT export_errors bigint,
    OUT last_export_at timestamptz, OUT last_export_error text,
    OUT last_export_error_at timestamptz)
    RETURNS record LANGUAGE c AS '$libdir/eventsource', 'es_tracing_stats';});
$old->(q{SELECT eventsource.append_event('Old-1', 0, 'A', '{}', '{"traceparent": "not w3c", "tracestate": 7}')});
is($old->(q{SELECT metadata FROM eventsource.events WHERE stream_id = 'Old-1'}),
	'{"tracestate": 7, "traceparent": "not w3c"}',
	'1.0 database: a metadata traceparent/tracestate is stored as given, not validated');
$old->(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
	SELECT eventsource.append_event('Old-2', 0, 'A', '{}'); COMMIT;});
is($old->(q{SELECT metadata FROM eventsource.events WHERE stream_id = 'Old-2'}), '{}',
	'1.0 database: the traceparent setting adds nothing');
my ($rc, $out, $err) = $plain->psql('old', 'SELECT * FROM public.tracing_stats_c()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: eventsource\.tracing_stats\(\) needs the eventsource 1\.1 SQL objects/,
	'1.0 database: tracing_stats() refuses with 55000');
like($err, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE\./, '... with the hint to update');
$old->('ALTER EXTENSION eventsource UPDATE');
($rc, $out, $err) = $plain->psql('old',
	q{SELECT eventsource.append_event('Old-3', 0, 'A', '{}', '{"traceparent": "not w3c"}')});
like($err, qr/invalid traceparent "not w3c" in event metadata/, 'after UPDATE: the metadata is validated');
$old->(qq{BEGIN; SET LOCAL eventsource.traceparent = '00-$trace-$parent-01';
	SELECT eventsource.append_event('Old-4', 0, 'A', '{}'); COMMIT;});
is($old->(q{SELECT metadata->>'traceparent' FROM eventsource.events WHERE stream_id = 'Old-4'}),
	"00-$trace-$parent-01", 'after UPDATE: the setting is recorded');
is($old->('SELECT enabled FROM public.tracing_stats_c()'), 'f', 'after UPDATE: tracing_stats() answers');
$plain->stop;
done_testing();
