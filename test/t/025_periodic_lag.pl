# The lag of a periodic subscription is measured from where its worker is,
# not from its checkpoint row: with checkpoint_strategy 'periodic' the row is
# written only every checkpoint_interval, and a caught-up filtered
# subscription under a steady load must not read hundreds of thousands of
# positions behind (and critical) between two checkpoints.  The worker
# publishes its in-memory position in its slot every batch; the status uses
# the greater of that and the row's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;
use IPC::Run;

# thresholds the row's distance crosses within a second of the load below
my $node = es_node('periodic_lag',
	"eventsource.max_lag_events_warning = 5000\neventsource.max_lag_events_critical = 10000\n");

sub sql { my ($q) = @_; return $node->safe_psql('postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE public.stop (at timestamptz);
CREATE FUNCTION public.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
SELECT eventsource.append_event('Load-0', -1, 'Tick', '{}');
SELECT eventsource.create_subscription('per', 'public.h(eventsource.events)', start_from => 'end',
    checkpoint_strategy => 'periodic', checkpoint_interval => '1 hour', event_types => '{Nope}');
});
wait_until(q{SELECT state = 'live' FROM eventsource.subscription_status WHERE name = 'per'},
	'the periodic {Nope} subscription is live');
my $start = sql(q{SELECT checkpoint FROM eventsource.subscription_status WHERE name = 'per'});

# the load: 200 events per transaction, until public.stop has a row (at most 120 s)
my ($out, $err) = ('', '');
my $load = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
DO $$
DECLARE
    batch jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'Tick', 'data', '{}'::jsonb))
                      FROM generate_series(1, 200));
    deadline timestamptz := clock_timestamp() + interval '120 seconds';
    i integer := 0;
BEGIN
    WHILE NOT EXISTS (SELECT FROM public.stop) AND clock_timestamp() < deadline LOOP
        PERFORM eventsource.append('Load-' || (i % 50), -1, batch);
        COMMIT;
        i := i + 1;
    END LOOP;
END $$;
} ],
	'>', \$out, '2>', \$err);

# under load: far past the checkpoint row, yet a few positions behind at most
# and healthy with thresholds the row's distance would cross
wait_until(q{SELECT head_position - checkpoint >= 20000 AND lag_positions < 5000
                       AND health = 'healthy'
                  FROM eventsource.subscription_status WHERE name = 'per'},
	'under load: 20,000+ positions past the checkpoint row, lag_positions < 5000, healthy');
sql(q{INSERT INTO public.stop VALUES (now())});
$load->finish;
is($?, 0, 'the load ran without error') or diag($err);

# the load stopped: caught up, nothing left, and still the same checkpoint row
wait_until(q{SELECT lag_positions = 0 AND lag_events = 0 AND lag_events_exact
                       AND lag_seconds = 0 AND health = 'healthy'
                  FROM eventsource.subscription_status WHERE name = 'per'},
	'caught up: lag_positions 0, lag_events 0 (exact), lag_seconds 0, healthy');
is(sql(q{SELECT checkpoint FROM eventsource.subscription_status WHERE name = 'per'}), $start,
	'the checkpoint row did not move (checkpoint_interval 1 hour)');
cmp_ok(sql(q{SELECT eventsource.head_position()}) - $start, '>=', 20000,
	'while the head is 20,000+ positions past it');

# the lag a reset asks for shows at once, whatever the worker had reached
sql(q{SELECT eventsource.pause_subscription('per')});
wait_until(q{SELECT pid IS NULL FROM eventsource.subscription_status WHERE name = 'per'},
	'paused: the worker is gone');
is(sql(q{SELECT lag_positions FROM eventsource.subscription_status WHERE name = 'per'}), '0',
	'paused: the worker saved its position as it left');
sql(qq{SELECT eventsource.reset_subscription('per', $start)});
is(sql(q{SELECT lag_positions = head_position - checkpoint AND checkpoint = } . $start
		  . q{ FROM eventsource.subscription_status WHERE name = 'per'}), 't',
	'after a reset: measured from the new checkpoint');

sql(q{SELECT eventsource.drop_subscription('per')});
$node->stop;
done_testing();
