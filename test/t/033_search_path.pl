# A hostile search_path changes nothing.  An unprivileged role ("mallory")
# creates, in her own schema and in public, objects that shadow what a careless
# query would use -- functions split_part, unnest, jsonb_build_object, jsonb_agg,
# nextval, now, current_setting, generate_series, aggregates count/max/min,
# operators =, <>, <, <=, >, >=, -, || on text/bigint/integer/uuid that give wrong
# answers, domains named text/jsonb/uuid/timestamptz -- plus pg_temp tables
# and views named like the extension's tables, and puts them first on
# search_path (pg_catalog last), also for the subscription workers (ALTER
# DATABASE).  Every public function, the views and a subscription delivering
# through a worker give the same results as with a normal search_path (the
# same script runs in a second database with the same objects but the default
# search_path), and no shadowing object is ever called: each one bumps a
# sequence (not rolled back with the transaction) before answering.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use JSON::PP;

my $node = es_node('search_path');

my $hostile_path = 'pg_temp, mallory, public, pg_catalog';

# an administrator's query, with a safe search_path whatever the database says
sub admin
{
	my ($db, $q) = @_;
	return $node->safe_psql($db, "SET search_path = pg_catalog, public;\n$q");
}

# The shadowing objects of one schema.  Each records its call, then answers
# wrongly.
sub shadows
{
	my ($s) = @_;
	my $sql = '';
	my $f = sub {
		my ($name, $args, $ret, $body) = @_;
		$sql .= qq{CREATE FUNCTION $s.$name($args) RETURNS $ret LANGUAGE plpgsql AS \$f\$
BEGIN PERFORM mallory.called('$s.$name($args)'); $body END \$f\$;
};
	};
	$f->('split_part', 'a pg_catalog.text, b pg_catalog.text, n pg_catalog.int4', 'pg_catalog.text', q{RETURN 'X';});
	$f->('unnest', 'a anyarray', 'SETOF anyelement', 'RETURN;');
	$f->('jsonb_build_object', 'VARIADIC a pg_catalog.text[]', 'pg_catalog.jsonb', q{RETURN '{"hostile": true}';});
	$f->('to_jsonb', 'a anyelement', 'pg_catalog.jsonb', q{RETURN '{"hostile": true}';});
	$f->('nextval', 'a pg_catalog.regclass', 'pg_catalog.int8', 'RETURN 1;');
	$f->('now', '', 'pg_catalog.timestamptz', q{RETURN '2000-01-01';});
	$f->('current_setting', 'a pg_catalog.text', 'pg_catalog.text', q{RETURN 'hostile';});
	$f->('generate_series', 'a pg_catalog.int4, b pg_catalog.int4', 'SETOF pg_catalog.int4', 'RETURN;');
	$f->('length', 'a pg_catalog.text', 'pg_catalog.int4', 'RETURN -1;');
	$f->('agg_j', 's pg_catalog.jsonb, v anyelement', 'pg_catalog.jsonb', 'RETURN s;');
	$f->('agg_i8', 's pg_catalog.int8, v pg_catalog.int8', 'pg_catalog.int8', 'RETURN 0;');
	$f->('agg_cnt', 's pg_catalog.int8', 'pg_catalog.int8', 'RETURN 0;');
	$sql .= qq{CREATE AGGREGATE $s.jsonb_agg(anyelement) (sfunc = $s.agg_j, stype = pg_catalog.jsonb, initcond = '[]');
CREATE AGGREGATE $s.max(pg_catalog.int8) (sfunc = $s.agg_i8, stype = pg_catalog.int8);
CREATE AGGREGATE $s.min(pg_catalog.int8) (sfunc = $s.agg_i8, stype = pg_catalog.int8);
CREATE AGGREGATE $s.count(*) (sfunc = $s.agg_cnt, stype = pg_catalog.int8, initcond = '0');
};
	my $n = 0;
	for my $op (
		[ '=',  'pg_catalog.text', 'pg_catalog.bool', 'RETURN NOT (a OPERATOR(pg_catalog.=) b);' ],
		[ '<>', 'pg_catalog.text', 'pg_catalog.bool', 'RETURN a OPERATOR(pg_catalog.=) b;' ],
		[ '||', 'pg_catalog.text', 'pg_catalog.text', q{RETURN 'X';} ],
		[ '=',  'pg_catalog.int8', 'pg_catalog.bool', 'RETURN NOT (a OPERATOR(pg_catalog.=) b);' ],
		[ '<',  'pg_catalog.int8', 'pg_catalog.bool', 'RETURN a OPERATOR(pg_catalog.>=) b;' ],
		[ '<=', 'pg_catalog.int8', 'pg_catalog.bool', 'RETURN a OPERATOR(pg_catalog.>) b;' ],
		[ '>',  'pg_catalog.int8', 'pg_catalog.bool', 'RETURN a OPERATOR(pg_catalog.<=) b;' ],
		[ '>=', 'pg_catalog.int8', 'pg_catalog.bool', 'RETURN a OPERATOR(pg_catalog.<) b;' ],
		[ '+',  'pg_catalog.int8', 'pg_catalog.int8', 'RETURN 0;' ],
		[ '=',  'pg_catalog.int4', 'pg_catalog.bool', 'RETURN NOT (a OPERATOR(pg_catalog.=) b);' ],
		[ '-',  'pg_catalog.int4', 'pg_catalog.int4', 'RETURN 0;' ],
		[ '=',  'pg_catalog.uuid', 'pg_catalog.bool', 'RETURN NOT (a OPERATOR(pg_catalog.=) b);' ],
		[ '=',  'pg_catalog.jsonb', 'pg_catalog.bool', 'RETURN NOT (a OPERATOR(pg_catalog.=) b);' ])
	{
		my ($name, $type, $ret, $body) = @$op;
		$n++;
		$f->("op$n", "a $type, b $type", $ret, $body);
		$sql .= qq{CREATE OPERATOR $s.$name (LEFTARG = $type, RIGHTARG = $type, FUNCTION = $s.op$n);
};
	}
	return $sql;
}

