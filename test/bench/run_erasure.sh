#!/usr/bin/env bash
# test/bench/run_erasure.sh: what erasure of personal data costs on a large
# store (README "Erasure of personal data").  Loads a store through append()
# (batches of 100 events, round-robin over 100,000 Customer streams; each
# batch carries the metadata {"subject_id": "u-<batch mod 10000>"}, so a
# subject has size / 1,000,000 events in as many streams), then at each size
# reports:
#   - erase_by_metadata() of one subject, without an index on metadata: the
#     call that erases it and the call after (which finds nothing: a scan of
#     the whole log), and how long the table stays locked for appends
#     (single-event appends to other streams during the scan, events/s
#     against the same clients without it);
#   - CREATE INDEX ... USING gin (metadata jsonb_path_ops): build time and
#     size, then erase_by_metadata() of another subject with the index;
#   - append_event throughput with the GIN index, against without it;
#   - erase_stream() of a 100-event and of a 10,000-event stream;
#   - VACUUM (FULL) eventsource.events (the purge of the old row versions).
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_erasure.sh                         # as root; 10M: ~20 minutes
#   BENCH_SIZES=1000000 test/bench/run_erasure.sh     # 1M only, ~3 minutes
#
# Environment:
#   BENCH_SIZES      store sizes, ascending (default "1000000 10000000";
#                    multiples of 1,000,000)
#   BENCH_SECONDS    seconds per side of the append ratios (default 6, 3 rounds)
#   BENCH_TMPDIR     parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN            PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr, the report to stdout.  Exits 0 whether or not any
# figure pleases; non-zero only when something broke.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

SIZES=${BENCH_SIZES:-1000000 10000000}
SECS=${BENCH_SECONDS:-6}
STREAMS=100000
SUBJECTS=10000

bench_require
for n in $SIZES; do
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1000000 ] && [ $((n % 1000000)) = 0 ] ||
		die "BENCH_SIZES: $n is not a multiple of 1,000,000"
done

