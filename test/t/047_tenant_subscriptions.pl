# Subscriptions per tenant (issue 15, part 3; docs/tenancy.md section 4):
# two tenants with the same stream ids; a tenant-scoped subscription (with
# partitions, with event_types and categories filters) delivers exactly its
# tenant's events, each once, also across a kill -9 of its worker in the
# middle of a batch; its handler runs in its tenant, so its appends land
# there; a cross-tenant subscription (the owner's) sees every tenant and
# each handler call runs in the tenant of its events (a batch handler's
# call holds one tenant's events); a bound role cannot create one for
# another tenant nor a cross-tenant one; a binding changed under a running
# subscription fails its partitions with "invalid configuration".
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use Time::HiRes qw(usleep);

my $node = es_node('tenant_subs', qq{
restart_after_crash = on
});

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
SELECT eventsource.create_tenant('acme'), eventsource.create_tenant('globex');
CREATE ROLE acme_app;
SELECT eventsource.bind_role_to_tenant('acme_app', 'acme');
GRANT EXECUTE ON FUNCTION eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)
    TO acme_app;
CREATE TABLE knobs (name text PRIMARY KEY, sleep_ms int);
-- one row per handler call and event: the tenant the call ran in (the
-- setting and current_tenant()) and the event's
CREATE TABLE applied (sub text, pos bigint, stream_id text, event_tenant text,
                      setting text, current text, batch int);
GRANT SELECT ON knobs TO acme_app;
GRANT INSERT ON applied TO acme_app;
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
DECLARE sub text := current_setting('eventsource.subscription');
BEGIN
  INSERT INTO applied VALUES (sub, e.global_position, e.stream_id, e.tenant_id,
                              current_setting('eventsource.tenant'), eventsource.current_tenant(), 1);
  -- the handler's own append: it must land in the tenant the call runs in
  IF e.event_type = 'Placed' THEN
    PERFORM eventsource.append_event('Echo' || sub || '-' || e.stream_id, -1, 'Echo',
                                     jsonb_build_object('pos', e.global_position));
  END IF;
  PERFORM pg_sleep(coalesce((SELECT sleep_ms FROM knobs WHERE name = sub), 0) / 1000.0);
END $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO applied
  SELECT current_setting('eventsource.subscription'), e.global_position, e.stream_id, e.tenant_id,
         current_setting('eventsource.tenant'), eventsource.current_tenant(), cardinality(es)
    FROM unnest(es) e;
END $$;
GRANT EXECUTE ON FUNCTION h(eventsource.events) TO acme_app;
-- every event of a subscription delivered exactly once: missing and extra
CREATE FUNCTION delivery_errors(s text, expected_query text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT (SELECT count(*) FROM (%s) x WHERE NOT EXISTS
                            (SELECT FROM applied a WHERE a.sub = %L AND a.pos = x.global_position))
                       + (SELECT count(*) FROM (SELECT pos FROM applied WHERE sub = %L
                                                 GROUP BY pos HAVING count(*) > 1) d)
                       + (SELECT count(*) FROM applied a WHERE a.sub = %L
                             AND NOT EXISTS (SELECT FROM (%s) x WHERE x.global_position = a.pos))',
                 expected_query, s, s, s, expected_query) INTO n;
  RETURN n;
END $$;
});

# the same stream ids in both tenants: orders placed and paid, invoices
sub append_orders
{
	my ($from, $to) = @_;
	for my $tenant ('acme', 'globex')
	{
		sql(qq{
BEGIN;
SET LOCAL eventsource.tenant = '$tenant';
SELECT eventsource.append_event('Order-' || i, -1, 'Placed', '{}') FROM generate_series($from, $to) i;
SELECT eventsource.append_event('Order-' || i, -1, 'Paid', '{}') FROM generate_series($from, $to) i;
SELECT eventsource.append_event('Invoice-' || i, -1, 'Paid', '{}') FROM generate_series($from, $to) i;
COMMIT;});
	}
}
append_orders(1, 10);
is(sql(q{SELECT count(DISTINCT tenant_id) || '/' || count(*) FROM eventsource.events WHERE stream_id = 'Order-1'}),
	'2/4', 'the same stream id holds its own events in each tenant');

