# DROP EXTENSION / DROP DATABASE with running workers, and worker slots
# freed within a transaction (issue 9, 4 and 5).
#
# - DROP EXTENSION while workers are mid-batch completes without a deadlock
#   error in the log: the workers are stopped before the drop takes its
#   locks; a drop that does not commit brings them back.
# - BEGIN; DROP DATABASE is refused by PostgreSQL, and the workers of that
#   database are left alone (they used to be drained and stopped first).
# - With every eventsource.max_workers slot in use, drop_subscription then
#   create_subscription in one transaction succeeds (also DROP + CREATE
#   EXTENSION in one transaction), and the new subscription runs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('drops', "eventsource.drain_timeout = '30s'\n");
sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }
sub wait_until { my $db = shift; es_wait_until($node, $db, @_) }

my $setup = q{
CREATE EXTENSION eventsource;
CREATE TABLE IF NOT EXISTS counts (sub text PRIMARY KEY, n bigint);
-- a slow handler that writes: a worker spends its time mid-batch
CREATE OR REPLACE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO counts VALUES (current_setting('eventsource.subscription'), 1)
    ON CONFLICT (sub) DO UPDATE SET n = counts.n + 1;
  PERFORM eventsource.save_checkpoint('h-' || current_setting('eventsource.subscription'), e.global_position);
  PERFORM pg_sleep(0.01);
END $$;
};

# --------------------------------------------------------------------------
# DROP EXTENSION mid-batch: no deadlock
# --------------------------------------------------------------------------
sql('postgres', 'CREATE DATABASE dx');
for my $round (1 .. 3)
{
	sql('dx', $setup);
	sql('dx', q{
	  SELECT eventsource.create_subscription('s' || i, 'h(eventsource.events)', batch_size => 100)
	    FROM generate_series(1, 3) i;
	  SELECT eventsource.append('D-' || i, -1,
	    (SELECT jsonb_agg(jsonb_build_object('type', 'T', 'data', '{}'::jsonb)) FROM generate_series(1, 100)))
	    FROM generate_series(1, 5) i;
	});
	wait_until('dx', q{SELECT count(*) = 3 FROM counts WHERE n > 0},
		"round $round: all three workers are delivering");
	my $offset = -s $node->logfile;
	my ($rc, $out, $err) = $node->psql('dx', 'DROP EXTENSION eventsource CASCADE');
	is($rc, 0, "round $round: DROP EXTENSION with workers mid-batch succeeds") or diag($err);
	my $log = substr(slurp_file($node->logfile), $offset);
	unlike($log, qr/deadlock detected/, "round $round: no deadlock in the log");
	wait_until('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity
	  WHERE datname = 'dx' AND backend_type = 'eventsource worker'},
		"round $round: the workers are gone");
	sql('dx', 'DROP TABLE counts');
}

# a DROP EXTENSION that rolls back: the workers come back
sql('dx', $setup);
sql('dx', q{SELECT eventsource.create_subscription('back', 'h(eventsource.events)')});
wait_until('dx', q{SELECT state = 'live' AND pid IS NOT NULL FROM eventsource.subscription_status},
	'a live subscription');
sql('dx', q{BEGIN; DROP EXTENSION eventsource CASCADE; ROLLBACK;});
wait_until('dx', q{SELECT state = 'live' AND pid IS NOT NULL FROM eventsource.subscription_status},
	'after a rolled-back DROP EXTENSION its worker runs again');
sql('dx', q{BEGIN; SAVEPOINT a; DROP EXTENSION eventsource CASCADE; ROLLBACK TO a; COMMIT;});
wait_until('dx', q{SELECT state = 'live' AND pid IS NOT NULL FROM eventsource.subscription_status},
	'also after one rolled back to a savepoint');
sql('dx', q{SELECT eventsource.append_event('After-1', -1, 'T', '{}')});
wait_until('dx', q{SELECT checkpoint = head_position FROM eventsource.subscription_status},
	'and delivers');

