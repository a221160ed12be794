# Crashes and stops of subscription workers: kill -9 in the middle of a
# batch (effects and checkpoint roll back together, redelivered once),
# graceful drain on server stop, a forced stop when a handler outlives
# eventsource.drain_timeout, periodic checkpoints (at-least-once), restart
# with backoff after worker errors, DROP DATABASE with running workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use Time::HiRes qw(time usleep);

my $node = es_node('crash_subs', qq{
eventsource.drain_timeout = '10s'
restart_after_crash = on
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

# a single-partition subscription's checkpoint
sub cp
{
	my ($name) = @_;
	return sql(qq{SELECT position FROM eventsource.subscription_partitions WHERE subscription = '$name'});
}

sub worker_pid
{
	my ($name) = @_;
	return sql(qq{SELECT pid FROM eventsource.subscription_status WHERE name = '$name' AND pid IS NOT NULL});
}

# wait until the worker of a subscription is inside its handler
sub wait_in_handler
{
	my ($name) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE application_name = 'eventsource $name/0' AND wait_event = 'PgSleep'});
}

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE knobs (name text PRIMARY KEY, sleep_ms int);
CREATE TABLE applied (sub text, pos bigint);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE sub text := current_setting('eventsource.subscription');
BEGIN
  INSERT INTO applied VALUES (sub, e.global_position);
  PERFORM pg_sleep(coalesce((SELECT sleep_ms FROM knobs WHERE name = sub), 0) / 1000.0);
END $$;
CREATE FUNCTION duplicates(s text) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (SELECT pos FROM applied WHERE sub = s GROUP BY pos HAVING count(*) > 1) d $$;
CREATE FUNCTION missing(s text, after bigint) RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM eventsource.events e WHERE e.global_position > after
     AND NOT EXISTS (SELECT 1 FROM applied a WHERE a.sub = s AND a.pos = e.global_position) $$;
});

# ---------------------------------------------------------------------------
# kill -9 of a worker in the middle of a batch
# ---------------------------------------------------------------------------
sql(q{INSERT INTO knobs VALUES ('k9', 100);
      SELECT eventsource.create_subscription('k9', 'h(eventsource.events)', batch_size => 10)});
sql(q{SELECT eventsource.append_event('K-' || i, 0, 'A', '{}') FROM generate_series(1, 25) i});
ok(wait_in_handler('k9'), 'the worker is in the middle of a batch');
usleep(350_000);    # a few events of the batch are applied, uncommitted
my $checkpoint_before = cp('k9');
my $pid = worker_pid('k9');
my $log_offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true') or die;
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'k9' AND pos > } . $checkpoint_before),
	'0', 'the killed batch left no effect past the checkpoint');
sql(q{UPDATE knobs SET sleep_ms = 0 WHERE name = 'k9'});
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'k9'},
	'the worker came back after the crash-restart and caught up');
is(sql(q{SELECT duplicates('k9')}), '0', 'no event was applied twice');
is(sql(q{SELECT missing('k9', 0)}), '0', 'no event was lost');

# ---------------------------------------------------------------------------
# server stop: the in-flight batch drains, the final checkpoint commits
# ---------------------------------------------------------------------------
sql(q{INSERT INTO knobs VALUES ('drain', 150);
      SELECT eventsource.create_subscription('drain', 'h(eventsource.events)', start_from => 'end',
                                             batch_size => 5)});
my $first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('D-' || i, 0, 'A', '{}') FROM generate_series(1, 12) i});
ok(wait_in_handler('drain'), 'the drain worker is in a batch');
$log_offset = -s $node->logfile;
my $t0 = time;
$node->stop('fast');
my $stop_time = time - $t0;
cmp_ok($stop_time, '<', 8, "the server stopped once the batch drained ($stop_time s)");
my $log = slurp_file($node->logfile, $log_offset);
like($log,
	qr/subscription "drain" partition 0 stopped \(server stop, completed\)\n.*DETAIL:  database=postgres subscription=drain partition=0 reason="server stop" phase=completed duration_ms=\d+ forced=false events_in_flight=0 checkpoints_saved=1/,
	'one structured log line: completed, not forced, one checkpoint saved');
$node->start;
my $cp = cp('drain');
is(sql(qq{SELECT count(*) FROM applied WHERE sub = 'drain' AND pos > $cp}), '0',
	'every applied event is covered by the final checkpoint');