# ---------------------------------------------------------------------------
# creating: a bound role gets its tenant, never another nor all of them
# ---------------------------------------------------------------------------
my ($rc, $out, $err) = $node->psql('postgres', q{SET ROLE acme_app;
SELECT eventsource.create_subscription('x', 'h(eventsource.events)', tenant => 'globex')});
like($err, qr/may not use tenant "globex"/, 'a bound role cannot create a subscription of another tenant');
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE acme_app;
SELECT eventsource.create_subscription('x', 'h(eventsource.events)', tenant => NULL)});
like($err, qr/only the store's owner may create a cross-tenant subscription/,
	'a bound role cannot create a cross-tenant subscription');

sql(q{SET ROLE acme_app;
SELECT eventsource.create_subscription('s_acme', 'h(eventsource.events)', partitions => 3, batch_size => 4)});
sql(q{SELECT eventsource.create_subscription('s_filter', 'h(eventsource.events)', tenant => 'globex',
          event_types => '{Paid}', categories => '{Order}', partitions => 2);
      SELECT eventsource.create_subscription('s_all', 'h(eventsource.events)', tenant => NULL, batch_size => 7);
      SELECT eventsource.create_subscription('s_batch', 'hb(eventsource.events[])', tenant => NULL, batch_size => 50)});
is(sql(q{SELECT string_agg(name || ':' || coalesce(tenant, '*') || ':' || owner::text, ' ' ORDER BY name)
           FROM eventsource.subscriptions}),
	's_acme:acme:acme_app s_all:*:' . sql('SELECT current_user') . ' s_batch:*:'
	  . sql('SELECT current_user') . ' s_filter:globex:' . sql('SELECT current_user'),
	'the bound role\'s subscription is of its tenant; the owner\'s of the one named, or of every tenant');

sub caught_up
{
	my ($name) = @_;
	wait_until(qq{SELECT bool_and(checkpoint = head_position) FROM eventsource.subscription_status WHERE name = '$name'},
		"$name caught up");
}
caught_up($_) for qw(s_acme s_filter s_all s_batch);

# ---------------------------------------------------------------------------
# tenant-scoped: exactly the tenant's events, each once, in its tenant
# ---------------------------------------------------------------------------
is(sql(q{SELECT delivery_errors('s_acme', 'SELECT global_position FROM eventsource.events WHERE tenant_id = ''acme''')}),
	'0', 's_acme (3 partitions) delivered every acme event exactly once, and nothing else');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 's_acme' AND (event_tenant, setting, current) IS DISTINCT FROM ('acme', 'acme', 'acme')}),
	'0', 'each of its handler calls ran in acme, as the bound owner');
is(sql(q{SELECT string_agg(DISTINCT tenant_id, ',') || ':' || count(*) FROM eventsource.events WHERE stream_id LIKE 'Echos_acme-%'}),
	'acme:10', 'its handler\'s appends landed in acme');
