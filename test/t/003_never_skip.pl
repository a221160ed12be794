# The core promise: a reader that follows read_all() and remembers the last
# position it saw never misses an event, however commits interleave.
# Writers hold their positions open for random times, so commits come out of
# position order all the time; a naive reader of the table (no horizon), run
# alongside, shows that the interleavings really happen.
#
# Also: a transaction in another database, appending or not, never holds the
# horizon of this one back; many concurrent "any" appends keep streams dense.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use IPC::Run;

my $node = es_node('never_skip', qq{
max_connections = 40
});
$node->safe_psql('postgres', q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (reader text, pos bigint, PRIMARY KEY (reader, pos));
-- follows the log in its own transactions, like a subscriber would
CREATE PROCEDURE follow(reader text, seconds float8, naive boolean)
LANGUAGE plpgsql AS $$
DECLARE
  after bigint := 0;
  stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
  n bigint;
BEGIN
  WHILE clock_timestamp() < stop LOOP
    IF naive THEN
      INSERT INTO seen SELECT reader, global_position FROM eventsource.events
       WHERE global_position > after ORDER BY global_position LIMIT 100;
    ELSE
      INSERT INTO seen SELECT reader, global_position FROM eventsource.read_all(after, 100);
    END IF;
    SELECT max(pos) INTO n FROM seen s WHERE s.reader = follow.reader;
    after := coalesce(n, 0);
    COMMIT;
  END LOOP;
END $$;
});

my $script = $node->basedir . '/writer.sql';
open my $fh, '>', $script or die;
print $fh <<'SQL';
\set s random(1, 20)
\set d random(0, 15)
BEGIN;
SELECT eventsource.append_event('Order-' || :s, -1, 'Tick', '{}');
SELECT pg_sleep(:d / 1000.0);
COMMIT;
SQL
close $fh;

my ($out, $err) = ('', '');
my $writers = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '8', '-j', '2', '-T', '6',
		'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
	],
	'>', \$out, '2>', \$err);
my $readers = IPC::Run::start(
	[
		'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
		'-c', "CALL follow('horizon', 7, false)"
	],
	'>', \my $rout, '2>', \my $rerr);
my $naive = IPC::Run::start(
	[
		'psql', '-X', '-h', $node->host, '-p', $node->port, '-d', 'postgres',
		'-c', "CALL follow('naive', 7, true)"
	],
	'>', \my $nout, '2>', \my $nerr);
$writers->finish or die "pgbench failed: $err";
$readers->finish or die "reader failed: $rerr";
$naive->finish or die "naive reader failed: $nerr";

my $total = $node->safe_psql('postgres', 'SELECT count(*) FROM eventsource.events');
cmp_ok($total, '>', 500, "writers appended $total events");

# the horizon reader saw every event; a missing one was skipped for good
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM eventsource.events e
	 WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE s.reader = 'horizon' AND s.pos = e.global_position)}),
	'0', 'the read_all() reader skipped nothing');

# the naive reader, run alongside, did skip: the interleavings were real
my $skipped = $node->safe_psql('postgres', q{
	SELECT count(*) FROM eventsource.events e
	 WHERE e.global_position <= (SELECT max(pos) FROM seen WHERE reader = 'naive')
	   AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.reader = 'naive' AND s.pos = e.global_position)});
cmp_ok($skipped, '>', 0, "a naive reader of the table skipped $skipped events in the same run");

# many concurrent "any" appends: every stream dense
is( $node->safe_psql('postgres', q{
	SELECT count(*) FROM (
	  SELECT stream_id FROM eventsource.events GROUP BY stream_id
	  HAVING max(stream_version) <> count(*) OR min(stream_version) <> 1) s}),
	'0', 'concurrent appends kept every stream dense');

# another database: an open transaction there, appending or not, never holds
# this database's horizon back
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION eventsource; CREATE TABLE t (x int)');
my $other = $node->background_psql('other');
$other->query_safe(q{BEGIN; INSERT INTO t VALUES (1);
	SELECT eventsource.append_event('Other-1', 0, 'A', '{}');});
my $pos = $node->safe_psql('postgres',
	"SELECT first_position FROM eventsource.append_event('Here-1', 0, 'A', '{}')");
is($node->safe_psql('postgres', 'SELECT eventsource.head_position()'), $pos,
	'an open appending transaction in another database does not hold the horizon');
is($node->safe_psql('other', 'SELECT eventsource.head_position()'), '0',
	'while its own database waits for it');
$other->query_safe('COMMIT');
is($node->safe_psql('other', 'SELECT eventsource.head_position()'), '1',
	'and moves on when it commits');
$other->quit;

$node->stop;
done_testing();
