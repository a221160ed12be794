# Retention and the cleanup worker (docs/lifecycle.md, "Background cleanup",
# "Max age / max count"; src/cleanup.c, src/retention.c):
#  - the cleanup removes exactly the hidden rows (versions 1 ..
#    hidden_through of deleted, tombstoned and truncated streams), never a
#    visible one, in batches that each commit their progress; killed with
#    -9 in the middle of a batch (its DELETE waiting on a row lock) the
#    batch rolls back, and after the crash-restart the worker resumes from
#    cleaned_through and finishes; versions are never reused afterwards;
#  - max_count and max_age rules (per stream, per category, a stream's rule
#    replacing its category's) become $StreamTruncated events, in the log
#    order of the events they expire, and a subscription receives them;
#  - the space freed is reused: after the cleanup, VACUUM and as many new
#    appends as were removed, the table is not larger;
#  - a database still on the 1.0 SQL runs no cleanup worker; after the
#    update its first lifecycle operation starts one;
#  - DROP EXTENSION and DROP DATABASE with a cleanup worker connected
#    succeed, and the worker does not come back for them (a rolled-back
#    DROP EXTENSION brings it back);
#  - a retention pass that keeps failing does not stop the removal of rows
#    already hidden, and SIGTERM ends the worker inside a lock wait;
#  - the shared entry of a dropped database is reused by a new one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('cleanup', q{
eventsource.cleanup_naptime = 300ms
eventsource.cleanup_batch_size = 30
eventsource.cleanup_max_rows_per_second = 0
autovacuum = off
restart_after_crash = on
});

sub sql { my ($q, $db) = @_; return $node->safe_psql($db // 'postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sub cleanup_pid
{
	my ($db) = @_;
	return sql(qq{SELECT coalesce(max(pid), 0) FROM pg_stat_activity
	               WHERE backend_type = 'eventsource cleanup' AND datname = '$db'});
}

sub set_conf
{
	my ($setting, $value) = @_;
	sql(qq{ALTER SYSTEM SET $setting = '$value'});
	sql(q{SELECT pg_reload_conf()});
}

# every visible event (what the read paths may return), and every row
my $visible_q = q{SELECT md5(string_agg(global_position || ':' || stream_id || ':' || stream_version
                                        || ':' || event_type, ',' ORDER BY global_position))
                    FROM eventsource.visible_events};
# rows that are hidden yet still present, and rows the cleanup claims gone
my $leftovers_q = q{SELECT count(*) FROM eventsource.events e JOIN eventsource.stream_lifecycle l
                      USING (stream_id) WHERE e.stream_version BETWEEN 1 AND l.hidden_through};
my $cleaned_present_q = q{SELECT count(*) FROM eventsource.events e JOIN eventsource.stream_lifecycle l
                            USING (stream_id) WHERE e.stream_version BETWEEN 1 AND l.cleaned_through};

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (pos bigint PRIMARY KEY, stream text, type text, hidden_through bigint);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen VALUES (e.global_position, e.stream_id, e.event_type,
                           (e.data ->> 'hidden_through')::bigint)
$$;
});

# ---------------------------------------------------------------------------
# 1. kill -9 mid-batch; the cleanup resumes and removes exactly the hidden rows
# ---------------------------------------------------------------------------
set_conf('eventsource.cleanup', 'off');
sql(q{
SELECT eventsource.append('Kill-' || lpad(i::text, 2, '0'), 0,
         (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('v', v)))
            FROM generate_series(1, 100) v))
  FROM generate_series(1, 20) i;
});
# in this order (the cleanup goes by the operations' positions): 10 deletes
# (every third one hard), then 10 truncations before version 51
sql(q{SELECT eventsource.delete_stream('Kill-' || lpad(i::text, 2, '0'), 100, hard => i % 3 = 0)
        FROM generate_series(1, 10) i});
sql(q{SELECT eventsource.truncate_stream('Kill-' || lpad(i::text, 2, '0'), 51)
        FROM generate_series(11, 20) i});