cmp_ok($cp, '>', $first, 'the drained batch was committed, not rolled back');
like(sql(q{SELECT last_shutdown::text FROM eventsource.subscription_status WHERE name = 'drain'}),
	qr/"forced": false/, 'the status view keeps the last shutdown');
sql(q{UPDATE knobs SET sleep_ms = 0 WHERE name = 'drain'});
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'drain'},
	'after the restart the rest is delivered');
is(sql(q{SELECT duplicates('drain')}), '0', 'nothing applied twice');
is(sql(qq{SELECT missing('drain', $first)}), '0', 'nothing lost');

# ---------------------------------------------------------------------------
# forced: the handler outlives drain_timeout; the batch rolls back
# ---------------------------------------------------------------------------
$node->append_conf('postgresql.conf', "eventsource.drain_timeout = '700ms'");
$node->reload;
sql(q{INSERT INTO knobs VALUES ('forced', 5000);
      SELECT eventsource.create_subscription('forced', 'h(eventsource.events)', start_from => 'end',
                                             processing_timeout => '1 minute')});
$first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('F-' || i, 0, 'A', '{}') FROM generate_series(1, 3) i});
ok(wait_in_handler('forced'), 'the slow handler is running');
$log_offset = -s $node->logfile;
$t0 = time;
sql(q{SELECT eventsource.pause_subscription('forced')});
wait_until(q{SELECT state = 'paused' AND pid IS NULL FROM eventsource.subscription_status WHERE name = 'forced'},
	'the pause completes');
cmp_ok(time - $t0, '<', 4, 'well before the handler would have finished');
like(slurp_file($node->logfile, $log_offset),
	qr/reason=pause phase=forced duration_ms=\d+ forced=true events_in_flight=3 checkpoints_saved=0/,
	'logged as forced, with the events rolled back');
is(sql(q{SELECT (last_shutdown->>'forced') || ' ' || (last_shutdown->>'events_in_flight')
           FROM eventsource.subscription_status WHERE name = 'forced'}),
	'true 3', 'and kept for the status view');
is(cp('forced'), $first, 'the checkpoint did not move');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'forced'}), '0', 'the rolled-back batch left no effect');
sql(q{UPDATE knobs SET sleep_ms = 0 WHERE name = 'forced'; SELECT eventsource.resume_subscription('forced')});
wait_until(q{SELECT count(*) = 3 FROM applied WHERE sub = 'forced'}, 'resumed: the batch is delivered again');
is(sql(q{SELECT duplicates('forced')}), '0', 'once');

# ---------------------------------------------------------------------------
# periodic: effects commit per batch, the checkpoint only every interval
# (at-least-once); a graceful stop still saves the final checkpoint
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.create_subscription('periodic', 'h(eventsource.events)', start_from => 'end',
      checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour', batch_size => 2)});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'periodic'},
	'the periodic subscription runs');
$first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('Per-' || i, 0, 'A', '{}') FROM generate_series(1, 6) i});
wait_until(q{SELECT count(*) = 6 FROM applied WHERE sub = 'periodic'}, 'the events are applied');
is(cp('periodic'), $first,
	'the checkpoint waits for the interval');
# a crash: the events since the checkpoint come again (at-least-once)
$pid = worker_pid('periodic');
$log_offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true') or die;
wait_until(q{SELECT count(*) = 12 FROM applied WHERE sub = 'periodic'},
	'after a crash, periodic redelivers since its last checkpoint (at-least-once)');
# a graceful stop saves the final checkpoint: nothing comes again
$node->restart;
sleep 1;
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'periodic'}), '12',
	'after a clean restart nothing is redelivered');
is(cp('periodic'), sql(q{SELECT eventsource.head_position()}),
	'the final checkpoint was saved at the stop');
# a reset to the very position of the last saved checkpoint still goes back:
# the worker has moved past it in memory, and the reset must not be mistaken
# for "nothing changed" (nor be overwritten by the next periodic save)
$first = cp('periodic');
sql(q{SELECT eventsource.append_event('Per2-' || i, 0, 'A', '{}') FROM generate_series(1, 4) i});
wait_until(q{SELECT count(*) = 16 FROM applied WHERE sub = 'periodic'}, 'four more events are applied');
is(cp('periodic'), $first, 'the checkpoint is still the one saved at the stop');
sql("SELECT eventsource.reset_subscription('periodic', $first)");
wait_until(q{SELECT count(*) = 20 FROM applied WHERE sub = 'periodic'},
	'reset to the saved checkpoint: the events after it are delivered again');
