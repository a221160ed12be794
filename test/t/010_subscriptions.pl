# Subscriptions: live delivery, what a handler sees, causation, restart,
# pause/resume, reset, filters, batch handlers, partitions, privileges,
# DROP EXTENSION.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use Time::HiRes qw(time);

my $node = es_node('subs');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
-- what the handlers saw, in delivery order
CREATE TABLE seen (
  n bigserial PRIMARY KEY, sub text, partition int, pos bigint, stream text,
  version bigint, type text, event_id uuid,
  s_sub text, s_event_id text, s_type text, s_stream text, s_pos text);
CREATE FUNCTION record(sub text, e eventsource.events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen (sub, partition, pos, stream, version, type, event_id,
                    s_sub, s_event_id, s_type, s_stream, s_pos)
  VALUES (sub, NULL, e.global_position, e.stream_id, e.stream_version, e.event_type, e.event_id,
          current_setting('eventsource.subscription'), current_setting('eventsource.event_id'),
          current_setting('eventsource.event_type'), current_setting('eventsource.stream_id'),
          current_setting('eventsource.position'))
$$;
CREATE FUNCTION h_main(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM record('main', e);
  -- a handler that appends: causation and correlation are filled in
  IF e.event_type = 'OrderCreated' THEN
    PERFORM eventsource.append_event('Audit-' || e.stream_id, -1, 'OrderAudited', '{}');
    PERFORM eventsource.append_event('Audit2-' || e.stream_id, -1, 'OrderAudited', '{}',
                                     '{"causation_id": "mine"}');
  END IF;
END $$;
});

# ---------------------------------------------------------------------------
# live delivery, started without a restart, visible in pg_stat_activity
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.append_event('Order-1', 0, 'OrderCreated', '{"total": 10}',
      '{"correlation_id": "corr-1"}')});
my $t0 = time;
sql(q{SELECT eventsource.create_subscription('main', 'h_main(eventsource.events)')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE sub = 'main' AND type = 'OrderCreated'},
	'a new subscription delivers the existing event');
cmp_ok(time - $t0, '<', 1.5, 'it started within a second or so of create_subscription');

is( sql(q{SELECT backend_type || ' | ' || application_name FROM pg_stat_activity
           WHERE backend_type = 'eventsource worker'}),
	'eventsource worker | eventsource main/0',
	'the worker shows in pg_stat_activity with a readable name');
is( sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'eventsource launcher'}),
	'1', 'the launcher shows in pg_stat_activity');

# what the handler saw: the settings describe the event
is( sql(q{SELECT s_sub = 'main' AND s_event_id = event_id::text AND s_type = type
                 AND s_stream = stream AND s_pos = pos::text
            FROM seen WHERE type = 'OrderCreated'}),
	't', 'eventsource.subscription/event_id/event_type/stream_id/position describe the event');
is(sql(q{SELECT current_setting('eventsource.event_id')}), '',
	'outside a handler the settings are empty');
my ($ret, $out, $err) = $node->psql('postgres', q{SET eventsource.event_id = 'x'});
like($err, qr/cannot be changed/, 'the settings cannot be set by users');

# causation: the handler's appends carry the event's id and correlation
wait_until(q{SELECT count(*) = 2 FROM eventsource.events WHERE event_type = 'OrderAudited'},
	'the handler appended two events');
is( sql(q{SELECT a.metadata->>'causation_id' = o.event_id::text
                 AND a.metadata->>'correlation_id' = 'corr-1'
            FROM eventsource.events a, eventsource.events o
           WHERE a.stream_id = 'Audit-Order-1' AND o.stream_id = 'Order-1'}),
	't', 'causation_id = the event id, correlation_id inherited');
is( sql(q{SELECT a.metadata->>'causation_id' || ' ' || (a.metadata->>'correlation_id')
            FROM eventsource.events a WHERE a.stream_id = 'Audit2-Order-1'}),
	'mine corr-1', 'a causation_id set by the caller is kept');

# live: a commit wakes the worker (no polling): delivered quickly
$t0 = time;
sql(q{SELECT eventsource.append_event('Order-1', 1, 'OrderShipped', '{}')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE type = 'OrderShipped'}, 'live delivery');
cmp_ok(time - $t0, '<', 1, 'delivered well within the idle wait (woken by the commit)');

