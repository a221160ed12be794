# Stream lifecycle (docs/lifecycle.md) across processes:
#  - subscriptions with partitions, category and type filters, and a batch
#    handler never deliver an event that was hidden before they reached it,
#    and each receives the system event of the operation in log order, in
#    the partition of the stream;
#  - subscription_status counts only visible events as lag;
#  - pg_dump / restore keeps the lifecycle state (hidden stays hidden, the
#    tombstone holds, numbering goes on);
#  - a hot standby hides the same events;
#  - on a database still on the 1.0 SQL the read paths work as before, the
#    lifecycle C functions refuse with 55000 and a hint, and after
#    ALTER EXTENSION eventsource UPDATE the same sessions hide.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('life', undef, allows_streaming => 1);

sub sql { my ($q, $db) = @_; return $node->safe_psql($db // 'postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

# SQLSTATE and message of a statement that must fail
sub fails
{
	my ($n, $db, $query) = @_;
	my ($ret, $out, $err) = $n->psql($db, "\\set VERBOSITY verbose\n$query");
	return 'no error' if $ret == 0;
	return $1 if $err =~ /ERROR:  (\w{5}: [^\n]*)/;
	return $err;
}

sql(q{
CREATE EXTENSION eventsource;
-- pid: the worker, i.e. the partition (subscription_status.pid)
CREATE TABLE seen (sub text, pos bigint, stream text, version bigint, type text, pid int,
                   PRIMARY KEY (sub, pos));
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position,
                           e.stream_id, e.stream_version, e.event_type, pg_backend_pid())
$$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen SELECT current_setting('eventsource.subscription'), e.global_position,
                          e.stream_id, e.stream_version, e.event_type, pg_backend_pid()
    FROM unnest(es) e
$$;
});

# ---------------------------------------------------------------------------
# 1. events hidden before any subscription existed are never delivered
# ---------------------------------------------------------------------------
sql(q{
SELECT eventsource.append('Order-1', 0, '[{"type": "Created", "data": {}}, {"type": "Paid", "data": {}},
                                          {"type": "Shipped", "data": {}}]');
SELECT eventsource.append('Order-2', 0, '[{"type": "Created", "data": {}}, {"type": "Paid", "data": {}},
                                          {"type": "Shipped", "data": {}}]');
SELECT eventsource.append('Customer-1', 0, '[{"type": "Created", "data": {}}, {"type": "Renamed", "data": {}}]');
SELECT eventsource.delete_stream('Order-1', 3);
SELECT eventsource.truncate_stream('Order-2', 3);
SELECT eventsource.delete_stream('Customer-1', 2, hard => true);
});
my $head1 = sql('SELECT eventsource.head_position()');

# four subscriptions: partitions with a category filter, a type filter, a
# batch handler with partitions, and one created paused (for the lag)
sql(q{
SELECT eventsource.create_subscription('by_cat', 'h(eventsource.events)', categories => '{Order}',
                                       partitions => 3);
SELECT eventsource.create_subscription('by_type', 'h(eventsource.events)',
                                       event_types => '{Created,Shipped,$StreamDeleted}', partitions => 2);
SELECT eventsource.create_subscription('batch', 'hb(eventsource.events[])', partitions => 2,
                                       batch_size => 50);
BEGIN;
SELECT eventsource.create_subscription('paused', 'h(eventsource.events)');
SELECT eventsource.pause_subscription('paused');
COMMIT;
});
for my $s ('by_cat', 'by_type', 'batch')
{
	wait_until(qq{SELECT bool_and(checkpoint >= $head1) FROM eventsource.subscription_status WHERE name = '$s'},
		"$s caught up with the first batch");
}

is(sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'by_cat'}),
	'Order-2 3 Shipped, Order-1 -1 $StreamDeleted, Order-2 -1 $StreamTruncated',
	'by_cat (partitions, category filter): only the visible events and the system events of its category');
is(sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'by_type'}),
	'Order-2 3 Shipped, Order-1 -1 $StreamDeleted, Customer-1 -1 $StreamDeleted',
	'by_type (partitions, type filter): the hidden Created events never come, the $StreamDeleted events do');
is(sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'batch'}),
	'Order-2 3 Shipped, Order-1 -1 $StreamDeleted, Order-2 -1 $StreamTruncated, Customer-1 -1 $StreamDeleted',
	'batch handler: the same');