# pg_temp objects: per session, so part of the script's prelude
my $temp_objects = q{
CREATE TEMP TABLE events (global_position pg_catalog.int8, stream_id pg_catalog.text);
INSERT INTO pg_temp.events VALUES (999, 'Temp-1');
CREATE TEMP VIEW checkpoints AS SELECT 'proj'::pg_catalog.text AS name, 999::pg_catalog.int8 AS position;
CREATE TEMP TABLE subscriptions (name pg_catalog.text);
CREATE TEMP TABLE snapshots (stream_id pg_catalog.text);
CREATE TEMP TABLE dead_letters (id pg_catalog.int8);
CREATE FUNCTION pg_temp.split_part(a pg_catalog.text, b pg_catalog.text, n pg_catalog.int4) RETURNS pg_catalog.text
  LANGUAGE plpgsql AS $f$ BEGIN PERFORM mallory.called('pg_temp.split_part'); RETURN 'X'; END $f$;
CREATE FUNCTION pg_temp.eq(a pg_catalog.text, b pg_catalog.text) RETURNS pg_catalog.bool
  LANGUAGE plpgsql AS $f$ BEGIN PERFORM mallory.called('pg_temp.='); RETURN false; END $f$;
CREATE OPERATOR pg_temp.= (LEFTARG = pg_catalog.text, RIGHTARG = pg_catalog.text, FUNCTION = pg_temp.eq);
};

