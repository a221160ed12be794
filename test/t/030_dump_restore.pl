# pg_dump and restore: a database with events (several streams, gaps left by
# aborted appends), snapshots, checkpoints, a subscription with its checkpoint,
# a dead letter and recent errors is dumped and restored into fresh databases
# on the same preloaded server -- plain format through psql, custom format
# through pg_restore, and pg_restore -j 2.  The restored store holds the same
# rows, reports the same head position, hands out positions above the old
# ones, and its subscription resumes from its checkpoint (no redelivery) and
# processes new events; dead letters can still be retried.  A restore into a
# store that already holds events is refused, and a restoring COPY holds the
# horizon back until its transaction ends.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use IPC::Run;
use Time::HiRes qw(time);

my $node = es_node('dump');

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

sub poll_for { es_poll_for($node, @_) }

sub wait_until { es_wait_until($node, @_) }

# ---------------------------------------------------------------------------
# the source database
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE src');
sql('src', q{
CREATE EXTENSION eventsource;
CREATE TABLE poison (stream text PRIMARY KEY);
-- the read model the subscription keeps; it is dumped with the store
CREATE TABLE readmodel (pos bigint PRIMARY KEY, stream text NOT NULL, type text NOT NULL,
                        db text NOT NULL DEFAULT current_database());
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM poison p WHERE p.stream = e.stream_id) THEN
    RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = 'P0001';
  END IF;
  INSERT INTO readmodel (pos, stream, type) VALUES (e.global_position, e.stream_id, e.event_type);
END $$;
INSERT INTO poison VALUES ('Bad-1');
SELECT eventsource.create_subscription('proj', 'h(eventsource.events)',
  max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 0);
});
sql('src', q{
SELECT eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {"customer_id": "c1", "total": 10}},
                                          {"type": "OrderShipped", "data": {"tracking_number": "T1"},
                                           "metadata": {"correlation_id": "corr-1"}}]');
SELECT eventsource.append_event('Order-2', 0, 'OrderCreated', '{"customer_id": "c2", "total": 20}');
BEGIN;
SELECT eventsource.append_event('Order-3', 0, 'OrderCreated', '{"customer_id": "c3", "total": 30}');
ROLLBACK;
SELECT eventsource.append_event('Customer-1', 0, 'CustomerRegistered', '{"name": "Ann"}');
SELECT eventsource.append_event('Bad-1', 0, 'OrderCreated', '{"total": -1}');
SELECT eventsource.append_event('Order-2', 1, 'OrderShipped', '{"tracking_number": "T2"}');
SELECT eventsource.save_snapshot('Order-1', 2, '{"status": "shipped", "total": 10}');
SELECT eventsource.save_snapshot('Order-2', 1, '{"status": "created", "total": 20}');
SELECT eventsource.save_snapshot('Order-2', 1, '{"status": "created", "v": 2}', 2);
SELECT eventsource.save_checkpoint('manual', 3);
SELECT eventsource.save_checkpoint('reporting', 5);
-- a trailing gap: the head is above the last stored position
BEGIN;
SELECT eventsource.append_event('Order-4', 0, 'OrderCreated', '{}');
ROLLBACK;
});
wait_until('src', q{SELECT count(*) = 1 FROM eventsource.dead_letters}, 'the poison event is a dead letter');
wait_until('src', q{SELECT checkpoint = head_position AND state = 'live'
                      FROM eventsource.subscription_status WHERE name = 'proj'},
	'the subscription caught up');

my $old_head = sql('src', 'SELECT eventsource.head_position()');
my $old_max = sql('src', 'SELECT max(global_position) FROM eventsource.events');
is($old_head, '8', 'source head: 8 positions handed out');
is($old_max, '7', 'source: the last stored event is at 7, position 8 is a trailing gap (aborted append)');
is( sql('src', q{SELECT string_agg(global_position::text, ',' ORDER BY global_position) FROM eventsource.events}),
	'1,2,3,5,6,7', 'and position 4 is a gap in the middle (aborted append)');
my $old_cp = sql('src', q{SELECT position FROM eventsource.subscription_partitions WHERE subscription = 'proj'});
is($old_cp, $old_head, 'the subscription checkpoint is at the head');
my $old_readmodel = sql('src', 'SELECT count(*) FROM readmodel');

