# Erasure and the subscription worker's in-flight window (README "Erasure
# of personal data", docs/lifecycle.md "Subscriptions"):
#  - a worker read an event before its erasure committed, and its handler
#    fails on it after the commit with a message quoting the old data: no
#    copy the worker writes (dead letter, recent_errors, the partition row
#    of a subscription that stops, subscription_status.last_error,
#    error_stats(), the notification on eventsource_errors, the server log)
#    holds the old value, without a second erasure;
#  - a batch handler failing on the whole batch: the status withholds its
#    message (it may quote any event of the batch);
#  - retry_dead_letters() delivers the event as the log holds it now (the
#    redacted row), not the dead letter's copy.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use EsTest;

my $node = es_node('erase_inflight', "eventsource.notify_min_severity = low\n");

sub sql { my ($q) = @_; return $node->safe_psql('postgres', $q); }
sub wait_until { es_wait_until($node, 'postgres', @_) }

sql(q{
CREATE EXTENSION eventsource;
CREATE TABLE seen (sub text, data jsonb, metadata jsonb);
-- waits for the test's advisory lock on the events of Pii-..., then fails
-- quoting the e-mail address when the event it got still has one
CREATE FUNCTION hblock(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.stream_id LIKE 'Pii-%' THEN
    PERFORM pg_advisory_lock_shared(4242);
    PERFORM pg_advisory_unlock_shared(4242);
  END IF;
  INSERT INTO seen VALUES (current_setting('eventsource.subscription'), e.data, e.metadata);
  IF e.data ? 'email' THEN
    RAISE EXCEPTION 'cannot mail %', e.data ->> 'email';
  END IF;
END $$;
});

# ---------------------------------------------------------------------------
# 1. the in-flight window: the handler fails after the erasure committed
# ---------------------------------------------------------------------------
my $gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(4242)');
my $listener = $node->background_psql('postgres');
$listener->query_safe('LISTEN eventsource_errors');

sql(q{
SELECT eventsource.create_subscription('dl', 'hblock(eventsource.events)', categories => '{Pii}',
                                       max_retries => 0, circuit_breaker_threshold => 0,
                                       processing_timeout => '5 minutes');
SELECT eventsource.create_subscription('stop', 'hblock(eventsource.events)', categories => '{Pii}',
                                       max_retries => 0, continue_on_error => false,
                                       processing_timeout => '5 minutes');
SELECT eventsource.append_event('Pii-1', 0, 'Registered', '{"email": "zed-secret@example.com"}',
                                '{"ip": "10.7.7.7", "subject_id": "z-1"}');
});
wait_until(q{SELECT count(*) = 2 FROM pg_locks
              WHERE locktype = 'advisory' AND objid = 4242 AND NOT granted},
	'both handlers hold the event and wait');

is(sql(q{SELECT events_erased FROM eventsource.erase_stream('Pii-1', '{ip}')}), '1',
	'the stream is erased (committed) while the batch is in flight');
my $log_offset = -s $node->logfile;
$gate->query_safe('SELECT pg_advisory_unlock(4242)');

wait_until(q{SELECT count(*) = 1 FROM eventsource.dead_letters WHERE subscription = 'dl'},
	'the failed event is dead-lettered');
wait_until(q{SELECT state = 'failed' FROM eventsource.subscription_status WHERE name = 'stop'},
	'the other subscription stopped at it');

my $copies = q{SELECT concat_ws(' | ',
    (SELECT string_agg(data::text || metadata::text || error_message, ',') FROM eventsource.dead_letters),
    (SELECT string_agg(error_message, ',' ORDER BY id) FROM eventsource.recent_errors),
    (SELECT string_agg(coalesce(error_message, '-'), ',' ORDER BY subscription) FROM eventsource.subscription_partitions),
    (SELECT string_agg(coalesce(last_error, '-'), ',' ORDER BY name) FROM eventsource.subscription_status),
    eventsource.error_stats()::text)};
my $after = sql($copies);
unlike($after, qr/zed-secret|10\.7\.7\.7/, 'no table or view of the extension holds the old values');
like($after, qr/^\{"\$erased": true\}\{"ip": \{"\$erased": true\}, "subject_id": "z-1"\}\(erased\) \| /,
	'the dead letter holds the redacted row');
is(sql(q{SELECT data::text || ' ' || metadata::text || ' ' || error_message FROM eventsource.dead_letters}),
	'{"$erased": true} {"ip": {"$erased": true}, "subject_id": "z-1"} (erased)',
	'dead letter: the current (redacted) data and metadata, the error text "(erased)"');
is(sql(q{SELECT string_agg(error_message, ',') FROM eventsource.recent_errors}),
	'(erased),(erased)', 'recent_errors: "(erased)"');
is(sql(q{SELECT error_message FROM eventsource.subscription_partitions WHERE subscription = 'stop'}),
	'(erased)', 'the stopped partition: "(erased)"');
is(sql(q{SELECT string_agg(last_error, ',' ORDER BY name) FROM eventsource.subscription_status
          WHERE name IN ('dl', 'stop')}),
	'(erased),(erased)', 'subscription_status.last_error: "(erased)"');

my @notes = es_collect_notifications($listener, 2, 60);
ok(@notes >= 2, 'the failures were notified');
is(scalar(grep { $_->[1] =~ /zed-secret/ } @notes), 0, 'no notification payload quotes the old data');
like(join("\n", map { $_->[1] } @notes), qr/"message": "\(erased\)"/, 'the payload says "(erased)"');

my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/handler failed on event at position \d+ \(attempt 1\): \(erased\)/,
	'the failure is logged');