for my $db (qw(normal hostile))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	admin($db, q{
CREATE EXTENSION eventsource;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mallory') THEN CREATE ROLE mallory LOGIN; END IF; END $$;
GRANT CREATE ON DATABASE } . $db . q{ TO mallory;
GRANT CREATE ON SCHEMA public TO mallory;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA eventsource TO mallory;
GRANT SELECT ON eventsource.streams, eventsource.subscription_status, eventsource.horizon_blockers,
  eventsource.store_stats, eventsource.dead_letters TO mallory;
});
	admin($db, q{
SET ROLE mallory;
CREATE SCHEMA mallory;
CREATE SEQUENCE mallory.calls;
CREATE TABLE mallory.call_log (what pg_catalog.text, query pg_catalog.text, backend pg_catalog.text);
GRANT USAGE ON SCHEMA mallory TO PUBLIC;
GRANT ALL ON mallory.calls, mallory.call_log TO PUBLIC;
CREATE FUNCTION mallory.called(what pg_catalog.text) RETURNS pg_catalog.bool LANGUAGE plpgsql
  SET search_path = pg_catalog AS $f$
BEGIN
  PERFORM nextval('mallory.calls');
  INSERT INTO mallory.call_log
    SELECT what, current_query(), backend_type || ' ' || application_name
      FROM pg_stat_activity WHERE pid = pg_backend_pid();
  RETURN true;
END $f$;
} . shadows('mallory') . shadows('public') . q{
CREATE DOMAIN mallory.text AS pg_catalog.text CHECK (mallory.called('domain text'));
CREATE DOMAIN mallory.jsonb AS pg_catalog.jsonb CHECK (mallory.called('domain jsonb'));
CREATE DOMAIN mallory.uuid AS pg_catalog.uuid CHECK (mallory.called('domain uuid'));
CREATE DOMAIN mallory.timestamptz AS pg_catalog.timestamptz CHECK (mallory.called('domain timestamptz'));
CREATE TABLE mallory.events (global_position pg_catalog.int8, stream_id pg_catalog.text);
CREATE VIEW public.events AS SELECT 1::pg_catalog.int8 AS global_position;

-- the projection: every name qualified, operators too, so that it means the
-- same under any search_path; it notes the search_path it ran with
CREATE SCHEMA proj;
CREATE TABLE proj.poison (stream pg_catalog.text PRIMARY KEY);
INSERT INTO proj.poison VALUES ('Bad-1');
CREATE TABLE proj.readmodel (pos pg_catalog.int8, stream pg_catalog.text, type pg_catalog.text,
  sub pg_catalog.text, deliveries pg_catalog.int4, PRIMARY KEY (sub, pos));
CREATE TABLE proj.seen_path (path pg_catalog.text);
CREATE FUNCTION proj.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  INSERT INTO proj.seen_path VALUES (pg_catalog.current_setting('search_path'));
  IF EXISTS (SELECT 1 FROM proj.poison p WHERE p.stream OPERATOR(pg_catalog.=) e.stream_id) THEN
    RAISE EXCEPTION 'poisoned stream %', e.stream_id USING ERRCODE = 'P0001';
  END IF;
  INSERT INTO proj.readmodel AS r VALUES (e.global_position, e.stream_id, e.event_type,
      pg_catalog.current_setting('eventsource.subscription'), 1)
    ON CONFLICT (sub, pos) DO UPDATE SET deliveries = r.deliveries OPERATOR(pg_catalog.+) 1;
END $f$;
});
}
# the workers of the hostile database run with the hostile search_path too
admin('hostile', "ALTER DATABASE hostile SET search_path = $hostile_path");

# The positive control: the shadows do shadow, under the hostile path.
my $control = admin('hostile', "SET search_path = $hostile_path; SELECT 'a' = 'a', 1::int8 = 1::int8, split_part('a-b', '-', 1), count(*) FROM (VALUES (1)) v");
is($control, 'f|f|X|0', 'positive control: under the hostile path the shadows answer wrongly');
is(admin('hostile', q{SELECT count(*) FROM mallory.call_log}), '4', 'and record their calls');
admin($_, 'TRUNCATE mallory.call_log; ALTER SEQUENCE mallory.calls RESTART') for qw(normal hostile);

# ---------------------------------------------------------------------------
# the script: every public function, as mallory
# ---------------------------------------------------------------------------
my $u = '00000000-0000-4000-8000-0000000000';
my $script = qq{
\\set ON_ERROR_STOP off
\\echo == append
SELECT * FROM eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {"customer_id": "c1", "total": 10}, "id": "${u}01"},
  {"type": "OrderShipped", "data": {"tracking_number": "T1"}, "metadata": {"correlation_id": "corr-1"}, "id": "${u}02"}]');
SELECT * FROM eventsource.append_event('Order-2', 0, 'OrderCreated', '{"customer_id": "c2", "total": 20}', '{}', '${u}03');
SELECT * FROM eventsource.append_event('Customer-1', -1, 'CustomerRegistered', '{"name": "Ann"}', '{"tenant_id": "t1"}', '${u}04');
\\echo idempotent retry
SELECT * FROM eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {"customer_id": "c1", "total": 10}, "id": "${u}01"},
  {"type": "OrderShipped", "data": {"tracking_number": "T1"}, "metadata": {"correlation_id": "corr-1"}, "id": "${u}02"}]');