is(sql(q{SELECT delivery_errors('s_filter', 'SELECT global_position FROM eventsource.events WHERE tenant_id = ''globex''
            AND event_type = ''Paid'' AND stream_id LIKE ''Order-%''')}),
	'0', 's_filter (globex, event_types, categories, 2 partitions) delivered exactly its events');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 's_filter'}), '10', 'that is the 10 paid orders of globex');

# ---------------------------------------------------------------------------
# cross-tenant: every tenant, each call in the tenant of its events
# ---------------------------------------------------------------------------
is(sql(q{SELECT delivery_errors('s_all', 'SELECT global_position FROM eventsource.events
            WHERE global_position <= (SELECT checkpoint FROM eventsource.subscription_status WHERE name = ''s_all'')')}),
	'0', 's_all delivered the events of both tenants exactly once');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 's_all' AND (setting <> event_tenant OR current <> event_tenant)}),
	'0', 'each of its handler calls ran in the tenant of its event');
is(sql(q{SELECT string_agg(tenant_id || ':' || n, ',' ORDER BY tenant_id) FROM
           (SELECT tenant_id, count(*) n FROM eventsource.events WHERE stream_id LIKE 'Echos_all-%' GROUP BY 1) x}),
	'acme:10,globex:10', 'its appends landed in the tenant of the event it handled');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 's_batch' AND (setting <> event_tenant OR current <> event_tenant)}),
	'0', 'a cross-tenant batch handler\'s call holds the events of the tenant it runs in');
is(sql(q{SELECT delivery_errors('s_batch', 'SELECT global_position FROM eventsource.events
            WHERE global_position <= (SELECT checkpoint FROM eventsource.subscription_status WHERE name = ''s_batch'')')}),
	'0', 's_batch delivered every event exactly once');

# the worker's bookkeeping does not run in the handler's tenant: a failing
# event of globex is parked with its tenant
sql(q{CREATE FUNCTION hf(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN IF e.stream_id = 'Bad-1' THEN RAISE EXCEPTION 'bad %', e.tenant_id; END IF; END $$;
      SELECT eventsource.create_subscription('s_fail', 'hf(eventsource.events)', tenant => NULL,
                 start_from => 'end', max_retries => 0);});
# the same handler in a subscription scoped to globex, of a role bound to it
sql(q{
CREATE ROLE globex_app;
SELECT eventsource.bind_role_to_tenant('globex_app', 'globex');
GRANT EXECUTE ON FUNCTION hf(eventsource.events),
    eventsource.create_subscription(text, regprocedure, text, integer, text, interval,
        interval, integer, interval, boolean, integer, interval, text[], text[], integer, text),
    eventsource.retry_dead_letters(text, bigint[]), eventsource.error_stats()
    TO globex_app;
GRANT INSERT ON applied TO globex_app;
SET ROLE globex_app;
SELECT eventsource.create_subscription('s_fail_g', 'hf(eventsource.events)',
           start_from => 'end', max_retries => 0);
});
caught_up($_) for qw(s_fail s_fail_g);
sql(q{BEGIN; SET LOCAL eventsource.tenant = 'globex';
      SELECT eventsource.append_event('Bad-1', -1, 'X', '{}'); COMMIT;});
wait_until(q{SELECT count(*) = 2 FROM eventsource.dead_letters WHERE subscription IN ('s_fail', 's_fail_g')},
	'the failing event was dead-lettered by both subscriptions');
is(sql(q{SELECT tenant_id || ':' || error_message FROM eventsource.dead_letters WHERE subscription = 's_fail'})
	  . ' ' . sql(q{SELECT string_agg(DISTINCT tenant_id, ',') FROM eventsource.recent_errors WHERE subscription = 's_fail'}),
	'globex:bad globex globex', 'the dead letter and the recent error carry the event\'s tenant');
is(sql(q{SELECT string_agg(subscription || ':' || coalesce(subscription_tenant, '*'), ',' ORDER BY subscription)
           FROM eventsource.dead_letters WHERE subscription LIKE 's_fail%'})
	  . ' ' . sql(q{SELECT string_agg(DISTINCT subscription || ':' || coalesce(subscription_tenant, '*'), ',')
           FROM eventsource.recent_errors WHERE subscription LIKE 's_fail%'}),
	's_fail:*,s_fail_g:globex s_fail:*,s_fail_g:globex',
	'each row records its subscription\'s tenant (NULL: cross-tenant)');

# Who reads them (granted SELECT on the tables): a role bound to globex
# sees only the rows of the subscription scoped to globex, never the
# cross-tenant subscription's (its name and its handler's error text may
# quote any tenant); a role bound to no tenant sees both for the tenant it
# selects, as on 1.0; a binding changed later applies at once; a bound
# session keeps its restriction after SET ROLE to an unbound role.
sql(q{
CREATE ROLE watcher;
GRANT SELECT ON eventsource.dead_letters, eventsource.recent_errors TO globex_app, watcher;
GRANT EXECUTE ON FUNCTION eventsource.error_stats() TO watcher;
GRANT watcher TO globex_app;
});
sub seen_by
{
	my ($prelude) = @_;
	return sql(qq{BEGIN; $prelude
SELECT coalesce((SELECT string_agg(subscription || ':' || error_message, ',' ORDER BY subscription)
                   FROM eventsource.dead_letters WHERE stream_id = 'Bad-1'), '-')
       || ' ' || coalesce((SELECT string_agg(DISTINCT subscription, ',')
                             FROM eventsource.recent_errors WHERE subscription LIKE 's_fail%'), '-');
COMMIT;});
}
is(seen_by(q{SET LOCAL ROLE globex_app;}), 's_fail_g:bad globex s_fail_g',
	'a role bound to globex sees its scoped subscription\'s dead letter and errors, not the cross-tenant one\'s');
is(seen_by(q{SET LOCAL ROLE watcher; SET LOCAL eventsource.tenant = 'globex';}),
	's_fail:bad globex,s_fail_g:bad globex s_fail,s_fail_g',
	'an unbound role sees both subscriptions\' rows for the tenant it selected');
is(seen_by(q{SET LOCAL ROLE watcher; SET LOCAL eventsource.tenant = 'acme';}), '- -',
	'and none of another tenant\'s');
is(seen_by(q{SET LOCAL SESSION AUTHORIZATION globex_app; SET LOCAL ROLE watcher; SET LOCAL eventsource.tenant = 'globex';}),
	's_fail_g:bad globex s_fail_g',
	'an unbound role in a session of a bound one sees only the scoped subscription\'s');
sql(q{SELECT eventsource.bind_role_to_tenant('watcher', 'globex')});
is(seen_by(q{SET LOCAL ROLE watcher;}), 's_fail_g:bad globex s_fail_g',
	'bound later, a role no longer sees the cross-tenant rows it saw');
sql(q{SELECT eventsource.unbind_role_from_tenant('watcher', 'globex')});
sub error_stats_of
{
	my ($prelude) = @_;
	return sql(qq{BEGIN; $prelude
SELECT (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(e->'by_subscription') k)
       || ' ' || (e->>'dead_letters')
  FROM eventsource.error_stats() e;
COMMIT;});
}
is(error_stats_of(q{SET LOCAL ROLE globex_app;}), 's_fail_g 1',
	'error_stats() of the bound role counts the scoped subscription\'s errors and dead letters only');
is(error_stats_of(q{SET LOCAL ROLE watcher; SET LOCAL eventsource.tenant = 'globex';}), 's_fail,s_fail_g 2',
	'error_stats() of an unbound role counts both');
# fail closed: a row that does not name its subscription's tenant is a
# cross-tenant subscription's (as every 1.0 row)
sql(q{SET eventsource.tenant = 'globex';
      INSERT INTO eventsource.recent_errors (subscription, partition, global_position, event_id,
             event_type, error_message, error_sqlstate, error_category, error_severity, attempt, tenant_id)
      VALUES ('s_fail_g', 0, 1, gen_random_uuid(), 'X', 'unnamed', 'P0001', 'application', 'low', 1, 'globex')});
is(sql(q{SET ROLE globex_app; SELECT count(*) FROM eventsource.recent_errors WHERE error_message = 'unnamed'})
	  . sql(q{SET ROLE watcher; SET eventsource.tenant = 'globex';
              SELECT count(*) FROM eventsource.recent_errors WHERE error_message = 'unnamed'}),
	'01', 'a row that names no subscription tenant is hidden from the bound role, shown to the unbound one');
sql(q{DELETE FROM eventsource.recent_errors WHERE error_message = 'unnamed'});
# the policy asks whether the caller is bound once per query (an InitPlan),
# not once per row
sql(q{INSERT INTO eventsource.recent_errors (subscription, partition, global_position, event_id,
             event_type, error_message, error_sqlstate, error_category, error_severity, attempt,
             tenant_id, subscription_tenant)
      SELECT 's_many', 0, i, gen_random_uuid(), 'X', 'many', 'P0001', 'application', 'low', 1,
             'globex', CASE WHEN i % 2 = 0 THEN 'globex' END
        FROM generate_series(1, 200) i});
my ($many, $calls) = split /\n/, sql(q{BEGIN; SET LOCAL track_functions = 'all'; SET LOCAL ROLE globex_app;
SELECT count(*) FROM eventsource.recent_errors WHERE error_message = 'many';
SELECT coalesce(pg_stat_get_xact_function_calls('eventsource.caller_bound_to_tenants()'::regprocedure), 0);
COMMIT;});
is($many, '100', 'the bound role reads the 100 scoped rows of 200');
cmp_ok($calls, '<=', 1, 'caller_bound_to_tenants() was called once for the query, not once per row');
sql(q{DELETE FROM eventsource.recent_errors WHERE error_message = 'many'});
# the bound role cannot write a cross-tenant row either
sql(q{GRANT INSERT ON eventsource.recent_errors TO globex_app;
      GRANT USAGE ON SEQUENCE eventsource.recent_errors_id_seq TO globex_app});
($rc, $out, $err) = $node->psql('postgres', q{SET ROLE globex_app;
      INSERT INTO eventsource.recent_errors (subscription, partition, global_position, event_id,
             event_type, error_message, error_sqlstate, error_category, error_severity, attempt, tenant_id)
      VALUES ('s_fail', 0, 1, gen_random_uuid(), 'X', 'forged', 'P0001', 'application', 'low', 1, 'globex')});
like($err, qr/new row violates row-level security policy/, 'a bound role cannot insert a cross-tenant subscription\'s row');
sql(q{CREATE OR REPLACE FUNCTION hf(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO applied VALUES (current_setting('eventsource.subscription'), e.global_position, e.stream_id, e.tenant_id,
                 current_setting('eventsource.tenant'), eventsource.current_tenant(), 1); END $$;
      SELECT eventsource.retry_dead_letters('s_fail')});
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 's_fail'},
	'the dead letter was retried');
is(sql(q{SELECT stream_id || ':' || setting FROM applied WHERE sub = 's_fail'}), 'Bad-1:globex',
	'retry_dead_letters() delivered it again in its tenant');
# the scoped subscription's, by its bound owner
is(sql(q{SET ROLE globex_app; SELECT eventsource.retry_dead_letters('s_fail_g')}), '1',
	'the bound owner of the scoped subscription asks for its dead letter to be retried');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 's_fail_g'},
	'the scoped subscription\'s dead letter was retried');
is(sql(q{SELECT stream_id || ':' || setting FROM applied WHERE sub = 's_fail_g'}), 'Bad-1:globex',
	'retry_dead_letters() delivered it again for the bound owner');

# error_stats() of a bound role keeps to the rows a subscription of its
# tenant wrote: a cross-tenant subscription dropped, its name taken by one
# of globex, does not hand the new one its errors
sql(q{SELECT eventsource.drop_subscription('s_fail');
      SELECT eventsource.create_subscription('s_fail', 'hf(eventsource.events)', tenant => 'globex',
                 start_from => 'end')});
is(error_stats_of(q{SET LOCAL ROLE globex_app;}), 's_fail_g 0',
	'the bound role\'s error_stats() leaves out the errors the dropped cross-tenant s_fail recorded');
is(seen_by(q{SET LOCAL ROLE globex_app;}), '- s_fail_g', 'and so does its recent_errors');
# nor the errors another tenant's subscription of that name wrote
my $g_errors = q{BEGIN; SET LOCAL ROLE globex_app;
SELECT eventsource.error_stats()->'by_subscription'->'s_fail_g'->>'errors'; COMMIT;};
my $g_before = sql($g_errors);
sql(q{INSERT INTO eventsource.recent_errors (subscription, partition, global_position, event_id,
             event_type, error_message, error_sqlstate, error_category, error_severity, attempt,
             tenant_id, subscription_tenant)
      VALUES ('s_fail_g', 0, 1, gen_random_uuid(), 'X', 'acme''s', 'P0001', 'application', 'low', 1,
              'acme', 'acme')});
is(sql($g_errors), $g_before,
	'the bound role\'s error_stats() leaves out the errors an acme subscription of the same name recorded');

# ---------------------------------------------------------------------------
# kill -9 of the tenant-scoped subscription's worker in the middle of a
# batch: after the crash-restart every acme event is delivered exactly once
# (every_batch: the handler's writes and the checkpoint commit together)
# ---------------------------------------------------------------------------
sql(q{INSERT INTO knobs VALUES ('s_acme', 100)});
append_orders(11, 30);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 1 FROM pg_stat_activity
	 WHERE application_name LIKE 'eventsource s_acme/%' AND wait_event = 'PgSleep'}),
	'a worker of s_acme is in the middle of a batch');
usleep(250_000);
my $pid = sql(q{SELECT pid FROM pg_stat_activity
	 WHERE application_name LIKE 'eventsource s_acme/%' AND wait_event = 'PgSleep' LIMIT 1});
my $log_offset = -s $node->logfile;
kill 'KILL', $pid;
$node->wait_for_log(qr/all server processes terminated; reinitializing/, $log_offset);
$node->poll_query_until('postgres', 'SELECT true') or die;
sql(q{UPDATE knobs SET sleep_ms = 0 WHERE name = 's_acme'});
caught_up($_) for qw(s_acme s_filter s_all);
is(sql(q{SELECT delivery_errors('s_acme', 'SELECT global_position FROM eventsource.events WHERE tenant_id = ''acme''')}),
	'0', 'after the crash s_acme delivered every acme event exactly once, and nothing else');
