#!/usr/bin/env bash
# test/bench/run_subscriptions.sh: subscription throughput (against the same
# handler applied set-based in one statement, in the same run), wake latency
# from an append's commit to its handler, and the worker's memory after
# 100,000 and 1,000,000 events, on a throwaway cluster.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_subscriptions.sh                  # as root; ~2 minutes
#   BENCH_QUICK=1 test/bench/run_subscriptions.sh    # quick run, ~20 s
#
# Environment (BENCH_QUICK=1 changes the defaults marked *):
#   BENCH_SUB_EVENTS       events delivered per throughput run (default 100000)
#   BENCH_SUB_ROUNDS     * rounds of the throughput measurement (default 3, quick 1)
#   BENCH_SUB_BATCH_SIZES  subscription batch sizes (default "100 1000")
#   BENCH_PINGS          * single appends for the wake latency (default 1000, quick 200)
#   BENCH_PING_GAP_MS      pause after each of them (default 15)
#   BENCH_MEM_EVENTS     * events delivered at the second memory sample
#                          (default 1000000, quick 0 = no second sample)
#   BENCH_TMPDIR           parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN                  PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr; the report (three tables) to stdout.  The run exits
# 0 whether or not the targets are met; non-zero only when something broke
# (a subscription that did not deliver everything, exactly once, counts as
# broken).  See README.md for what each line measures and why.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

if [ "$QUICK" = 1 ]; then
	ROUNDS=${BENCH_SUB_ROUNDS:-1}
	PINGS=${BENCH_PINGS:-200}
	MEM_EVENTS=${BENCH_MEM_EVENTS:-0}
else
	ROUNDS=${BENCH_SUB_ROUNDS:-3}
	PINGS=${BENCH_PINGS:-1000}
	MEM_EVENTS=${BENCH_MEM_EVENTS:-1000000}
fi
EVENTS=${BENCH_SUB_EVENTS:-100000}
BATCH_SIZES=${BENCH_SUB_BATCH_SIZES:-100 1000}
GAP=${BENCH_PING_GAP_MS:-15}
STREAMS=1000

bench_require
posint BENCH_SUB_EVENTS "$EVENTS"
[ "$EVENTS" -ge "$STREAMS" ] && [ $((EVENTS % (10 * STREAMS))) = 0 ] ||
	die "BENCH_SUB_EVENTS must be a multiple of $((10 * STREAMS))"
posint BENCH_SUB_ROUNDS "$ROUNDS"
posint BENCH_PINGS "$PINGS"
posint BENCH_PING_GAP_MS "$GAP"
for bs in $BATCH_SIZES; do posint BENCH_SUB_BATCH_SIZES "$bs"; done
[[ "$MEM_EVENTS" =~ ^[0-9]+$ ]] || die "BENCH_MEM_EVENTS must be a non-negative integer"
# every throughput run keeps its (paused) subscription until the last round
NSUBS=$((ROUNDS * (2 * $(wc -w <<<"$BATCH_SIZES") + 1)))
MAX_WORKERS=$((NSUBS + 2 > 8 ? NSUBS + 2 : 8))

# ---------------------------------------------------------------------------
# The throwaway cluster
# ---------------------------------------------------------------------------
SETTINGS="shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min max_worker_processes=16 eventsource.max_workers=$MAX_WORKERS"
bench_cluster es-bench-sub "shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_worker_processes = 16
eventsource.max_workers = $MAX_WORKERS
synchronous_commit = on
# the memory-context dumps are read back from the log by their pid
log_line_prefix = '%m [%p] '"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
sql() { psql_q -d bench -c "$1"; }

# ---------------------------------------------------------------------------
# Data: EVENTS events of ~200 bytes in 1,000 streams
# ---------------------------------------------------------------------------

