# A handler runs with the rights of the role that created the subscription:
# an unprivileged role's handler that reads a table the role may not read
# fails with 42501 on every attempt (also when a superuser asks for the retry)
# and the event ends in the dead letters; nothing is ever read with the
# worker's superuser rights.  After GRANT, retry_dead_letters() delivers it,
# and row-level security still applies to the handler as to its owner.  The
# same for a batch handler.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('privileges');

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE ROLE reporter;
CREATE ROLE other;
GRANT EXECUTE ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
  interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
  eventsource.retry_dead_letters(text, bigint[]) TO reporter;
GRANT SELECT ON eventsource.subscription_status TO reporter;
GRANT EXECUTE ON FUNCTION eventsource.subscription_status_rows() TO reporter;
-- the table the reporter may not read (yet); row-level security for later
CREATE TABLE salaries (emp text PRIMARY KEY, amount int, visible_to name);
INSERT INTO salaries VALUES ('ann', 100, 'reporter'), ('bob', 200, 'other');
ALTER TABLE salaries ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON salaries USING (visible_to = current_user);
-- the reporter's read model
CREATE TABLE report (sub text, emp text, amount int, read_as text);
GRANT INSERT ON report TO reporter;
GRANT CREATE ON SCHEMA public TO reporter;
SET ROLE reporter;
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report
    SELECT 'one', e.data->>'emp', (SELECT amount FROM salaries s WHERE s.emp = e.data->>'emp'), current_user;
END $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO report
    SELECT 'batch', e.data->>'emp', (SELECT amount FROM salaries s WHERE s.emp = e.data->>'emp'), current_user
      FROM unnest(es) e;
END $$;
SELECT eventsource.create_subscription('payroll', 'h(eventsource.events)',
  max_retries => 1, retry_backoff => '10ms', circuit_breaker_threshold => 0);
SELECT eventsource.create_subscription('payroll_batch', 'hb(eventsource.events[])',
  max_retries => 1, retry_backoff => '10ms', circuit_breaker_threshold => 0);
RESET ROLE;
});
is(sql(q{SELECT string_agg(name || ':' || owner::text, ',' ORDER BY name) FROM eventsource.subscriptions}),
	'payroll:reporter,payroll_batch:reporter', 'both subscriptions belong to the reporter');

sql(q{SELECT eventsource.append_event('Employee-ann', 0, 'SalaryReviewed', '{"emp": "ann"}')});
my $ann_id = sql(q{SELECT event_id FROM eventsource.events WHERE stream_id = 'Employee-ann'});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters}, 'the event fails in both subscriptions');
is( sql(q{SELECT string_agg(subscription || ' ' || (event_id = '} . $ann_id . q{') || ' ' || error_sqlstate
                            || ' ' || error_message || ' ' || retry_count, E'\n' ORDER BY subscription)
            FROM eventsource.dead_letters}),
	"payroll true 42501 permission denied for table salaries 1\n"
	  . "payroll_batch true 42501 permission denied for table salaries 1",
	'dead letters: 42501 permission denied for table salaries, after the retry');
is( sql(q{SELECT string_agg(subscription || ':' || attempt || ':' || error_sqlstate, ',' ORDER BY subscription, attempt)
            FROM eventsource.recent_errors}),
	'payroll:1:42501,payroll:2:42501,payroll_batch:1:42501,payroll_batch:2:42501',
	'every attempt failed the same way');
is(sql(q{SELECT count(*) FROM report}), '0', 'nothing was read: the report is empty');
is( $node->safe_psql('postgres', q{SET ROLE reporter;
       SELECT name || ' ' || last_error || ' ' || dead_letters FROM eventsource.subscription_status ORDER BY name}),
	"payroll permission denied for table salaries 1\npayroll_batch permission denied for table salaries 1",
	'the owner sees the error in the status view');

# a retry asked for by a superuser still runs the handler as its owner
is(sql(q{SELECT eventsource.retry_dead_letters('payroll')}), '1', 'a superuser asks for the retry');
wait_until(q{SELECT retry_count = 2 AND NOT retry_requested FROM eventsource.dead_letters WHERE subscription = 'payroll'},
	'the retry ran');
is( sql(q{SELECT error_sqlstate || ' ' || error_message FROM eventsource.dead_letters WHERE subscription = 'payroll'}),
	'42501 permission denied for table salaries', 'and failed again with 42501: still run as the reporter');
is(sql(q{SELECT count(*) FROM report}), '0', 'nothing was read');

# the owner retries before the GRANT: same
is($node->safe_psql('postgres', q{SET ROLE reporter; SELECT eventsource.retry_dead_letters('payroll_batch')}),
	'1', 'the reporter asks for a retry of the batch subscription');
wait_until(q{SELECT retry_count = 2 AND NOT retry_requested FROM eventsource.dead_letters WHERE subscription = 'payroll_batch'},
	'the retry ran');
is(sql(q{SELECT error_sqlstate FROM eventsource.dead_letters WHERE subscription = 'payroll_batch'}), '42501',
	'the batch handler fails the same way');

# ---------------------------------------------------------------------------
# GRANT: the retry delivers; row-level security applies to the handler
# ---------------------------------------------------------------------------
sql(q{GRANT SELECT ON salaries TO reporter});
is( $node->safe_psql('postgres', q{SET ROLE reporter;
       SELECT eventsource.retry_dead_letters('payroll') + eventsource.retry_dead_letters('payroll_batch')}),
	'2', 'after the GRANT the reporter retries both dead letters');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters}, 'both are delivered');
is(sql(q{SELECT string_agg(sub || ' ' || emp || ' ' || amount || ' ' || read_as, E'\n' ORDER BY sub) FROM report}),
	"batch ann 100 reporter\none ann 100 reporter", 'the handlers read the salary, as the reporter');

sql(q{SELECT eventsource.append_event('Employee-bob', 0, 'SalaryReviewed', '{"emp": "bob"}')});
wait_until(q{SELECT count(*) = 2 FROM report WHERE emp = 'bob'}, 'the next event is delivered to both');
is( sql(q{SELECT string_agg(sub || ' ' || emp || ' ' || coalesce(amount::text, 'hidden') || ' ' || read_as, E'\n' ORDER BY sub)
            FROM report WHERE emp = 'bob'}),
	"batch bob hidden reporter\none bob hidden reporter",
	'a row the policy hides from the reporter stays hidden from its handlers (no superuser bypass)');
is(sql(q{SELECT count(*) FROM eventsource.dead_letters}), '0', 'no new dead letter');

# the REVOKE takes effect for the running workers at once
sql(q{REVOKE SELECT ON salaries FROM reporter});
sql(q{SELECT eventsource.append_event('Employee-ann', 1, 'SalaryReviewed', '{"emp": "ann"}')});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters}, 'after REVOKE the handlers fail again');
is(sql(q{SELECT string_agg(DISTINCT error_sqlstate, ',') FROM eventsource.dead_letters}), '42501', 'with 42501');
is(sql(q{SELECT count(*) FROM report}), '4', 'and nothing more was read');

$node->stop;
done_testing();