unlike($log, qr/zed-secret/, 'the server log does not quote the old data');
$gate->quit;
$listener->quit;

# ---------------------------------------------------------------------------
# 1b. a batch handler failing on the whole batch after the erasure committed:
#     its message may quote any event of the batch, so the slot withholds it
#     (the events are then delivered one at a time: here they succeed)
# ---------------------------------------------------------------------------
sql(q{
CREATE FUNCTION hbatch(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(es) > 1 THEN
    PERFORM pg_advisory_lock_shared(4343);
    PERFORM pg_advisory_unlock_shared(4343);
    RAISE EXCEPTION 'cannot mail %', (SELECT string_agg(e.data ->> 'email', ',') FROM unnest(es) e);
  END IF;
END $$;
});
$gate = $node->background_psql('postgres');
$gate->query_safe('SELECT pg_advisory_lock(4343)');
sql(qq{
SELECT eventsource.create_subscription('batch', 'hbatch(eventsource.events[])', categories => '{Bulk}',
                                       start_from => 'end', processing_timeout => '5 minutes');
BEGIN;
SELECT eventsource.append_event('Bulk-1', 0, 'Registered', '{"email": "yan-secret\@example.com"}');
SELECT eventsource.append_event('Bulk-2', 0, 'Registered', '{"email": "bob\@example.com"}');
COMMIT;
});
wait_until(q{SELECT count(*) = 1 FROM pg_locks
              WHERE locktype = 'advisory' AND objid = 4343 AND NOT granted},
	'the batch handler holds both events and waits');
sql(q{SELECT eventsource.erase_stream('Bulk-1')});
$gate->query_safe('SELECT pg_advisory_unlock(4343)');
$gate->quit;
my $bulk_head = sql('SELECT eventsource.head_position()');
wait_until(qq{SELECT checkpoint >= $bulk_head AND last_error IS NOT NULL
                FROM eventsource.subscription_status WHERE name = 'batch'},
	'the batch was delivered one event at a time after the failure');
my $batch_error = sql(q{SELECT last_error FROM eventsource.subscription_status WHERE name = 'batch'});
unlike($batch_error, qr/yan-secret/, 'the status does not show the batch error quoting the erased event');
is($batch_error, '(error text withheld: an erasure committed after it; see eventsource.recent_errors)',
	'it withholds the text');
sql(q{SELECT eventsource.drop_subscription('batch')});

# ---------------------------------------------------------------------------
# 2. retry_dead_letters() delivers the event as the log holds it now
# ---------------------------------------------------------------------------
# A dead letter whose copy the erasure could not redact (a worker of an
# earlier build wrote it after the erasure, or it was restored from a dump
# made before): the retry must not hand the old data to the handler.
sql(q{UPDATE eventsource.dead_letters
         SET data = '{"email": "zed-secret@example.com"}',
             metadata = '{"ip": "10.7.7.7", "subject_id": "z-1"}'
       WHERE subscription = 'dl'});
sql(q{TRUNCATE seen});
is(sql(q{SELECT eventsource.retry_dead_letters('dl')}), '1', 'the dead letter is retried');
wait_until(q{SELECT count(*) = 0 FROM eventsource.dead_letters WHERE subscription = 'dl'},
	'the redacted event no longer fails');
is(sql(q{SELECT string_agg(data::text || ' ' || metadata::text, ',') FROM seen WHERE sub = 'dl'}),
	'{"$erased": true} {"ip": {"$erased": true}, "subject_id": "z-1"}',
	'the handler got the redacted row, not the dead letter\'s copy');

$node->stop;
done_testing();