is(sql(q{SELECT count(*) FILTER (WHERE st.partition = eventsource.stream_partition(s.stream, st.partitions))
              || '/' || count(*) FROM seen s
          LEFT JOIN eventsource.subscription_status st ON st.name = s.sub AND st.pid = s.pid}),
	'10/10', 'every event, the system events too, went to the partition of its stream');
is(sql(q{SELECT lag_events FROM eventsource.subscription_status WHERE name = 'paused'}),
	'4', 'subscription_status: the lag of a paused subscription counts only the visible events');

# ---------------------------------------------------------------------------
# 2. a running subscription: events appended and hidden in one transaction
#    are never delivered; the system event is, after what it had passed
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.append_event('Order-3', 0, 'Created', '{}')});
my $p3 = sql('SELECT eventsource.head_position()');
for my $s ('by_cat', 'by_type', 'batch')
{
	wait_until(qq{SELECT bool_and(checkpoint >= $p3) FROM eventsource.subscription_status WHERE name = '$s'},
		"$s delivered Order-3's first event");
}
sql(q{
BEGIN;
SELECT eventsource.append('Order-3', 1, '[{"type": "Paid", "data": {}}, {"type": "Shipped", "data": {}}]');
SELECT eventsource.delete_stream('Order-3', 3);
COMMIT;
SELECT eventsource.append_event('Order-4', 0, 'Created', '{}');
});
my $head2 = sql('SELECT eventsource.head_position()');
for my $s ('by_cat', 'by_type', 'batch')
{
	wait_until(qq{SELECT bool_and(checkpoint >= $head2) FROM eventsource.subscription_status WHERE name = '$s'},
		"$s caught up with the second batch");
	is(sql(qq{SELECT string_agg(version || ' ' || type, ', ' ORDER BY pos) FROM seen
	           WHERE sub = '$s' AND stream = 'Order-3'}),
		'1 Created, -1 $StreamDeleted',
		"$s: Order-3's first event (passed before), then the delete; never the events hidden at once");
}

# ---------------------------------------------------------------------------
# 2b. a deletion commits while a subscription is mid-way through the
#     stream's events: what it had fetched before the commit is delivered,
#     nothing after it, then the $StreamDeleted.  The handler blocks on the
#     Gate event (an advisory lock the test holds) with batch_size 1, so the
#     subscription has delivered Created, fetched Gate, and has Paid and
#     Shipped still ahead when the delete commits.  (In its own database, so
#     the dump below compares the same store as before.)
# ---------------------------------------------------------------------------
sql('CREATE DATABASE mid');
sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (pos bigint PRIMARY KEY, version bigint, type text);
CREATE FUNCTION hm(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.event_type = 'Gate' THEN
    PERFORM pg_advisory_xact_lock_shared(4242);
  END IF;
  INSERT INTO seen VALUES (e.global_position, e.stream_version, e.event_type);
END $$;
SELECT eventsource.create_subscription('mid', 'hm(eventsource.events)', batch_size => 1);
}, 'mid');
my $gate = $node->background_psql('mid');
$gate->query_safe('SELECT pg_advisory_lock(4242)');
sql(q{SELECT eventsource.append('Mid-1', 0, '[{"type": "Created", "data": {}}, {"type": "Gate", "data": {}},
                                            {"type": "Paid", "data": {}}, {"type": "Shipped", "data": {}}]')}, 'mid');
es_wait_until($node, 'mid', q{SELECT count(*) = 1 FROM seen}, 'mid delivered Created');
es_wait_until($node, 'mid', q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted},
	'mid waits in the handler of Gate');
sql(q{SELECT eventsource.delete_stream('Mid-1', 4)}, 'mid');
my $headm = sql('SELECT eventsource.head_position()', 'mid');
$gate->query_safe('SELECT pg_advisory_unlock(4242)');
$gate->quit;
es_wait_until($node, 'mid', qq{SELECT checkpoint >= $headm FROM eventsource.subscription_status WHERE name = 'mid'},
	'mid caught up after the delete');
is(sql(q{SELECT string_agg(version || ' ' || type, ', ' ORDER BY pos) FROM seen}, 'mid'),
	'1 Created, 2 Gate, -1 $StreamDeleted',
	'mid-way: the event it was handling is delivered, the ones after it were hidden by the commit, then the delete');
sql(q{SELECT eventsource.drop_subscription('mid')}, 'mid');

# ---------------------------------------------------------------------------
# 3. pg_dump / restore keeps the lifecycle state
# ---------------------------------------------------------------------------
my $tempdir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-Fc', '-f', "$tempdir/life.dump" ],
	'pg_dump');
