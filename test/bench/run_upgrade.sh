#!/usr/bin/env bash
# test/bench/run_upgrade.sh: how long ALTER EXTENSION eventsource UPDATE takes
# on a 1.0 store of N events (README "Upgrading").  Since issue 15 the update
# rebuilds the keys of eventsource.events (with tenant_id): three index
# builds under ACCESS EXCLUSIVE, so its time grows with the store.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_upgrade.sh                       # as root; 1M events, ~1 minute
#   BENCH_EVENTS=10000000 test/bench/run_upgrade.sh # 10M, ~10 minutes
#
# Environment:
#   BENCH_EVENTS   events in the 1.0 store (default 1000000; a multiple of 1000)
#   BENCH_TMPDIR   parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN          PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# The store: CREATE EXTENSION eventsource VERSION '1.0', then N/1000
# append() calls of 1,000 events each (round-robin over 100,000 streams),
# CHECKPOINT and VACUUM ANALYZE.  The update runs twice, timed by psql's
# \timing: once with maintenance_work_mem = 64MB (the default) in a
# transaction that is rolled back, once with 1GB, committed.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, say, die, posint, bench_require, bench_cluster
. "$HERE/lib.sh"

N=${BENCH_EVENTS:-1000000}
posint BENCH_EVENTS "$N"
[ $((N % 1000)) = 0 ] || die "BENCH_EVENTS must be a multiple of 1000"
bench_require
bench_cluster es-upgrade "shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min"

psql_q() { runuser -u postgres -- "$PGBIN/psql" -X -q -h "$WORK" -p "$PORT" -d postgres -v ON_ERROR_STOP=1 "$@"; }

say "== a 1.0 store of $N events"
psql_q -c "CREATE EXTENSION eventsource VERSION '1.0'"
psql_q -c "CREATE PROCEDURE load(n integer) LANGUAGE plpgsql AS \$\$
DECLARE
    evs jsonb := (SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded',
                  'data', jsonb_build_object('sku', 'abc-123', 'qty', i, 'price', 19.99)))
                    FROM generate_series(1, 1000) i);
BEGIN
    FOR b IN 1 .. n LOOP
        PERFORM eventsource.append('Order-' || (b % 100000 + 1), -1, evs);
        COMMIT;
    END LOOP;
END \$\$"
t=$SECONDS
psql_q -c "CALL load($((N / 1000)))"
say "   loaded in $((SECONDS - t)) s"
psql_q -c "CHECKPOINT" -c "VACUUM ANALYZE eventsource.events"

size=$(psql_q -At -c "SELECT pg_size_pretty(pg_total_relation_size('eventsource.events'))")
t64=$(psql_q -At -c '\timing on' -c "BEGIN" -c "SET LOCAL maintenance_work_mem = '64MB'" \
	-c "ALTER EXTENSION eventsource UPDATE" -c "ROLLBACK" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n | tail -1)
t1g=$(psql_q -At -c '\timing on' -c "SET maintenance_work_mem = '1GB'" \
	-c "ALTER EXTENSION eventsource UPDATE" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n | tail -1)
check=$(psql_q -At -c "SELECT extversion FROM pg_extension WHERE extname = 'eventsource'" \
	-c "SELECT count(*) FILTER (WHERE tenant_id = 'default') || '/' || count(*) FROM eventsource.events")

printf '%-28s %s\n' "events" "$N" "events with indexes" "$size" \
	"update, 64MB (ms)" "$t64" "update, 1GB (ms)" "$t1g" \
	"after: version, default/all" "$(echo $check)"