say "== setup: extension, read model, handlers; $EVENTS events in $STREAMS streams"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -f "$HERE/sub_setup.sql" >/dev/null
# 10 events a call, round-robin over the streams, so that the counters are
# hit in an interleaved order (the load's durability is not what is measured)
PGOPTIONS="-c synchronous_commit=off" psql_q -d bench \
	-c "CALL bench.load('Order', $STREAMS, 10, $EVENTS, '$PAYLOAD')"
sql "VACUUM (FREEZE, ANALYZE)"
read -r PMIN HEAD NEVENTS < <(psql_q -d bench -F ' ' -c \
	"SELECT min(global_position), max(global_position), count(*) FROM eventsource.events") || true
[ "$NEVENTS" = "$EVENTS" ] || die "expected $EVENTS events, found $NEVENTS"
[ "$((HEAD - PMIN + 1))" = "$EVENTS" ] || die "positions $PMIN..$HEAD are not dense"

# ---------------------------------------------------------------------------
# 1. Throughput
# ---------------------------------------------------------------------------
SUBN=0

# The read model must say that every event was applied exactly once.
check_counts() { # what
	local got
	got=$(sql "SELECT coalesce(sum(n), 0) || ' ' || count(*) FROM bench.counts")
	[ "$got" = "$EVENTS $STREAMS" ] ||
		die "$1: bench.counts holds (events, streams) = ($got), expected ($EVENTS $STREAMS)"
}

# baseline SQL -> seconds, from a statement before it to one after its commit
baseline() {
	local secs
	secs=$(psql_q -d bench -v stmt="$1" <<'SQL'
TRUNCATE bench.counts;
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
:stmt \g /dev/null
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) AS secs \gset
\echo :secs
SQL
	) || die "baseline failed: $1"
	check_counts "baseline $1"
	echo "$secs"
}
BASE_EVENT="SELECT count(*) FROM (SELECT bench.count_event(e) FROM eventsource.events e ORDER BY e.global_position) s"
base_batch() { # batch size -> the batch handler over the log's batches, one statement
	echo "SELECT count(*) FROM (SELECT bench.count_batch(array_agg(e ORDER BY e.global_position)) FROM eventsource.events e GROUP BY (e.global_position - $PMIN) / $1 ORDER BY min(e.global_position)) s"
}

# worker NAME -> "pid|backend_start" of the subscription's worker process.
# Read from pg_stat_activity rather than eventsource.subscription_status:
# that view's C function returns freed memory (see README.md), so its pid can
# be garbage and it fails outright once ~10 subscriptions have a shutdown
# record.  The benchmark never reads the view.
worker() {
	sql "SELECT pid, backend_start FROM pg_stat_activity
		WHERE backend_type = 'eventsource worker' AND application_name = 'eventsource $1/0'"
}

# subscription NAME HANDLER BATCH_SIZE poll|wait -> "seconds startup_seconds"
# From a statement right before create_subscription (start_from beginning)
# until the checkpoint is seen at the head: polled every 5 ms without holding
# a snapshot (sub_await.sql), or, for "wait", by one wait_for_subscription()
# call.  Then the subscription is paused, not dropped, so that each run gets
# a worker slot of its own (a subscription created in a dropped one's slot
# got its worker only after a second up to commit 3d21f69, see README.md);
# all are dropped after the last round.
subscription() {
	local name=$1 out ok secs t0 startup
	shift
	out=$(psql_q -d bench -v name="$name" -v handler="$1" -v bs="$2" -v pos="$HEAD" -v waiter="$3" \
		-v timeout='30 min' -v await="$HERE/sub_await.sql" 2> >(grep -v 'division by zero' >&2) <<'SQL'
TRUNCATE bench.counts;
CHECKPOINT;
SELECT :'waiter' = 'wait' AS wait \gset
SELECT clock_timestamp() AS t0 \gset
SELECT eventsource.create_subscription(:'name', :'handler', batch_size => :bs) \g /dev/null
\if :wait
SELECT eventsource.wait_for_subscription(:'name', :pos, :'timeout') AS ok, clock_timestamp() AS reached_at \gset
\else
\i :await
\endif
SELECT extract(epoch FROM :'reached_at'::timestamptz - :'t0'::timestamptz) AS secs \gset
\echo result :ok|:secs|:t0
SQL
	) || die "subscription $name ($1, batch_size $2) failed"
	# (\watch writes an empty line when its poll ends)
	IFS='|' read -r ok secs t0 < <(sed -n 's/^result //p' <<<"$out") || true
	[ "$ok" = t ] || die "subscription $name did not reach position $HEAD"
	# (the worker, idle at the head, is still there)
	startup=$(worker "$name" | cut -d'|' -f2)
	[ -n "$startup" ] && startup=$(sql "SELECT extract(epoch FROM '$startup'::timestamptz - '$t0'::timestamptz)")
	sql "SELECT eventsource.pause_subscription('$name')" >/dev/null
	[ -n "$startup" ] || die "no worker process for subscription $name"
	check_counts "subscription $name ($1, batch_size $2)"
	echo "$secs $startup"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }

