# Hot standby: a streaming replica serves read_stream(), load(),
# stream_version(), snapshots, checkpoints and the status views; read_all() and
# head_position() refuse with 55000 (the safe horizon needs the primary's
# in-progress appends); every write gives 25006 (read-only).  Nothing crashes.
# After promotion read_all() works, appends continue above the old positions
# and the subscriptions start there, resuming from their replicated
# checkpoints.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $primary = es_node('primary', undef, allows_streaming => 1);

sub wait_until { my $node = shift; es_wait_until($node, 'postgres', @_) }

# SQLSTATE and message of a statement that must fail
sub fails
{
	my ($node, $query) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$query");
	return 'no error' if $ret == 0;
	return $1 if $err =~ /ERROR:  (\w{5}: [^\n]*)/;
	return $err;
}

$primary->safe_psql('postgres', q{
CREATE EXTENSION eventsource;
CREATE TABLE readmodel (sub text, pos bigint, stream text, PRIMARY KEY (sub, pos));
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO readmodel VALUES (current_setting('eventsource.subscription'), e.global_position, e.stream_id)
$$;
SELECT eventsource.create_subscription('live', 'h(eventsource.events)');
SELECT eventsource.create_subscription('lagging', 'h(eventsource.events)');
SELECT eventsource.pause_subscription('lagging');
});
$primary->safe_psql('postgres', q{
SELECT eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {"total": 10}},
                                          {"type": "OrderShipped", "data": {"tracking_number": "T1"}}]');
SELECT eventsource.save_snapshot('Order-1', 1, '{"status": "created"}');
BEGIN;
SELECT eventsource.append_event('Order-9', 0, 'OrderCreated', '{}');
ROLLBACK;
SELECT eventsource.append_event('Order-2', 0, 'OrderCreated', '{"total": 20}');
SELECT eventsource.save_checkpoint('manual', 2);
-- a trailing gap: the primary's head is above the highest stored position
BEGIN;
SELECT eventsource.append_event('Order-9', 0, 'OrderCreated', '{}');
ROLLBACK;
});
my $p_head = $primary->safe_psql('postgres', 'SELECT eventsource.head_position()');
is($p_head, '5', 'primary: head 5 (positions 1, 2, 4 stored; 3 and 5 aborted)');
wait_until($primary, q{SELECT checkpoint = 5 FROM eventsource.subscription_status WHERE name = 'live'},
	'primary: the running subscription caught up');

# the standby, from a base backup, streaming
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
# one more event after the backup, replayed through streaming
$primary->safe_psql('postgres', q{SELECT eventsource.append_event('Order-2', 1, 'OrderShipped', '{"tracking_number": "T2"}')});
wait_until($primary, q{SELECT checkpoint = 6 FROM eventsource.subscription_status WHERE name = 'live'},
	'primary: the running subscription processed it');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');

# ---------------------------------------------------------------------------
# reads that work on the standby, with the primary's answers
# ---------------------------------------------------------------------------
for my $q (
	q{SELECT * FROM eventsource.read_stream('Order-1')},
	q{SELECT * FROM eventsource.read_stream('Order-2', NULL, 1000, true)},
	q{SELECT * FROM eventsource.read_stream('Order-1', 2)},
	q{SELECT count(*) FROM eventsource.read_stream('Nope-1')},
	q{SELECT eventsource.load('Order-1')},
	q{SELECT eventsource.load('Order-2')},
	q{SELECT eventsource.stream_version('Order-1') || ' ' || eventsource.stream_version('Order-2') || ' ' || eventsource.stream_version('Nope-1')},
	q{SELECT * FROM eventsource.load_snapshot('Order-1')},
	q{SELECT eventsource.get_checkpoint('manual') || ' ' || (SELECT string_agg(subscription || ':' || position, ',' ORDER BY subscription) FROM eventsource.subscription_partitions)},
	q{SELECT * FROM eventsource.streams ORDER BY stream_id},
	q{SELECT eventsource.category('Order-1') || ' ' || eventsource.stream_partition('Order-1', 4)})
{
	my $expected = $primary->safe_psql('postgres', $q);
	isnt($expected, '', "primary answers: $q");
	is($standby->safe_psql('postgres', $q), $expected, "the standby answers the same: $q");
}
like($standby->safe_psql('postgres', q{SELECT eventsource.load('Order-1')}),
	qr/^\{"events": \[\{[^]]*"type": "OrderShipped", "version": 2, [^]]*\], "version": 2, "snapshot": \{"state": \{"status": "created"\}, "version": 1, "schema_version": 1\}, "stream_id": "Order-1"\}$/,
	'load() on the standby: snapshot at version 1 plus the tail');