# The tables compared row for row (md5 of the ordered rows), and the sequences.
my @tables = qw(eventsource.events eventsource.snapshots eventsource.checkpoints
  eventsource.subscriptions eventsource.subscription_partitions eventsource.dead_letters
  eventsource.recent_errors public.readmodel public.poison);
my $fingerprint_sql = join(' UNION ALL ', map {
	"SELECT '$_' || ' ' || count(*) || ' ' || md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM $_ t"
} @tables) . q{ UNION ALL SELECT 'seq ' || last_value || ' ' || is_called FROM eventsource.events_global_position_seq
 UNION ALL SELECT 'dlseq ' || last_value || ' ' || is_called FROM eventsource.dead_letters_id_seq
 UNION ALL SELECT 'reseq ' || last_value || ' ' || is_called FROM eventsource.recent_errors_id_seq
 UNION ALL SELECT 'subseq ' || last_value || ' ' || is_called FROM eventsource.subscriptions_id_seq};
# readmodel.db names the database the handler ran in: compare without it
$fingerprint_sql =~ s/FROM public\.readmodel t/FROM (SELECT pos, stream, type FROM public.readmodel) t/;

my $src_fp = sql('src', $fingerprint_sql);
my $src_all = sql('src', 'SELECT * FROM eventsource.read_all(0, 1000)');
my $src_load = sql('src', q{SELECT eventsource.load('Order-1')} . ';' . q{SELECT eventsource.load('Order-2')});
my $src_status = sql('src', q{SELECT name, partition, checkpoint, head_position, lag_events, dead_letters
                               FROM eventsource.subscription_status});