# --------------------------------------------------------------------------
# BEGIN; DROP DATABASE: refused before the workers are touched
# --------------------------------------------------------------------------
my $pid = sql('dx', q{SELECT pid FROM eventsource.subscription_status WHERE name = 'back'});
my $offset = -s $node->logfile;
my ($rc, $out, $err) = $node->psql('postgres', 'BEGIN; DROP DATABASE dx;');
like($err, qr/DROP DATABASE cannot run inside a transaction block/, 'BEGIN; DROP DATABASE is refused');
($rc, $out, $err) = $node->psql('dx', 'DROP DATABASE dx');
like($err, qr/cannot drop the currently open database/, 'so is dropping the current database');
sleep 1;
is(sql('dx', q{SELECT pid FROM eventsource.subscription_status WHERE name = 'back'}), $pid,
	'the worker of that database was not stopped');
unlike(substr(slurp_file($node->logfile), $offset), qr/subscription "back" partition 0 stopped/,
	'no stop in the log');
is($node->psql('postgres', 'DROP DATABASE dx'), 0, 'a plain DROP DATABASE still works');

# --------------------------------------------------------------------------
# slots freed earlier in the same transaction
# --------------------------------------------------------------------------
sql('postgres', q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (sub text, pos bigint);
CREATE FUNCTION g(e eventsource.events) RETURNS void LANGUAGE sql
  AS $$ INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position) $$;
SELECT eventsource.create_subscription('full', 'g(eventsource.events)', partitions => 12);
});
wait_until('postgres', q{SELECT count(*) = 12 FROM eventsource.subscription_status
  WHERE name = 'full' AND state = 'live'}, 'every slot is in use');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT eventsource.create_subscription('extra', 'g(eventsource.events)')});
like($err, qr/not enough subscription worker slots/, 'no slot is free');

($rc, $out, $err) = $node->psql('postgres', q{BEGIN;
  SELECT eventsource.drop_subscription('full');
  SELECT eventsource.create_subscription('new', 'g(eventsource.events)', partitions => 12);
  COMMIT;});
is($rc, 0, 'drop_subscription then create_subscription in one transaction') or diag($err);
sql('postgres', q{SELECT eventsource.append_event('N-' || i, -1, 'T', '{}') FROM generate_series(1, 30) i});
wait_until('postgres', q{SELECT count(*) = 12 FROM eventsource.subscription_status
  WHERE name = 'new' AND state = 'live' AND checkpoint = head_position},
	'the new subscription runs on all its partitions');
is(sql('postgres', q{SELECT count(*) FROM seen WHERE sub = 'new'}), '30', 'and delivered every event');

# a subscription created and dropped in one transaction frees nothing
($rc, $out, $err) = $node->psql('postgres', q{BEGIN;
  SELECT eventsource.create_subscription('x1', 'g(eventsource.events)');
  SELECT eventsource.drop_subscription('x1');
  SELECT eventsource.create_subscription('x2', 'g(eventsource.events)');
  COMMIT;});
like($err, qr/not enough subscription worker slots/, 'a slot is not counted twice');

# DROP EXTENSION + CREATE EXTENSION in one transaction
($rc, $out, $err) = $node->psql('postgres', q{BEGIN;
  DROP EXTENSION eventsource CASCADE;
  CREATE EXTENSION eventsource;
  CREATE FUNCTION g(e eventsource.events) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position) $$;
  SELECT eventsource.create_subscription('again', 'g(eventsource.events)', partitions => 12);
  COMMIT;});
is($rc, 0, 'DROP + CREATE EXTENSION and create_subscription in one transaction') or diag($err);
sql('postgres', q{SELECT eventsource.append_event('A-1', -1, 'T', '{}')});
wait_until('postgres', q{SELECT count(*) = 12 FROM eventsource.subscription_status
  WHERE name = 'again' AND state = 'live' AND checkpoint = head_position},
	'and it runs');

$node->stop;
done_testing();
