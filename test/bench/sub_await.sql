-- test/bench/sub_await.sql, included by run_subscriptions.sh: wait until
-- the committed checkpoint :name (a subscription's, or "name/k" for its
-- partition k) is at or past :pos (at most :timeout), without holding a
-- snapshot while waiting.  Sets :ok (t/f) and :reached_at.  It reads
-- eventsource.checkpoints, the table behind subscription_status.checkpoint
-- (a poll of the view itself can fail now and then: see README.md).
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
SELECT 1 / (coalesce((SELECT c.position FROM eventsource.checkpoints c WHERE c.name = :'name'), 0) < :pos
            AND clock_timestamp() < :'deadline')::int \watch 0.005
\o
\set ON_ERROR_STOP 1
SELECT coalesce((SELECT c.position >= :pos FROM eventsource.checkpoints c WHERE c.name = :'name'), false) AS ok,
       clock_timestamp() AS reached_at \gset