# ---------------------------------------------------------------------------
# dump once (plain and custom), then the source goes on living its own life
# ---------------------------------------------------------------------------
my $plain = $node->basedir . '/src.sql';
my $custom = $node->basedir . '/src.dump';
command_ok([ 'pg_dump', '-d', $node->connstr('src'), '-f', $plain ], 'pg_dump plain');
command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $custom ], 'pg_dump custom');
is(sql('src', $fingerprint_sql), $src_fp, 'the source did not change while it was dumped');
like(slurp_file($plain), qr/COPY eventsource\.events \(global_position/, 'the dump carries the log as COPY');
like(slurp_file($plain), qr/setval\('eventsource\.events_global_position_seq', $old_head, true\)/,
	'and the position sequence at the old head');

# Restore checks, run for each restored database.
sub check_static
{
	my ($db, $how) = @_;

	is(sql($db, $fingerprint_sql), $src_fp, "$how: every table and sequence is identical, row for row");
	is(sql($db, 'SELECT eventsource.head_position()'), $old_head, "$how: head_position() is the old one");
	is(sql($db, 'SELECT * FROM eventsource.read_all(0, 1000)'), $src_all, "$how: read_all() returns the same events");
	is(sql($db, q{SELECT eventsource.load('Order-1')} . ';' . q{SELECT eventsource.load('Order-2')}),
		$src_load, "$how: load() rebuilds the same aggregates (snapshot + tail)");
	is(sql($db, q{SELECT stream_version || ' ' || state FROM eventsource.load_snapshot('Order-2', 2)}),
		'1 {"v": 2, "status": "created"}', "$how: a snapshot of another schema version is there");
	is(sql($db, q{SELECT eventsource.get_checkpoint('manual') || ' ' || eventsource.get_checkpoint('reporting')}),
		'3 5', "$how: checkpoints restored");
	my ($ret, $out, $err) = $node->psql($db, q{\set VERBOSITY verbose
SELECT eventsource.save_checkpoint('manual', 2)});
	like($err, qr/22023: checkpoint "manual" cannot move backwards/, "$how: checkpoints stay monotonic");

	is(sql($db, q{SELECT name, partition, checkpoint, head_position, lag_events, dead_letters
	                FROM eventsource.subscription_status}),
		$src_status, "$how: status: same checkpoint, head, lag and dead letters");
}

# A restored subscription (rows COPYed into eventsource.subscriptions) is
# discovered when the restoring transaction commits.
sub check_starts
{
	my ($db, $how) = @_;
	ok(poll_for($db, q{SELECT pid IS NOT NULL FROM eventsource.subscription_status WHERE name = 'proj'}, 3),
		"$how: the restored subscription starts without a server restart");
}

# After the workers run: resume from the checkpoint, new events, dead letters.
sub check_running
{
	my ($db, $how) = @_;
	my ($ret, $out, $err);

	wait_until($db, q{SELECT pid IS NOT NULL AND state = 'live' FROM eventsource.subscription_status
	                   WHERE name = 'proj'}, "$how: the restored subscription is running");
	is(sql($db, q{SELECT checkpoint || ' ' || lag_events FROM eventsource.subscription_status}),
		"$old_cp 0", "$how: at its restored checkpoint, with nothing to catch up on");

	# new appends get positions above the old ones
	is(sql($db, q{SELECT first_position > } . $old_head . q{ FROM eventsource.append_event('Order-5', 0, 'OrderCreated', '{"total": 50}')}),
		't', "$how: a new append gets a position above the old head");
	is(sql($db, q{SELECT stream_version FROM eventsource.append_event('Order-2', 2, 'OrderCancelled', '{}')}),
		'3', "$how: an old stream continues at its next version");
	($ret, $out, $err) = $node->psql($db, q{\set VERBOSITY verbose
SELECT eventsource.append_event('Order-2', 1, 'X', '{}')});
	like($err, qr/ES001: wrong expected version for stream "Order-2"/, "$how: the expected version is checked against restored events");
	my $reused = sql($db, q{SELECT event_id FROM eventsource.events WHERE stream_id = 'Customer-1'});
	($ret, $out, $err) = $node->psql($db, qq{\\set VERBOSITY verbose
SELECT eventsource.append_event('Other-1', 0, 'X', '{}', '{}', '$reused')});
	like($err, qr/ES002/, "$how: restored event ids stay unique (ES002)");

	wait_until($db, q{SELECT count(*) = 2 FROM readmodel WHERE stream IN ('Order-5') OR type = 'OrderCancelled'},
		"$how: the subscription processes the new events");
	is(sql($db, qq{SELECT count(*) || ' ' || count(*) FILTER (WHERE db = current_database())
	                 FROM readmodel}),
		($old_readmodel + 2) . ' 2', "$how: and only them: the old events were not redelivered");
	is(sql($db, qq{SELECT position > $old_head FROM eventsource.subscription_partitions WHERE subscription = 'proj'}), 't',
		"$how: its checkpoint moved on from the restored one");

	# the dead letter can be retried once the cause is gone
	sql($db, 'DELETE FROM poison');
	is(sql($db, q{SELECT eventsource.retry_dead_letters('proj')}), '1', "$how: one dead letter to retry");
	wait_until($db, q{SELECT count(*) = 0 FROM eventsource.dead_letters}, "$how: the dead letter is redelivered");
	is(sql($db, q{SELECT count(*) FROM readmodel WHERE stream = 'Bad-1' AND db = current_database()}), '1',
		"$how: and applied");
}

my @restored = ([ 'dst_plain', 'plain' ], [ 'dst_custom', 'custom' ], [ 'dst_parallel', 'parallel' ]);

# plain: pg_dump | psql, statement by statement (autocommit)
$node->safe_psql('postgres', 'CREATE DATABASE dst_plain');
{
	my ($out, $err);
	my $ok = IPC::Run::run(
		[ 'pg_dump', '-d', $node->connstr('src') ], '|',
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst_plain') ],
		'>', \$out, '2>', \$err);
	ok($ok, 'pg_dump | psql restores without error') or diag($err);
}
check_static('dst_plain', 'plain');

# custom format through pg_restore
$node->safe_psql('postgres', 'CREATE DATABASE dst_custom');
command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('dst_custom'), $custom ],
	'pg_restore of the custom dump');
check_static('dst_custom', 'custom');

# parallel pg_restore: data of different tables loaded by different sessions
$node->safe_psql('postgres', 'CREATE DATABASE dst_parallel');
command_ok([ 'pg_restore', '--exit-on-error', '-j', '2', '-d', $node->connstr('dst_parallel'), $custom ],
	'pg_restore -j 2 of the custom dump');
check_static('dst_parallel', 'parallel');

check_starts($_->[0], $_->[1]) for @restored;
check_running($_->[0], $_->[1]) for @restored;

# the source is unaffected by the restores
is(sql('src', 'SELECT eventsource.head_position()'), $old_head, 'the source head did not move');
is(sql('src', 'SELECT count(*) FROM readmodel WHERE db <> current_database()'), '0',
	'no restored worker wrote into the source');