# ---------------------------------------------------------------------------
# restart: resumes from the checkpoint, nothing applied twice
# ---------------------------------------------------------------------------
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'main'},
	'caught up before the restart');
$node->restart;
sql(q{SELECT eventsource.append_event('Order-2', 0, 'OrderCreated', '{"total": 5}')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE stream = 'Order-2'}, 'delivers after a restart');
is( sql(q{SELECT count(*) FROM (SELECT event_id FROM seen WHERE sub = 'main'
           GROUP BY event_id HAVING count(*) > 1) d}),
	'0', 'nothing was delivered twice across the restart');
is( sql(q{SELECT count(*) FROM eventsource.events e WHERE NOT EXISTS
           (SELECT 1 FROM seen s WHERE s.sub = 'main' AND s.event_id = e.event_id)}),
	'0', 'every event was delivered');

# ---------------------------------------------------------------------------
# pause / resume
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.pause_subscription('main')});
wait_until(q{SELECT state = 'paused' AND pid IS NULL FROM eventsource.subscription_status WHERE name = 'main'},
	'pause stops the worker');
like(sql(q{SELECT last_shutdown::text FROM eventsource.subscription_status WHERE name = 'main'}),
	qr/"reason": "pause".*"phase": "completed"|"phase": "completed".*"reason": "pause"/,
	'the pause is recorded as a completed graceful stop');
sql(q{SELECT eventsource.append_event('Order-3', 0, 'OrderCreated', '{}')});
sleep 1;
is(sql(q{SELECT count(*) FROM seen WHERE stream = 'Order-3'}), '0', 'paused: nothing delivered');
sql(q{SELECT eventsource.resume_subscription('main')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE stream = 'Order-3'}, 'resume delivers what was missed');
# pause and resume in quick succession, landing at every moment of a
# worker's start and stop: whatever the interleaving, the last word (resume)
# wins and a worker runs
sql(join "\n", map {
	"SELECT eventsource.pause_subscription('main'); SELECT pg_sleep(0.00$_);"
	  . " SELECT eventsource.resume_subscription('main'); SELECT pg_sleep(0.0" . ($_ % 3) . ");"
} 1 .. 9, 1 .. 9, 1 .. 9);
sql(q{SELECT eventsource.append_event('Order-4', 0, 'OrderCreated', '{}')});
wait_until(q{SELECT count(*) = 1 FROM seen WHERE stream = 'Order-4'},
	'after 27 quick pause/resume pairs the subscription runs and delivers');
is(sql(q{SELECT state FROM eventsource.subscriptions WHERE name = 'main'}), 'active', 'its row says active');

# ---------------------------------------------------------------------------
# reset replays
# ---------------------------------------------------------------------------
sql(q{CREATE TABLE before_reset AS SELECT DISTINCT event_id FROM seen WHERE sub = 'main'});
sql(q{SELECT eventsource.reset_subscription('main', 0)});
wait_until(q{SELECT count(*) = 0 FROM before_reset b
              WHERE (SELECT count(*) FROM seen s WHERE s.sub = 'main' AND s.event_id = b.event_id) <> 2},
	'reset_subscription(0) replays every event exactly once more');

# ---------------------------------------------------------------------------
# filters: types and categories; filtered events still move the checkpoint
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION h_filtered(e eventsource.events) RETURNS void LANGUAGE sql AS
  $$ SELECT record('filtered', e) $$;
SELECT eventsource.create_subscription('filtered', 'h_filtered(eventsource.events)',
  event_types => ARRAY['OrderCreated'], categories => ARRAY['Order']);
});
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'filtered'},
	'the filtered subscription catches up to the head');
is( sql(q{SELECT string_agg(DISTINCT type || ':' || split_part(stream, '-', 1), ',') FROM seen
           WHERE sub = 'filtered'}),
	'OrderCreated:Order', 'only OrderCreated events of category Order were delivered');
is( sql(q{SELECT count(*) FROM seen WHERE sub = 'filtered'}),
	sql(q{SELECT count(*) FROM eventsource.events WHERE event_type = 'OrderCreated' AND stream_id LIKE 'Order-%'}),
	'all of them');

