# The upgrade walk: a store installed as 1.0 (CREATE EXTENSION eventsource
# VERSION '1.0'), filled and running, is updated with ALTER EXTENSION
# eventsource UPDATE while appends happen and its subscriptions deliver.
#
# Before the update the new library serves every function of the 1.0 SQL
# (each is called; track_functions counts the calls) and health() says the
# SQL objects are behind.  The update is transactional (rolled back, or
# failing at its end, it leaves the 1.0 objects exactly as they were) and
# does not rewrite eventsource.events.  After it: extversion is the default
# version; every object of the extension equals a fresh install of that
# version in another database (pg_dump --schema-only --binary-upgrade, which
# dumps extension members one by one, normalised; and a catalog listing of
# the members with their definitions); all data is still there; appends
# continue above the old positions; the workers log the new version and go
# on, and the counting handler saw every event exactly once.
#
# The library's version cache: an update committed by another session is
# seen by the next statement (the next transaction in REPEATABLE READ, as
# its data is); one in our own transaction by the next command, and
# forgotten when its savepoint rolls back.  Inside the extension's own
# script the new version does not count yet (an event trigger probes every
# DDL command of the scripts).
#
# Workers: one whose reload after the update fails keeps going (a dead
# letter retried meanwhile used to crash the server); every_event follows
# an update between two events of a batch; a transaction that locks
# eventsource.events and then a subscription's row does not deadlock with
# the workers (their lock order); a dead letter retried after an update
# that added a column to eventsource.events reaches the handler with every
# column in its place.
#
# Dumps: a dump of the 1.0 store restores into the default version (pg_dump
# records no extension version) and into a database that holds 1.0, which
# is then updated; a dump of the updated store restores into the default
# version.  Each restore has the same data.
#
# Written so that it keeps working as later releases add objects: it names
# no object of the upgrade script and compares against the default version.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use IPC::Run;

my $node = es_node('upgrade', "track_functions = 'all'\ndeadlock_timeout = '100ms'\n");

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }
sub wait_until { es_wait_until($node, @_) }

# psql with verbose errors: returns stderr
sub psql_err
{
	my ($db, $q) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$q");
	return $err;
}

my $default = sql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'eventsource'});
isnt($default, '1.0', "the default version ($default) is later than 1.0: there is an upgrade to walk");
like(sql('postgres', qq{SELECT path FROM pg_extension_update_paths('eventsource')
                          WHERE source = '1.0' AND target = '$default'}),
	qr/^1\.0--/, 'and a chain of update scripts leads there from 1.0');

# Do the update scripts have DDL commands yet?  (1.1 opened with an empty
# one.)  The checks that need a command inside the script are vacuous until
# they do, and then required.
my $update_ddl = 0;
for my $f (glob($node->config_data('--sharedir') . '/extension/eventsource--*--*.sql'))
{
	my $text = slurp_file($f) =~ s{/\*.*?\*/}{}gsr;
	$text =~ s/--[^\n]*//g;
	$update_ddl++ while $text =~ /^\s*(?:CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE)\b/mig;
}
note("DDL commands in the update scripts: $update_ddl");

# ---------------------------------------------------------------------------
# a 1.0 store, filled, with running subscriptions
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE old');
sql('old', q{CREATE EXTENSION eventsource VERSION '1.0'});
is(sql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.0',
	'CREATE EXTENSION ... VERSION 1.0 installs 1.0');

like(sql('old', q{SELECT eventsource.health()->'checks'->>'sql_version'}),
	qr/^unhealthy: the SQL objects are version 1\.0, the library \Q$default\E: run ALTER EXTENSION eventsource UPDATE \(degraded\)$/,
	'health() names the SQL objects that are behind the library, with what to do, and the level');
is(sql('old', q{SELECT eventsource.health()->>'status'}), 'degraded', 'and is degraded');

sql('old', q{
CREATE SCHEMA app;
-- the counting read model: one row per event id, n = deliveries
CREATE TABLE app.deliveries (event_id uuid PRIMARY KEY, pos bigint NOT NULL, n integer NOT NULL);
CREATE FUNCTION app.count_event(e eventsource.events) RETURNS void LANGUAGE sql AS $$
  INSERT INTO app.deliveries VALUES (e.event_id, e.global_position, 1)
  ON CONFLICT (event_id) DO UPDATE SET n = app.deliveries.n + 1 $$;
CREATE FUNCTION app.picky(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_id LIKE 'Bad-%' THEN
    RAISE EXCEPTION 'bad event in %', e.stream_id USING ERRCODE = 'P0001';
  END IF;
END $$;
CREATE FUNCTION app.unused(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventsource.create_subscription('counter', 'app.count_event(eventsource.events)',
  partitions => 2, batch_size => 50);
SELECT eventsource.create_subscription('picky', 'app.picky(eventsource.events)',
  max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 0);
});

# the whole 1.0 surface, through the new library
sql('old', q{
SELECT eventsource.append('Order-1', 0, '[{"type": "OrderCreated", "data": {"total": 10}},
                                          {"type": "OrderShipped", "data": {"t": "T1"}, "metadata": {"correlation_id": "c1"}}]');
SELECT eventsource.append_event('Order-2', 0, 'OrderCreated', '{"total": 20}');
SELECT eventsource.append_event('Customer-1', 0, 'CustomerRegistered', '{"name": "Ann"}');
SELECT eventsource.append_event('Bad-1', 0, 'OrderCreated', '{"total": -1}');
SELECT eventsource.append_event('Order-2', 1, 'OrderShipped', '{"t": "T2"}');
SELECT * FROM eventsource.read_stream('Order-1');
SELECT * FROM eventsource.read_all(0, 100, ARRAY['OrderCreated'], ARRAY['Order']);
SELECT eventsource.head_position(), eventsource.stream_version('Order-2'),
       eventsource.category('Order-2'), eventsource.stream_partition('Order-2', 4);
SELECT eventsource.save_snapshot('Order-1', 2, '{"status": "shipped", "total": 10}');
SELECT eventsource.save_snapshot('Order-2', 1, '{"status": "created"}', 2);
SELECT * FROM eventsource.load_snapshot('Order-1');
SELECT eventsource.load('Order-1');
SELECT eventsource.save_checkpoint('manual', 3);
SELECT eventsource.save_checkpoint('scratch', 4);
SELECT eventsource.get_checkpoint('manual');
SELECT eventsource.reset_checkpoint('scratch', 1);
SELECT eventsource.create_subscription('spare', 'app.unused(eventsource.events)');
SELECT eventsource.pause_subscription('spare');
SELECT eventsource.resume_subscription('spare');
SELECT eventsource.reset_subscription('spare', 0);
SELECT eventsource.drop_subscription('spare');
DROP FUNCTION app.unused(eventsource.events);   -- through protect_handlers()
SELECT * FROM eventsource.subscription_status;
SELECT * FROM eventsource.horizon_blockers;
SELECT * FROM eventsource.store_stats;
SELECT * FROM eventsource.streams;
SELECT eventsource.health(), eventsource.readiness(), eventsource.liveness(), eventsource.error_stats();
SELECT eventsource.stat_reset();
});
wait_until('old', q{SELECT count(*) = 1 FROM eventsource.dead_letters}, 'the bad event is a dead letter');
like(slurp_file($node->logfile),
	qr/DETAIL:  database=old subscription=counter partition=0 handler=\S+ batch_size=50 sql_version=1\.0\n/,
	"a worker's started line names the SQL version it runs with");
is(sql('old', q{SELECT eventsource.retry_dead_letters('picky')}), '1', 'retry_dead_letters() on 1.0');
wait_until('old', q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE retry_count = 1
                      AND NOT retry_requested},
	'the retried dead letter failed again and is parked again');
my $head0 = sql('old', 'SELECT eventsource.head_position()');
ok(sql('old', qq{SELECT eventsource.wait_for_subscription('counter', $head0, '60s')}) eq 't',
	'wait_for_subscription() on 1.0: the counter caught up');
wait_until('old', qq{SELECT bool_and(checkpoint = $head0) FROM eventsource.subscription_status},
	'every subscription partition caught up');

is(sql('old', q{SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1)
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventsource')
   AND NOT EXISTS (SELECT 1 FROM pg_stat_user_functions f WHERE f.funcid = p.oid AND f.calls > 0)}),
	'', 'every function of the 1.0 SQL was called and answered through the new library');