sql('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), "$tempdir/life.dump" ],
	'pg_restore');
sql(q{SELECT eventsource.drop_subscription(name) FROM eventsource.subscriptions}, 'restored');
my $state = q{SELECT string_agg(format('%s %s %s %s %s %s', stream_id, hidden_through, last_version,
                                          tombstoned, operations, last_position), '; ' ORDER BY stream_id)
                FROM eventsource.stream_lifecycle};
is(sql($state, 'restored'), sql($state), 'the lifecycle rows are restored');
my $reads = q{SELECT concat_ws(' | ',
    (SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id) FROM eventsource.streams),
    (SELECT string_agg(stream_id || ':' || stream_version, ',' ORDER BY global_position)
       FROM eventsource.read_all(0, 1000)),
    (SELECT count(*) FROM eventsource.read_stream('Order-1')),
    eventsource.stream_version('Order-2'), eventsource.load('Order-2') -> 'version')};
is(sql($reads, 'restored'), sql($reads), 'the restored store hides the same events');
is(sql($reads, 'restored'),
	'Order-2:3,Order-4:1 | Order-2:3,Order-1:-1,Order-2:-1,Customer-1:-1,Order-3:-1,Order-4:1 | 0 | 3 | 3',
	'and that is the visible part only (Order-3:1 is hidden too: subscriptions had it before the delete)');
like(fails($node, 'restored', q{SELECT eventsource.append_event('Customer-1', -1, 'Created', '{}')}),
	qr/^ES003: stream "Customer-1" is deleted for good/, 'the tombstone holds after the restore');
is(sql(q{SELECT stream_version FROM eventsource.append_event('Order-1', 0, 'Created', '{}')}, 'restored'),
	'4', 'a re-opened stream goes on after its last version');

# ---------------------------------------------------------------------------
# 4. a hot standby hides the same events
# ---------------------------------------------------------------------------
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('life_standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
sql(q{SELECT eventsource.save_snapshot('Order-4', 1, '{"s": 1}')});
sql(q{
SELECT eventsource.append_event('Order-4', 1, 'Paid', '{}');
SELECT eventsource.truncate_stream('Order-4', 2);
});
$node->wait_for_catchup($standby);
my $stream_reads = q{SELECT concat_ws(' | ',
    (SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id) FROM eventsource.streams),
    (SELECT string_agg(stream_version::text, ',') FROM eventsource.read_stream('Order-4')),
    (SELECT count(*) FROM eventsource.read_stream('Order-1')),
    (SELECT count(*) FROM eventsource.read_stream('Order-3')),
    eventsource.stream_version('Order-1'), eventsource.stream_version('Customer-1'),
    coalesce(eventsource.load('Order-4') ->> 'snapshot', 'none'), eventsource.load('Order-4') -> 'version',
    (SELECT count(*) FROM eventsource.load_snapshot('Order-4')))};
is($standby->safe_psql('postgres', $stream_reads), sql($stream_reads),
	'the standby hides what the primary hides');
is(sql($stream_reads), 'Order-2:3,Order-4:2 | 2 | 0 | 0 | 0 | 0 | none | 2 | 0',
	'and that is the visible part only');
like(fails($standby, 'postgres', q{SELECT eventsource.delete_stream('Order-4', -1)}),
	qr/^25006: /, 'the standby refuses lifecycle operations (read-only)');
$standby->stop;

