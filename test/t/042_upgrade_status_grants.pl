# The 1.0 -> 1.1 update keeps what users built on the status view: a
# monitoring role's grants on eventsource.subscription_status and on its
# function, and a view of their own on it.  The update succeeds with that
# view in place, the status view keeps its OID and grants, and a pg_dump of
# the updated database still contains the grants (an update script that
# re-created the view and re-granted would put them in pg_init_privs, which
# pg_dump leaves out), so they survive a restore too.  A role without
# EXECUTE on subscription_status_rows() still cannot read the status, by
# either function.  The same for create_subscription(), which 1.1 replaces
# (it gains the tenant argument): an operator's EXECUTE on the 1.0 function
# is on the new one, and in the dump; a function of the user's whose
# SQL-standard body calls it stops the update with a clear error (DROP would
# fail or take it along).  The data functions keep their 1.0 signatures and
# gain overloads with a tenant argument: a writer's EXECUTE on the 1.0
# function is on the overload too (and in the dump), and a user's function
# calling the 1.0 function keeps working.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('upgrade_grants');

sub sql { my ($db, $q) = @_; return $node->safe_psql($db, $q); }

$node->safe_psql('postgres', 'CREATE DATABASE v10');
sql('v10', q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE ROLE es_monitor;
CREATE ROLE es_nobody;
CREATE ROLE es_operator;
GRANT EXECUTE ON FUNCTION eventsource.create_subscription(text, regprocedure, text, integer, text,
    interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer)
    TO es_operator WITH GRANT OPTION;
GRANT SELECT ON eventsource.subscription_status TO es_monitor, es_nobody;
GRANT EXECUTE ON FUNCTION eventsource.subscription_status_rows() TO es_monitor;
CREATE VIEW public.my_status AS
    SELECT name, partition, health, lag_events FROM eventsource.subscription_status;
GRANT SELECT ON public.my_status TO es_monitor;
CREATE FUNCTION public.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT eventsource.append_event('G-1', -1, 'A', '{}');
CREATE ROLE es_writer;
GRANT EXECUTE ON FUNCTION eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid),
    eventsource.read_all(bigint, integer, text[], text[]) TO es_writer;
-- a role whose name needs quotes, and a chain of grants (es_lead grants to
-- es_junior with its grant option)
CREATE ROLE "App-Writer";
CREATE ROLE es_lead;
CREATE ROLE es_junior;
GRANT EXECUTE ON FUNCTION eventsource.append(text, bigint, jsonb) TO "App-Writer";
GRANT EXECUTE ON FUNCTION eventsource.append(text, bigint, jsonb) TO es_lead WITH GRANT OPTION;
SET ROLE es_lead;
GRANT EXECUTE ON FUNCTION eventsource.append(text, bigint, jsonb) TO es_junior;
RESET ROLE;
-- SQL-standard bodies: their dependencies on the functions are recorded
CREATE FUNCTION public.place(id text) RETURNS bigint LANGUAGE sql
BEGIN ATOMIC
    SELECT stream_version FROM eventsource.append_event(id, -1, 'Placed', '{}');
END;
CREATE FUNCTION public.subscribe(n text) RETURNS void LANGUAGE sql
BEGIN ATOMIC
    SELECT eventsource.create_subscription(n, 'public.h(eventsource.events)');
END;
});
sql('v10', q{BEGIN;
SELECT eventsource.create_subscription('g', 'public.h(eventsource.events)', start_from => 'beginning');
SELECT eventsource.pause_subscription('g');
COMMIT;});
my $view_oid = sql('v10', q{SELECT 'eventsource.subscription_status'::regclass::oid});
is(sql('v10', q{SET ROLE es_monitor; SELECT count(*) FROM public.my_status}), '1',
	'1.0: the monitoring role reads the status through its own view');

# create_subscription() is replaced: public.subscribe() stops the update
my ($ret, $out, $err) = $node->psql('v10', 'ALTER EXTENSION eventsource UPDATE');
isnt($ret, 0, 'the update refuses while a user function calls create_subscription() of 1.0');
like($err, qr/cannot update eventsource: eventsource\.create_subscription\(.*\) is replaced, and other objects depend on it/,
	'the error names the replaced function');
like($err, qr/DETAIL:  Depending on it: function public\.subscribe\(text\)\./, 'and the object');
like($err, qr/HINT:  Drop those objects, run ALTER EXTENSION eventsource UPDATE, then create them again/,
	'and what to do');
