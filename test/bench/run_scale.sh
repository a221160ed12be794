#!/usr/bin/env bash
# test/bench/run_scale.sh: eventsource at scale.  Loads a store through
# append() (batches of 100 events, round-robin over 100,000 Order streams)
# with a plain copy of the same rows as the baseline, and at each size prints
# append/read_stream/read_all against the baseline, the latency of every
# monitoring call with a 4-partition subscription paused at position 0 (and
# again with 50 more subscriptions, also paused at 0), and the catch-up
# throughput of a fresh 4-partition subscription.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_scale.sh                           # as root; ~15 minutes
#   BENCH_SIZES=1000000 test/bench/run_scale.sh       # 1M only, ~3 minutes
#
# Environment:
#   BENCH_SIZES      store sizes to measure at, ascending (default
#                    "1000000 10000000"; multiples of 200, at least 2000)
#   BENCH_SUBS       extra subscriptions of the second monitoring row (default 50)
#   BENCH_CALLS      timed calls per monitoring query; the median is shown (default 7)
#   BENCH_SECONDS    seconds per side of each ratio row (default 6, in 3 rounds)
#   BENCH_CATCHUP    1: measure the catch-up at each size (default 1)
#   BENCH_TMPDIR     parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN            PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr, the report to stdout.  Exits 0 whether or not the
# targets are met; non-zero only when something broke.  See README.md.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

SIZES=${BENCH_SIZES:-1000000 10000000}
SUBS=${BENCH_SUBS:-50}
CALLS=${BENCH_CALLS:-7}
SECS=${BENCH_SECONDS:-6}
CATCHUP=${BENCH_CATCHUP:-1}
STREAMS=100000
ROUNDS=3

bench_require
for n in $SIZES; do
	[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 2000 ] && [ $((n % 200)) = 0 ] ||
		die "BENCH_SIZES: $n is not a multiple of 200 of at least 2000"
done
[[ "$SUBS" =~ ^[0-9]+$ ]] || die "BENCH_SUBS must be a number"
posint BENCH_CALLS "$CALLS"
posint BENCH_SECONDS "$SECS"
SLICE=$(((SECS + ROUNDS - 1) / ROUNDS))

# ---------------------------------------------------------------------------
# The throwaway cluster.  JIT and autovacuum stay at their defaults (on): the
# monitoring calls must be fast without anyone having analysed anything.
# ---------------------------------------------------------------------------
SETTINGS="shared_buffers=2GB max_wal_size=16GB checkpoint_timeout=30min eventsource.max_workers=100 max_worker_processes=108"
bench_cluster es-scale "shared_buffers = 2GB
max_wal_size = 16GB
checkpoint_timeout = 30min
eventsource.max_workers = 100
max_worker_processes = 108"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

EVENTS100=$(psql_q -d postgres -v payload="$PAYLOAD" <<'SQL'
SELECT jsonb_agg(jsonb_build_object('type', 'OrderItemAdded', 'data', :'payload'::jsonb))
  FROM generate_series(1, 100)
SQL
)

say "== setup"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -v payload="$PAYLOAD" -f "$HERE/scale_setup.sql" >/dev/null

# create_paused NAME PARTITIONS FILTER_ARGS: a subscription at position 0
# that never runs (created and paused in one transaction).
create_paused() {
	psql_q -d bench >/dev/null <<SQL
BEGIN;
SELECT eventsource.create_subscription('$1', 'bench.noop(eventsource.events)', partitions => $2 $3);
SELECT eventsource.pause_subscription('$1');
COMMIT;
SQL
}
create_paused rebuild 4 ""