\\echo conflicts
SELECT * FROM eventsource.append_event('Order-2', 5, 'X', '{}');
SELECT * FROM eventsource.append_event('Order-2', 0, 'X', '{}');
SELECT * FROM eventsource.append_event('Order-7', -2, 'X', '{}');
SELECT * FROM eventsource.append_event('Order-9', 0, 'X', '{}', '{}', '${u}01');
SELECT * FROM eventsource.append('Order-9', 0, '[{"type": ""}]');
\\echo an aborted append
BEGIN;
SELECT * FROM eventsource.append_event('Order-3', 0, 'OrderCreated', '{}', '{}', '${u}05');
ROLLBACK;
SELECT * FROM eventsource.append_event('Order-2', 1, 'OrderShipped', '{"tracking_number": "T2"}', '{}', '${u}06');
SELECT * FROM eventsource.append('Order-4', NULL, '[{"type": "OrderCreated", "data": {"total": 40}, "id": "${u}07"},
  {"type": "OrderShipped", "data": {}, "id": "${u}08"}, {"type": "OrderCancelled", "data": [1, 2], "id": "${u}09"}]');
\\echo == reads
SELECT global_position, stream_id, stream_version, event_id, event_type, data, metadata FROM eventsource.read_stream('Order-1');
SELECT global_position, stream_version FROM eventsource.read_stream('Order-4', 2);
SELECT global_position, stream_version FROM eventsource.read_stream('Order-4', NULL, 2, true);
SELECT global_position, stream_version FROM eventsource.read_stream('Order-4', 99, 1000, true);
SELECT global_position FROM eventsource.read_stream('Nope-1');
SELECT global_position, stream_id, stream_version, event_id, event_type, data, metadata FROM eventsource.read_all();
SELECT global_position FROM eventsource.read_all(2, 3);
SELECT global_position FROM eventsource.read_all(0, 100, ARRAY['OrderShipped']);
SELECT global_position FROM eventsource.read_all(0, 100, NULL, ARRAY['Customer']);
SELECT global_position FROM eventsource.read_all(0, 100, ARRAY['OrderCreated'], ARRAY['Order']);
SELECT eventsource.head_position();
SELECT eventsource.stream_version('Order-4'), eventsource.stream_version('Nope-1');
SELECT eventsource.category('Order-1-x'), eventsource.category('plain'), eventsource.stream_partition('Order-1', 4);
SELECT stream_id, category, version, first_position, last_position FROM eventsource.streams ORDER BY stream_id;
\\echo == snapshots
SELECT eventsource.save_snapshot('Order-4', 1, '{"status": "created"}');
SELECT eventsource.save_snapshot('Order-4', 2, '{"status": "shipped"}');
SELECT eventsource.save_snapshot('Order-4', 1, '{"status": "old"}');
SELECT eventsource.save_snapshot('Order-4', 2, '{"v": 2}', 2);
SELECT eventsource.save_snapshot('Order-4', 9, '{}');
SELECT stream_version, state, schema_version FROM eventsource.load_snapshot('Order-4');
SELECT stream_version, state, schema_version FROM eventsource.load_snapshot('Order-4', 2);
SELECT stream_version FROM eventsource.load_snapshot('Order-4', 3);
SELECT eventsource.load('Order-4');
SELECT eventsource.load('Order-4', 2);
SELECT eventsource.load('Order-1');
SELECT eventsource.load('Nope-1');
\\echo == checkpoints
SELECT eventsource.save_checkpoint('cp', 3);
SELECT eventsource.save_checkpoint('cp', 5);
SELECT eventsource.get_checkpoint('cp');
SELECT eventsource.save_checkpoint('cp', 2);
SELECT eventsource.reset_checkpoint('cp', 1);
SELECT eventsource.get_checkpoint('cp');
SELECT eventsource.reset_checkpoint('cp');
SELECT eventsource.get_checkpoint('cp'), eventsource.get_checkpoint('none');
\\echo == subscription
SELECT eventsource.create_subscription('proj', 'proj.h(eventsource.events)', max_retries => 0,
  circuit_breaker_threshold => 0, categories => ARRAY['Order', 'Customer', 'Bad'], partitions => 2);
SELECT eventsource.create_subscription('created', 'proj.h(eventsource.events)', start_from => 'end',
  event_types => ARRAY['OrderCreated'], max_retries => 0);