cmp_ok(sql('old', q{SELECT count(*) FROM eventsource.recent_errors}), '>', 0, 'recent errors recorded on 1.0');

# tenants on 1.0 (issue 15): there is only the default tenant; naming it
# changes nothing, naming another is refused with the hint to update
is(sql('old', q{SET eventsource.tenant = 'default'; SELECT eventsource.stream_version('Order-2')}), '2',
	'1.0: eventsource.tenant = default reads as before');
my $t10 = psql_err('old', q{SET eventsource.tenant = 'acme'; SELECT eventsource.append_event('Order-2', 2, 'X', '{}')});
like($t10, qr/ERROR:  55000: eventsource\.tenant is "acme", but this database has no tenants/,
	'1.0: another tenant is refused (55000)');
like($t10, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE/, 'with the hint to update');
like(psql_err('old', q{SET eventsource.tenant = 'acme'; SELECT count(*) FROM eventsource.read_stream('Order-2')}),
	qr/ERROR:  55000: /, '1.0: reads too');

# ---------------------------------------------------------------------------
# what the 1.0 store holds
# ---------------------------------------------------------------------------
my @tables = qw(eventsource.events eventsource.snapshots eventsource.checkpoints
  eventsource.subscriptions eventsource.dead_letters eventsource.recent_errors);
my %cols = (
	# the store's own columns as of 1.0: later versions may add columns
	'eventsource.events' => 'global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at',
	'eventsource.snapshots' => 'stream_id, schema_version, stream_version, state, created_at',
	'eventsource.checkpoints' => 'name, position, updated_at',
	'eventsource.subscriptions' => 'id, name, handler, owner, batch_handler, start_from, start_position, batch_size, '
	  . 'checkpoint_strategy, checkpoint_interval, processing_timeout, max_retries, retry_backoff, '
	  . 'continue_on_error, circuit_breaker_threshold, circuit_breaker_reset, event_types, categories, partitions, state',
	'eventsource.dead_letters' => 'id, subscription, partition, global_position, stream_id, stream_version, event_id, '
	  . 'event_type, data, metadata, recorded_at, error_message, error_sqlstate, error_category, error_severity, '
	  . 'retry_count, first_failed_at',
	'eventsource.recent_errors' => 'id, subscription, partition, global_position, event_id, event_type, '
	  . 'error_message, error_sqlstate, error_category, error_severity, attempt, occurred_at');

# one line per table: rows and md5 of the ordered rows ($upto: events up to
# that position only, the ones that existed before)
sub fingerprint
{
	my ($db, $upto) = @_;
	my @parts = map {
		my $where = ($_ eq 'eventsource.events' && $upto) ? "WHERE global_position <= $upto" : '';
		"SELECT '$_ ' || count(*) || ' ' || md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))"
		  . " FROM (SELECT $cols{$_} FROM $_ $where) r"
	} @tables;
	return sql($db, join(' UNION ALL ', @parts)
		  . q{ UNION ALL SELECT 'partitions ' || string_agg(subscription || '/' || partition || '@' || position
		                                                  || ' ' || state, ', ' ORDER BY subscription, partition)
		        FROM eventsource.subscription_partitions});
}

my $fp0 = fingerprint('old');
my $versions0 = sql('old', q{SELECT string_agg(stream_id || ':' || stream_version, ' ' ORDER BY stream_id)
                               FROM (SELECT stream_id, max(stream_version) AS stream_version
                                       FROM eventsource.events GROUP BY 1) s});
my $load0 = sql('old', q{SELECT eventsource.load('Order-1')::text || ' ' || eventsource.load('Order-2')::text});
my $snap0 = sql('old', q{SELECT string_agg(stream_id || ' ' || schema_version || ' ' || stream_version || ' ' || state::text,
                                           E'\n' ORDER BY 1) FROM eventsource.snapshots});
my $cps0 = sql('old', q{SELECT eventsource.get_checkpoint('manual') || ' ' || eventsource.get_checkpoint('scratch')});
is($cps0, '3 1', 'checkpoints as saved');

# two long texts are equal; if not, show their diff
my $ndiff = 0;
sub same_text
{
	my ($got, $want, $name) = @_;
	return pass($name) if $got eq $want;
	$ndiff++;
	my ($g, $w) = map { $node->basedir . "/diff$ndiff.$_" } qw(got want);
	PostgreSQL::Test::Utils::append_to_file($g, $got);
	PostgreSQL::Test::Utils::append_to_file($w, $want);
	my $diff = '';
	IPC::Run::run([ 'diff', '-u', $w, $g ], '>', \$diff);
	fail($name);
	diag($diff);
}