# The exporter's queries, as NAME<TAB>one-line SQL.
EXPORTER=$(awk '
	/^[a-z_]+:$/ { name = substr($0, 1, length($0) - 1); next }
	/^  query: \|/ { inq = 1; q = ""; next }
	inq && /^    / { sub(/^    /, ""); q = q " " $0; next }
	inq { inq = 0; print name "\t" q }
' "$HERE/../../monitoring/postgres_exporter_queries.yaml")
[ "$(wc -l <<<"$EXPORTER")" -ge 5 ] || die "could not read the exporter's queries"

MONITOR=(
	"health()|SELECT eventsource.health()"
	"readiness()|SELECT eventsource.readiness()"
	"liveness()|SELECT eventsource.liveness()"
	"subscription_status|SELECT * FROM eventsource.subscription_status"
	"store_stats|SELECT * FROM eventsource.store_stats"
	"error_stats()|SELECT eventsource.error_stats()"
	"horizon_blockers|SELECT * FROM eventsource.horizon_blockers"
)
while IFS=$'\t' read -r name q; do
	MONITOR+=("exporter $name|$q")
done <<<"$EXPORTER"

declare -A MON       # "size,label,scenario" -> median ms
time_ms() { # SQL -> median ms over CALLS calls, timed on the server
	psql_q -d bench -v q="$1" <<SQL
SELECT bench.time_ms(:'q', $CALLS)
SQL
}
monitor() { # size scenario
	local m label q
	for m in "${MONITOR[@]}"; do
		label=${m%%|*}
		q=${m#*|}
		MON["$1,$label,$2"]=$(time_ms "$q")
		say "   $label ($2): ${MON["$1,$label,$2"]} ms"
	done
}

FAILED=0
declare -A TPS RATIO SPREAD
declare -A LOADRATE CATCH
. "$HERE/pairs.sh"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
loaded=0
for size in $SIZES; do
	# -- load up to $size: two loaders on disjoint batch ranges
	say "== load: events $loaded -> $size through append(), batches of 100, 2 sessions"
	LOADRATE[$size]=$(bench_load "$loaded" "$size" "$STREAMS")
	psql_q -d bench -c "INSERT INTO bench.plain_events
		SELECT global_position, stream_id, stream_version, event_id, event_type, data, metadata, recorded_at
		  FROM eventsource.events
		WHERE global_position > (SELECT coalesce(max(global_position), 0) FROM bench.plain_events)
		  AND stream_id LIKE 'Order-%'"
	loaded=$size
	n=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.events WHERE stream_id LIKE 'Order-%'")
	[ "$n" = "$size" ] || die "expected $size Order events, found $n"
	psql_q -d bench -c "SELECT setval('bench.plain_seq', (SELECT max(global_position) FROM eventsource.events))" >/dev/null
	psql_q -d bench -c "VACUUM (ANALYZE) eventsource.events, bench.plain_events"
	psql_q -d bench -c "CHECKPOINT"
	say "   loaded at ${LOADRATE[$size]} events/s (wall, 2 sessions)"
	# Both tables start cold in shared buffers (the copy just written would
	# otherwise fill them with the baseline's pages), warm in the OS cache.
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -m fast -w -t 300 restart >/dev/null ||
		die "the server did not restart"

	# -- monitoring: the 4-partition subscription paused at 0, then with $SUBS more
	cp=$(psql_q -d bench -c "SELECT string_agg(DISTINCT position::text, ',') FROM eventsource.subscription_partitions WHERE subscription = 'rebuild'")
	[ "$cp" = 0 ] || die "the paused subscription moved: checkpoints $cp"
	say "== monitoring at $size events, 1 subscription x 4 partitions $size behind"
	monitor "$size" a
	if [ "$SUBS" -gt 0 ]; then
		for ((i = 1; i <= SUBS; i++)); do
			case $((i % 3)) in
			0) create_paused "extra$i" 1 "" ;;
			1) create_paused "extra$i" 1 ", event_types => '{OrderShipped}'" ;; # matches nothing
			2) create_paused "extra$i" 2 ", categories => '{Order}'" ;;
			esac
		done
		say "== monitoring at $size events, and $SUBS more subscriptions at 0"
		monitor "$size" b
		for ((i = 1; i <= SUBS; i++)); do
			psql_q -d bench -c "SELECT eventsource.drop_subscription('extra$i')" >/dev/null
		done
	fi

	# -- ratios against the plain copy
	read -r PMIN PMAX < <(psql_q -d bench -F ' ' -c "SELECT min(global_position), max(global_position) FROM eventsource.events")
	nstreams=$((size / 100 < STREAMS ? size / 100 : STREAMS))
	pair "rs_$size" scale_read_stream.sql scale_read_stream_base.sql 1 on 100 - - -D nstreams="$nstreams"
	pair "ra_$size" scale_read_all.sql scale_read_all_base.sql 1 on 1000 - - -D pmin="$PMIN" -D pmax="$PMAX"
	pair "ap_$size" append_batch.sql append_batch_base.sql 1 on 100 \
		eventsource.events_global_position_seq bench.plain_seq -D batch=100 -D events="$EVENTS100"

	# -- catch-up of a fresh 4-partition subscription over the whole store
	if [ "$CATCHUP" = 1 ]; then
		head=$(psql_q -d bench -c "SELECT eventsource.head_position()")
		say "== catch-up: 4 partitions over $head positions"
		t=$(date +%s.%N)
		psql_q -d bench -c "SELECT eventsource.create_subscription('catchup', 'bench.noop_batch(eventsource.events[])', partitions => 4, batch_size => 1000)" >/dev/null
		ok=$(psql_q -d bench -c "SELECT eventsource.wait_for_subscription('catchup', $head, '20 minutes')")
		t=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
		[ "$ok" = t ] || die "the catch-up did not finish"
		CATCH[$size]=$(awk -v n="$head" -v t="$t" 'BEGIN { printf "%.0f events/s (%.1f s)", n / t, t }')
		psql_q -d bench -c "SELECT eventsource.drop_subscription('catchup')" >/dev/null
		say "   ${CATCH[$size]}"
	fi