$node->restart;
sleep 1;
is(sql(q{SELECT count(*) FROM applied WHERE sub = 'periodic'}), '20',
	'and once only: the final checkpoint after the reset is the head');

# ---------------------------------------------------------------------------
# drop and create again under the same name, in one transaction, while the
# old worker is busy: the old worker must not touch the new subscription
# ---------------------------------------------------------------------------
sql(q{INSERT INTO knobs VALUES ('again', 200);
      SELECT eventsource.create_subscription('again', 'h(eventsource.events)', start_from => 'end',
             checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour', batch_size => 3)});
$first = sql(q{SELECT eventsource.head_position()});
sql(q{SELECT eventsource.append_event('Again-' || i, 0, 'A', '{}') FROM generate_series(1, 6) i});
ok(wait_in_handler('again'), 'the old worker is busy');
sql(q{BEGIN;
      SELECT eventsource.drop_subscription('again');
      DELETE FROM applied WHERE sub = 'again';
      UPDATE knobs SET sleep_ms = 0 WHERE name = 'again';
      SELECT eventsource.create_subscription('again', 'h(eventsource.events)', start_from => 'beginning',
             checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour');
      COMMIT});
wait_until(q{SELECT missing('again', 0) = 0}, 'the new subscription runs and delivers every event, from the beginning');
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'again'}, 'and is live');
is(sql(q{SELECT duplicates('again')}), '0', 'once each: the old worker applied nothing for it');
is(sql(q{SELECT count(*) FROM eventsource.subscription_partitions WHERE subscription = 'again'
          AND subscription_id = (SELECT id FROM eventsource.subscriptions WHERE name = 'again')}), '1',
	'its partition row is its own');

# ---------------------------------------------------------------------------
# drop while a batch is parking a dead letter: the drop waits for the batch
# and removes its dead letter too; a new subscription of the same name
# inherits none
# ---------------------------------------------------------------------------
sql(q{CREATE FUNCTION h_slow_fail(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(1); RAISE EXCEPTION 'slow failure'; END $$;
      SELECT eventsource.create_subscription('dl', 'h_slow_fail(eventsource.events)', start_from => 'end',
             max_retries => 0)});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'dl'}, 'dl runs');
sql(q{SELECT eventsource.append_event('Dl-1', 0, 'A', '{}')});
ok(wait_in_handler('dl'), 'its worker is in the failing handler');
sql(q{SELECT eventsource.drop_subscription('dl')});
is(sql(q{SELECT count(*) FROM eventsource.dead_letters WHERE subscription = 'dl'}), '0',
	'the dead letter parked by the in-flight batch went with the drop');
sql(q{SELECT eventsource.create_subscription('dl', 'h(eventsource.events)', start_from => 'end')});
is(sql(q{SELECT dead_letters FROM eventsource.subscription_status WHERE name = 'dl'}), '0',
	'the new subscription of the same name has no dead letter');
sql(q{SELECT eventsource.drop_subscription('dl')});

# ---------------------------------------------------------------------------
# a worker that fails to start is restarted with backoff
# ---------------------------------------------------------------------------
sql(q{CREATE FUNCTION h_gone(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
      SELECT eventsource.create_subscription('gone', 'h_gone(eventsource.events)')});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'gone'}, 'running');
