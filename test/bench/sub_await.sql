-- test/bench/sub_await.sql, included by run_subscriptions.sh: wait until
-- every partition of subscription :name has committed a checkpoint at or
-- past :pos (at most :timeout), without holding a snapshot while waiting.
-- Sets :ok (t/f) and :reached_at.  It reads
-- eventsource.subscription_partitions.position, the table behind
-- subscription_status.checkpoint.
--
-- The checkpoint is polled every 5 ms by \watch, which sleeps in the client:
-- between two polls this session holds no snapshot, so it never holds the
-- xmin horizon back.  (A statement that sleeps in the server, such as
-- eventsource.wait_for_subscription() or pg_sleep(), keeps its snapshot for
-- as long as it sleeps; the subscription's handler then cannot prune the row
-- versions it replaces during the run, which makes it measurably slower: see
-- README.md.)  \watch stops at the first error, which is how a poll says
-- "done": a division by zero, filtered out of stderr by the caller (and
-- \watch then writes an empty line to stdout).
\set ON_ERROR_STOP 0
\o /dev/null
SELECT clock_timestamp() + :'timeout'::interval AS deadline \gset
SELECT 1 / (coalesce((SELECT min(p.position) FROM eventsource.subscription_partitions p
                        WHERE p.subscription = :'name'), 0) < :pos
            AND clock_timestamp() < :'deadline')::int \watch 0.005
\o
\set ON_ERROR_STOP 1
SELECT coalesce((SELECT min(p.position) >= :pos FROM eventsource.subscription_partitions p
                  WHERE p.subscription = :'name'), false) AS ok,
       clock_timestamp() AS reached_at \gset