my $visible_before = sql($visible_q);
is(sql($leftovers_q), '1500', '1,500 hidden rows are still in the table');
my $rows_before = sql('SELECT count(*) FROM eventsource.events');

# hold a row of Kill-11: with batches of 30 versions the 34th batch ends
# with Kill-11's versions 1 .. 20, and the 35th deletes versions 21 .. 50
# of it: its DELETE waits on the held row, after it deleted 21 .. 39
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT 1 FROM eventsource.events
                       WHERE stream_id = 'Kill-11' AND stream_version = 40 FOR UPDATE});
set_conf('eventsource.cleanup', 'on');
wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'postgres'
                AND wait_event_type = 'Lock'},
	'the cleanup waits in the middle of a batch');
is(sql(q{SELECT string_agg(cleaned_through::text, ',' ORDER BY stream_id) FROM eventsource.stream_lifecycle
          WHERE stream_id IN ('Kill-01', 'Kill-10', 'Kill-11', 'Kill-12')}),
	'100,100,20,0', 'the streams before it are done, Kill-11 has its first batch committed');
my $pid = cleanup_pid('postgres');
ok($pid > 0, 'the cleanup worker runs');
my $log_offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
eval { $holder->quit };

wait_until(q{SELECT versions_pending = 0 FROM eventsource.cleanup_status},
	'after the crash-restart the cleanup resumed and finished');
is(sql($leftovers_q), '0', 'no hidden row is left');
is(sql($visible_q), $visible_before, 'every visible event is still there, unchanged');
is(sql('SELECT count(*) FROM eventsource.events'), $rows_before - 1500,
	'exactly the 1,500 hidden rows were removed');
is(sql(q{SELECT count(*) FROM eventsource.stream_lifecycle WHERE cleaned_through <> hidden_through
            OR cleaned_at IS NULL}), '0', 'every lifecycle row records its cleanup');
is(sql(q{SELECT count(*) FROM eventsource.events WHERE stream_version < 1}), '20',
	'the system events stay');
is(sql(q{SELECT stream_version FROM eventsource.append_event('Kill-01', 0, 'Reopened', '{}')}), '101',
	'a cleaned soft-deleted stream re-opens after its last version (no reuse)');
is(sql(q{SELECT eventsource.stream_version('Kill-11') || '/' ||
                (SELECT min(stream_version) FROM eventsource.read_stream('Kill-11'))}),
	'100/51', 'a cleaned truncated stream reads the same');
like(
	do { my ($ret, $out, $err) = $node->psql('postgres',
			q{SELECT eventsource.append_event('Kill-03', -1, 'X', '{}')}); $err },
	qr/deleted for good/, 'a cleaned tombstoned stream stays tombstoned');
cmp_ok(sql(q{SELECT rows_removed FROM eventsource.cleanup_status}), '>', 0,
	'cleanup_status counts the rows the worker removed');

# ---------------------------------------------------------------------------
# 2. max_count / max_age become $StreamTruncated events, in log order
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('trunc', 'h(eventsource.events)',
                                             event_types => '{$StreamTruncated}', start_from => 'end')});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'trunc'},
	'the subscription runs');
sql(q{
SELECT eventsource.append('Zed-1', 0, '[{"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}]');
SELECT eventsource.append('Abe-1', 0, '[{"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}]');
SELECT eventsource.append('Zed-1', 5, '[{"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}]');
SELECT eventsource.append('Cat-' || i, 0, '[{"type": "E", "data": {}}, {"type": "E", "data": {}},
                                            {"type": "E", "data": {}}, {"type": "E", "data": {}}]')
  FROM generate_series(1, 3) i;
SELECT eventsource.append('Age-1', 0, '[{"type": "E", "data": {}}, {"type": "E", "data": {}},
                                        {"type": "E", "data": {}}]');
});
# Age-1's first three events age past 2 s; its fourth is recent
$node->poll_query_until('postgres',
	q{SELECT max(recorded_at) < now() - interval '2.5 seconds' FROM eventsource.events WHERE stream_id = 'Age-1'})
  or die;