# ---------------------------------------------------------------------------
# batch handler: gets arrays, in order
# ---------------------------------------------------------------------------
sql(q{
CREATE TABLE batches (n bigserial, size int, first_pos bigint, last_pos bigint, ordered boolean);
CREATE FUNCTION h_batch(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO batches (size, first_pos, last_pos, ordered)
  SELECT count(*), min(global_position), max(global_position),
         array_agg(global_position ORDER BY o) = array_agg(global_position ORDER BY global_position)
    FROM unnest(es) WITH ORDINALITY AS u(global_position, stream_id, stream_version, event_id,
                                        event_type, data, metadata, recorded_at, o);
END $$;
SELECT eventsource.append('Bulk-1', -1, (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', i))
                                          FROM generate_series(1, 250) i));
SELECT eventsource.create_subscription('batch', 'h_batch(eventsource.events[])', batch_size => 100);
});
wait_until(q{SELECT checkpoint = head_position FROM eventsource.subscription_status WHERE name = 'batch'},
	'the batch subscription catches up');
is(sql(q{SELECT sum(size) = (SELECT count(*) FROM eventsource.events) FROM batches}), 't',
	'every event went through the batch handler once');
is(sql(q{SELECT max(size) FROM batches}), '100', 'batches are at most batch_size');
is(sql(q{SELECT bool_and(ordered) FROM batches}), 't', 'each batch is in position order');

# ---------------------------------------------------------------------------
# partitions: disjoint streams, per-stream order, a checkpoint each
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION h_part(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(random() * 0.002);
  INSERT INTO seen (sub, partition, pos, stream, version, type, event_id)
  VALUES ('part', eventsource.stream_partition(e.stream_id, 3), e.global_position,
          e.stream_id, e.stream_version, e.event_type, e.event_id);
END $$;
SELECT eventsource.create_subscription('part', 'h_part(eventsource.events)', partitions => 3,
  batch_size => 7);
});
sql(q{SELECT eventsource.append_event('P-' || (i % 20), -1, 'Tick', '{}') FROM generate_series(1, 300) i});
wait_until(q{SELECT bool_and(checkpoint = head_position) AND count(*) = 3
               FROM eventsource.subscription_status WHERE name = 'part'},
	'three partitions, all caught up');
is( sql(q{SELECT string_agg(subscription || '/' || partition || '@' || (position = eventsource.head_position()), ','
                           ORDER BY partition)
            FROM eventsource.subscription_partitions WHERE subscription = 'part'}),
	'part/0@true,part/1@true,part/2@true', 'each partition has its own checkpoint');
is(sql(q{SELECT count(*) FROM eventsource.checkpoints}), '0',
	'subscription progress is kept apart from the checkpoints of save_checkpoint()');
# a reader's save_checkpoint() of the same name cannot skip the subscription ahead
sql(q{SELECT eventsource.save_checkpoint('part', 1000000)});
sql(q{SELECT eventsource.append_event('P-1', -1, 'Tick', '{}')});
wait_until(q{SELECT count(*) = 1 FROM seen s JOIN eventsource.events e ON e.event_id = s.event_id
              WHERE s.sub = 'part' AND e.global_position = eventsource.head_position()},
	'a checkpoint named like the subscription does not move it');

# an aborted append that held the horizon back wakes the workers when it ends
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT eventsource.append_event('Hold-1', 0, 'Held', '{}')});
sql(q{SELECT eventsource.append_event('Behind-1', 0, 'Tick', '{}')});
sleep 1;
is(sql(q{SELECT count(*) FROM seen WHERE sub = 'part' AND stream = 'Behind-1'}), '0',
	'an event behind an open append waits for the horizon');
$t0 = time;
$holder->query_safe('ROLLBACK');
wait_until(q{SELECT count(*) = 1 FROM seen WHERE sub = 'part' AND stream = 'Behind-1'},
	'the rollback releases it');
cmp_ok(time - $t0, '<', 2, 'at once: the abort woke the workers (their idle wait is 10 s)');
$holder->quit;

# a query cancel of an idle worker is harmless
my $part_pid = sql(q{SELECT pid FROM eventsource.subscription_status WHERE name = 'part' AND partition = 0});
sql(qq{SELECT pg_cancel_backend($part_pid)});
sleep 1;
is(sql(q{SELECT pid FROM eventsource.subscription_status WHERE name = 'part' AND partition = 0}), $part_pid,
	'pg_cancel_backend() of an idle worker does not kill it');