# the status view: lag against the highest replayed position (6); the primary's head would also be 6
is( $standby->safe_psql('postgres', q{SELECT name || ' ' || coalesce(pid::text, '-') || ' ' || state || ' ' ||
       checkpoint || ' ' || head_position || ' ' || lag_events || ' ' || health || ' ' || health_reason
       FROM eventsource.subscription_status ORDER BY name}),
	"lagging - paused 0 6 4 degraded paused\nlive - stopped 6 6 0 unhealthy not running",
	'subscription_status on the standby: not running (the paused one paused), lag against the highest replayed position');
my $health = $standby->safe_psql('postgres', q{SELECT h->>'status' || ' ' || (h->>'running') || ' ' ||
       (h->>'subscription_count') || ' ' || (h->>'total_lag_events') || ' ' || (h->'checks'->>'launcher')
       FROM eventsource.health() h});
is($health, 'unhealthy false 2 4 unhealthy: not running',
	'health() on the standby: the machinery does not run there');
is( $standby->safe_psql('postgres', q{SELECT string_agg((s->>'name') || ':' || (s->>'reason'), ',' ORDER BY s->>'name')
       FROM eventsource.health() h, jsonb_array_elements(h->'subscriptions') s}),
	'lagging:paused,live:not running', 'health() reports the active subscription as not running');
is($standby->safe_psql('postgres', q{SELECT (r->>'ready') || ' ' || (r->>'reason') FROM eventsource.readiness() r}),
	'false the launcher is not running', 'readiness() on the standby: not ready');
is($standby->safe_psql('postgres', q{SELECT (l->>'alive') || ' ' || (l->>'reason') FROM eventsource.liveness() l}),
	'false the launcher is not running', 'liveness() on the standby: not alive');
is($standby->safe_psql('postgres', q{SELECT (e->>'dead_letters') FROM eventsource.error_stats() e}), '0',
	'error_stats() works on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM eventsource.horizon_blockers}), '0',
	'horizon_blockers works on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM eventsource.store_stats}), '1',
	'store_stats works on the standby');

# ---------------------------------------------------------------------------
# the global log: 55000 with a clear message
# ---------------------------------------------------------------------------
is(fails($standby, q{SELECT * FROM eventsource.read_all()}),
	'55000: the safe horizon is not known on a standby', 'read_all() on the standby: 55000');
is(fails($standby, q{SELECT * FROM eventsource.read_all(2, 10, ARRAY['OrderCreated'], ARRAY['Order'])}),
	'55000: the safe horizon is not known on a standby', 'read_all() with filters: 55000');
is(fails($standby, q{SELECT eventsource.head_position()}),
	'55000: the safe horizon is not known on a standby', 'head_position() on the standby: 55000');
{
	my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT eventsource.head_position()');
	like($err, qr/HINT:  Read the global log from the primary; read_stream\(\) and load\(\) work on a standby\./,
		'with a hint saying where to read instead');
}
is($standby->safe_psql('postgres', q{SELECT eventsource.wait_for_subscription('live', 6, '100ms')}), 't',
	'wait_for_subscription() on the standby: true for a replayed checkpoint');
is($standby->safe_psql('postgres', q{SELECT eventsource.wait_for_subscription('live', 7, '100ms')}), 'f',
	'and false after its timeout for a position not reached');