bench_cluster es-erasure "shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
ms() { # SQL -> wall milliseconds of one execution (and its output to stderr)
	local t0 t1
	t0=$(date +%s%N)
	psql_q -d bench -c "$1" >&2
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

say "== setup"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench <<'SQL'
CREATE EXTENSION eventsource;
CREATE SCHEMA bench;
-- batch b: 100 events to Customer-<b mod streams + 1>, subject u-<b mod subjects>
CREATE PROCEDURE bench.load(first bigint, last bigint, streams integer, subjects integer)
    LANGUAGE plpgsql AS $$
DECLARE
    evs jsonb;
BEGIN
    FOR b IN first .. last LOOP
        SELECT jsonb_agg(jsonb_build_object('type', 'CustomerChanged',
                   'data', jsonb_build_object('name', 'Name ' || b, 'email', 'person' || b || '@example.com',
                                              'address', repeat('x', 80), 'n', i),
                   'metadata', jsonb_build_object('subject_id', 'u-' || (b % subjects), 'ip', '10.0.0.1')))
          INTO evs FROM generate_series(1, 100) i;
        PERFORM eventsource.append('Customer-' || (b % streams + 1), -1, evs);
        COMMIT;
    END LOOP;
END
$$;
SQL

# appends of one event to other streams while something else runs
cat >"$WORK/append.sql" <<'SQL'
\set s random(1, 1000)
SELECT eventsource.append_event('Other-' || :s, -1, 'Noted', '{"n": 1}');
SQL
append_tps() { # clients seconds -> events/s
	"$PGBIN/pgbench" "${CONN[@]}" -n -M prepared -c "$1" -j "$1" -T "$2" -f "$WORK/append.sql" bench 2>/dev/null |
		sed -n 's/^tps = \([0-9]*\).*/\1/p' | head -1
}

declare -A R
loaded=0
for size in $SIZES; do
	say "== load: events $loaded -> $size (2 sessions)"
	R[$size,load]=$(bench_load "$loaded" "$size" "$STREAMS, $SUBJECTS")
	loaded=$size
	psql_q -d bench -c "VACUUM (ANALYZE) eventsource.events"
	psql_q -d bench -c "CHECKPOINT"
	R[$size,mb]=$(psql_q -d bench -c "SELECT pg_total_relation_size('eventsource.events') / 1048576")
	per=$((size / 1000000 * 100))   # events of one subject

	# a subject to erase per size (u-1, u-2, ...: not erased before)
	subj=$((size / 1000000))
	say "== erase_by_metadata of u-$subj ($per events), no index"
	R[$size,noidx]=$(ms "SELECT * FROM eventsource.erase_by_metadata('subject_id', 'u-$subj', '{subject_id,ip}', 10000)")
	R[$size,noidx_again]=$(ms "SELECT * FROM eventsource.erase_by_metadata('subject_id', 'u-$subj', '{subject_id,ip}', 10000)")
	n=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.events WHERE stream_version < 0")
	say "   system events so far: $n"
	# appends to other streams while a no-match call scans the log
	base=$(append_tps 4 "$SECS")
	psql_q -d bench -c "DO \$\$ DECLARE t timestamptz := clock_timestamp(); BEGIN
		LOOP PERFORM eventsource.erase_by_metadata('subject_id', 'nobody', NULL, 10000);
		     EXIT WHEN clock_timestamp() > t + interval '$SECS seconds'; END LOOP; END \$\$" >/dev/null &
	ep=$!
	during=$(append_tps 4 "$SECS")
	wait "$ep"
	R[$size,app_base]=$base
	R[$size,app_during]=$during

	say "== GIN index on metadata"
	R[$size,gin_build]=$(ms "CREATE INDEX events_metadata_gin ON eventsource.events USING gin (metadata jsonb_path_ops)")
	R[$size,gin_mb]=$(psql_q -d bench -c "SELECT pg_relation_size('eventsource.events_metadata_gin') / 1048576")
	psql_q -d bench -c "ANALYZE eventsource.events"
	subj2=$((subj + 5000))
	R[$size,idx]=$(ms "SELECT * FROM eventsource.erase_by_metadata('subject_id', 'u-$subj2', '{subject_id,ip}', 10000)")
	R[$size,idx_again]=$(ms "SELECT * FROM eventsource.erase_by_metadata('subject_id', 'u-$subj2', '{subject_id,ip}', 10000)")
	R[$size,app_gin]=$(append_tps 4 "$SECS")
	psql_q -d bench -c "DROP INDEX eventsource.events_metadata_gin"

	say "== erase_stream"
	R[$size,stream100]=$(ms "SELECT * FROM eventsource.erase_stream('Customer-77')")
	psql_q -d bench -c "SELECT eventsource.append('Big-$size', -1, (SELECT jsonb_agg(jsonb_build_object('type', 'A', 'data', jsonb_build_object('email', 'big' || i || '@example.com'))) FROM generate_series(1, 10000) i))" >/dev/null
	R[$size,stream10k]=$(ms "SELECT * FROM eventsource.erase_stream('Big-$size')")

	say "== VACUUM (FULL)"
	R[$size,vacfull]=$(ms "VACUUM (FULL) eventsource.events")
done

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "## Erasure at scale ($(nproc) cores, load average $LOAD at the end)"
echo
echo "| store | table MB | erase_by_metadata, no index (1 subject) | again (nothing left: full scan) | appends during a scan / without (4 clients) | GIN build | GIN MB | erase_by_metadata with GIN | again | appends with GIN / without | erase_stream 100 events | erase_stream 10,000 events | VACUUM (FULL) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
	per=$((size / 1000000 * 100))
	printf '| %s events | %s | %s ms (%s events) | %s ms | %s / %s ev/s | %s ms | %s | %s ms | %s ms | %s / %s ev/s | %s ms | %s ms | %s ms |\n' \
		"$size" "${R[$size,mb]}" "${R[$size,noidx]}" "$per" "${R[$size,noidx_again]}" \
		"${R[$size,app_during]}" "${R[$size,app_base]}" "${R[$size,gin_build]}" "${R[$size,gin_mb]}" \
		"${R[$size,idx]}" "${R[$size,idx_again]}" "${R[$size,app_gin]}" "${R[$size,app_base]}" \
		"${R[$size,stream100]}" "${R[$size,stream10k]}" "${R[$size,vacfull]}"
done
echo
echo "Load: $(for s in $SIZES; do printf '%s events/s to %s; ' "${R[$s,load]}" "$s"; done)"