is( sql(q{SELECT count(*) FROM eventsource.events e WHERE NOT EXISTS
           (SELECT 1 FROM seen s WHERE s.sub = 'part' AND s.event_id = e.event_id)}),
	'0', 'every event was delivered by some partition');
is( sql(q{SELECT count(*) FROM (SELECT event_id FROM seen WHERE sub = 'part' GROUP BY event_id
           HAVING count(*) > 1) d}),
	'0', 'and only once');
is( sql(q{SELECT count(*) FROM (SELECT stream, version, lag(version) OVER (PARTITION BY stream ORDER BY n) AS prev
            FROM seen WHERE sub = 'part') v WHERE prev IS NOT NULL AND version <> prev + 1}),
	'0', 'per stream, versions were delivered in order');
is( sql(q{SELECT count(DISTINCT pid) FROM eventsource.subscription_status WHERE name = 'part'}),
	'3', 'three worker processes');

# ---------------------------------------------------------------------------
# handler privileges: runs as its owner, never as the superuser
# ---------------------------------------------------------------------------
sql(q{
CREATE ROLE projector;
CREATE TABLE secret (x int);
CREATE TABLE projector_out (what text);
GRANT INSERT ON projector_out TO projector;
GRANT USAGE ON SCHEMA eventsource TO projector;
GRANT EXECUTE ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
  interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text) TO projector;
CREATE FUNCTION h_priv(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO projector_out VALUES ('user=' || current_user || ' super=' ||
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user));
  IF e.event_type = 'ReadSecret' THEN PERFORM * FROM secret; END IF;
  IF e.event_type = 'BecomeSuper' THEN SET ROLE postgres; END IF;
END $$;
ALTER FUNCTION h_priv(eventsource.events) OWNER TO projector;
SET ROLE projector;
SELECT eventsource.create_subscription('priv', 'h_priv(eventsource.events)', start_from => 'end',
  max_retries => 0);
RESET ROLE;
});
sql(q{SELECT eventsource.append_event('Priv-1', 0, 'Hello', '{}');
      SELECT eventsource.append_event('Priv-1', 1, 'ReadSecret', '{}');
      SELECT eventsource.append_event('Priv-1', 2, 'BecomeSuper', '{}')});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters WHERE subscription = 'priv'},
	'the privileged operations failed');
is(sql(q{SELECT DISTINCT what FROM projector_out}), 'user=projector super=false',
	'the handler runs as its owner, not as a superuser');
is( sql(q{SELECT string_agg(event_type || ':' || error_sqlstate, ',' ORDER BY global_position)
            FROM eventsource.dead_letters WHERE subscription = 'priv'}),
	'ReadSecret:42501,BecomeSuper:42501',
	'it cannot read what its owner cannot, nor SET ROLE to the superuser');
($ret, $out, $err) = $node->psql('postgres', q{SET ROLE projector;
	SELECT eventsource.create_subscription('priv2', 'record(text,eventsource.events)')});
like($err, qr/cannot be a subscription handler/, 'a handler with the wrong signature is refused');
# the handler guard (an event trigger on every DROP) works for any role
sql(q{GRANT CREATE ON SCHEMA public TO projector});
($ret, $out, $err) = $node->psql('postgres', q{SET ROLE projector;
	CREATE TABLE projector_scratch (x int); ALTER TABLE projector_scratch ADD COLUMN y int;
	ALTER TABLE projector_scratch DROP COLUMN y; DROP TABLE projector_scratch});
is($ret, 0, 'a role without rights on the extension tables can still drop its own objects') or diag($err);

# ---------------------------------------------------------------------------
# DROP EXTENSION with running workers; the database keeps working
# ---------------------------------------------------------------------------
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'eventsource worker'}),
	'workers are running');
sql(q{DROP EXTENSION eventsource CASCADE});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'eventsource worker'}),
	'DROP EXTENSION stops the workers');
sql(q{CREATE EXTENSION eventsource});
is(sql(q{SELECT stream_version FROM eventsource.append_event('Again-1', 0, 'A', '{}')}), '1',
	'the extension can be created again');
is(sql(q{SELECT eventsource.head_position()}), '1', 'with a fresh horizon');

$node->stop;
done_testing();