is(sql(q{SELECT count(*) FROM applied WHERE sub = 's_acme' AND (event_tenant, setting, current) IS DISTINCT FROM ('acme', 'acme', 'acme')}),
	'0', 'all in acme');
is(sql(q{SELECT string_agg(DISTINCT tenant_id, ',') || ':' || count(*) FROM eventsource.events WHERE stream_id LIKE 'Echos_acme-%'}),
	'acme:30', 'one append per placed order, in acme (none lost, none twice)');
is(sql(q{SELECT delivery_errors('s_filter', 'SELECT global_position FROM eventsource.events WHERE tenant_id = ''globex''
            AND event_type = ''Paid'' AND stream_id LIKE ''Order-%''')}),
	'0', 's_filter after the crash: exactly globex\'s paid orders');

# the tenant-scoped read uses the tenant's key
like(sql(q{EXPLAIN (COSTS OFF) SELECT * FROM eventsource.events WHERE tenant_id = 'acme'
           AND global_position > 0 AND global_position <= 100 ORDER BY global_position LIMIT 4}),
	qr/events_tenant_global_position_key/, '(the tenant\'s read is a scan of events_tenant_global_position_key)');

# ---------------------------------------------------------------------------
# the owner's binding changes: the partitions fail with invalid configuration
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.bind_role_to_tenant('acme_app', 'globex'),
             eventsource.unbind_role_from_tenant('acme_app', 'acme')});
sql(q{BEGIN; SET LOCAL eventsource.tenant = 'acme';
      SELECT eventsource.append_event('Order-' || i, -1, 'Paid', '{}') FROM generate_series(1, 6) i; COMMIT;});
wait_until(q{SELECT bool_and(state = 'failed' AND last_error LIKE 'invalid configuration: role "acme_app" may not use tenant "acme"%')
               FROM eventsource.subscription_status WHERE name = 's_acme'},
	'every partition of s_acme failed with invalid configuration once its owner lost acme');
is(sql(q{SELECT count(*) FROM applied a JOIN eventsource.events e ON e.global_position = a.pos
          WHERE a.sub = 's_acme' AND e.stream_id LIKE 'Order-%' AND e.stream_version >= 3}),
	'0', 'none of the events appended after the change was delivered');
# rebound: resume delivers them
sql(q{SELECT eventsource.bind_role_to_tenant('acme_app', 'acme');
      SELECT eventsource.resume_subscription('s_acme')});
caught_up('s_acme');
is(sql(q{SELECT delivery_errors('s_acme', 'SELECT global_position FROM eventsource.events WHERE tenant_id = ''acme''')}),
	'0', 'bound again and resumed, it delivered the rest exactly once');