# a subscription's handler cannot be dropped under it ...
my ($r, $o, $e) = $node->psql('postgres', 'DROP FUNCTION h_gone(eventsource.events)',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($e, qr/ERROR:  2BP01: cannot drop function public.h_gone\(eventsource.events\): subscription "gone" uses it as its handler/,
	'dropping a handler in use is refused like a dependency');
# ... unless a superuser switches the protection off: then its worker fails
sql(q{ALTER EVENT TRIGGER eventsource_protect_handlers DISABLE;
      DROP FUNCTION h_gone(eventsource.events);
      ALTER EVENT TRIGGER eventsource_protect_handlers ENABLE});
$log_offset = -s $node->logfile;
sql(q{SELECT pg_terminate_backend(pid) FROM eventsource.subscription_status WHERE name = 'gone'});
$node->wait_for_log(qr/eventsource worker.*exited with exit code 1(?s:.*)exited with exit code 1(?s:.*)exited with exit code 1/,
	$log_offset);
my @starts = (slurp_file($node->logfile, $log_offset) =~ /(\d\d:\d\d:\d\d\.\d+) UTC \[\d+\] ERROR:  the handler of subscription "gone" \(function \d+\) no longer exists/g);
ok(@starts >= 3, 'the worker failed to start several times');
my @secs = map { my ($h, $m, $s) = split /:/; $h * 3600 + $m * 60 + $s } @starts;
cmp_ok($secs[2] - $secs[1], '>', ($secs[1] - $secs[0]) * 1.5, 'with a growing delay between attempts');
like(sql(q{SELECT state || ' ' || last_error FROM eventsource.subscription_status WHERE name = 'gone'}),
	qr/^starting the handler of subscription "gone" \(function \d+\) no longer exists/,
	'the status view says why it does not run');
sql(q{CREATE FUNCTION h_gone(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
      SELECT eventsource.drop_subscription('gone')});

# ---------------------------------------------------------------------------
# DROP DATABASE with running workers (one idle, one inside a handler)
# ---------------------------------------------------------------------------
sql(q{CREATE DATABASE other});
$node->safe_psql('other', q{
CREATE EXTENSION eventsource;
CREATE FUNCTION idle_h(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION busy_h(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(2) $$;
SELECT eventsource.create_subscription('idle', 'idle_h(eventsource.events)');
SELECT eventsource.create_subscription('busy', 'busy_h(eventsource.events)');
SELECT eventsource.append_event('O-1', 0, 'A', '{}');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity a JOIN pg_database d ON d.oid = a.datid
	 WHERE d.datname = 'other' AND a.backend_type = 'eventsource worker'}),
	'two workers are connected to the database');
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE other');
is($ret, 0, 'DROP DATABASE succeeds while its workers were running') or diag($err);
is(sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventsource worker'
          AND datid NOT IN (SELECT oid FROM pg_database)}), '0', 'its workers are gone');
wait_until(q{SELECT count(*) = 5 FROM eventsource.subscription_status WHERE pid IS NOT NULL},
	'the other databases\' workers are untouched');

# ---------------------------------------------------------------------------
# DROP EXTENSION, CREATE EXTENSION and the same subscription again, in one
# transaction, while the old (periodic) worker is ahead of its last saved
# checkpoint: the new store's ids start at 1 again, yet the new subscription
# gets its own worker, and the old worker's final checkpoint does not land
# in the new store (it would make the new subscription skip events)
# ---------------------------------------------------------------------------
sql(q{CREATE DATABASE reborn});
sub rb { return $node->safe_psql('reborn', $_[0]); }
rb(q{
CREATE EXTENSION eventsource;
CREATE TABLE applied (pos bigint);
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO applied VALUES (e.global_position) $$;
SELECT eventsource.create_subscription('orders', 'h(eventsource.events)', batch_size => 5,
       checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour');
SELECT eventsource.append_event('Old-' || i, 0, 'A', '{}') FROM generate_series(1, 20) i;
});
ok($node->poll_query_until('reborn', q{SELECT count(*) = 20 FROM applied}),
	'the old subscription delivered its events');
is(rb(q{SELECT position FROM eventsource.subscription_partitions}), '0',
	'and has not saved a checkpoint yet (periodic)');
rb(q{BEGIN;
     DROP EXTENSION eventsource CASCADE;
     TRUNCATE applied;
     CREATE EXTENSION eventsource;
     CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE sql
       AS $$ INSERT INTO applied VALUES (e.global_position) $$;
     SELECT eventsource.create_subscription('orders', 'h(eventsource.events)',
            checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour');
     COMMIT});
is(rb(q{SELECT id FROM eventsource.subscriptions WHERE name = 'orders'}), '1',
	'the new subscription has the id the old one had');
rb(q{SELECT eventsource.append_event('New-' || i, 0, 'A', '{}') FROM generate_series(1, 3) i});
ok($node->poll_query_until('reborn', q{SELECT count(*) = 3 FROM applied}),
	'the new subscription runs and delivers the new store\'s events');
ok($node->poll_query_until('reborn', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'eventsource orders/0'}),
	'one worker serves it: the old one is gone');
sleep 1;
is(rb(q{SELECT string_agg(pos::text, ',' ORDER BY pos) FROM applied}), '1,2,3',
	'each new event once, and no old event');
$node->restart;
is(rb(q{SELECT position FROM eventsource.subscription_partitions WHERE subscription = 'orders'}), '3',
	'the final checkpoint is the new store\'s head, not the old worker\'s position');

$node->stop;
done_testing();
