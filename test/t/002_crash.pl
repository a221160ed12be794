# Crashes: kill -9 of an appending backend and of the postmaster during
# concurrent appends.  After the restart no position that was committed or
# that the horizon had passed is handed out again, streams stay dense, and
# the horizon covers every committed event.  An aborted append followed by a
# crash shows that its positions were made durable before the horizon
# passed them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use IPC::Run;
use Time::HiRes qw(usleep);

my $node = es_node('crash', qq{
restart_after_crash = on
max_connections = 40
});
$node->safe_psql('postgres', 'CREATE EXTENSION eventsource');

my $script = $node->basedir . '/append.sql';
open my $fh, '>', $script or die;
print $fh <<'SQL';
\set s random(1, 50)
BEGIN;
SELECT eventsource.append_event('Order-' || :s, -1, 'Tick', '{"x": 1}');
SELECT eventsource.append('Batch-' || :s, -1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
COMMIT;
SQL
close $fh;

sub start_writers
{
	my ($out, $err) = ('', '');
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM eventsource.events');
	my $h = IPC::Run::start(
		[
			'pgbench', '-n', '-c', '6', '-j', '2', '-T', '60',
			'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	# wait until events are flowing
	$node->poll_query_until('postgres',
		"SELECT count(*) > $before + 200 FROM eventsource.events")
	  or die 'writers did not start';
	return $h;
}

# kill -9 of the postmaster; its children notice and exit on their own, and
# the server can only start again once they are gone (they hold the old
# shared memory), so wait for them.
sub kill9_postmaster
{
	open my $pidfile, '<', $node->data_dir . '/postmaster.pid' or die;
	my $pmpid = <$pidfile>;
	close $pidfile;
	chomp $pmpid;
	my @children;
	for my $stat (glob '/proc/[0-9]*/stat')
	{
		open my $f, '<', $stat or next;
		my $line = <$f>;
		close $f;
		next unless defined $line && $line =~ /^(\d+) \(.*\) \S (\d+)/;
		push @children, $1 if $2 == $pmpid;
	}
	$node->kill9;
	for my $pid ($pmpid, @children)
	{
		for (1 .. 600)
		{
			last unless kill 0, $pid;
			usleep(100_000);
		}
	}
}

sub check_store
{
	my ($label, $floor) = @_;

	# streams are dense: versions 1..n without holes
	is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM (
		  SELECT stream_id FROM eventsource.events GROUP BY stream_id
		  HAVING max(stream_version) <> count(*) OR min(stream_version) <> 1) s}),
		'0', "$label: every stream is dense");

	# the horizon covers every committed event, and read_all returns them all
	is( $node->safe_psql('postgres', q{
		SELECT eventsource.head_position() >= max(global_position)
		   AND (SELECT count(*) FROM eventsource.read_all(0, 100000)) = count(*)
		  FROM eventsource.events}),
		't', "$label: horizon and read_all cover all committed events");

	# new appends get positions above anything committed or passed before
	my $max = $node->safe_psql('postgres', 'SELECT max(global_position) FROM eventsource.events');
	my $new = $node->safe_psql('postgres',
		"SELECT first_position FROM eventsource.append_event('After-crash', -1, 'A', '{}')");
	cmp_ok($new, '>', $max, "$label: new position $new above committed max $max");
	cmp_ok($new, '>', $floor, "$label: new position $new above the pre-crash horizon $floor");
}

# 1. SIGKILL of one appending backend: the postmaster reinitialises everything
my $writers = start_writers();
my $head_before = $node->safe_psql('postgres', 'SELECT eventsource.head_position()');
# a writer backend (pgbench inherits the test's application_name)
my $victim = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE query LIKE '%eventsource.append%' AND pid <> pg_backend_pid()
	 ORDER BY state = 'active' DESC LIMIT 1});
ok($victim ne '', "found an appending backend ($victim)");
my $log_offset = -s $node->logfile;
kill 'KILL', $victim;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$writers->finish;    # pgbench ends: its connections were lost
$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
check_store('backend kill -9', $head_before);

# 2. SIGKILL of the postmaster during appends, then a plain start
$writers = start_writers();
$head_before = $node->safe_psql('postgres', 'SELECT eventsource.head_position()');
kill9_postmaster();
$writers->finish;
$node->start;
check_store('postmaster kill -9', $head_before);

# 3. An aborted append, then a crash.  The horizon passes an aborted
# position at once, so the sequence must never hand it out again: a design
# that re-derived positions from the committed rows after a crash (or a
# sequence change that is not WAL-logged) fails here.  (The abort also
# flushes the sequence's WAL record, which protects against an operating
# system crash; kill -9 leaves written WAL in the OS cache, so this test
# cannot tell that part.)
$node->safe_psql('postgres', 'CHECKPOINT');
my $gap = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT first_position FROM eventsource.append_event('Aborted-1', 0, 'A', '{}');
	ROLLBACK;});
my $head = $node->safe_psql('postgres', 'SELECT eventsource.head_position()');
is($head, $gap, "the horizon passed the aborted position $gap");
kill9_postmaster();
$node->start;
my $next = $node->safe_psql('postgres',
	"SELECT first_position FROM eventsource.append_event('Aborted-1', 0, 'A', '{}')");
cmp_ok($next, '>', $gap, "after the crash the aborted position $gap is not handed out again ($next)");

$node->stop;
done_testing();
