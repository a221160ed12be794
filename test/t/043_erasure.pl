# Erasure of personal data (README "Erasure", docs/lifecycle.md) across
# processes:
#  - a running subscription receives $StreamErased in log order, after the
#    events it had already delivered; a subscription that had not reached
#    the events yet (partitions, a category filter, a batch handler) gets
#    the redacted version, then the $StreamErased;
#  - the copies the worker made (dead letters, recent errors, a partition
#    stopped at the event, the status view's last_error) are redacted;
#  - pg_dump / restore keeps the erasure (the dump holds no erased value);
#  - what stays in the table's pages until VACUUM FULL, as documented;
#  - a database still on the 1.0 SQL refuses with 55000 and a hint.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('erase');

sub sql { my ($q, $db) = @_; return $node->safe_psql($db // 'postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sub fails
{
	my ($db, $query) = @_;
	my ($ret, $out, $err) = $node->psql($db, "\\set VERBOSITY verbose\n$query");
	return 'no error' if $ret == 0;
	return $1 if $err =~ /ERROR:  (\w{5}: [^\n]*)/;
	return $err;
}

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (sub text, pos bigint, stream text, version bigint, type text, data jsonb,
                   metadata jsonb, pid int, PRIMARY KEY (sub, pos));
-- a read model that anonymises its rows when it learns of an erasure
CREATE FUNCTION h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.global_position,
                           e.stream_id, e.stream_version, e.event_type, e.data, e.metadata,
                           pg_backend_pid());
  IF e.event_type = '$StreamErased' THEN
    UPDATE seen s SET data = r.data, metadata = r.metadata
      FROM eventsource.read_stream(e.stream_id) r
     WHERE s.sub = current_setting('eventsource.subscription') AND s.stream = e.stream_id
       AND s.version = r.stream_version;
  END IF;
END $$;
CREATE FUNCTION hb(es eventsource.events[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO seen SELECT current_setting('eventsource.subscription'), e.global_position,
                          e.stream_id, e.stream_version, e.event_type, e.data, e.metadata,
                          pg_backend_pid()
    FROM unnest(es) e
$$;
-- the subscriptions that have not reached the events yet: created paused
BEGIN;
SELECT eventsource.create_subscription('late', 'h(eventsource.events)', partitions => 3);
SELECT eventsource.pause_subscription('late');
SELECT eventsource.create_subscription('late_cat', 'h(eventsource.events)', categories => '{User}');
SELECT eventsource.pause_subscription('late_cat');
SELECT eventsource.create_subscription('late_batch', 'hb(eventsource.events[])', partitions => 2,
                                       batch_size => 50);
SELECT eventsource.pause_subscription('late_batch');
COMMIT;
SELECT eventsource.create_subscription('live', 'h(eventsource.events)', partitions => 2);
});

# ---------------------------------------------------------------------------
# 1. the live subscription delivers the events, then the erasure
# ---------------------------------------------------------------------------
sql(q{
SELECT eventsource.append('User-1', 0, '[
  {"type": "Registered", "data": {"name": "Ann", "email": "ann-secret@example.com"},
   "metadata": {"subject_id": "s-1", "ip": "10.9.8.7"}},
  {"type": "Renamed", "data": {"name": "Anna"}, "metadata": {"subject_id": "s-1"}}]');
SELECT eventsource.append('Order-1', 0, '[
  {"type": "Placed", "data": {"by": "ann-secret@example.com"}, "metadata": {"subject_id": "s-1"}},
  {"type": "Placed", "data": {"by": "bob@example.com"}, "metadata": {"subject_id": "s-2"}}]');
});
my $head1 = sql('SELECT eventsource.head_position()');
wait_until(qq{SELECT bool_and(checkpoint >= $head1) FROM eventsource.subscription_status WHERE name = 'live'},
	'live delivered the events');
is(sql(q{SELECT events_erased FROM eventsource.erase_stream('User-1', '{ip}')}), '2', 'erase_stream');
is(sql(q{SELECT events_erased || ' ' || streams || ' ' || more
           FROM eventsource.erase_by_metadata('subject_id', 's-1', '{subject_id}')}),
	'3 2 false', 'erase_by_metadata: the rest of the subject, in both streams');
sql(q{SELECT eventsource.append_event('User-2', 0, 'Registered', '{"name": "Cy"}')});
my $head2 = sql('SELECT eventsource.head_position()');
wait_until(qq{SELECT bool_and(checkpoint >= $head2) FROM eventsource.subscription_status WHERE name = 'live'},
	'live delivered the erasures');
is(sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'live'}),
	'User-1 1 Registered, User-1 2 Renamed, Order-1 1 Placed, Order-1 2 Placed, '
	  . 'User-1 -1 $StreamErased, Order-1 -1 $StreamErased, User-1 -2 $StreamErased, User-2 1 Registered',
	'live: the events it had passed, then each $StreamErased in log order (streams of one call in id order), then what came after');