# ---------------------------------------------------------------------------
# 5. a database still on the 1.0 SQL, then updated
# ---------------------------------------------------------------------------
sql('CREATE DATABASE old');
sql(q{
CREATE EXTENSION eventsource VERSION '1.0';
-- what a user could do to reach the C function without the 1.1 SQL
CREATE FUNCTION public.delete_stream(text, bigint, boolean) RETURNS bigint
    LANGUAGE c AS '$libdir/eventsource', 'es_delete_stream';
SELECT eventsource.append('Old-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
}, 'old');
like(fails($node, 'old', q{SELECT public.delete_stream('Old-1', -1, false)}),
	qr/^55000: eventsource.delete_stream\(\) needs the eventsource 1.1 SQL objects/,
	'1.0 SQL: the lifecycle function refuses with 55000');
my ($ret, $out, $err) = $node->psql('old', q{SELECT public.delete_stream('Old-1', -1, false)});
like($err, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE\./, 'with the hint to update');

# one session across the update: its plans follow the SQL version
my $s = $node->background_psql('old');
is($s->query_safe(q{SELECT string_agg(stream_version::text, ',') FROM eventsource.read_stream('Old-1')}),
	'1,2', '1.0 SQL: read_stream works');
is($s->query_safe(q{SELECT count(*) FROM eventsource.read_all()}), '2', '1.0 SQL: read_all works');
is($s->query_safe(q{SELECT stream_version FROM eventsource.append_event('Old-1', 2, 'C', '{}')}),
	'3', '1.0 SQL: append works');
is($s->query_safe(q{SELECT stream_version FROM eventsource.append_event('Old-2', 0, '$Legacy', '{}')}),
	'1', '1.0 SQL: an event type beginning with $ is accepted, as 1.0 accepted it');
$s->query_safe(q{ALTER EXTENSION eventsource UPDATE});
like(fails($node, 'old', q{SELECT eventsource.append_event('Old-2', 1, '$Legacy', '{}')}),
	qr/^22023: event type "\$Legacy" is reserved/, 'after the update it is refused (22023)');
$s->query_safe(q{SELECT eventsource.truncate_stream('Old-1', 3)});
is($s->query_safe(q{SELECT string_agg(stream_version::text, ',') FROM eventsource.read_stream('Old-1')}),
	'3', 'after the update the same session hides the truncated versions');
is($s->query_safe(q{SELECT string_agg(stream_version::text, ',') FROM eventsource.read_all()}),
	'3,1,-1', 'in read_all too');
$s->quit;

# ---------------------------------------------------------------------------
# 6. retry_dead_letters() never re-delivers an event hidden since it failed:
#    a dead letter of Dl-bad's first event; the stream is deleted and the
#    subscription processes the $StreamDeleted; the retry must not hand the
#    handler the deleted stream's event again (the dead letter is dropped);
#    a dead letter of a visible event is still retried
# ---------------------------------------------------------------------------
sql(q{
CREATE TABLE poison (stream text PRIMARY KEY);
CREATE FUNCTION hp(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_version > 0 AND EXISTS (SELECT FROM poison p WHERE p.stream = e.stream_id) THEN
    RAISE EXCEPTION 'poisoned stream %', e.stream_id;
  END IF;
  INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position,
                           e.stream_id, e.stream_version, e.event_type, pg_backend_pid());
END $$;
INSERT INTO poison VALUES ('Dl-bad'), ('Dl-kept');
SELECT eventsource.create_subscription('dl', 'hp(eventsource.events)', categories => '{Dl}',
                                       max_retries => 0, circuit_breaker_threshold => 0);
SELECT eventsource.append_event('Dl-bad', 0, 'Created', '{}');
SELECT eventsource.append_event('Dl-kept', 0, 'Created', '{}');
});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters WHERE subscription = 'dl'},
	'two dead letters (Dl-bad, Dl-kept)');
sql(q{SELECT eventsource.delete_stream('Dl-bad', -1)});
my $head6 = sql('SELECT eventsource.head_position()');
wait_until(qq{SELECT checkpoint >= $head6 FROM eventsource.subscription_status WHERE name = 'dl'},
	'dl processed the $StreamDeleted');
sql(q{DELETE FROM poison});
is(sql(q{SELECT eventsource.retry_dead_letters('dl')}), '2', 'both dead letters marked for retry');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 'dl'},
	'the retry empties the dead letters');
is(sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'dl'}),
	'Dl-kept 1 Created, Dl-bad -1 $StreamDeleted',
	'the handler got the delete and the visible event, never the deleted stream\'s event again');
ok($node->log_contains(qr/subscription "dl" partition \d+: dropped 1 dead letters of events hidden by a lifecycle operation/),
	'the dropped dead letter is logged');
is(sql(q{SELECT dead_letters FROM eventsource.subscription_status WHERE name = 'dl'}), '0',
	'the status counts no dead letter');

$node->stop;

done_testing();