SELECT * FROM eventsource.append_event('Bad-1', 0, 'OrderCreated', '{}', '{}', '${u}10');
SELECT * FROM eventsource.append_event('Other-1', 0, 'OrderCreated', '{}', '{}', '${u}11');
SELECT * FROM eventsource.append_event('Order-5', 0, 'OrderCreated', '{}', '{}', '${u}12');
SELECT eventsource.wait_for_subscription('proj', eventsource.head_position(), '60 s');
SELECT eventsource.wait_for_subscription('created', eventsource.head_position(), '60 s');
DO \$\$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM eventsource.subscription_status WHERE state OPERATOR(pg_catalog.<>) 'live');
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;
END \$\$;
SELECT pos, stream, type, sub, deliveries FROM proj.readmodel ORDER BY sub, pos;
SELECT subscription, partition, global_position, stream_id, event_id, error_sqlstate, error_message, retry_count
  FROM eventsource.dead_letters ORDER BY subscription, global_position;
SELECT name, partition, state, checkpoint, head_position, lag_events, events_processed, events_failed,
  dead_letters, consecutive_failures, last_error, health, health_reason, partitions
  FROM eventsource.subscription_status ORDER BY name, partition;
SELECT eventsource.health();
SELECT eventsource.readiness();
SELECT eventsource.liveness();
SELECT eventsource.error_stats();
SELECT pid FROM eventsource.horizon_blockers;
SELECT appends, events_appended, expected_version_conflicts, idempotent_retries, duplicate_event_ids
  FROM eventsource.store_stats;
\\echo == dead letters, pause, reset, resume, drop
DELETE FROM proj.poison;
SELECT eventsource.retry_dead_letters('proj');
SELECT eventsource.wait_for_subscription('proj', eventsource.head_position(), '60 s');
DO \$\$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM eventsource.dead_letters WHERE subscription OPERATOR(pg_catalog.=) 'proj');
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;
END \$\$;
SELECT subscription, stream_id FROM eventsource.dead_letters;
SELECT sub, pos, stream, deliveries FROM proj.readmodel WHERE stream OPERATOR(pg_catalog.=) 'Bad-1' ORDER BY sub;
SELECT eventsource.pause_subscription('proj');
DO \$\$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM eventsource.subscription_status
                          WHERE name OPERATOR(pg_catalog.=) 'proj' AND pid IS NOT NULL);
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;
END \$\$;
SELECT name, partition, state FROM eventsource.subscription_status ORDER BY name, partition;
SELECT eventsource.reset_subscription('proj', 0);
SELECT eventsource.resume_subscription('proj');
-- (not wait_for_subscription(): right after a reset it may answer from the
-- partitions' positions before the reset)
DO \$\$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM eventsource.subscription_status WHERE name OPERATOR(pg_catalog.=) 'proj'
                          AND (checkpoint OPERATOR(pg_catalog.<>) eventsource.head_position()
                               OR state OPERATOR(pg_catalog.<>) 'live'));
    PERFORM pg_catalog.pg_sleep(0.05);
  END LOOP;
END \$\$;
SELECT sub, pos, stream, deliveries FROM proj.readmodel ORDER BY sub, pos;
SELECT eventsource.drop_subscription('created');
SELECT eventsource.drop_subscription('proj');
SELECT name FROM eventsource.subscription_status;
SELECT eventsource.stat_reset();
\\echo == nothing in pg_temp was touched
SELECT global_position, stream_id FROM pg_temp.events;
SELECT name, position FROM pg_temp.checkpoints;
};

# Timestamps, pids, uptimes and the like differ from run to run: mask them.
my $json = JSON::PP->new->canonical;
my %volatile = map { $_ => 1 } qw(timestamp uptime_seconds started_at last_activity_at heartbeat_at
  lag_seconds pid last_error_at recorded_at created_at oldest updated_at);
sub scrub
{
	my ($v) = @_;
	if (ref $v eq 'HASH')
	{
		return { map { $_ => ($volatile{$_} ? '<masked>' : scrub($v->{$_})) } keys %$v };
	}
	return [ map { scrub($_) } @$v ] if ref $v eq 'ARRAY';
	return $v;
}
sub normalize
{
	my ($text) = @_;
	my @out;
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^\{.*\}$/ && (my $d = eval { decode_json($line) }))
		{
			$line = $json->encode(scrub($d));
		}
		$line =~ s/\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d(:\d\d)?)?/<ts>/g;
		push @out, $line;
	}
	return join("\n", @out);
}

