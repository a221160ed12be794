# test/perl/EsTest.pm: what the TAP tests (test/t/*.pl) share.  The
# Makefile puts test/perl on prove's include path.
package EsTest;

use strict;
use warnings;
use Exporter 'import';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT = qw(es_node es_wait_until es_poll_for es_collect_notifications);

# The settings of every test server: test/pg.conf (the one place; the
# Makefile's temp instances and scripts/lib/cluster.sh use it too).
my $settings_file = dirname(abs_path(__FILE__)) . '/../pg.conf';

sub es_settings
{
	open(my $fh, '<', $settings_file)
	  or die "cannot read $settings_file (the settings of every test server): $!";
	local $/;
	my $text = <$fh>;
	close($fh);
	return $text;
}

# A started node with the settings of test/pg.conf (the extension
# preloaded, room for twelve workers).
# $conf: more postgresql.conf lines (a later setting overrides these);
# %init: options for init(), e.g. allows_streaming => 1.
sub es_node
{
	my ($name, $conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%init);
	$node->append_conf('postgresql.conf',
		"\n" . es_settings() . "\n" . ($conf // ''));
	$node->start;
	return $node;
}

# Wait until $query returns true in database $db; if it never does, the
# test fails and shows the subscription status.
sub es_wait_until
{
	my ($node, $db, $query, $what) = @_;
	ok($node->poll_query_until($db, $query), $what)
	  or diag($node->safe_psql($db, 'SELECT * FROM eventsource.subscription_status'));
}

# Poll $query in database $db every 100 ms for at most $seconds; true as soon
# as it returns 't', false if it never does.  For waits that may rightly
# fail (poll_query_until waits minutes, too long for an expected "no").
sub es_poll_for
{
	my ($node, $db, $query, $seconds) = @_;
	my $deadline = time() + $seconds;
	while (time() < $deadline)
	{
		return 1 if $node->safe_psql($db, $query) eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# Collect the eventsource_errors notifications that $listener (a
# background_psql session that ran LISTEN eventsource_errors) has received,
# for up to $secs seconds, until $want of them arrived; psql prints them
# after the next query's result.  Returns them as [pid, payload] pairs.
sub es_collect_notifications
{
	my ($listener, $want, $secs) = @_;
	my @notes;
	my $deadline = time() + $secs;
	while (1)
	{
		my $out = $listener->query('SELECT 1');
		while ($out =~ /^Asynchronous notification "eventsource_errors" with payload "(.*)" received from server process with PID (\d+)\.$/mg)
		{
			push @notes, [ $2, $1 ];
		}
		last if @notes >= $want || time() >= $deadline;
		usleep(100_000);
	}
	return @notes;
}

1;