sql(q{SELECT eventsource.append_event('Age-1', 3, 'E', '{}')});
# all rules in one transaction, so that one retention pass sees them all:
# Zed-1 keeps 5 (hides 1 .. 5, the newest at a lower position than Abe-1's
# 4); Abe-1 keeps 1; category Cat keeps 2, but Cat-3 has its own rule
sql(q{
BEGIN;
SELECT eventsource.set_retention('Zed-1', max_count => 5);
SELECT eventsource.set_retention('Abe-1', max_count => 1);
SELECT eventsource.set_category_retention('Cat', max_count => 2);
SELECT eventsource.set_retention('Cat-3', max_count => 10);
SELECT eventsource.set_retention('Age-1', interval '2 seconds');
COMMIT;
});
wait_until(q{SELECT count(*) = 5 FROM seen}, 'the subscription received five truncations');
is(sql(q{SELECT string_agg(stream || ':' || hidden_through, ',' ORDER BY pos) FROM seen}),
	'Zed-1:5,Abe-1:4,Cat-1:2,Cat-2:2,Age-1:3',
	'in the log order of the events they expire, with what they hide');
is(sql(q{SELECT string_agg(e.stream_id, ',' ORDER BY e.global_position)
           FROM eventsource.events e WHERE e.event_type = '$StreamTruncated'
            AND e.stream_id NOT LIKE 'Kill-%'}),
	'Zed-1,Abe-1,Cat-1,Cat-2,Age-1', 'the log has them in that order');
is(sql(q{SELECT string_agg(s || '=' || (SELECT string_agg(stream_version::text, ',' ORDER BY stream_version)
                                          FROM eventsource.read_stream(s)), ' ' ORDER BY s)
           FROM unnest('{Zed-1,Abe-1,Cat-1,Cat-3,Age-1}'::text[]) s}),
	'Abe-1=5 Age-1=4 Cat-1=3,4 Cat-3=1,2,3,4 Zed-1=6,7,8,9,10',
	'each stream keeps what its rule says (its own rule over its category\'s)');
sql(q{SELECT eventsource.append_event('Abe-1', 5, 'E', '{}')});
wait_until(q{SELECT count(*) = 6 FROM seen},
	'an append beyond max_count is truncated at the next pass');
is(sql(q{SELECT hidden_through FROM seen WHERE stream = 'Abe-1' ORDER BY pos DESC LIMIT 1}), '5',
	'Abe-1 keeps its newest version');
wait_until(q{SELECT versions_pending = 0 FROM eventsource.cleanup_status},
	'and the expired rows are cleaned');
is(sql($leftovers_q), '0', 'no expired row is left in the table');
cmp_ok(sql(q{SELECT truncations FROM eventsource.cleanup_status}), '>=', 6,
	'cleanup_status counts the truncations');
ok(sql(q{SELECT last_retention_pass_at > now() - interval '1 minute'
               AND next_retention_pass_at > last_retention_pass_at FROM eventsource.cleanup_status}) eq 't',
	'cleanup_status says when the last pass ran and the next is due');
sql(q{SELECT eventsource.clear_retention(s) FROM unnest('{Zed-1,Abe-1,Cat-3,Age-1}'::text[]) s;
      SELECT eventsource.clear_category_retention('Cat');
      SELECT eventsource.drop_subscription('trunc')});

# ---------------------------------------------------------------------------
# 3. the space is reused
# ---------------------------------------------------------------------------
sql(q{
SELECT eventsource.append('Big-' || i, 0,
         (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('pad', repeat('x', 400))))
            FROM generate_series(1, 200) v))
  FROM generate_series(1, 20) i;
