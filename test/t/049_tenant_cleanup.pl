# The cleanup worker and the retention pass with tenants (issue 15 part 2;
# docs/tenancy.md section 6): one worker serves every tenant of the
# database, each action one (tenant, stream).
#  - two tenants with the same stream ids, each deleting or truncating
#    different ones: the cleanup removes exactly the hidden rows of each
#    (tenant, stream), never the other tenant's rows of the same stream id
#    (exact counts per tenant and stream);
#  - retention rules are per tenant: one tenant's category rule does not
#    expire the other's streams of that category, another tenant's stream
#    rule does not replace it, and the $StreamTruncated events are appended
#    in the tenant of the stream they truncate.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('tenant_cleanup', q{
eventsource.cleanup = on
eventsource.cleanup_naptime = 300ms
eventsource.cleanup_batch_size = 30
eventsource.cleanup_max_rows_per_second = 0
});

sub sql { my ($q) = @_; return $node->safe_psql('postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

# in tenant $t
sub in_tenant
{
	my ($t, $q) = @_;
	return sql("BEGIN; SET LOCAL eventsource.tenant = '$t'; $q; COMMIT;");
}

# the rows of version >= 1 each (tenant, stream) still has, as the owner
my $rows_q = q{SELECT string_agg(format('%s/%s=%s', tenant_id, stream_id, n), ' '
                                 ORDER BY tenant_id, stream_id)
                 FROM (SELECT tenant_id, stream_id, count(*) FILTER (WHERE stream_version >= 1) AS n
                         FROM eventsource.events GROUP BY 1, 2) c};
my $all_cleaned_q = q{SELECT count(*) > 0 AND bool_and(cleaned_through = hidden_through)
                        FROM eventsource.stream_lifecycle};

sql(q{
CREATE EXTENSION eventsource;
SELECT eventsource.create_tenant('ta'), eventsource.create_tenant('tb');
});
for my $t ('ta', 'tb')
{
	in_tenant($t, q{
SELECT eventsource.append('Acct-' || i, 0,
         (SELECT jsonb_agg(jsonb_build_object('type', 'E', 'data', jsonb_build_object('v', v)))
            FROM generate_series(1, 50) v))
  FROM generate_series(1, 5) i});
}

# ---------------------------------------------------------------------------
# 1. the cleanup removes exactly each tenant's hidden rows
# ---------------------------------------------------------------------------
in_tenant('ta', q{SELECT eventsource.delete_stream('Acct-1', 50),
                         eventsource.truncate_stream('Acct-2', 21)});
in_tenant('tb', q{SELECT eventsource.truncate_stream('Acct-1', 31),
                         eventsource.delete_stream('Acct-3', 50, hard => true)});
wait_until($all_cleaned_q, 'the cleanup finished every tenant\'s hidden rows');
is(sql($rows_q),
	'ta/Acct-1=0 ta/Acct-2=30 ta/Acct-3=50 ta/Acct-4=50 ta/Acct-5=50 '
	  . 'tb/Acct-1=20 tb/Acct-2=50 tb/Acct-3=0 tb/Acct-4=50 tb/Acct-5=50',
	'exactly the hidden rows of each (tenant, stream) are gone');
is(sql(q{SELECT string_agg(format('%s/%s:%s/%s', tenant_id, stream_id, hidden_through, cleaned_through),
                           ' ' ORDER BY tenant_id, stream_id) FROM eventsource.stream_lifecycle}),
	'ta/Acct-1:50/50 ta/Acct-2:20/20 tb/Acct-1:30/30 tb/Acct-3:50/50',
	'each tenant\'s lifecycle rows record their own progress');
# the remaining rows are the right ones: versions above the floor
is(sql(q{SELECT count(*) FROM eventsource.events e JOIN eventsource.stream_lifecycle l
           USING (tenant_id, stream_id) WHERE e.stream_version BETWEEN 1 AND l.hidden_through}),
	'0', 'no hidden row is left in any tenant');
# tenant tb still appends to its Acct-2 after version 50, ta's tombstone-free
# Acct-1 re-opens at 51
is(in_tenant('ta', q{SELECT stream_version FROM eventsource.append_event('Acct-1', 0, 'E', '{}')}),
	'51', 'ta\'s deleted Acct-1 re-opens after its last version');
is(in_tenant('tb', q{SELECT eventsource.stream_version('Acct-1')}), '50',
	'tb\'s Acct-1 keeps its version');

# ---------------------------------------------------------------------------
# 2. retention rules are per tenant
# ---------------------------------------------------------------------------
in_tenant('ta', q{SELECT eventsource.set_category_retention('Acct', max_count => 10)});
in_tenant('tb', q{SELECT eventsource.set_retention('Acct-4', max_count => 5)});
wait_until(q{SELECT count(*) = 7 FROM eventsource.events
              WHERE event_type = '$StreamTruncated' AND stream_version < 0
                AND (tenant_id, stream_id) IN (('ta', 'Acct-2'), ('ta', 'Acct-3'), ('ta', 'Acct-4'),
                                               ('ta', 'Acct-5'), ('tb', 'Acct-4'), ('tb', 'Acct-1'))},
	'the retention pass truncated the streams of each tenant\'s rules');
wait_until($all_cleaned_q, 'and the cleanup removed what they hid');
is(sql($rows_q),
	'ta/Acct-1=1 ta/Acct-2=10 ta/Acct-3=10 ta/Acct-4=10 ta/Acct-5=10 '
	  . 'tb/Acct-1=20 tb/Acct-2=50 tb/Acct-3=0 tb/Acct-4=5 tb/Acct-5=50',
	'ta\'s category rule expired ta\'s streams only, tb\'s stream rule tb\'s Acct-4 only');
is(sql(q{SELECT string_agg(format('%s/%s:%s', tenant_id, stream_id, data ->> 'hidden_through'),
                           ' ' ORDER BY tenant_id, stream_id, global_position)
           FROM eventsource.events WHERE event_type = '$StreamTruncated'}),
	'ta/Acct-2:20 ta/Acct-2:40 ta/Acct-3:40 ta/Acct-4:40 ta/Acct-5:40 tb/Acct-1:30 tb/Acct-4:45',
	'each $StreamTruncated is in the tenant of the stream it truncates');
# a tenant reads its own rules only, and its own cleanup rows
is(in_tenant('tb', q{SELECT string_agg(scope || ':' || name, ',') FROM eventsource.retention}),
	'stream:Acct-4', 'tb lists its own rule');
is(in_tenant('tb', q{SELECT string_agg(stream_id, ',' ORDER BY stream_id) FROM eventsource.stream_cleanup}),
	'Acct-1,Acct-3,Acct-4', 'tb lists its own cleanup rows');

$node->stop;
done_testing();