# ---------------------------------------------------------------------------
# restore into a store that already holds events: refused
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE busy');
sql('busy', q{CREATE EXTENSION eventsource;
              SELECT eventsource.append_event('Existing-1', 0, 'Here', '{}')});
{
	my ($out, $err);
	IPC::Run::run([ 'psql', '-X', '-q', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('busy'), '-f', $plain ],
		'>', \$out, '2>', \$err);
	like($err,
		qr/ERROR:  42501: COPY into eventsource\.events is only allowed into an empty event store\nDETAIL:  COPY is accepted to restore a dump; this store already holds events\./,
		'restoring into a non-empty store: COPY of the log is refused with a clear error (42501)');
}
is(sql('busy', q{SELECT string_agg(stream_id, ',') FROM eventsource.events}), 'Existing-1',
	'the existing log is untouched');
{
	# Known defect: only the COPY of the log is refused; psql goes on and the
	# dump's subscriptions, checkpoints, snapshots, dead letters and the
	# sequence's setval() land in the non-empty store.
	local $TODO = 'a refused restore still merges the other tables of the dump (src/guard.c)';
	is(sql('busy', q{SELECT (SELECT count(*) FROM eventsource.subscriptions) || ' ' ||
	                        (SELECT count(*) FROM eventsource.checkpoints) || ' ' ||
	                        (SELECT count(*) FROM eventsource.snapshots)}),
		'0 0 0', 'nothing else of the dump was merged into the non-empty store');
}
is(sql('busy', q{SELECT stream_version || ' ' || (first_position > 1) FROM eventsource.append_event('Existing-1', 1, 'Still', '{}')}),
	'2 true', 'the store still appends after the refused restore');
is(sql('busy', q{SELECT eventsource.head_position() = (SELECT max(global_position) FROM eventsource.events)}),
	't', 'and its horizon is not held back by the refused COPY');
{
	my ($out, $err);
	my $ok = IPC::Run::run([ 'pg_restore', '-d', $node->connstr('busy'), '--data-only', '-t', 'events', $custom ],
		'>', \$out, '2>', \$err);
	ok(!$ok, 'pg_restore --data-only of the log into a non-empty store fails');
	like($err, qr/COPY into eventsource\.events is only allowed into an empty event store/, '... with the same clear error');
}
is(sql('busy', q{SELECT count(*) FROM eventsource.events}), '2', 'nothing was added');

# a direct COPY into a non-empty store, not a restore: same refusal
my ($ret, $out, $err) = $node->psql('busy', q{\set VERBOSITY verbose
COPY eventsource.events FROM stdin;
999	X-1	1	00000000-0000-0000-0000-000000000001	X	{}	{}	2020-01-01 00:00:00+00
\.
});
like($err, qr/42501: COPY into eventsource\.events is only allowed into an empty event store/,
	'a COPY into the non-empty log is refused');

# ---------------------------------------------------------------------------
# a restoring COPY holds the horizon at 0 until its transaction ends
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE manual');
sql('manual', 'CREATE EXTENSION eventsource');
my $file = $node->basedir . '/events.copy';
sql('src', qq{COPY (SELECT * FROM eventsource.events WHERE global_position <= $old_max ORDER BY global_position)
              TO '$file'});
my $restorer = $node->background_psql('manual');
$restorer->query_safe(qq{BEGIN; COPY eventsource.events FROM '$file';
	SELECT pg_catalog.setval('eventsource.events_global_position_seq', $old_head, true)});
is(sql('manual', 'SELECT eventsource.head_position()'), '0', 'during the restoring transaction the head is 0');
is(sql('manual', 'SELECT count(*) FROM eventsource.read_all(0)'), '0', 'read_all() returns nothing yet');
is(sql('manual', 'SELECT count(*) FROM eventsource.horizon_blockers'), '1', 'the restoring session is the horizon blocker');
$restorer->query_safe('COMMIT');
$restorer->quit;
is(sql('manual', 'SELECT eventsource.head_position()'), $old_head, 'after COMMIT the head is the restored one');
is(sql('manual', 'SELECT count(*) FROM eventsource.read_all(0)'), '6', 'and read_all() returns the restored events');

$node->stop;
done_testing();