# ---------------------------------------------------------------------------
# a SECURITY DEFINER function of an unbound role does not take a bound
# owner's handler out of its tenant: the owner counts as the session's role
# ---------------------------------------------------------------------------
sql(q{
SELECT eventsource.create_tenant('initech');
CREATE ROLE free_owner;
GRANT USAGE ON SCHEMA eventsource TO free_owner;
GRANT EXECUTE ON FUNCTION eventsource.read_stream(text, bigint, integer, boolean),
    eventsource.read_stream(text, bigint, integer, boolean, text) TO free_owner;
CREATE TABLE peeks (result text);
GRANT INSERT ON peeks TO acme_app;
-- by the setting, then by the tenant argument
CREATE FUNCTION peek(t text) RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  by_setting text;
  by_argument text;
BEGIN
  BEGIN
    PERFORM set_config('eventsource.tenant', t, true);
    by_setting := 'read ' || (SELECT count(*) FROM eventsource.read_stream('Order-1'));
  EXCEPTION WHEN OTHERS THEN by_setting := SQLSTATE;
  END;
  BEGIN
    by_argument := 'read ' || (SELECT count(*) FROM eventsource.read_stream('Order-1', NULL, 10, false, t));
  EXCEPTION WHEN OTHERS THEN by_argument := SQLSTATE;
  END;
  RETURN by_setting || ' ' || by_argument;
END $$;
ALTER FUNCTION peek(text) OWNER TO free_owner;
GRANT EXECUTE ON FUNCTION peek(text) TO acme_app;
CREATE FUNCTION hp(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN INSERT INTO peeks VALUES (peek('initech')); END $$;
GRANT EXECUTE ON FUNCTION hp(eventsource.events) TO acme_app;
SET ROLE acme_app;
SELECT eventsource.create_subscription('s_peek', 'hp(eventsource.events)', start_from => 'end', tenant => 'acme');
});
sql(q{BEGIN; SET LOCAL eventsource.tenant = 'acme';
      SELECT eventsource.append_event('Peek-1', -1, 'Placed', '{}'); COMMIT;});
wait_until(q{SELECT count(*) >= 1 FROM peeks}, 's_peek\'s handler ran');
is(sql(q{SELECT string_agg(DISTINCT result, ',') FROM peeks}), '42501 42501',
	'a SECURITY DEFINER function of an unbound role, called by a bound owner\'s handler, cannot switch to another tenant, by the setting or by the tenant argument');

# ---------------------------------------------------------------------------
# a handler's session-level SET of eventsource.tenant does not outlive its
# call: the next call (same batch or the next one) runs in the subscription's
# tenant again, and a cross-tenant subscription's in its events' tenants
# ---------------------------------------------------------------------------
sql(q{
-- room for three more partitions
SELECT eventsource.drop_subscription(n) FROM unnest(ARRAY['s_acme', 's_all', 's_batch', 's_peek']) n;
CREATE TABLE set_seen (sub text, pos bigint, event_tenant text, current text, leaked text);
CREATE FUNCTION hset(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO set_seen VALUES (current_setting('eventsource.subscription'), e.global_position,
                               e.tenant_id, eventsource.current_tenant(),
                               current_setting('es_test.leak', true));
  -- SET, not SET LOCAL: of the tenant (set again for every call) and of a
  -- setting nothing else sets (only the end of the call's own GUC level
  -- takes it back)
  PERFORM set_config('eventsource.tenant', 'globex', false);
  PERFORM set_config('es_test.leak', 'from ' || e.global_position, false);
END $$;
SELECT eventsource.create_subscription('s_set_one', 'hset(eventsource.events)', start_from => 'end',
                                       batch_size => 1, tenant => 'acme');
SELECT eventsource.create_subscription('s_set_batch', 'hset(eventsource.events)', start_from => 'end',
                                       batch_size => 100, tenant => 'acme');
SELECT eventsource.create_subscription('s_set_all', 'hset(eventsource.events)', start_from => 'end',
                                       batch_size => 100, tenant => NULL);
});
sql(q{SELECT eventsource.append('SetLeak-1', -1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]', 'acme');
      SELECT eventsource.append('SetLeak-1', -1, '[{"type": "A", "data": {}}]', 'initech');
      SELECT eventsource.append('SetLeak-2', -1, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]', 'acme');});
caught_up($_) for qw(s_set_one s_set_batch s_set_all);
is(sql(q{SELECT sub || ':' || count(*) || ':' || count(*) FILTER (WHERE current = event_tenant)
           FROM set_seen GROUP BY sub ORDER BY sub}),
	"s_set_all:6:6\ns_set_batch:5:5\ns_set_one:5:5",
	'every handler call ran in its events\' tenant, after earlier calls SET eventsource.tenant to globex');
is(sql(q{SELECT count(*) FROM set_seen WHERE coalesce(leaked, '') <> ''}), '0',
	'no call saw a setting an earlier call SET (in the same batch or before)');

$node->stop;
done_testing();