is(sql('v10', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.0',
	'the refused update changed nothing');
sql('v10', 'DROP FUNCTION public.subscribe(text)');

($ret, $out, $err) = $node->psql('v10', 'ALTER EXTENSION eventsource UPDATE');
is($ret, 0, 'the update succeeds with a user view on subscription_status') or diag($err);
is(sql('v10', q{SELECT extversion FROM pg_extension WHERE extname = 'eventsource'}), '1.1',
	'now 1.1');
is(sql('v10', q{SELECT 'eventsource.subscription_status'::regclass::oid}), $view_oid,
	'the status view is the same object (same OID)');
is(sql('v10', q{SET ROLE es_monitor; SELECT count(*) FROM public.my_status}), '1',
	'the user view survives and works for the monitoring role');
is(sql('v10', q{SET ROLE es_monitor;
	SELECT lag_positions IS NOT NULL AND lag_events_exact IS NOT NULL FROM eventsource.subscription_status}),
	't', 'the monitoring role reads the new columns with its 1.0 grants');

# create_subscription(): the operator's grant is on the new function, as
# the user's (not the extension's initial privileges), and no one else's
my $create_sig = 'eventsource.create_subscription(text, regprocedure, text, integer, text, '
  . 'interval, interval, integer, interval, boolean, integer, interval, text[], text[], integer, text)';
is(sql('v10', qq{SELECT string_agg(r || ':' || has_function_privilege(r, '$create_sig', 'EXECUTE')
                                      || ':' || has_function_privilege(r, '$create_sig', 'EXECUTE WITH GRANT OPTION'),
                                   ' ' ORDER BY r)
                   FROM unnest(ARRAY['es_operator', 'es_monitor', 'es_nobody']) r}),
	'es_monitor:false:false es_nobody:false:false es_operator:true:true',
	'the operator\'s EXECUTE (with grant option) on the 1.0 create_subscription() is on the new one');
is(sql('v10', qq{SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
                  WHERE i.objoid = '$create_sig'::regprocedure AND a.grantee = 'es_operator'::regrole}),
	'0', '(and not among the extension\'s initial privileges)');
is(sql('v10', q{SET ROLE es_operator;
	SELECT eventsource.create_subscription('op', 'public.h(eventsource.events)');
	RESET ROLE;
	SELECT tenant || ' ' || owner::text FROM eventsource.subscriptions WHERE name = 'op';
	SELECT eventsource.drop_subscription('op');}),
	"\ndefault es_operator\n", 'the operator creates a subscription with it (of its current tenant)');
is(sql('v10', q{SELECT coalesce(tenant, 'cross-tenant') FROM eventsource.subscriptions WHERE name = 'g'}),
	'cross-tenant', 'the subscription of 1.0 is cross-tenant');

# the data functions: the 1.0 ones stay (a user function calling one still
# works), and the writer may execute their overloads too
is(sql('v10', q{SELECT public.place('G-2')}), '1', 'a user function calling append_event() of 1.0 still works');
my @overloads = ('eventsource.append_event(text, bigint, text, jsonb, jsonb, uuid, text)',
	'eventsource.read_all(bigint, integer, text[], text[], text)');
for my $fn (@overloads)
{
	is(sql('v10', qq{SELECT string_agg(r || ':' || has_function_privilege(r, '$fn', 'EXECUTE'), ' ' ORDER BY r)
	                   FROM unnest(ARRAY['es_writer', 'es_monitor', 'es_nobody']) r}),
		'es_monitor:false es_nobody:false es_writer:true', "the writer's grant of 1.0 is on the overload $fn");
	is(sql('v10', qq{SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
	                  WHERE i.objoid = '$fn'::regprocedure AND a.grantee = 'es_writer'::regrole}),
		'0', '(and not among the extension\'s initial privileges)');
}
# the quoted role and the chain: each grant on the overload is made by the
# same grantor as on the 1.0 function, so revoking es_lead's grant option
# with CASCADE takes es_junior's EXECUTE on both
my $acl_sql = q{SELECT string_agg(e, ' ' ORDER BY e COLLATE "C")
                  FROM (SELECT a.grantee::regrole::text || '/' || a.grantor::regrole::text
                               || CASE WHEN a.is_grantable THEN '*' ELSE '' END AS e
                          FROM pg_proc p, aclexplode(p.proacl) a
                         WHERE p.oid = '%s'::regprocedure AND a.grantee <> a.grantor) x};
is(sql('v10', sprintf($acl_sql, 'eventsource.append(text, bigint, jsonb, text)')),
	sql('v10', sprintf($acl_sql, 'eventsource.append(text, bigint, jsonb)')),
	'the overload of append() has the 1.0 function\'s grants, grantors included');
is(sql('v10', sprintf($acl_sql, 'eventsource.append(text, bigint, jsonb, text)')),
	'"App-Writer"/postgres es_junior/es_lead es_lead/postgres*',
	'(a role that needs quotes, a grant option, a grant made by es_lead)');
is(sql('v10', q{BEGIN;
	REVOKE GRANT OPTION FOR EXECUTE ON FUNCTION eventsource.append(text, bigint, jsonb, text) FROM es_lead CASCADE;
	SELECT has_function_privilege('es_junior', 'eventsource.append(text, bigint, jsonb, text)', 'EXECUTE');
	ROLLBACK;}), 'f', 'REVOKE ... CASCADE of es_lead\'s grant option reaches es_junior\'s grant on the overload');
sql('v10', q{SELECT eventsource.create_tenant('acme')});
is(sql('v10', q{SET ROLE es_writer;
	SELECT stream_version FROM eventsource.append_event('G-3', -1, 'A', '{}', '{}', NULL, 'acme');
	SELECT count(*) FROM eventsource.read_all(0, 100, NULL, NULL, 'acme')}),
	"1\n1", 'the writer appends and reads with the tenant named');
is(sql('v10', q{SELECT tenant_id FROM eventsource.events WHERE stream_id = 'G-3'}), 'acme',
	'(in that tenant)');

# without EXECUTE on subscription_status_rows(): refused as in 1.0, by either function
for my $q ('SELECT count(*) FROM eventsource.subscription_status',
	'SELECT count(*) FROM eventsource.subscription_status_rows_v2()')
{
	($ret, $out, $err) = $node->psql('v10', "SET ROLE es_nobody; $q");
	like($err, qr/permission denied for function subscription_status_rows\b/,
		"without EXECUTE on subscription_status_rows(): $q is refused");
}

# the grants are in the dump
my $dump = $node->basedir . '/v10.sql';
command_ok([ 'pg_dump', '-d', $node->connstr('v10'), '-f', $dump ], 'pg_dump of the updated database');
my $text = slurp_file($dump);
like($text, qr/^GRANT SELECT ON TABLE eventsource\.subscription_status TO es_monitor;$/m,
	'the dump grants SELECT on subscription_status to the monitoring role');
like($text, qr/^GRANT ALL ON FUNCTION eventsource\.subscription_status_rows\(OUT name text,[^;]*\) TO es_monitor;$/m,
	'the dump grants EXECUTE on subscription_status_rows() to the monitoring role');
like($text, qr/^GRANT ALL ON FUNCTION eventsource\.create_subscription\([^;]*tenant text[^;]*\) TO es_operator WITH GRANT OPTION;$/m,
	'the dump grants EXECUTE on the new create_subscription() to the operator');
like($text, qr/^GRANT ALL ON FUNCTION eventsource\.append_event\([^;]*tenant text[^;]*\) TO es_writer;$/m,
	'the dump grants EXECUTE on the append_event() overload to the writer');
like($text, qr/^GRANT ALL ON FUNCTION eventsource\.read_all\([^;]*tenant text[^;]*\) TO es_writer;$/m,
	'the dump grants EXECUTE on the read_all() overload to the writer');
like($text, qr/CREATE VIEW public\.my_status AS/, 'the dump has the user view');

# and a restore of it lets the role read the status as before
$node->safe_psql('postgres', 'CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'), '-f', $dump ],
	'the dump restores');
is(sql('restored', q{SET ROLE es_monitor;
	SELECT count(*) FROM public.my_status WHERE name = 'g'}), '1',
	'after the restore the monitoring role reads the status through its view');
is(sql('restored', q{SET ROLE es_monitor;
	SELECT count(*) FROM eventsource.subscription_status WHERE lag_positions IS NOT NULL}), '1',
	'and the status view itself');

is(sql('restored', qq{SELECT has_function_privilege('es_operator', '$create_sig', 'EXECUTE')}), 't',
	'and the operator may create subscriptions');
is(sql('restored', qq{SELECT has_function_privilege('es_writer', '$overloads[0]', 'EXECUTE')}), 't',
	'and the writer may append with the tenant named');
is(sql('restored', q{SELECT public.place('G-4')}), '1', 'and the user function calling append_event() works');
sql('restored', q{SELECT eventsource.drop_subscription('g')});
sql('v10', q{SELECT eventsource.drop_subscription('g')});
$node->stop;
done_testing();
