# Without shared_preload_libraries the extension installs and its tables can
# be read, the functions that don't need shared memory work, and those that
# do raise SQLSTATE 55000 with a hint naming the setting.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('no_preload');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE EXTENSION eventsource');
is($node->safe_psql('postgres', 'SELECT count(*) FROM eventsource.events'),
	'0', 'tables can be read');
is($node->safe_psql('postgres', "SELECT count(*) FROM eventsource.read_stream('Order-1')"),
	'0', 'read_stream works');
is($node->safe_psql('postgres', "SELECT eventsource.stream_version('Order-1')"),
	'0', 'stream_version works');
is($node->safe_psql('postgres', "SELECT eventsource.category('Order-1')"),
	'Order', 'category works');
$node->safe_psql('postgres', "SELECT eventsource.save_checkpoint('c', 3)");
is($node->safe_psql('postgres', "SELECT eventsource.get_checkpoint('c')"),
	'3', 'checkpoints work');

for my $call (
	"SELECT eventsource.append('Order-1', 0, '[{\"type\": \"A\", \"data\": {}}]')",
	"SELECT eventsource.append_event('Order-1', 0, 'A', '{}')",
	"SELECT count(*) FROM eventsource.read_all()",
	"SELECT eventsource.head_position()")
{
	my ($ret, $out, $err) = $node->psql('postgres', $call,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	isnt($ret, 0, "fails without preload: $call");
	like($err, qr/ERROR:  55000: .* requires the eventsource library to be preloaded/,
		"55000 for: $call");
	like($err, qr/HINT:  Add eventsource to shared_preload_libraries/,
		"hint names the setting for: $call");
}

# a direct insert is still refused (the trigger needs no shared memory)
my ($ret, $out, $err) = $node->psql('postgres',
	"INSERT INTO eventsource.events VALUES (1, 'X', 1, gen_random_uuid(), 'T', '{}', '{}', now())");
like($err, qr/cannot insert into eventsource.events directly/, 'direct insert refused');

# and once preloaded, the same database works
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'eventsource'");
$node->restart;
is($node->safe_psql('postgres',
	"SELECT stream_version FROM eventsource.append_event('Order-1', 0, 'A', '{}')"),
	'1', 'append works after preloading');
is($node->safe_psql('postgres', 'SELECT eventsource.head_position()'), '1', 'horizon after preloading');

$node->stop;
done_testing();