# the extension's objects, two ways (see the file header)
sub schema_dump
{
	my ($db) = @_;
	my $out = '';
	my $err = '';
	IPC::Run::run([ 'pg_dump', '--schema-only', '--binary-upgrade', '--exclude-schema=app',
			'-d', $node->connstr($db) ], '>', \$out, '2>', \$err)
	  or die "pg_dump --binary-upgrade $db failed: $err";
	my @lines;
	for (split /\n/, $out)
	{
		next if /^\\(un)?restrict /;                  # a random key per dump
		s/'\d+'::pg_catalog\.oid/'OID'::pg_catalog.oid/g;    # OIDs to preserve
		s/'\{[0-9,]*\}'/'{OIDS}'/g;                   # the config tables' OIDs
		s/'\{[0-9A-F\/,]*\}'::pg_catalog\.pg_lsn\[\]/'{LSNS}'::pg_catalog.pg_lsn[]/g;
		s/(relfrozenxid|relminmxid) = '\d+'/$1 = 'XID'/g;
		s/WHERE oid = '\d+'/WHERE oid = 'OID'/g;
		next if /^SELECT pg_catalog\.setval\(/;        # sequence state is data
		# the stored default that rows written before an ADD COLUMN read
		# (atthasmissing): a store updated with rows has it, a new one not
		# (eventsource--1.0--1.1.sql, foundation); it describes old rows
		next if /^-- set missing value\.$/;
		next if /^SELECT pg_catalog\.binary_upgrade_set_missing_value\(/;
		next if /^SET default_(tablespace|table_access_method) /;    # placed by order
		push @lines, $_;
	}

	# One entry per object, sorted: the order of pg_dump's output follows
	# dependencies, which the old database's own objects (handlers taking
	# eventsource.events) change.
	my $text = join("\n", @lines);
	$text =~ s/\n{3,}/\n\n/g;
	my @entries = map { s/\s+$//r } split /\n(?=--\n-- Name: )/, $text;
	return join("\n", sort @entries) . "\n";
}

my $members_sql = q{
SELECT pg_catalog.pg_describe_object(d.classid, d.objid, 0) || E'\n' || coalesce(CASE d.classid
  WHEN 'pg_proc'::regclass THEN
    (SELECT pg_get_functiondef(p.oid) || ' owner=' || p.proowner::regrole || ' acl=' || coalesce(p.proacl::text, '-')
       FROM pg_proc p WHERE p.oid = d.objid)
  WHEN 'pg_class'::regclass THEN
    (SELECT 'kind=' || c.relkind::text || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(c.relacl::text, '-')
            || ' options=' || coalesce(c.reloptions::text, '-')
            || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-')
            || coalesce(E'\n  view: ' || pg_get_viewdef(c.oid), '')
            || coalesce((SELECT string_agg(E'\n  column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                                           || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END,
                                           '' ORDER BY a.attnum)
                           FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                          WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
            || coalesce((SELECT string_agg(E'\n  constraint ' || co.conname || ' ' || pg_get_constraintdef(co.oid), '' ORDER BY co.conname)
                           FROM pg_constraint co WHERE co.conrelid = c.oid), '')
            || coalesce((SELECT string_agg(E'\n  index ' || pg_get_indexdef(i.indexrelid), '' ORDER BY 1)
                           FROM pg_index i WHERE i.indrelid = c.oid), '')
            || coalesce((SELECT string_agg(E'\n  trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text, '' ORDER BY t.tgname)
                           FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
            || coalesce((SELECT E'\n  sequence ' || format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement
                                || ' min ' || s.seqmin || ' max ' || s.seqmax || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle
                           FROM pg_sequence s WHERE s.seqrelid = c.oid), '')
       FROM pg_class c WHERE c.oid = d.objid)
  WHEN 'pg_namespace'::regclass THEN
    (SELECT 'owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, '-')
            || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '-')
       FROM pg_namespace n WHERE n.oid = d.objid)
  WHEN 'pg_event_trigger'::regclass THEN
    (SELECT e.evtevent || ' ' || e.evtfoid::regprocedure || ' enabled=' || e.evtenabled::text || ' tags=' || coalesce(e.evttags::text, '-')
       FROM pg_event_trigger e WHERE e.oid = d.objid)
  ELSE (SELECT array_to_string(a.object_names, '.') || ' ' || array_to_string(a.object_args, ',')
          FROM pg_identify_object_as_address(d.classid, d.objid, 0) a)
  END, '?')
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'eventsource')
 ORDER BY 1};

# what locks does the update take, and does it rewrite anything?  (inside a
# transaction that is rolled back: the next check)
my $files_sql = q{SELECT string_agg(c.relname || '=' || c.relfilenode, ' ' ORDER BY c.relname)
  FROM pg_class c WHERE c.oid = 'eventsource.events'::regclass
     OR c.oid = 'eventsource.events_global_position_key'::regclass};
my $files0 = sql('old', $files_sql);
my $dump10 = schema_dump('old');
my $members10 = sql('old', $members_sql);

# ---------------------------------------------------------------------------
# the update is transactional
# ---------------------------------------------------------------------------
my $locks = sql('old', qq{
BEGIN;
ALTER EXTENSION eventsource UPDATE;
SELECT 'inside: ' || extversion FROM pg_extension WHERE extname = 'eventsource';
SELECT string_agg(l.locktype || ' ' || coalesce(l.relation::regclass::text, l.classid::regclass::text, '') || ' ' || l.mode,
                  E'\n' ORDER BY 1)
  FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.locktype IN ('relation', 'object')
   AND coalesce(l.relation, 0) <> 'pg_locks'::regclass;
ROLLBACK;
});
like($locks, qr/^inside: \Q$default\E$/m, 'inside BEGIN ... the update is done');
note("locks the update holds until it commits:\n$locks");
# issue 15 rebuilds the keys of the log with tenant_id in them: ACCESS
# EXCLUSIVE on eventsource.events for the index builds (README "Upgrading"
# gives the time); appends wait for the update, then go on (below)
like($locks, qr/^relation eventsource\.events AccessExclusiveLock$/m,
	'the update takes ACCESS EXCLUSIVE on eventsource.events (issue 15: its keys are rebuilt)');
is(sql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.0',
	'ROLLBACK: still 1.0');
same_text(schema_dump('old'), $dump10, 'and every 1.0 object is exactly as before (schema dump)');

# an error in the middle of the update (at its first DDL command: a
# statement of the script once it has one), and one at its very end (after
# every statement of the script ran), undo all of it
sql('old', q{
CREATE FUNCTION app.refuse() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'refused by test at %', tg_tag USING ERRCODE = 'P0001'; END $$;
});
for my $when ('', q{WHEN TAG IN ('ALTER EXTENSION')})
{
	sql('old', qq{CREATE EVENT TRIGGER refuse_update ON ddl_command_end $when EXECUTE FUNCTION app.refuse()});
	my $failed = psql_err('old', 'ALTER EXTENSION eventsource UPDATE');
	my ($at) = $failed =~ /P0001: refused by test at ([A-Z ]+)/;
	ok(defined $at, 'an update that fails ' . ($when ? 'at its end' : 'at its first DDL command')
		  . ' (' . ($at // $failed) . ')');
	isnt($at, 'ALTER EXTENSION', '(a command inside the script)') if !$when && $update_ddl;
	sql('old', 'DROP EVENT TRIGGER refuse_update');
	is(sql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.0',
		'leaves 1.0');
	same_text(schema_dump('old'), $dump10, 'with every 1.0 object as it was');
	same_text(sql('old', $members_sql), $members10, 'and the same member objects');
	is(fingerprint('old'), $fp0, 'and the same data');
}
sql('old', 'DROP FUNCTION app.refuse()');

# a dump of the 1.0 store, for the restores below
my $dump_10_file = $node->basedir . '/old_10.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('old'), '-f', $dump_10_file ], 'pg_dump of the 1.0 store');
unlike(slurp_file($dump_10_file), qr/CREATE EXTENSION[^\n]*VERSION/,
	'(the dump records no extension version)');

# ---------------------------------------------------------------------------
# the update, while appends happen and the subscriptions deliver
# ---------------------------------------------------------------------------
my $script = $node->basedir . '/append.sql';
open my $fh, '>', $script or die $!;
print $fh q{\set s random(1, 20)
SELECT eventsource.append_event('Load-' || :s, -1, 'Tick', '{}');
SELECT pg_sleep(0.01);
};
close $fh;
my $ticks = 4 * 400;
my ($pgb_out, $pgb_err) = ('', '');
my $appenders = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-t', '400', '-f', $script, $node->connstr('old') ],
	'>', \$pgb_out, '2>', \$pgb_err);
wait_until('old', q{SELECT count(*) >= 100 FROM eventsource.events WHERE event_type = 'Tick'},
	'appends are under way');
wait_until('old', q{SELECT count(*) >= 50 FROM app.deliveries d JOIN eventsource.events e USING (event_id)
                     WHERE e.event_type = 'Tick'}, 'and being delivered');

my $pids_sql = q{SELECT string_agg(name || '/' || partition || '=' || coalesce(pid::text, '-'), ' ' ORDER BY name, partition)
  FROM eventsource.subscription_status};
my $pids_before = sql('old', $pids_sql);
my $log_offset = -s $node->logfile;
my $at_update = sql('old', q{
ALTER EXTENSION eventsource UPDATE;
SELECT count(*) FROM eventsource.events WHERE event_type = 'Tick';
});
my $head_at_update = sql('old', q{SELECT eventsource.head_position()});
ok($at_update > 0 && $at_update < $ticks,
	"the update committed while appends were running ($at_update of $ticks appended)");
$appenders->finish or die "pgbench failed: $pgb_err";
is(sql('old', q{SELECT count(*) FROM eventsource.events WHERE event_type = 'Tick'}), $ticks,
	'every append succeeded, before, during and after the update');
is(sql('old', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	"extversion is the default version ($default)");

# the workers follow without a restart
for my $p ([ 'counter', 0 ], [ 'counter', 1 ], [ 'picky', 0 ])
{
	$node->wait_for_log(
		qr/eventsource: subscription "$p->[0]" partition $p->[1] now runs with version \Q$default\E of the extension's SQL objects \(was 1\.0\)/,
		$log_offset);
	ok(1, "the worker of $p->[0]/$p->[1] logged the new version");
}
my $head1 = sql('old', 'SELECT eventsource.head_position()');
wait_until('old', qq{SELECT bool_and(checkpoint = $head1) FROM eventsource.subscription_status},
	'every subscription partition caught up after the update');
is(sql('old', q{SELECT count(*) FROM eventsource.subscription_status WHERE pid IS NULL}), '0',
	'every worker is running');
is(sql('old', $pids_sql), $pids_before, 'the same processes as before the update: none restarted');

# exactly once across the update
is(sql('old', q{SELECT count(*) FROM eventsource.events}), sql('old', 'SELECT count(*) FROM app.deliveries'),
	'the counter got every event');
is(sql('old', q{SELECT count(*) FROM app.deliveries WHERE n <> 1}), '0', 'each exactly once');
is(sql('old', q{SELECT count(*) FROM app.deliveries d JOIN eventsource.events e USING (event_id)
                 WHERE d.pos <> e.global_position}), '0', 'at its position');

# the SQL objects: a fresh install of the default version in another database
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
sql('fresh', 'CREATE EXTENSION eventsource');
is(sql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	'a fresh install is the default version');
my $dump_fresh = schema_dump('fresh');
my $dump_old = schema_dump('old');
same_text($dump_old, $dump_fresh, 'every object of the updated extension equals a fresh install (schema dump)');
my $members_fresh = sql('fresh', $members_sql);
same_text(sql('old', $members_sql), $members_fresh,
	'the same member objects, each with the same definition (catalog)');
cmp_ok(scalar(() = $members_fresh =~ /^function /mg), '>=', 30, '(the listing covers the functions)');
is(sql('old', $files_sql), $files0,
	'the update did not rewrite eventsource.events, nor its global_position key (the other keys are rebuilt with tenant_id)');
is(sql('old', qq{SELECT count(*) || ' ' || count(*) FILTER (WHERE tenant_id = 'default')
                 FROM eventsource.events WHERE global_position <= $head0}),
	sql('old', qq{SELECT count(*) || ' ' || count(*) FROM eventsource.events WHERE global_position <= $head0}),
	'every event of 1.0 is the default tenant\'s');
is(sql('old', q{SELECT count(*) FROM eventsource.snapshots WHERE tenant_id <> 'default'}) . ' '
	. sql('old', q{SELECT count(*) FROM eventsource.checkpoints WHERE tenant_id <> 'default'}), '0 0',
	'and every snapshot and checkpoint');

is(sql('old', q{SELECT eventsource.health()->'checks'->>'sql_version'}), 'healthy',
	'health(): the sql_version check is healthy after the update');
is(sql('fresh', q{SELECT eventsource.health()->'checks'->>'sql_version'}), 'healthy',
	'and on a fresh install (the library is built for the default version)');

# the data
my $fp1 = fingerprint('old', $head0);
my ($parts0) = $fp0 =~ /^partitions (.*)$/m;
my ($parts1) = $fp1 =~ /^partitions (.*)$/m;
is($fp1 =~ s/^partitions .*$//mr, $fp0 =~ s/^partitions .*$//mr,
	'every row of 1.0 is still there, unchanged (events, snapshots, checkpoints, subscriptions, dead letters, recent errors)');
is($parts1 =~ s/@\d+/@/gr, $parts0 =~ s/@\d+/@/gr, 'the same subscription partitions, in the same state');
is(sql('old', q{SELECT string_agg(subscription || '/' || partition, ' ') FROM eventsource.subscription_partitions
                 WHERE position <> } . $head1), '', 'each moved on to the new head');
is(sql('old', q{SELECT string_agg(stream_id || ':' || stream_version, ' ' ORDER BY stream_id)
                 FROM (SELECT stream_id, max(stream_version) AS stream_version
                         FROM eventsource.events WHERE stream_id NOT LIKE 'Load-%' GROUP BY 1) s}),
	$versions0, 'stream versions as before');
is(sql('old', q{SELECT eventsource.load('Order-1')::text || ' ' || eventsource.load('Order-2')::text}), $load0,
	'load() gives the same aggregates');
is(sql('old', q{SELECT string_agg(stream_id || ' ' || schema_version || ' ' || stream_version || ' ' || state::text,
                                  E'\n' ORDER BY 1) FROM eventsource.snapshots}), $snap0, 'snapshot contents as before');
is(sql('old', q{SELECT eventsource.get_checkpoint('manual') || ' ' || eventsource.get_checkpoint('scratch')}),
	$cps0, 'checkpoints as before');

# appends continue above the old positions, streams at their next version
my $after = sql('old', q{SELECT (SELECT max(global_position) FROM eventsource.events WHERE event_type = 'Tick'
                                  AND global_position <= } . $head_at_update . q{) || ' '
       || (SELECT min(global_position) FROM eventsource.events WHERE event_type = 'Tick'
                                  AND global_position > } . $head_at_update . q{)});
my ($before_max, $after_min) = split / /, $after;
ok(defined $after_min && $after_min > $head0, "appends went on after the update, above the old positions ($after_min > $head0)");
is(sql('old', q{SELECT stream_version || ' ' || (first_position > } . $head1
	  . q{) FROM eventsource.append_event('Order-1', 2, 'OrderDelivered', '{}')}),
	'3 true', 'an old stream continues at its next version, above the head');
like(psql_err('old', q{SELECT eventsource.append_event('Order-2', 1, 'X', '{}')}),
	qr/ES001: wrong expected version for stream "Order-2"/, 'expected versions are checked against the old events');
sql('old', q{SELECT eventsource.create_tenant('acme')});
is(sql('old', q{SET eventsource.tenant = 'acme';
                SELECT stream_version FROM eventsource.append_event('Order-1', 0, 'OrderCreated', '{}')}), '1',
	'a new tenant: the same stream id starts at version 1 there');
is(sql('old', q{SELECT eventsource.stream_version('Order-1')}), '3', 'and the default tenant\'s is unchanged');
is(sql('old', q{SELECT string_agg(name || ':' || coalesce(tenant, 'cross-tenant'), ' ' ORDER BY name) FROM eventsource.subscriptions}),
	'counter:cross-tenant picky:cross-tenant', 'every subscription of 1.0 is cross-tenant');
is(sql('old', q{SELECT count(*) FROM eventsource.subscription_status WHERE tenant IS NULL AND state <> 'failed'}),
	sql('old', q{SELECT count(*) FROM eventsource.subscription_status}),
	'and the status says so, with none of them failed (their owners may read every tenant)');
my $head2 = sql('old', 'SELECT eventsource.head_position()');
wait_until('old', qq{SELECT bool_and(checkpoint = $head2) FROM eventsource.subscription_status},
	'and the new event is delivered');
is(sql('old', q{SELECT n FROM app.deliveries d JOIN eventsource.events e USING (event_id)
                 WHERE e.stream_id = 'Order-1' AND e.stream_version = 3}), '1', 'once');
is(sql('old', q{SELECT n FROM app.deliveries d JOIN eventsource.events e USING (event_id)
                 WHERE e.tenant_id = 'acme' AND e.stream_id = 'Order-1'}), '1',
	'the cross-tenant counter delivered the new tenant\'s event too, once');
is(sql('old', q{SELECT string_agg(DISTINCT tenant_id, ',') FROM eventsource.dead_letters}), 'default',
	'the dead letters of 1.0 are the default tenant\'s');

# the dead letter from 1.0 can be retried on the new version
is(sql('old', q{SELECT eventsource.retry_dead_letters('picky')}), '1', 'retry_dead_letters() after the update');
wait_until('old', q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE retry_count = 2
                      AND NOT retry_requested},
	'it is handled (and parked again: the handler still refuses it)');

# the dead letters and errors of 1.0 (and those its subscriptions write
# now: every one of them is cross-tenant) are a cross-tenant subscription's:
# a role bound to the default tenant does not see them, a role bound to no
# tenant does, as on 1.0
is(sql('old', q{SELECT count(*) FILTER (WHERE subscription_tenant IS NOT NULL) FROM eventsource.dead_letters})
	  . ' ' . sql('old', q{SELECT count(*) FILTER (WHERE subscription_tenant IS NOT NULL) FROM eventsource.recent_errors}),
	'0 0', 'no dead letter nor error of a 1.0 subscription names a subscription tenant');
sql('old', q{
CREATE ROLE default_app;
SELECT eventsource.bind_role_to_tenant('default_app', 'default');
CREATE ROLE old_monitor;
GRANT SELECT ON eventsource.dead_letters, eventsource.recent_errors TO default_app, old_monitor;
});
is(sql('old', q{SET ROLE default_app; SELECT (SELECT count(*) FROM eventsource.dead_letters)
                                           + (SELECT count(*) FROM eventsource.recent_errors)}),
	'0', 'a role bound to the default tenant sees none of them');
is(sql('old', q{SET ROLE old_monitor; SELECT (SELECT count(*) FROM eventsource.dead_letters) || ' '
                                           || ((SELECT count(*) FROM eventsource.recent_errors) > 0)}),
	'1 true', 'a role bound to no tenant sees them all');

# ---------------------------------------------------------------------------
# the library's version cache
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE cache');
sql('cache', q{
CREATE EXTENSION eventsource VERSION '1.0';
-- a C path of the new library that needs the new SQL objects
CREATE FUNCTION public.require_sql_version(text, text) RETURNS void
  LANGUAGE c STRICT AS '$libdir/eventsource', 'es_require_sql_version_sql';
});
my $err = psql_err('cache', qq{SELECT public.require_sql_version('$default', 'a $default path')});
like($err, qr/ERROR:  55000: a \Q$default\E path needs the eventsource \Q$default\E SQL objects/,
	'a path that needs newer SQL objects refuses on 1.0 with 55000');
like($err, qr/DETAIL:  This database has version 1\.0 of the extension's SQL objects; the library is version \Q$default\E\./,
	'naming both versions');
like($err, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE\./, 'with the hint to update');
like(psql_err('cache', q{SELECT public.require_sql_version('one', 'x')}), qr/22023: invalid eventsource version "one"/,
	'a bad version literal is 22023');
is(sql('cache', q{SELECT public.require_sql_version('1.0', 'a 1.0 path')}), '', 'a 1.0 path goes on');

# our own transaction: seen by the next command, forgotten with its savepoint
my $own = sql('cache', qq{
BEGIN;
SELECT public.require_sql_version('1.0', 'x');
SAVEPOINT s;
ALTER EXTENSION eventsource UPDATE;
SELECT public.require_sql_version('$default', 'x');
SELECT 'updated in this transaction: ok';
ROLLBACK TO s;
SELECT eventsource.health()->'checks'->>'sql_version' LIKE 'unhealthy: the SQL objects are version 1.0%';
ROLLBACK;
});
like($own, qr/updated in this transaction: ok\nt$/,
	'an update in our own transaction is seen at once, and forgotten when its savepoint rolls back');

# which version a statement sees, through the library's cache only: no
# table of the store is read, so the session holds no lock the update's
# DDL (ACCESS EXCLUSIVE on eventsource.subscriptions, issue 9's CHECKs)
# would wait for
my $probe_sql = qq{
CREATE FUNCTION public.sees_version() RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM public.require_sql_version('$default', 'probe');
  RETURN 'new';
EXCEPTION WHEN object_not_in_prerequisite_state THEN
  RETURN 'old';
END \$\$;
};
sql('cache', $probe_sql);

# another session's update: seen by the next statement of a running transaction
my $session = $node->background_psql('cache');
$session->query_safe(q{BEGIN});
is($session->query_safe(q{SELECT public.sees_version()}), 'old', 'a transaction sees 1.0');
sql('cache', 'ALTER EXTENSION eventsource UPDATE');
is($session->query_safe(q{SELECT public.sees_version()}), 'new',
	'and its next statement sees the update another session committed');
is($session->query_safe(q{SELECT eventsource.health()->'checks'->>'sql_version'}), 'healthy',
	'(health() too)');
like($session->query_safe(qq{SELECT public.require_sql_version('$default', 'x'); SELECT 'ok'}), qr/^ok$/m,
	'so a path that needs it goes on');
$session->query_safe(q{COMMIT});
$session->quit;

like(psql_err('cache', q{CREATE FUNCTION public.require_sql_version_lax(text, text) RETURNS void
  LANGUAGE c AS '$libdir/eventsource', 'es_require_sql_version_sql';
SELECT public.require_sql_version_lax(NULL, 'x')}), qr/ERROR:  22004: /,
	'declared without STRICT, a NULL argument is refused with 22004 (not a crash)');

# REPEATABLE READ: the version is the one the transaction's snapshot sees,
# like its data; another session's update is seen by the next transaction
$node->safe_psql('postgres', 'CREATE DATABASE cache_rr');
sql('cache_rr', q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE FUNCTION public.require_sql_version(text, text) RETURNS void
  LANGUAGE c STRICT AS '$libdir/eventsource', 'es_require_sql_version_sql';
});
sql('cache_rr', $probe_sql);
$session = $node->background_psql('cache_rr');
$session->query_safe(q{BEGIN ISOLATION LEVEL REPEATABLE READ});
is($session->query_safe(q{SELECT public.sees_version()}), 'old',
	'REPEATABLE READ: a transaction sees 1.0');
sql('cache_rr', 'ALTER EXTENSION eventsource UPDATE');
is($session->query_safe(q{SELECT public.sees_version()}), 'old',
	'and still 1.0 after another session committed the update: its snapshot does not see the update');
like($session->query_safe(q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), qr/^1\.0$/,
	'(as its own queries on the catalog do)');
$session->query_safe(q{COMMIT});
is($session->query_safe(q{SELECT eventsource.health()->'checks'->>'sql_version'}), 'healthy',
	'the next transaction sees the update');
$session->quit;

# Inside the extension's own script PostgreSQL has already written the new
# extversion, but the objects are still being made: the library reports the
# version it is updating from (none for CREATE EXTENSION) and refuses paths
# that need more.  An event trigger runs at the end of every DDL command of
# the script; the C probe is declared outside the extension.
$node->safe_psql('postgres', 'CREATE DATABASE in_script');
sql('in_script', q{
CREATE FUNCTION public.require_sql_version(text, text) RETURNS void
  LANGUAGE c STRICT AS '$libdir/eventsource', 'es_require_sql_version_sql';
CREATE TABLE public.probes (n serial, tag text, in_script boolean, outcome text);
CREATE FUNCTION public.probe() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE
  msg text;
BEGIN
  BEGIN
    PERFORM public.require_sql_version('1.0', 'the probe');
    msg := 'ok';
  EXCEPTION WHEN object_not_in_prerequisite_state THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT;
  END;
  INSERT INTO public.probes (tag, in_script, outcome) VALUES (tg_tag, tg_tag NOT LIKE '% EXTENSION', msg);
END $$;
CREATE EVENT TRIGGER probe ON ddl_command_end EXECUTE FUNCTION public.probe();
CREATE EXTENSION eventsource VERSION '1.0';
});
cmp_ok(sql('in_script', q{SELECT count(*) FROM public.probes WHERE in_script}), '>', 10,
	'CREATE EXTENSION: the probe ran inside the 1.0 script');
is(sql('in_script', q{SELECT string_agg(DISTINCT outcome, ' | ') FROM public.probes WHERE in_script}),
	'the probe needs the eventsource 1.0 SQL objects, which are still being created',
	'and every call there was refused: the 1.0 objects were not all there yet');
is(sql('in_script', q{SELECT outcome FROM public.probes WHERE tag = 'CREATE EXTENSION'}), 'ok',
	'at the end of CREATE EXTENSION (after the script) it goes on');
sql('in_script', q{CREATE OR REPLACE FUNCTION public.probe() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.probes (tag, in_script, outcome)
  VALUES (tg_tag, tg_tag NOT LIKE '% EXTENSION', eventsource.health()->'checks'->>'sql_version');
END $$;
TRUNCATE public.probes;
ALTER EXTENSION eventsource UPDATE;
DROP EVENT TRIGGER probe;
});
cmp_ok(sql('in_script', q{SELECT count(*) FROM public.probes WHERE in_script}), '>', 0,
	'ALTER EXTENSION UPDATE: the probe ran inside the script') if $update_ddl;
is(sql('in_script', q{SELECT count(*) FROM public.probes WHERE in_script AND outcome NOT LIKE 'unhealthy: the SQL objects are version 1.0,%'}),
	'0', 'ALTER EXTENSION UPDATE: inside the script health() says the objects are still 1.0 ('
	  . sql('in_script', q{SELECT count(*) FROM public.probes WHERE in_script}) . ' DDL commands in the script)');
is(sql('in_script', q{SELECT outcome FROM public.probes WHERE tag = 'ALTER EXTENSION'}), 'healthy',
	'at the end of the update (uncommitted, the script done) they are the new version');

# an extversion the library cannot read is not taken for its own version
sql('in_script', q{UPDATE pg_catalog.pg_extension SET extversion = '2.0.1' WHERE extname = 'eventsource'});
is(sql('in_script', q{SELECT eventsource.health()->'checks'->>'sql_version'}),
	qq{unhealthy: the SQL objects are version 2.0.1, newer than the library ($default): install the eventsource 2.0.1 library (degraded)},
	'an extversion the library cannot read ("2.0.1") is newer than the library');
sql('in_script', qq{UPDATE pg_catalog.pg_extension SET extversion = '$default' WHERE extname = 'eventsource'});

# ---------------------------------------------------------------------------
# a worker whose reload after the update fails keeps what it had
# ---------------------------------------------------------------------------
# Its definition cannot be read again (a lock timeout here; a dropped
# handler or a cancel would do the same): the batch fails and is retried,
# and meanwhile the worker still has the row type of eventsource.events it
# builds dead letters into.  (A worker that threw it away before reloading
# crashed the server at its next dead-letter retry.)
$node->safe_psql('postgres', 'CREATE DATABASE reload');
sql('reload', q{
CREATE EXTENSION eventsource VERSION '1.0';
ALTER DATABASE reload SET lock_timeout = '300ms';
CREATE FUNCTION public.picky(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_id LIKE 'Bad-%' THEN
    RAISE EXCEPTION 'bad event in %', e.stream_id USING ERRCODE = 'P0001';
  END IF;
END $$;
SELECT eventsource.create_subscription('picky', 'public.picky(eventsource.events)',
  max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 0);
SELECT eventsource.append_event('Bad-1', 0, 'OrderCreated', '{}');
});
wait_until('reload', q{SELECT count(*) = 1 FROM eventsource.dead_letters}, 'reload: a dead letter on 1.0');
# the worker is idle on its latch, no batch in flight: a batch still running
# (the one after the dead letter) would wait for the update's locks and
# follow the new version before the lock below is taken
wait_until('reload', q{SELECT wait_event_type = 'Extension' AND xact_start IS NULL FROM pg_stat_activity
                        WHERE application_name = 'eventsource picky/0' AND datname = current_database()},
	'reload: the worker is idle');
my $reload_pid = sql('reload', q{SELECT pid FROM eventsource.subscription_status});
my $reload_offset = -s $node->logfile;
# The update itself alters eventsource.subscriptions (issue 9's CHECKs), so
# the lock is taken after it commits and before the idle worker's next
# batch, which the append then starts (the worker wakes otherwise only after
# its 10 s idle timeout).  The update and the lock go in one message of one
# session (psql's \; joins them into one Query), so that the window between
# the two transactions is microseconds, not a psql start: with two sessions
# the worker sometimes reloaded in between and the test timed out.
my $locker = $node->background_psql('reload');
$locker->query_safe(q{SET lock_timeout = '60s' \; BEGIN \; ALTER EXTENSION eventsource UPDATE \; COMMIT \; BEGIN \; LOCK TABLE eventsource.subscriptions});
# An idle worker can also wake without an append: a catch-up signal when the
# update's many invalidation messages fill the queue sets its latch (seen
# under load).  If it followed the update before the lock was granted (then
# the lock waited for its batch, which logged it), there is no failed
# reload to see this time; the rest holds either way.
my $followed_early = slurp_file($node->logfile, $reload_offset) =~
  /subscription "picky" partition 0 now runs with version/;
sql('reload', q{SELECT eventsource.append_event('Good-1', 0, 'OrderCreated', '{}')});
SKIP:
{
	skip 'the worker woke and followed the update before the lock was taken', 1 if $followed_early;
	$node->wait_for_log(qr/ERROR:  canceling statement due to lock timeout/, $reload_offset);
	ok(1, 'the worker could not read its subscription again after the update (lock timeout)');
}
$locker->query_safe(q{COMMIT});
$locker->quit;
is(sql('reload', q{SELECT eventsource.retry_dead_letters('picky')}), '1', 'a dead-letter retry is asked for');
wait_until('reload', q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE retry_count = 1 AND NOT retry_requested},
	'the worker retried it');
unlike(slurp_file($node->logfile, $reload_offset), qr/terminated by signal/, 'no process crashed');
is(sql('reload', q{SELECT pid FROM eventsource.subscription_status}), $reload_pid, 'the same worker goes on');
$node->wait_for_log(qr/subscription "picky" partition 0 now runs with version \Q$default\E/, $reload_offset);
ok(1, 'and it follows the update once the lock is gone');

# ---------------------------------------------------------------------------
# every_event commits after each event: an update that commits in between
# ends the batch, and the rest is read again with the new version
# ---------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE every');
sql('every', q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE FUNCTION public.slow(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE LOG 'every: delivering %', e.stream_version;
  IF e.stream_version = 1 THEN
    PERFORM pg_catalog.pg_advisory_xact_lock(4242);
  END IF;
END $$;
});
like(sql('every', q{SELECT eventsource.create_subscription('every', 'public.slow(eventsource.events)',
  checkpoint_strategy => 'every_event', batch_size => 10)}), qr//, 'an every_event subscription on 1.0');
wait_until('every', q{SELECT state = 'live' FROM eventsource.subscription_status}, 'its worker is live');
my $holder = $node->background_psql('every');
$holder->query_safe(q{SELECT pg_advisory_lock(4242)});
my $every_offset = -s $node->logfile;
sql('every', q{SELECT eventsource.append('S-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]')});
wait_until('every', q{SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted},
	'the handler waits at the first event of the batch');
# the update waits for the batch in flight: since issue 15 it takes ACCESS
# EXCLUSIVE on eventsource.events (its keys), which the worker's
# transaction holds ACCESS SHARE on; it runs in the background meanwhile
my $updater = $node->background_psql('every');
$updater->query_until(qr/updating/, q{\echo updating
ALTER EXTENSION eventsource UPDATE;
});
wait_until('every', q{SELECT count(*) = 1 FROM pg_locks WHERE relation = 'eventsource.events'::regclass
                       AND mode = 'AccessExclusiveLock' AND NOT granted},
	'the update waits for the transaction of the event in flight');
$holder->query_safe(q{SELECT pg_advisory_unlock(4242)});
$holder->quit;
$updater->quit;
is(sql('every', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	'the update committed once that event was done');
$node->wait_for_log(qr/every: delivering 3/, $every_offset);
my @order = grep { /every: delivering|subscription "every" partition 0 now runs with version/ }
  split /\n/, slurp_file($node->logfile, $every_offset);
is(join(' | ', map { /delivering (\d)/ ? $1 : 'follow' } @order), '1 | follow | 2 | 3',
	'the worker followed the update right after the event it was delivering, before the rest of the batch');

# ---------------------------------------------------------------------------
# lock order: eventsource.events, then a subscription's partition row
# ---------------------------------------------------------------------------
# An update script that alters eventsource.events and then migrates the
# subscriptions' rows takes the locks in the workers' order: the worker
# waiting for the table holds no row lock, so neither waits for the other.
$node->safe_psql('postgres', 'CREATE DATABASE locks');
sql('locks', q{
CREATE EXTENSION eventsource;
CREATE FUNCTION public.noop(e eventsource.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT eventsource.create_subscription('noop', 'public.noop(eventsource.events)');
});
wait_until('locks', q{SELECT state = 'live' FROM eventsource.subscription_status}, 'locks: the worker is live');
my $wpid = sql('locks', q{SELECT pid FROM eventsource.subscription_status});
my $ddl = $node->background_psql('locks', on_error_stop => 0);
$ddl->query_safe(q{BEGIN; LOCK TABLE eventsource.events IN ACCESS EXCLUSIVE MODE});
wait_until('locks', qq{SELECT count(*) = 1 FROM pg_locks WHERE pid = $wpid AND NOT granted
                        AND relation = 'eventsource.events'::regclass},
	'the worker waits for eventsource.events at its next batch');
my $out = $ddl->query(q{UPDATE eventsource.subscription_partitions SET position = position WHERE subscription = 'noop'; SELECT 'updated'});
like($out, qr/updated/, 'a transaction that locked eventsource.events can then lock the partition row (no deadlock)');
$ddl->query_safe(q{COMMIT});
$ddl->quit;
unlike(slurp_file($node->logfile), qr/deadlock detected/, 'no deadlock');
is(sql('locks', q{SELECT pid FROM eventsource.subscription_status}), $wpid, 'the worker goes on');

# ---------------------------------------------------------------------------
# a column added to eventsource.events: dead letters are retried by name
# ---------------------------------------------------------------------------
# An update that adds a column to events (as the tenancy release will) and
# none to dead_letters: a retried dead letter reaches the handler as an
# events row with that column null, every other column in its place.
$node->safe_psql('postgres', 'CREATE DATABASE newcol');
sql('newcol', q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE TABLE public.refuse (yes boolean);
INSERT INTO public.refuse VALUES (true);
CREATE TABLE public.seen (pos bigint, stream_id text, row_text text);
CREATE FUNCTION public.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM public.refuse) THEN
    RAISE EXCEPTION 'refused' USING ERRCODE = 'P0001';
  END IF;
  INSERT INTO public.seen VALUES (e.global_position, e.stream_id, e::text);
END $$;
SELECT eventsource.create_subscription('newcol', 'public.h(eventsource.events)',
  max_retries => 0, retry_backoff => '10ms', circuit_breaker_threshold => 0);
SELECT eventsource.append_event('Order-7', 0, 'OrderCreated', '{"total": 7}', '{"m": 1}');
});
wait_until('newcol', q{SELECT count(*) = 1 FROM eventsource.dead_letters}, 'newcol: a dead letter on 1.0');
my $newcol_offset = -s $node->logfile;
sql('newcol', q{
BEGIN;
ALTER EXTENSION eventsource UPDATE;
ALTER TABLE eventsource.events ADD COLUMN tenant text;
COMMIT;
DELETE FROM public.refuse;
});
sql('newcol', q{SELECT eventsource.append_event('Order-8', 0, 'OrderCreated', '{}')});
wait_until('newcol', q{SELECT count(*) = 1 FROM public.seen}, 'the worker delivers with the new row type');
is(sql('newcol', q{SELECT eventsource.retry_dead_letters('newcol')}), '1', 'the dead letter is retried');
wait_until('newcol', q{SELECT count(*) = 0 FROM eventsource.dead_letters}, 'and delivered');
is(sql('newcol', q{SELECT (s.row_text = (SELECT e::text FROM eventsource.events e WHERE e.global_position = s.pos))::text
                     || ' ' || (s.row_text LIKE '%,)')::text FROM public.seen s WHERE s.stream_id = 'Order-7'}),
	'true true', 'as the events row it was, every column in its place, the new column null');
unlike(slurp_file($node->logfile, $newcol_offset), qr/terminated by signal/, 'no process crashed');

# ---------------------------------------------------------------------------
# dumps
# ---------------------------------------------------------------------------
sub restore
{
	my ($file, $db, $pre) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	sql($db, $pre) if $pre;
	command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', $file ],
		"restore into $db");
}

my $head_10 = $head0;

# a 1.0 dump into a server with the new library: the default version
restore($dump_10_file, 'r10_default');
is(sql('r10_default', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	'a 1.0 dump restores into the default version');
is(fingerprint('r10_default'), $fp0, 'with every row of the 1.0 store');
is(sql('r10_default', 'SELECT eventsource.head_position()'), $head_10, 'and its head');

# ... or into a database that keeps 1.0, updated afterwards
restore($dump_10_file, 'r10_kept', q{CREATE EXTENSION eventsource VERSION '1.0'});
is(sql('r10_kept', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.0',
	'a 1.0 dump restores into a 1.0 extension created beforehand');
is(fingerprint('r10_kept'), $fp0, 'with every row');
sql('r10_kept', 'ALTER EXTENSION eventsource UPDATE');
is(sql('r10_kept', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	'which then updates');
is(fingerprint('r10_kept'), $fp0, 'keeping every row');
same_text(schema_dump('r10_kept'), $dump_fresh, 'to the objects of a fresh install');
is(sql('r10_kept', q{SELECT (first_position > } . $head_10
	  . q{) || ' ' || stream_version FROM eventsource.append_event('Order-2', 2, 'OrderPaid', '{}')}),
	'true 3', 'and appends continue above the old positions');

# a dump of the updated store: into the default version
my $dump_11_file = $node->basedir . '/old_new.sql';
my $fp_new = fingerprint('old');
command_ok([ 'pg_dump', '-d', $node->connstr('old'), '-f', $dump_11_file ], 'pg_dump of the updated store');
restore($dump_11_file, 'r_new');
is(sql('r_new', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), $default,
	'a dump of the updated store restores into the default version');
is(fingerprint('r_new') =~ s/^partitions .*$//mr, $fp_new =~ s/^partitions .*$//mr, 'with every row');
is(sql('r_new', 'SELECT eventsource.head_position()'), sql('old', 'SELECT eventsource.head_position()'),
	'and its head');
my $tenants_sql = q{SELECT (SELECT string_agg(tenant_id, ',' ORDER BY tenant_id) FROM eventsource.tenants) || ' '
                          || (SELECT string_agg(tenant_id || '=' || n, ',' ORDER BY tenant_id)
                                FROM (SELECT tenant_id, count(*) AS n FROM eventsource.events GROUP BY 1) t)};
is(sql('r_new', $tenants_sql), sql('old', $tenants_sql), 'with its tenants, and each event in its tenant');
is(sql('r_new', q{SET eventsource.tenant = 'acme'; SELECT eventsource.stream_version('Order-1')}), '1',
	'(acme\'s Order-1 is acme\'s)');

$node->stop;
done_testing();