VACUUM eventsource.events;
});
my $size_before = sql(q{SELECT pg_relation_size('eventsource.events')});
sql(q{SELECT eventsource.set_category_retention('Big', max_count => 100)});
wait_until(q{SELECT count(*) = 20 FROM eventsource.stream_lifecycle
              WHERE stream_id LIKE 'Big-%' AND cleaned_through = 100},
	'max_count hid and the cleanup removed 2,000 events');
sql(q{SELECT eventsource.clear_category_retention('Big')});
sql(q{VACUUM eventsource.events});
sql(q{
SELECT eventsource.append('Big-' || i, -1,
         (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('pad', repeat('x', 400))))
            FROM generate_series(1, 100) v))
  FROM generate_series(1, 20) i;
});
my $size_after = sql(q{SELECT pg_relation_size('eventsource.events')});
cmp_ok($size_after, '<=', $size_before,
	"after cleanup, VACUUM and 2,000 new appends the table is not larger ($size_after <= $size_before bytes)");

# ---------------------------------------------------------------------------
# 4. a database on the 1.0 SQL, then updated
# ---------------------------------------------------------------------------
sql('CREATE DATABASE old');
sql(q{CREATE EXTENSION eventsource VERSION '1.0';
      SELECT eventsource.append_event('Old-1', 0, 'E', '{}')}, 'old');
# a restart makes the launcher discover it (and start its cleanup worker,
# which finds the 1.0 SQL and leaves, saying so in the log)
my $old_oid = sql(q{SELECT oid FROM pg_database WHERE datname = 'old'});
my $restart_offset = -s $node->logfile;
$node->restart;
wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'postgres'},
	'after the restart the cleanup worker of postgres runs again');
$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'old'})
  or die;
ok($node->wait_for_log(qr/eventsource cleanup: the database with OID $old_oid has no eventsource 1\.1 objects/,
		$restart_offset),
	'the cleanup worker started in the database on the 1.0 SQL and left');
sleep 1;
is(cleanup_pid('old'), '0', 'no cleanup worker stays in a database on the 1.0 SQL');
sql(q{ALTER EXTENSION eventsource UPDATE;
      SELECT eventsource.append_event('Old-1', 1, 'E', '{}');
      SELECT eventsource.truncate_stream('Old-1', 2)}, 'old');
ok($node->poll_query_until('old', q{SELECT cleaned_through = 1 FROM eventsource.stream_lifecycle}),
	'after the update its first lifecycle operation starts the worker, which cleans');
# issue 15: the lifecycle and retention rows are per tenant, the default
# tenant's for a store that never chose one
sql(q{SELECT eventsource.set_retention('Old-1', max_count => 5)}, 'old');
is(sql(q{SELECT (SELECT string_agg(tenant_id || ':' || stream_id, ',') FROM eventsource.stream_lifecycle)
                || ' ' || (SELECT string_agg(tenant_id || ':' || name, ',') FROM eventsource.stream_retention)
                || ' ' || (SELECT string_agg(pg_get_constraintdef(oid), ',' ORDER BY conname)
                             FROM pg_constraint WHERE conname IN ('stream_lifecycle_pkey', 'stream_retention_pkey'))},
		'old'),
	'default:Old-1 default:Old-1 PRIMARY KEY (tenant_id, stream_id),PRIMARY KEY (tenant_id, scope, name)',
	'after the update, lifecycle and retention rows are the default tenant\'s, keyed by tenant first');

# ---------------------------------------------------------------------------
# 5. DROP EXTENSION / DROP DATABASE with the cleanup worker connected
# ---------------------------------------------------------------------------
ok(cleanup_pid('old') > 0, 'the cleanup worker of "old" is connected');
sql(q{BEGIN; DROP EXTENSION eventsource CASCADE; ROLLBACK;}, 'old');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'old'}),
	'a rolled-back DROP EXTENSION brings the worker back');