is(sql(q{SELECT count(*) FROM seen WHERE sub = 'live' AND (data::text || metadata::text) ~ 'secret|10\.9'}),
	'0', 'live: its read model anonymised the rows it had on $StreamErased');
is(sql(q{SELECT data FROM seen WHERE sub = 'live' AND stream = 'User-1' AND version = -2}),
	'{"events": 2, "versions": [1, 2], "last_version": 2, "first_version": 1, "metadata_keys": ["subject_id"], "by_metadata_key": "subject_id"}',
	'the $StreamErased data says what was erased (never the value that selected it)');

# ---------------------------------------------------------------------------
# 2. the subscriptions that had not reached the events get the redacted ones
# ---------------------------------------------------------------------------
sql(q{SELECT eventsource.resume_subscription(n) FROM unnest('{late,late_cat,late_batch}'::text[]) n});
for my $s ('late', 'late_cat', 'late_batch')
{
	wait_until(qq{SELECT bool_and(checkpoint >= $head2) FROM eventsource.subscription_status WHERE name = '$s'},
		"$s caught up");
}
my $secret = q{(data::text || metadata::text) ~ 'secret|Ann|10\.9|"s-1"'};
for my $s ('late', 'late_batch')
{
	is(sql(qq{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = '$s'}),
		sql(q{SELECT string_agg(stream || ' ' || version || ' ' || type, ', ' ORDER BY pos) FROM seen WHERE sub = 'live'}),
		"$s: the same events in the same order");
	is(sql(qq{SELECT count(*) FILTER (WHERE $secret) || '/' || count(*) FROM seen WHERE sub = '$s'}),
		'0/8', "$s: no erased value reached the handler");
}
is(sql(q{SELECT string_agg(version || ' ' || type || ' ' || data::text, ', ' ORDER BY pos) FROM seen
          WHERE sub = 'late_cat'}),
	'1 Registered {"$erased": true}, 2 Renamed {"$erased": true}, -1 $StreamErased {"events": 2, "last_version": 2, "first_version": 1, "metadata_keys": ["ip"]}, '
	  . '-2 $StreamErased {"events": 2, "versions": [1, 2], "last_version": 2, "first_version": 1, "metadata_keys": ["subject_id"], "by_metadata_key": "subject_id"}, '
	  . '1 Registered {"name": "Cy"}',
	'late_cat (category filter): the redacted events, then the erasures, in log order');
is(sql(q{SELECT string_agg(metadata::text, ', ' ORDER BY pos) FROM seen WHERE sub = 'late_cat' AND version = 1 AND stream = 'User-1'}),
	'{"ip": {"$erased": true}, "subject_id": {"$erased": true}}', 'and the redacted metadata keys');
is(sql(q{SELECT count(*) FILTER (WHERE st.partition = eventsource.stream_partition(s.stream, st.partitions))
              || '/' || count(*) FROM seen s
          LEFT JOIN eventsource.subscription_status st ON st.name = s.sub AND st.pid = s.pid
         WHERE s.sub IN ('late', 'late_batch')}),
	'16/16', 'late, late_batch: each event and $StreamErased went to the partition of its stream');

sql(q{SELECT eventsource.pause_subscription(n) FROM unnest('{late,late_cat,late_batch}'::text[]) n});