# What each round runs: the baseline and the informative batch baselines,
# and every subscription.  Odd rounds in this order, even rounds reversed.
ITEMS=(base)
for bs in $BATCH_SIZES; do ITEMS+=("ev_$bs"); done
for bs in $BATCH_SIZES; do ITEMS+=("ba_$bs"); done
for bs in $BATCH_SIZES; do ITEMS+=("bb_$bs"); done
ITEMS+=(ew_100)
declare -A SECS START

run_item() { # item round
	local item=$1 r=$2 out name
	SUBN=$((SUBN + 1))
	name="tp_$SUBN"
	case $item in
	base) out=$(baseline "$BASE_EVENT") ;;
	bb_*) out=$(baseline "$(base_batch "${item#bb_}")") ;;
	ev_*) out=$(subscription "$name" 'bench.count_event(eventsource.events)' "${item#ev_}" poll) ;;
	ba_*) out=$(subscription "$name" 'bench.count_batch(eventsource.events[])' "${item#ba_}" poll) ;;
	ew_*) out=$(subscription "$name" 'bench.count_event(eventsource.events)' "${item#ew_}" wait) ;;
	esac
	read -r SECS[$item,$r] START[$item,$r] <<<"$out"
	say "   round $r: $item ${SECS[$item,$r]} s${START[$item,$r]:+ (worker started after ${START[$item,$r]} s)}"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