# ---------------------------------------------------------------------------
# writes: 25006
# ---------------------------------------------------------------------------
for my $q (
	q{SELECT eventsource.append('Order-3', 0, '[{"type": "OrderCreated", "data": {}}]')},
	q{SELECT eventsource.append_event('Order-3', 0, 'OrderCreated', '{}')},
	q{SELECT eventsource.append_event('Order-1', 2, 'OrderCancelled', '{}')},
	q{SELECT eventsource.save_snapshot('Order-1', 2, '{}')},
	q{SELECT eventsource.save_checkpoint('manual', 3)},
	q{SELECT eventsource.reset_checkpoint('manual')},
	q{SELECT eventsource.create_subscription('new', 'h(eventsource.events)')},
	q{SELECT eventsource.pause_subscription('live')},
	q{SELECT eventsource.resume_subscription('lagging')},
	q{SELECT eventsource.reset_subscription('live', 0)},
	q{SELECT eventsource.retry_dead_letters('live')},
	q{SELECT eventsource.drop_subscription('live')})
{
	like(fails($standby, $q), qr/^25006: cannot execute .* in a read-only transaction/, "25006 on the standby: $q");
}
# the counters live in shared memory, as pg_stat_reset() they can be reset on a standby
is(fails($standby, q{SELECT eventsource.stat_reset()}), 'no error', 'stat_reset() works on the standby');
is( $standby->safe_psql('postgres', q{SELECT count(*) || ' ' || max(global_position) FROM eventsource.events}),
	'4 6', 'the standby still holds the same events');
is($standby->safe_psql('postgres', 'SELECT 1'), '1', 'the standby is still up');
my $log = slurp_file($standby->logfile);
unlike($log, qr/PANIC|TRAP|terminated by signal|was terminated|server process .* exited with exit code [^0]/,
	'nothing crashed on the standby');

# ---------------------------------------------------------------------------
# promotion
# ---------------------------------------------------------------------------
$primary->stop;
$standby->promote;
ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the standby is promoted');
is( $standby->safe_psql('postgres', 'SELECT string_agg(global_position::text, \',\') FROM eventsource.read_all()'),
	'1,2,4,6', 'read_all() works after promotion and returns every event');
# the sequence's WAL record logs values ahead (SEQ_LOG_VALS), so the promoted
# server's sequence, and so its head, may be up to 32 above the old head
my $new_head = $standby->safe_psql('postgres', 'SELECT eventsource.head_position()');
cmp_ok($new_head, '>=', 6, "head_position() works after promotion ($new_head)");
my $pos = $standby->safe_psql('postgres',
	q{SELECT first_position FROM eventsource.append_event('Order-3', 0, 'OrderCreated', '{}')});
cmp_ok($pos, '>', 6, "a new append gets a position above the old ones ($pos)");
cmp_ok($pos, '>', $new_head, 'and above the head read before it');
is($standby->safe_psql('postgres', q{SELECT stream_version FROM eventsource.append_event('Order-1', 2, 'OrderCancelled', '{}')}),
	'3', 'appends to old streams continue at their next version');

# the subscriptions start on the promoted server, from their checkpoints
wait_until($standby, qq{SELECT count(*) = 2 FROM readmodel WHERE sub = 'live' AND pos > 6},
	'the running subscription starts after promotion and processes the new events');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM readmodel WHERE sub = 'live'}), '6',
	'without redelivering the old ones (4 old + 2 new)');
wait_until($standby, q{SELECT pid IS NOT NULL AND state = 'live' FROM eventsource.subscription_status WHERE name = 'live'},
	'it is live');
is($standby->safe_psql('postgres', q{SELECT state FROM eventsource.subscription_status WHERE name = 'lagging'}),
	'paused', 'the paused one stays paused');
$standby->safe_psql('postgres', q{SELECT eventsource.resume_subscription('lagging')});
wait_until($standby, q{SELECT count(*) = 6 FROM readmodel WHERE sub = 'lagging'},
	'resumed, it catches up with everything');
is($standby->safe_psql('postgres', q{SELECT h->>'status' FROM eventsource.health() h}), 'healthy',
	'health() after promotion');

$standby->stop;
done_testing();