# ---------------------------------------------------------------------------
# 3. the worker's copies: a dead letter, its recent error, a partition
#    stopped at the event; the handler's message quotes the data
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION hfail(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.data ? 'email' THEN
    RAISE EXCEPTION 'cannot mail %', e.data ->> 'email';
  END IF;
END $$;
SELECT eventsource.create_subscription('dl', 'hfail(eventsource.events)', categories => '{Mail}',
                                       max_retries => 0, circuit_breaker_threshold => 0);
SELECT eventsource.create_subscription('stop', 'hfail(eventsource.events)', categories => '{Mail}',
                                       max_retries => 0, continue_on_error => false);
SELECT eventsource.append_event('Mail-1', 0, 'Requested', '{"email": "dee-secret@example.com"}',
                                '{"subject_id": "s-3"}');
});
wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE subscription = 'dl'}, 'a dead letter');
wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status WHERE name = 'stop'},
	'the stop subscription stopped at the event');
my $copies = q{SELECT concat_ws(' | ',
    (SELECT string_agg(data::text || metadata::text || error_message, ',') FROM eventsource.dead_letters),
    (SELECT string_agg(error_message, ',' ORDER BY id) FROM eventsource.recent_errors
      WHERE global_position = (SELECT global_position FROM eventsource.events WHERE stream_id = 'Mail-1' AND stream_version = 1)),
    (SELECT string_agg(error_message, ',') FROM eventsource.subscription_partitions WHERE subscription = 'stop'),
    (SELECT string_agg(last_error, ',') FROM eventsource.subscription_status WHERE name IN ('dl', 'stop')))};
like(sql($copies), qr/dee-secret/, 'before the erasure the copies quote the data');
is(sql(q{SELECT events_erased FROM eventsource.erase_by_metadata('subject_id', 's-3')}), '1',
	'erased by metadata');
my $after = sql($copies);
unlike($after, qr/dee-secret/, 'after the erasure no copy quotes the data');
is($after, '{"$erased": true}{"subject_id": "s-3"}(erased) | (erased),(erased) | (erased) | '
	. '(error text withheld: an erasure committed after it; see eventsource.recent_errors),'
	. '(error text withheld: an erasure committed after it; see eventsource.recent_errors)',
	'dead letter, recent errors, the stopped partition redacted; the status withholds the workers\' last errors');
# an error after the erasure is shown again
sql(q{SELECT eventsource.append_event('Mail-2', 0, 'Requested', '{"email": "eve@example.com"}')});
wait_until(q{SELECT last_error = 'cannot mail eve@example.com' FROM eventsource.subscription_status WHERE name = 'dl'},
	'a later error is shown in the status');
# retried, the dead letter delivers the redacted event (no email: no error)
sql(q{SELECT eventsource.erase_stream('Mail-2')});
is(sql(q{SELECT eventsource.retry_dead_letters('dl')}), '2', 'the dead letters are retried');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 'dl'},
	'and the redacted events no longer fail');
sql(q{SELECT eventsource.drop_subscription('stop'), eventsource.drop_subscription('dl')});

# ---------------------------------------------------------------------------
# 4. what remains in the table's pages: the old row version until VACUUM
#    FULL rewrites the table (a plain VACUUM frees the space, the bytes stay
#    until overwritten); README "Erasure" says so with the commands
# ---------------------------------------------------------------------------
sql(q{CREATE EXTENSION pageinspect});
my $in_pages = q{SELECT count(*) FROM generate_series(0, pg_relation_size('eventsource.events') / 8192 - 1) b
                  WHERE position('secret@example.com' in encode(get_raw_page('eventsource.events', b::int), 'escape')) > 0};
isnt(sql($in_pages), '0', 'after the erasure the old row versions are still in the pages');
sql('VACUUM eventsource.events');
sql('VACUUM (FULL) eventsource.events');
is(sql($in_pages), '0', 'VACUUM (FULL) leaves no copy in the table');
sql(q{DROP EXTENSION pageinspect});

# ---------------------------------------------------------------------------
# 5. pg_dump / restore keeps the erasure
# ---------------------------------------------------------------------------
my $head5 = sql('SELECT eventsource.head_position()');
wait_until(qq{SELECT bool_and(checkpoint >= $head5) FROM eventsource.subscription_status WHERE name = 'live'},
	'live handled every erasure');