done
ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
PGVERSION=$(psql_q -d bench -c "SELECT version()")
EXTVERSION=$(psql_q -d bench -c "SELECT extversion FROM pg_extension WHERE extname = 'eventsource'")
{
	echo
	echo "eventsource scale benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s"
	echo "machine:  $(nproc) CPUs, $(free -g | awk '/^Mem:/ { print $2 }') GB RAM; load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "server:   $PGVERSION; eventsource $EXTVERSION"
	echo "settings: $SETTINGS; jit and autovacuum on (defaults)"
	echo
	printf '%-44s' "monitoring call: median of $CALLS, ms (server)"
	for size in $SIZES; do printf ' %12s %12s' "${size}:4p" "+${SUBS}subs"; done
	echo
	for m in "${MONITOR[@]}"; do
		label=${m%%|*}
		printf '%-44s' "$label"
		for size in $SIZES; do
			printf ' %12s %12s' "${MON["$size,$label,a"]}" "${MON["$size,$label,b"]:--}"
		done
		echo
	done
	echo
	printf '%-44s' "eventsource / plain table (ratio, range)"
	for size in $SIZES; do printf ' %25s' "$size"; done
	echo
	for k in "rs|read_stream (100 events)" "ra|read_all (page of 1,000)" "ap|append (100 events a call)"; do
		printf '%-44s' "${k#*|}"
		for size in $SIZES; do
			printf ' %25s' "$(printf '%.2f' "${RATIO[${k%%|*}_$size]:-0}") (${SPREAD[${k%%|*}_$size]:-ERR})"
		done
		echo
	done
	printf '%-44s' "load through append(), 2 sessions, events/s"
	for size in $SIZES; do printf ' %25s' "${LOADRATE[$size]}"; done
	echo
	printf '%-44s' "catch-up, 4 partitions, from 0"
	for size in $SIZES; do printf ' %25s' "${CATCH[$size]:--}"; done
	echo
	echo
	echo "4p: one subscription, 4 partitions, created and paused at position 0 (every event lags);"
	echo "+${SUBS}subs: and $SUBS more at 0 (a third unfiltered, a third filtered on a type no event has,"
	echo "a third on the Order category with 2 partitions).  Ratios: pgbench -M prepared, 1 client,"
	echo "$ROUNDS rounds of ${SLICE} s per side, median of the per-round ratios (range in brackets)."
	[ "$FAILED" = 0 ] || echo "SOME MEASUREMENTS FAILED (ERR): see stderr."
}
[ "$FAILED" = 0 ] || exit 1
exit 0