my %out;
my %err;
for my $db (qw(normal hostile))
{
	my $prelude = "SET ROLE mallory;\n$temp_objects\n"
	  . ($db eq 'hostile' ? "SET search_path = $hostile_path;\n" : "SET search_path = DEFAULT;\n");
	my ($ret, $stdout, $stderr) = $node->psql($db, $prelude . $script, on_error_stop => 0);
	$out{$db} = normalize($stdout);
	$err{$db} = $stderr;
}

is($out{hostile}, $out{normal}, 'every result is the same under the hostile search_path')
  or diag("normal:\n$out{normal}\n\nhostile:\n$out{hostile}");
is($err{hostile}, $err{normal}, 'every error is the same (message, detail and hint) under the hostile search_path');
for my $db (qw(normal hostile))
{
	is(admin($db, q{SELECT last_value || ' ' || is_called FROM mallory.calls}), '1 false',
		"$db: no shadowing object was ever called (the call counter never moved)");
	is(admin($db, q{SELECT count(*) FROM mallory.call_log}), '0', "$db: the call log is empty")
	  or diag(admin($db, q{SELECT * FROM mallory.call_log}));
}
like(admin('hostile', q{SELECT string_agg(DISTINCT path, ',') FROM proj.seen_path}), qr/^\Q$hostile_path\E$/,
	'the worker of the hostile database did run with the hostile search_path');

# the script did what it should (checked once, the outputs being equal)
my $o = $out{hostile};
like($o, qr/^== append\n2\|1\|2\n1\|3\|3\n1\|4\|4\nidempotent retry\n2\|1\|2\nconflicts\nan aborted append\n1\|5\|5\n2\|6\|6\n3\|7\|9\n/,
	'appends gave positions 1..4, the retry its original result, the aborted append left 5 as a gap');
like($err{hostile}, qr/ERROR:  wrong expected version for stream "Order-2".*ERROR:  wrong expected version for stream "Order-2".*ERROR:  wrong expected version for stream "Order-7".*ERROR:  event id ${u}01 is already used in another stream/s,
	'the conflicts raised their errors');
like($o, qr/\n9\n3\|0\n/, 'head_position 9, stream versions 3 and 0');
like($o, qr/\nOrder\|plain\|\d\n/, 'category and stream_partition');
like($o, qr/\n2\|\{"status": "shipped"\}\|1\n2\|\{"v": 2\}\|2\n/, 'snapshots: newest kept, per schema version');
like($o, qr/\n== subscription\n/, 'the subscription part ran');
like($o, qr/\n6\|Order-2\|OrderShipped\|proj\|1\n/, 'the projection saw the events');
like($o, qr/\ncreated\|0\|10\|Bad-1\|${u}10\|P0001\|poisoned stream Bad-1\|0\nproj\|\d\|10\|Bad-1\|${u}10\|P0001\|poisoned stream Bad-1\|0\n/,
	'the poison event is a dead letter of both subscriptions');
like($o, qr/\ncreated\|Bad-1\nproj\|10\|Bad-1\|1\n/, 'retry_dead_letters delivered it to proj');
like($o, qr/\nproj\|0\|paused\nproj\|1\|paused\n/, 'both partitions paused');
like($o, qr/\ncreated\|11\|Other-1\|1\ncreated\|12\|Order-5\|1\nproj\|1\|Order-1\|2\nproj\|2\|Order-1\|2\nproj\|3\|Order-2\|2\nproj\|4\|Customer-1\|2\nproj\|6\|Order-2\|2\nproj\|7\|Order-4\|2\nproj\|8\|Order-4\|2\nproj\|9\|Order-4\|2\nproj\|10\|Bad-1\|2\nproj\|12\|Order-5\|2\n/,
	'after reset_subscription(0) and resume everything was delivered once more');
like($o, qr/\n== nothing in pg_temp was touched\n999\|Temp-1\nproj\|999$/, 'the pg_temp objects are untouched');

# the positive control again, now that the script is done
is(admin('hostile', "SET search_path = $hostile_path; SELECT 'a' = 'a'"), 'f', 'the shadows are still in place');
is(admin('hostile', q{SELECT count(*) FROM mallory.call_log}), '1', 'and would have been noticed');

$node->stop;
done_testing();