sql(q{SELECT eventsource.pause_subscription(name) FROM eventsource.subscriptions});
my $tempdir = PostgreSQL::Test::Utils::tempdir;
$node->command_ok([ 'pg_dump', '-d', $node->connstr('postgres'), '-f', "$tempdir/erase.sql" ],
	'pg_dump (plain)');
my $dump = slurp_file("$tempdir/erase.sql");
unlike($dump, qr/secret\@example\.com|10\.9\.8\.7/, 'the dump holds no erased value');
like($dump, qr/\$StreamErased/, 'the dump holds the $StreamErased events');
sql('CREATE DATABASE restored');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'),
		'-f', "$tempdir/erase.sql" ], 'restore');
sql(q{SELECT eventsource.drop_subscription(name) FROM eventsource.subscriptions}, 'restored');
my $log = q{SELECT string_agg(concat_ws(' ', global_position, stream_id, stream_version, event_id, event_type,
                                         data, metadata, recorded_at), '; ' ORDER BY global_position)
              FROM eventsource.events};
is(sql($log, 'restored'), sql($log), 'the restored log is the erased log, envelope and all');
my $state = q{SELECT string_agg(concat_ws(' ', stream_id, hidden_through, last_version, operations, last_position),
                                '; ' ORDER BY stream_id) FROM eventsource.stream_lifecycle};
is(sql($state, 'restored'), sql($state), 'the lifecycle rows (operation counters) are restored');
is(sql(q{SELECT "position" > 0 FROM eventsource.erase_stream('User-2')}, 'restored'), 't',
	'erasure goes on in the restored store');
is(sql(q{SELECT string_agg(stream_version::text, ',' ORDER BY global_position) FROM eventsource.events
          WHERE stream_id = 'User-1' AND stream_version < 0}, 'restored'),
	'-1,-2', 'with the restored numbering of system events');

# ---------------------------------------------------------------------------
# 6. a database still on the 1.0 SQL
# ---------------------------------------------------------------------------
sql('CREATE DATABASE old');
sql(q{
CREATE EXTENSION eventsource VERSION '1.0';
CREATE FUNCTION public.erase_stream(text, text[], bigint, OUT bigint, OUT bigint)
    LANGUAGE c AS '$libdir/eventsource', 'es_erase_stream';
CREATE FUNCTION public.erase_by_metadata(text, text, text[], integer, OUT bigint, OUT bigint, OUT boolean)
    LANGUAGE c AS '$libdir/eventsource', 'es_erase_by_metadata';
SELECT eventsource.append_event('Old-1', 0, 'A', '{"name": "Old"}', '{"subject_id": "o"}');
SELECT eventsource.save_snapshot('Old-1', 1, '{"name": "Old"}');
}, 'old');
like(fails('old', q{SELECT public.erase_stream('Old-1', NULL, -1)}),
	qr/^55000: eventsource.erase_stream\(\) needs the eventsource 1.1 SQL objects/,
	'1.0 SQL: erase_stream refuses with 55000');
like(fails('old', q{SELECT public.erase_by_metadata('subject_id', 'o', NULL, 10)}),
	qr/^55000: eventsource.erase_by_metadata\(\) needs the eventsource 1.1 SQL objects/,
	'1.0 SQL: erase_by_metadata refuses with 55000');
my ($ret, $out, $err) = $node->psql('old', q{SELECT public.erase_stream('Old-1', NULL, -1)});
like($err, qr/HINT:  Run ALTER EXTENSION eventsource UPDATE\./, 'with the hint to update');
sql(q{SELECT eventsource.save_snapshot('Old-1', 1, '{"name": "Old", "v": 2}')}, 'old');
is(sql(q{SELECT state::text FROM eventsource.load_snapshot('Old-1', 1)}, 'old'), '{"v": 2, "name": "Old"}',
	'1.0 SQL: save_snapshot works as before (the new state is stored)');
sql(q{ALTER EXTENSION eventsource UPDATE}, 'old');
is(sql(q{SELECT events_erased FROM eventsource.erase_stream('Old-1')}, 'old'), '1',
	'after the update the erasure works');

$node->stop;

done_testing();