my ($rc, $out, $err) = $node->psql('old', 'DROP EXTENSION eventsource CASCADE');
is($rc, 0, 'DROP EXTENSION with the cleanup worker running succeeds') or diag($err);
sleep 2;
is(cleanup_pid('old'), '0', 'and the worker does not come back');
sql(q{CREATE EXTENSION eventsource;
      SELECT eventsource.append_event('New-1', 0, 'E', '{}');
      SELECT eventsource.delete_stream('New-1', 1)}, 'old');
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'old'}),
	'a new CREATE EXTENSION and a delete start it again');
my $t0 = time;
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE old');
is($rc, 0, 'DROP DATABASE with the cleanup worker connected succeeds') or diag($err);
cmp_ok(time - $t0, '<', 5, 'without waiting for PostgreSQL\'s 5 s of "being accessed by other users"');
sleep 2;
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventsource cleanup'}), '1',
	'only the worker of postgres is left');

# ---------------------------------------------------------------------------
# 6. a retention pass that keeps failing does not hold back the removal of
#    rows already hidden (the pass and the batch fail apart)
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.set_retention('Lock-1', max_count => 1);
      SELECT eventsource.append('Gone-1', 0,
               (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', '{}'::jsonb))
                  FROM generate_series(1, 5)))});
# every pass reads the rules: it waits for this lock and fails on the
# worker's lock_timeout (10 s), pass after pass
my $locker = $node->background_psql('postgres');
$locker->query_safe(q{BEGIN; LOCK eventsource.stream_retention IN ACCESS EXCLUSIVE MODE});
wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'postgres'
                AND wait_event_type = 'Lock'},
	'the retention pass waits for the rules\' lock');
sql(q{SELECT eventsource.delete_stream('Gone-1', 5)});
wait_until(q{SELECT cleaned_through = 5 FROM eventsource.stream_lifecycle WHERE stream_id = 'Gone-1'},
	'the deleted stream is cleaned while every retention pass fails');
like(sql(q{SELECT last_error FROM eventsource.cleanup_status}), qr/lock timeout/,
	'cleanup_status shows the pass\'s error');
# SIGTERM (what DROP DATABASE, DROP EXTENSION and a fast shutdown send)
# ends the worker inside its lock wait, not after its lock_timeout
wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'postgres'
                AND wait_event_type = 'Lock'},
	'the retention pass waits for the rules\' lock again');
my $waiting_pid = cleanup_pid('postgres');
my $term_offset = -s $node->logfile;
kill 'TERM', $waiting_pid;
ok($node->wait_for_log(qr/terminating background worker "eventsource cleanup" due to administrator command/,
	$term_offset), 'SIGTERM ends the worker in the middle of its lock wait');
unlike(slurp_file($node->logfile, $term_offset), qr/eventsource cleanup: canceling statement due to lock timeout/,
	'without waiting for its lock_timeout');
$locker->query_safe('ROLLBACK');
$locker->quit;
sql(q{SELECT eventsource.clear_retention('Lock-1')});
$node->stop;

# ---------------------------------------------------------------------------
# 7. the entry of a dropped database is reused: with eventsource.max_databases
#    = 1, databases created and dropped one after the other each get their
#    cleanup worker
# ---------------------------------------------------------------------------
my $one = es_node('cleanup_one_db', q{
eventsource.max_databases = 1
eventsource.cleanup = on
eventsource.cleanup_naptime = 300ms
});
for my $db ('first', 'second', 'third')
{
	$one->safe_psql('postgres', "CREATE DATABASE $db");
	$one->safe_psql($db, q{CREATE EXTENSION eventsource;
	                       SELECT eventsource.append_event('One-1', 0, 'E', '{}');
	                       SELECT eventsource.append_event('One-1', 1, 'E', '{}');
	                       SELECT eventsource.delete_stream('One-1', 2)});
	ok($one->poll_query_until($db, q{SELECT cleaned_through = 2 FROM eventsource.stream_lifecycle}),
		"database $db gets a cleanup worker, which cleans");
	my ($drc, $dout, $derr) = $one->psql('postgres', "DROP DATABASE $db");
	is($drc, 0, "DROP DATABASE $db") or diag($derr);
}
$one->stop;
done_testing();
