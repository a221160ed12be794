# test/perl/EsTest.pm: what the TAP tests (test/t/*.pl) share.  The
# Makefile puts test/perl on prove's include path.
package EsTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT = qw(es_node es_wait_until);

# A started node with the extension preloaded and room for twelve workers.
# $conf: more postgresql.conf lines (a later setting overrides these);
# %init: options for init(), e.g. allows_streaming => 1.
sub es_node
{
	my ($name, $conf, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	$node->init(%init);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'eventsource'
max_worker_processes = 24
eventsource.max_workers = 12
} . ($conf // ''));
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

1;
