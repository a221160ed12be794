# A retention pass and a stream whose lock a user holds (src/retention.c,
# truncate_one; docs/lifecycle.md, "Background cleanup"): the cleanup
# worker waits at most its lock_timeout (10 s) for a stream's lock; a pass
# that meets a stream locked for longer (here: an append left open) skips
# that stream, says so once in the log and in cleanup_status.last_error,
# and truncates the other expired streams; the skipped one is truncated by
# a later pass once the lock is released.  Before, the lock timeout failed
# the whole pass at that stream, every pass, and retention stopped for the
# whole database.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('retention_locked', q{
eventsource.cleanup = on
eventsource.cleanup_naptime = 300ms
});

sub sql { my ($q) = @_; return $node->safe_psql('postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

# Held-1's events come first in the log, so every pass meets it first
sql(q{
CREATE EXTENSION eventsource;
SELECT eventsource.append(s, 0,
         (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', '{}'::jsonb))
            FROM generate_series(1, 5)))
  FROM unnest('{Held-1,Free-1}'::text[]) s;
});

# an append left open holds Held-1's lock
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN; SELECT eventsource.append_event('Held-1', 5, 'E', '{}')});

my $log_offset = -s $node->logfile;
sql(q{BEGIN;
      SELECT eventsource.set_retention('Held-1', max_count => 1);
      SELECT eventsource.set_retention('Free-1', max_count => 1);
      COMMIT});

wait_until(q{SELECT count(*) = 1 FROM pg_stat_activity
              WHERE backend_type = 'eventsource cleanup' AND datname = 'postgres'
                AND wait_event_type = 'Lock'},
	'the retention pass waits for the held stream\'s lock');
wait_until(q{SELECT hidden_through = 4 FROM eventsource.stream_lifecycle WHERE stream_id = 'Free-1'},
	'the other expired stream is truncated behind the held one');
is(sql(q{SELECT count(*) FROM eventsource.stream_lifecycle WHERE stream_id = 'Held-1'}), '0',
	'the held stream is not truncated while its lock is held');
ok($node->wait_for_log(
	qr/eventsource cleanup: retention skipped 1 stream\(s\) whose lock was held longer than lock_timeout, the first of tenant "default": "Held-1"/,
	$log_offset), 'the pass says it skipped the held stream, in the log');
like(sql(q{SELECT last_error FROM eventsource.cleanup_status}),
	qr/retention skipped 1 stream\(s\).*"Held-1"/, 'and in cleanup_status.last_error');
# a role bound to a tenant gets that the worker failed, not the text (it
# may name another tenant's stream); an unbound one (it could choose any
# tenant) gets the text
sql(q{SELECT eventsource.create_tenant('other');
      CREATE ROLE bound_op; CREATE ROLE free_op;
      SELECT eventsource.bind_role_to_tenant('bound_op', 'other');
      GRANT USAGE ON SCHEMA eventsource TO bound_op, free_op;
      GRANT SELECT ON eventsource.cleanup_status TO bound_op, free_op;
      GRANT EXECUTE ON FUNCTION eventsource.cleanup_worker() TO bound_op, free_op});
is(sql(q{SET ROLE bound_op; SELECT last_error FROM eventsource.cleanup_status}),
	"(withheld: the cleanup worker's errors may name other tenants' streams)",
	'a bound role: last_error withheld');
like(sql(q{SET ROLE free_op; SELECT last_error FROM eventsource.cleanup_status}),
	qr/"Held-1"/, 'an unbound role: last_error shown');
unlike(slurp_file($node->logfile, $log_offset), qr/eventsource cleanup: canceling statement due to lock timeout/,
	'the lock timeout does not fail the pass');

# released (the append commits: 6 versions): a later pass truncates it
$holder->query_safe('COMMIT');
$holder->quit;
wait_until(q{SELECT hidden_through = 5 FROM eventsource.stream_lifecycle WHERE stream_id = 'Held-1'},
	'the skipped stream is truncated by a later pass once its lock is free');
is(sql(q{SELECT string_agg(stream_id || ':' || stream_version, ',' ORDER BY stream_id)
           FROM eventsource.visible_events WHERE stream_version >= 1}),
	'Free-1:5,Held-1:6', 'each stream keeps its last version only');
# (Held-1 may take two: a pass waiting for its lock when it was released
# truncates with the candidates it read before the append committed)
is(sql(q{SELECT count(*) FROM eventsource.visible_events
          WHERE event_type = '$StreamTruncated' AND stream_id = 'Free-1'}), '1',
	'the other stream was truncated once, not again by each pass');

$node->stop;
done_testing();
