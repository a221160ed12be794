# eventsource.tenant_stats is a bounded table in shared memory keyed by
# (database, tenant), sized by eventsource.max_tenant_stats: with room for
# two rows, what does not fit is counted in its database's '(other)' row;
# stat_reset() gives a database's rows back, and so does DROP DATABASE
# (noticed when the table is full); a backend that counts into '(other)'
# gets a row of its own once room is freed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('tenant_stats', qq{
eventsource.max_tenant_stats = 2
});

is($node->safe_psql('postgres', 'SHOW eventsource.max_tenant_stats'), '2',
	'the table holds two rows');

for my $db (qw(db1 db2 db3))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION eventsource');
}

sub append
{
	my ($db, $stream) = @_;
	$node->safe_psql($db,
		"SELECT eventsource.append_event('$stream', -1, 'A', '{}')");
}

sub rows
{
	my ($db) = @_;
	return $node->safe_psql($db,
		q{SELECT string_agg(tenant_id || '=' || appends || '/' || streams_created, ' '
		   ORDER BY tenant_id) FROM eventsource.tenant_stats});
}

append('db1', 'A-1');
append('db2', 'A-1');
append('db3', 'A-1');
append('db3', 'A-2');
is(rows('db1'), 'default=1/1', 'db1 has a row of its own');
is(rows('db2'), 'default=1/1', 'db2 has a row of its own');
is(rows('db3'), '(other)=2/2', 'db3 does not fit: its counts go to (other)');
is($node->safe_psql('db3', 'SELECT appends FROM eventsource.store_stats'), '2',
	'store_stats counts them as always');

# a long-lived backend of db3 keeps counting into (other) ...
my $bg = $node->background_psql('db3');
$bg->query_safe(q{SELECT eventsource.append_event('B-1', -1, 'A', '{}')});
is(rows('db3'), '(other)=3/3', 'a long-lived backend counts into (other) too');

# ... until stat_reset() in db1 frees db1's row
$node->safe_psql('db1', 'SELECT eventsource.stat_reset()');
is(rows('db1'), '', "stat_reset() frees db1's rows");
$bg->query_safe(q{SELECT eventsource.append_event('B-1', -1, 'A', '{}')});
is(rows('db3'), '(other)=3/3 default=1/0',
	'the same backend takes the freed row at its next count');
append('db1', 'A-1');
is(rows('db1'), '(other)=1/0', 'db1 now finds the table full');

# DROP DATABASE: its rows are reclaimed when the table is full
$node->safe_psql('postgres', 'DROP DATABASE db2');
append('db1', 'A-1');
is(rows('db1'), '(other)=1/0 default=1/0',
	"a full table gives a dropped database's row to the next tenant");
$bg->quit;

# the rows are copied from shared memory: the log is never read
my $scans = q{SELECT seq_scan + coalesce(idx_scan, 0) FROM pg_stat_user_tables
	WHERE relid = 'eventsource.events'::regclass};
my $before = $node->safe_psql('db3', "SELECT pg_stat_force_next_flush(); $scans");
$node->safe_psql('db3', 'SELECT count(*) FROM eventsource.tenant_stats');
is($node->safe_psql('db3', "SELECT pg_stat_force_next_flush(); $scans"), $before,
	'tenant_stats does not scan eventsource.events');

# A database still on the 1.0 SQL objects: its appends are counted (under
# the default tenant, the only one 1.0 has); the rows function, which only
# 1.1 declares, refuses with 55000 and the hint to update when declared by
# hand, and answers after the update.
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{CREATE EXTENSION eventsource VERSION '1.0';
CREATE FUNCTION public.tenant_stats_c(
    OUT tenant_id text, OUT appends bigint, OUT events_appended bigint,
    OUT streams_created bigint, OUT expected_version_conflicts bigint,
    OUT idempotent_retries bigint, OUT duplicate_event_ids bigint,
    OUT stream_reads bigint, OUT global_reads bigint, OUT events_read bigint,
    OUT stats_reset timestamptz)
    RETURNS SETOF record LANGUAGE c AS '$libdir/eventsource', 'es_tenant_stats_rows';});
$node->safe_psql('db1', 'SELECT eventsource.stat_reset()');
append('old', 'Old-1');
my ($rc, $out, $err) = $node->psql('old', 'SELECT * FROM public.tenant_stats_c()',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: eventsource\.tenant_stats needs the eventsource 1\.1 SQL objects/,
	'1.0 database: tenant_stats_rows() refuses with 55000');
like($err, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE\./, '... with the hint to update');
$node->safe_psql('old', 'ALTER EXTENSION eventsource UPDATE');
is(rows('old'), 'default=1/1', 'after UPDATE: the view shows what 1.0 counted');

# Tenants of one database: with the table emptied, two tenants get rows and
# the third counts into (other), which only the owner sees.
for my $db (qw(db1 db3 old))
{
	$node->safe_psql($db, 'SELECT eventsource.stat_reset()');
}
$node->safe_psql('postgres', 'CREATE DATABASE tdb');
$node->safe_psql('tdb', q{CREATE EXTENSION eventsource;
	SELECT eventsource.create_tenant('t' || i) FROM generate_series(1, 3) i;
	CREATE ROLE app LOGIN;
	GRANT SELECT ON eventsource.tenant_stats TO app;
	GRANT EXECUTE ON FUNCTION eventsource.tenant_stats_rows(),
		eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid) TO app;});
for my $t (qw(t1 t2 t3 t3))
{
	$node->safe_psql('tdb', qq{BEGIN; SET LOCAL eventsource.tenant = '$t';
		SELECT eventsource.append_event('S-1', -1, 'A', '{}'); COMMIT;});
}
is(rows('tdb'), '(other)=2/1 t1=1/1 t2=1/1', 'a third tenant counts into (other)');
is($node->safe_psql('tdb', q{SELECT sum(appends) FROM eventsource.tenant_stats}),
	$node->safe_psql('tdb', q{SELECT appends FROM eventsource.store_stats}),
	'the rows, (other) included, add up to store_stats');
my $as_app = sub {
	my ($t) = @_;
	return $node->safe_psql('tdb', qq{SET ROLE app; SET eventsource.tenant = '$t';
		SELECT coalesce(string_agg(tenant_id || '=' || appends, ' '), '') FROM eventsource.tenant_stats});
};
is($as_app->('t1'), 't1=1', 'a role that is not the owner sees its tenant\'s row');
is($as_app->('t3'), '', 'and nothing when its tenant is folded into (other)');

$node->stop;
done_testing();