say "== 1. throughput: warm-up (one unmeasured baseline, reads the log into shared buffers)"
baseline "$BASE_EVENT" >/dev/null
say "== 1. throughput: $ROUNDS round(s) of: ${ITEMS[*]}"
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then
		for item in "${ITEMS[@]}"; do run_item "$item" "$r"; done
	else
		for ((i = ${#ITEMS[@]} - 1; i >= 0; i--)); do run_item "${ITEMS[$i]}" "$r"; done
	fi
done

sql "SELECT eventsource.drop_subscription(name) FROM eventsource.subscriptions WHERE name LIKE 'tp\_%'" >/dev/null

# ---------------------------------------------------------------------------
# 2. Wake latency
# ---------------------------------------------------------------------------
# A subscription to the Ping events only, from the end; pgbench appends one
# event at a time, GAP ms apart, each in its own (implicit) transaction.
say "== 2. wake latency: $PINGS single appends, ${GAP} ms apart"
sql "SELECT eventsource.create_subscription('latency', 'bench.note_latency(eventsource.events)',
        start_from => 'end', event_types => ARRAY['Ping'])" >/dev/null
# ready: its worker is waiting on its latch (wait event "Extension")
for _ in $(seq 100); do
	[ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventsource latency/0'
		AND wait_event_type = 'Extension'")" = 1 ] && break
	sleep 0.1
done
IFS='|' read -r LAT_PID LAT_START < <(worker latency) || true
[ -n "$LAT_PID" ] || die "the latency subscription's worker did not start"
LAT_STARTUP=$(sql "SELECT round(extract(epoch FROM '$LAT_START'::timestamptz - created_at) * 1000)
	FROM eventsource.subscriptions WHERE name = 'latency'")
say "   the latency subscription's worker started ${LAT_STARTUP} ms after create_subscription (in a reused slot)"
declare -A LAT
for sync in on off; do
	sql "TRUNCATE bench.latency"
	out=$(PGOPTIONS="-c synchronous_commit=$sync" "$PGBIN/pgbench" "${CONN[@]}" -n -M prepared \
		-t "$PINGS" -c 1 -j 1 -f "$HERE/sub_ping.sql" -D gap="$GAP" bench 2>&1) ||
		{ say "$out"; die "pgbench (pings) failed"; }
	ok=$(sql "SELECT eventsource.wait_for_subscription('latency', (SELECT max(global_position) FROM eventsource.events), '1 min')")
	[ "$ok" = t ] || die "the latency subscription did not catch up"
	n=$(sql "SELECT count(*) FROM bench.latency")
	[ "$n" = "$PINGS" ] || die "expected $PINGS latencies, found $n"
	LAT[$sync]=$(sql "SELECT concat_ws(' ', n, p50, p90, p99, mx, mn)
		FROM (SELECT count(*) AS n,
		             round((percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS p50,
		             round((percentile_cont(0.9) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS p90,
		             round((percentile_cont(0.99) WITHIN GROUP (ORDER BY ms))::numeric, 3) AS p99,
		             round(max(ms)::numeric, 3) AS mx, round(min(ms)::numeric, 3) AS mn
		        FROM (SELECT extract(epoch FROM latency) * 1000 AS ms FROM bench.latency) l) s")
	say "   synchronous_commit=$sync: n p50 p90 p99 max min (ms) = ${LAT[$sync]}"
done
[ "$(worker latency | cut -d'|' -f1)" = "$LAT_PID" ] ||
	die "the latency worker restarted during the measurement"
sql "SELECT eventsource.drop_subscription('latency')" >/dev/null

# ---------------------------------------------------------------------------
# 3. Worker memory
# ---------------------------------------------------------------------------
# memory_sample PID -> "VmRSS RssAnon RssShmem Pss Pss_Anon contexts_used", kB
# (contexts: the "Grand total ... used" of pg_log_backend_memory_contexts).
memory_sample() {
	local pid=$1 st roll before total="" _
	st=$(awk '/^(VmRSS|RssAnon|RssShmem):/ { v[$1] = $2 } END { print v["VmRSS:"], v["RssAnon:"], v["RssShmem:"] }' "/proc/$pid/status")
	roll=$(awk '/^(Pss|Pss_Anon):/ { v[$1] = $2 } END { print v["Pss:"], v["Pss_Anon:"] }' "/proc/$pid/smaps_rollup")
	before=$(grep -c "\[$pid\] LOG:  Grand total:" "$WORK/server.log" || true)
	[ "$(sql "SELECT pg_log_backend_memory_contexts($pid)")" = t ] || die "could not signal $pid"
	for _ in $(seq 100); do
		if [ "$(grep -c "\[$pid\] LOG:  Grand total:" "$WORK/server.log" || true)" -gt "$before" ]; then
			total=$(grep "\[$pid\] LOG:  Grand total:" "$WORK/server.log" | tail -1 |
				sed -n 's/.* \([0-9]*\) used$/\1/p')
			break
		fi
		sleep 0.05
	done
	[ -n "$total" ] || die "worker $pid did not log its memory contexts"
	echo "$st $roll $((total / 1024))"
}

# wait_head NAME -> waits until the subscription's checkpoint is at the head
wait_head() {
	local head ok
	head=$(sql "SELECT max(global_position) FROM eventsource.events")
	ok=$(psql_q -d bench -v name="$1" -v pos="$head" -v timeout='30 min' -v await="$HERE/sub_await.sql" \
		-c '\i :await' -c '\echo result :ok' 2> >(grep -v 'division by zero' >&2) | sed -n 's/^result //p') || ok=""
	[ "$ok" = t ] || die "subscription $1 did not catch up"
}

say "== 3. worker memory: count_event, batch_size 100, from the beginning"
sql "TRUNCATE bench.counts"
sql "CHECKPOINT"
sql "SELECT eventsource.create_subscription('memory', 'bench.count_event(eventsource.events)')" >/dev/null
wait_head memory
MEM_PID=$(worker memory | cut -d'|' -f1)
[ -n "$MEM_PID" ] || die "no worker process for the memory subscription"
MEM_N1=$(sql "SELECT sum(n) FROM bench.counts")   # events delivered (each applied once)
MEM1=$(memory_sample "$MEM_PID")
say "   after $MEM_N1 events (pid $MEM_PID): VmRSS RssAnon RssShmem Pss Pss_Anon contexts = $MEM1 kB"
MEM2=""
LOAD_SECS=""
if [ "$MEM_EVENTS" -gt "$MEM_N1" ]; then
	more=$((MEM_EVENTS - MEM_N1))
	say "   appending $more events (append of 1,000 a call, a commit each), the worker following live"
	t=$(date +%s.%N)
	sql "CALL bench.load('Load', 100, 1000, $more, '$PAYLOAD')"
	LOAD_SECS=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	wait_head memory
	CATCHUP_SECS=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	say "   appended in $LOAD_SECS s; the worker was at the head after $CATCHUP_SECS s"
	pid2=$(worker memory | cut -d'|' -f1)
	[ "$pid2" = "$MEM_PID" ] || die "the memory worker restarted ($MEM_PID -> $pid2)"
	MEM_N2=$(sql "SELECT sum(n) FROM bench.counts")
	[ "$MEM_N2" = "$MEM_EVENTS" ] || die "the read model holds $MEM_N2 events, expected $MEM_EVENTS"
	MEM2=$(memory_sample "$MEM_PID")
	say "   after $MEM_N2 events: VmRSS RssAnon RssShmem Pss Pss_Anon contexts = $MEM2 kB"
fi
sql "SELECT eventsource.drop_subscription('memory')" >/dev/null

ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
PGVERSION=$(sql "SELECT version()")
EXTVERSION=$(sql "SELECT extversion FROM pg_extension WHERE extname = 'eventsource'")
EVENT_BYTES=$(sql "SELECT octet_length('$PAYLOAD'::text) || ' bytes as text, ' || pg_column_size('$PAYLOAD'::jsonb) || ' as jsonb'")
pass() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { exit !(op == ">=" ? a >= b : a <= b) }' && echo yes || echo NO; }
LINE=$(printf '%.0s-' $(seq 118))

{
	echo
	echo "eventsource subscription benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s of measurements"
	echo "command:  ${0##*/} with BENCH_QUICK=$QUICK BENCH_SUB_EVENTS=$EVENTS BENCH_SUB_ROUNDS=$ROUNDS BENCH_SUB_BATCH_SIZES=\"$BATCH_SIZES\""
	echo "          BENCH_PINGS=$PINGS BENCH_PING_GAP_MS=$GAP BENCH_MEM_EVENTS=$MEM_EVENTS"
	echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/ { print $2 }') GB RAM; load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "server:   $PGVERSION; eventsource $EXTVERSION (eventsource.so md5 $SO_MD5...)"
	echo "settings: $SETTINGS shared_preload_libraries=eventsource,"
	echo "          otherwise initdb defaults (fsync on, synchronous_commit on, autovacuum on)"
	echo "data:     $EVENTS events ($EVENT_BYTES of data) in $STREAMS streams Order-<n>, 10 a call round-robin"
	echo

	echo "1. Throughput: $EVENTS events, each applied once to bench.counts (one upsert of the stream's counter);"
	echo "   median over $ROUNDS round(s) (order alternates), ratio = baseline seconds / row seconds, per round"
	printf '%-44s %6s %8s %10s %8s %6s %10s %7s %4s\n' "" "batch" "seconds" "events/s" "startup" "ratio" "per round" "target" "met"
	echo "$LINE"
	row1() { # label item target
		local label=$1 item=$2 target=$3 secs=() ratios=() starts=() r bs=-
		for ((r = 1; r <= ROUNDS; r++)); do
			secs+=("${SECS[$item,$r]}")
			ratios+=("$(awk -v b="${SECS[base,$r]}" -v s="${SECS[$item,$r]}" 'BEGIN { printf "%.4f", b / s }')")
			[ -n "${START[$item,$r]}" ] && starts+=("${START[$item,$r]}")
		done
		[[ "$item" == *_* ]] && bs=${item#*_}
		local s ratio met=- st=-
		s=$(median "${secs[@]}")
		ratio=$(median "${ratios[@]}")
		[ "${#starts[@]}" -gt 0 ] && st=$(printf '%.2f' "$(median "${starts[@]}")")
		if [ "$target" != - ]; then
			met=$(pass "$(printf '%.2f' "$ratio")" ">=" "$target")
			target=">=$target"
		fi
		printf '%-44s %6s %8.2f %10.0f %8s %6.2f %10s %7s %4s\n' "$label" "$bs" "$s" \
			"$(awk -v n="$EVENTS" -v s="$s" 'BEGIN { print n / s }')" "$st" "$ratio" "$(range "${ratios[@]}")" "$target" "$met"
	}
	row1 "baseline: SELECT count_event(e) ... ORDER BY" base -
	for bs in $BATCH_SIZES; do row1 "subscription, per-event handler count_event" "ev_$bs" 0.5; done
	for bs in $BATCH_SIZES; do row1 "subscription, batch handler count_batch" "ba_$bs" 0.8; done
	for bs in $BATCH_SIZES; do row1 "(info) count_batch set-based, same batches" "bb_$bs" -; done
	row1 "(info) count_event, wait_for_subscription" ew_100 -
	echo "$LINE"
	echo "baseline: TRUNCATE bench.counts; then, timed from a statement before it to one after its commit, one statement"
	echo "  SELECT count(*) FROM (SELECT bench.count_event(e) FROM eventsource.events e ORDER BY e.global_position) s"
	echo "  i.e. the same PL/pgSQL handler, called once per event in position order, in one transaction, one commit."
	echo "subscription rows: TRUNCATE; then, timed the same way, create_subscription(start_from 'beginning', batch_size)"
	echo "  until its checkpoint (eventsource.subscription_partitions) is at the head, polled every 5 ms by psql's \\watch, which sleeps"
	echo "  in the client: no snapshot held while waiting. The worker: one transaction per batch (each handler call in"
	echo "  a subtransaction, then the checkpoint), synchronous_commit on. 'startup': create -> worker process started"
	echo "  (included in seconds)."
	echo "  Every run is checked: checkpoint at the head, $STREAMS counters summing to $EVENTS (each event applied once)."
	echo "(info) count_batch set-based: bench.count_batch(array_agg(e ORDER BY global_position)) GROUP BY position / batch,"
	echo "  one statement: the batch handler's own cost without the worker; ratio still against the baseline."
	echo "(info) wait_for_subscription: as the batch-100 count_event row, but waited for with one wait_for_subscription()"
	echo "  call, whose snapshot holds the xmin horizon back while it sleeps: the worker cannot prune the counter rows'"
	echo "  dead versions during the run."
	echo

	echo "2. Wake latency: $PINGS single-event appends (append_event, implicit transaction), ${GAP} ms apart, 1 client;"
	echo "   subscription (note_latency, event_types {Ping}, start_from end) live; nothing else running in the cluster"
	printf '%-44s %6s %8s %8s %8s %8s %8s %16s %4s\n' "" "n" "p50 ms" "p90 ms" "p99 ms" "max ms" "min ms" "target" "met"
	echo "$LINE"
	for sync in on off; do
		read -r n p50 p90 p99 mx mn <<<"${LAT[$sync]}"
		met=NO
		[ "$(pass "$p50" "<=" 2)" = yes ] && [ "$(pass "$p99" "<=" 20)" = yes ] && met=yes
		printf '%-44s %6s %8s %8s %8s %8s %8s %16s %4s\n' "appender synchronous_commit=$sync" "$n" "$p50" "$p90" "$p99" "$mx" "$mn" \
			"p50<=2 p99<=20" "$met"
	done
	echo "$LINE"
	echo "latency = clock_timestamp() at the handler's first statement - metadata t0, where t0 = clock_timestamp() read"
	echo "  while append_event runs, in the transaction that commits right after it (no client round trip between)."
	echo "  It includes the rest of the append, the COMMIT (WAL flush when synchronous_commit=on), the latch wake-up from"
	echo "  the commit callback, the worker's transaction start, checkpoint lock, horizon, read and the handler's start."
	echo "  Same clock (one machine). The worker's own commits are synchronous in both rows."
	echo "  The latency subscription took a worker slot that dropped subscriptions had used; its worker started"
	echo "  $LAT_STARTUP ms after create_subscription (about 1000 ms means the launcher's stale-handle delay, see README.md)."
	echo

	echo "3. Worker memory: one subscription (count_event, batch_size 100, from the beginning), the same worker process"
	echo "   sampled idle at the head; kB"
	printf '%-44s %10s %10s %10s %10s %10s %10s %10s\n' "" "delivered" "VmRSS" "RssAnon" "RssShmem" "Pss" "Pss_Anon" "contexts"
	echo "$LINE"
	read -r a1 b1 c1 d1 e1 f1 <<<"$MEM1"
	printf '%-44s %10s %10s %10s %10s %10s %10s %10s\n' "after the first sample's events" "$MEM_N1" $a1 $b1 $c1 $d1 $e1 $f1
	if [ -n "$MEM2" ]; then
		read -r a2 b2 c2 d2 e2 f2 <<<"$MEM2"
		printf '%-44s %10s %10s %10s %10s %10s %10s %10s\n' "after $MEM_EVENTS events" "$MEM_N2" $a2 $b2 $c2 $d2 $e2 $f2
		pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }'; }
		printf '%-44s %10s %10s %10s %10s %10s %10s %10s\n' "growth" "" "$(pct $a1 $a2)" "$(pct $b1 $b2)" "$(pct $c1 $c2)" \
			"$(pct $d1 $d2)" "$(pct $e1 $e2)" "$(pct $f1 $f2)"
		growth=$(awk -v a="$b1" -v b="$b2" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
		echo "$LINE"
		echo "target: RssAnon (the process's private memory) within 10% -> $(pass "$growth" "<=" 10)"
		echo "  load: $((MEM_EVENTS - MEM_N1)) events appended in $LOAD_SECS s (bench.load: append of 1,000 events a call,"
		echo "  COMMIT after each, synchronous_commit on) while the worker followed live; at the head after $CATCHUP_SECS s."
	else
		echo "$LINE"
		echo "(no second sample: BENCH_MEM_EVENTS=$MEM_EVENTS)"
	fi
	echo "VmRSS counts every page the process has touched, including shared_buffers pages (RssShmem), which grow with"
	echo "  how much of the log the worker has read, up to shared_buffers; RssAnon is its private (heap, stack) memory,"
	echo "  where a leak would show, so the target is judged on RssAnon. Pss_Anon divides pages still shared with the"
	echo "  postmaster after fork. 'contexts': bytes used in PostgreSQL memory contexts (pg_log_backend_memory_contexts)."
}

exit 0
