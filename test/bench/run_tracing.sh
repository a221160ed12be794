#!/usr/bin/env bash
# test/bench/run_tracing.sh: what tracing costs the subscription worker.
# The per-event delivery rate of one subscription with spans exported to a
# live OTLP/HTTP receiver on loopback, against the same subscription with no
# endpoint set, in the same run on the same events (every event carries a
# traceparent, so both sides build the handler's trace context; only the
# spans and their export differ).  Target: tracing on costs <= 10%.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_tracing.sh                  # as root; ~1.5 minutes
#   BENCH_QUICK=1 test/bench/run_tracing.sh    # quick run, ~40 s
#
# Environment (BENCH_QUICK=1 changes the defaults marked *):
#   BENCH_TRACE_EVENTS   * events delivered per run (default 100000, quick 20000)
#   BENCH_TRACE_ROUNDS   * rounds; each has one run off and one on, the order
#                          alternating (default 9, quick 3)
#   BENCH_TRACE_BATCH      the subscription's batch_size (default 100)
#   BENCH_TMPDIR           parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN                  PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# The receiver is test/perl/OtlpReceiver.pm (a Perl process that reads each
# request and answers 200; it does not decode).  Progress goes to stderr, the
# report to stdout.  Exits 0 whether or not the target is met; non-zero when
# something broke (a run that did not deliver every event exactly once).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

if [ "$QUICK" = 1 ]; then
	EVENTS=${BENCH_TRACE_EVENTS:-20000}
	ROUNDS=${BENCH_TRACE_ROUNDS:-3}
else
	EVENTS=${BENCH_TRACE_EVENTS:-100000}
	ROUNDS=${BENCH_TRACE_ROUNDS:-9}
fi
BATCH=${BENCH_TRACE_BATCH:-100}
STREAMS=1000

bench_require   # SO_MD5: the library the server will load
posint BENCH_TRACE_EVENTS "$EVENTS"
posint BENCH_TRACE_ROUNDS "$ROUNDS"
posint BENCH_TRACE_BATCH "$BATCH"
[ $((EVENTS % (10 * STREAMS))) = 0 ] || die "BENCH_TRACE_EVENTS must be a multiple of $((10 * STREAMS))"
MAX_WORKERS=$((2 * ROUNDS + 2))

# ---------------------------------------------------------------------------
# The cluster and the receiver
# ---------------------------------------------------------------------------
SETTINGS="shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min max_worker_processes=$((MAX_WORKERS + 4)) eventsource.max_workers=$MAX_WORKERS"
bench_cluster es-bench-trace "shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_worker_processes = $((MAX_WORKERS + 4))
eventsource.max_workers = $MAX_WORKERS"

RX_DIR=$WORK/receiver
mkdir "$RX_DIR"
# the receiver: a child of this perl process (the coproc), which prints the
# receiver's pid and URL and then waits
coproc RX { exec perl -I "$HERE/../perl" -MOtlpReceiver -e '
	my $rx = OtlpReceiver::start($ARGV[0]);
	$| = 1;
	print "$rx->{pid} $rx->{url}\n";
	sleep 1 while 1;' "$RX_DIR"; }
read -r SINK_PID RX_URL <&"${RX[0]}" || die "the receiver did not start"
stop_receiver() { kill "$SINK_PID" "${RX_PID:-}" 2>/dev/null || true; }
trap 'rc=$?; stop_receiver; set +e; (exit $rc); bench_cleanup' EXIT
say "== OTLP receiver at $RX_URL (pid $SINK_PID)"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
sql() { psql_q -d bench -c "$1"; }

PAYLOAD='{"customer_id": "Customer-004711", "total": 149.97, "currency": "EUR", "items": [{"sku": "SKU-10001", "qty": 2, "price": 49.99}, {"sku": "SKU-20002", "qty": 1, "price": 49.99}], "channel": "web"}'
TRACEPARENT='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'

say "== setup: $EVENTS events in $STREAMS streams, each with a traceparent"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -f "$HERE/sub_setup.sql" >/dev/null
# the setting puts the traceparent into every appended event's metadata
PGOPTIONS="-c synchronous_commit=off -c eventsource.traceparent=$TRACEPARENT" psql_q -d bench \
	-c "CALL bench.load('Order', $STREAMS, 10, $EVENTS, '$PAYLOAD')"
sql "VACUUM (FREEZE, ANALYZE)"
HEAD=$(sql "SELECT max(global_position) FROM eventsource.events")
[ "$(sql "SELECT count(*) FROM eventsource.events WHERE metadata->>'traceparent' = '$TRACEPARENT'")" = "$EVENTS" ] ||
	die "not every event carries the traceparent"

# tracing on|off: set the endpoint, reload, wait until the exporter follows
tracing() {
	local url=""
	[ "$1" = on ] && url=$RX_URL
	sql "ALTER SYSTEM SET eventsource.otlp_endpoint = '$url'" >/dev/null
	sql "SELECT pg_reload_conf()" >/dev/null
	for _ in $(seq 200); do
		[ "$(sql "SELECT enabled FROM eventsource.tracing")" = "$([ "$1" = on ] && echo t || echo f)" ] && return 0
		sleep 0.05
	done
	die "the exporter did not follow the reload (tracing $1)"
}

# cpu_secs PID -> user + system CPU seconds the process has used
cpu_secs() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"
}
# the exporter's counters: "exported dropped"
counters() { sql "SELECT spans_exported || ' ' || spans_dropped FROM eventsource.tracing"; }

SUBN=0
# run off|on: sets RESULT to "seconds spans_exported spans_dropped"
run() {
	local mode=$1 name secs got e0 d0 e1 d1 wpid wcpu x0 x1 r0 r1 XPID
	SUBN=$((SUBN + 1))
	name="tr_${mode}_$SUBN"
	tracing "$mode"
	read -r e0 d0 < <(counters)
	# the exporter runs only while an endpoint is set (a new process each "on" run)
	XPID=$(sql "SELECT exporter_pid FROM eventsource.tracing")
	x0=0
	[ -n "$XPID" ] && x0=$(cpu_secs "$XPID")
	r0=$(cpu_secs "$SINK_PID")
	secs=$(psql_q -d bench -v name="$name" -v bs="$BATCH" -v pos="$HEAD" -v timeout='30 min' \
		-v await="$HERE/sub_await.sql" 2> >(grep -v 'division by zero' >&2) <<'SQL'
TRUNCATE bench.counts;
CHECKPOINT;
SELECT clock_timestamp() AS t0 \gset
SELECT eventsource.create_subscription(:'name', 'bench.count_event(eventsource.events)', batch_size => :bs) \g /dev/null
\i :await
\if :ok
SELECT extract(epoch FROM :'reached_at'::timestamptz - :'t0'::timestamptz) AS secs \gset
\echo :secs
\endif
SQL
	) || die "run $name failed"
	secs=${secs##*$'\n'}   # (\watch writes an empty line when its poll ends)
	[ -n "$secs" ] || die "subscription $name did not reach position $HEAD"
	# the worker's own CPU time (it idles at the head now)
	wpid=$(sql "SELECT pid FROM pg_stat_activity WHERE backend_type = 'eventsource worker'
		AND application_name = 'eventsource $name/0'")
	[ -n "$wpid" ] || die "no worker process for $name"
	wcpu=$(cpu_secs "$wpid")
	sql "SELECT eventsource.pause_subscription('$name')" >/dev/null
	got=$(sql "SELECT coalesce(sum(n), 0) || ' ' || count(*) FROM bench.counts")
	[ "$got" = "$EVENTS $STREAMS" ] || die "$name: bench.counts holds ($got), expected ($EVENTS $STREAMS)"
	# the exporter catches up (the queue drains) before the next run
	for _ in $(seq 600); do
		[ "$(sql "SELECT queued FROM eventsource.tracing")" = 0 ] && break
		sleep 0.1
	done
	sleep 0.5
	read -r e1 d1 < <(counters)
	x1=0
	[ -n "$XPID" ] && x1=$(cpu_secs "$XPID")
	r1=$(cpu_secs "$SINK_PID")
	RESULT="$secs $((e1 - e0)) $((d1 - d0)) $wcpu $(awk -v a="$x0" -v b="$x1" 'BEGIN { print b - a }') $(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
say "== warm-up run (tracing off, unmeasured)"
run off
declare -a OFF ON RATIO EXPORTED DROPPED WCPU_OFF WCPU_ON XCPU RCPU
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="off on"; else order="on off"; fi
	for m in $order; do
		run "$m"
		read -r secs exported dropped wcpu xcpu rcpu <<<"$RESULT"
		if [ "$m" = off ]; then
			off=$secs
			WCPU_OFF+=("$wcpu")
		else
			on=$secs
			EXPORTED+=("$exported")
			DROPPED+=("$dropped")
			WCPU_ON+=("$wcpu")
			XCPU+=("$xcpu")
			RCPU+=("$rcpu")
		fi
		say "   round $r: tracing $m $secs s ($exported spans exported, $dropped dropped; CPU s: worker $wcpu, exporter $xcpu, receiver $rcpu)"
	done
	OFF+=("$off")
	ON+=("$on")
	RATIO+=("$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.4f", a / b }')")
done
ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
read -r RX_REQ RX_BYTES <"$RX_DIR/count" || [ -n "${RX_REQ:-}" ] || { RX_REQ=0; RX_BYTES=0; }
stop_receiver

OFF_S=$(median "${OFF[@]}")
ON_S=$(median "${ON[@]}")
RATIO_M=$(median "${RATIO[@]}")
COST=$(awk -v r="$RATIO_M" 'BEGIN { printf "%.1f", (1 - r) * 100 }')
MET=$(awk -v c="$COST" 'BEGIN { print (c <= 10 ? "yes" : "NO") }')
LINE=$(printf '%.0s-' $(seq 100))
{
	echo
	echo "eventsource tracing benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s of measurements"
	echo "command:  ${0##*/} with BENCH_QUICK=$QUICK BENCH_TRACE_EVENTS=$EVENTS BENCH_TRACE_ROUNDS=$ROUNDS BENCH_TRACE_BATCH=$BATCH"
	echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "server:   $(sql "SELECT version()"); eventsource.so md5 $SO_MD5..."
	echo "settings: $SETTINGS, otherwise initdb and eventsource defaults (otlp_batch_size 512, flush 1 s, queue 4096)"
	echo "data:     $EVENTS events in $STREAMS streams, each with metadata traceparent; handler bench.count_event, batch_size $BATCH"
	echo
	printf '%-40s %10s %10s %12s\n' "" "seconds" "events/s" "per round"
	echo "$LINE"
	printf '%-40s %10.2f %10.0f %12s\n' "tracing off (no endpoint)" "$OFF_S" "$(awk -v n="$EVENTS" -v s="$OFF_S" 'BEGIN { print n / s }')" "${OFF[*]}"
	printf '%-40s %10.2f %10.0f %12s\n' "tracing on (live loopback receiver)" "$ON_S" "$(awk -v n="$EVENTS" -v s="$ON_S" 'BEGIN { print n / s }')" "${ON[*]}"
	echo "$LINE"
	echo "ratio on/off events/s (median of per-round ratios): $RATIO_M   per round: ${RATIO[*]}"
	echo "cost of tracing: $COST% of per-event throughput   target <= 10%: $MET"
	echo "spans exported per 'on' run: ${EXPORTED[*]}   dropped: ${DROPPED[*]}"
	echo "CPU seconds of the worker per run (median), off: $(median "${WCPU_OFF[@]}")  on: $(median "${WCPU_ON[@]}")  (per round off: ${WCPU_OFF[*]}; on: ${WCPU_ON[*]})"
	echo "CPU seconds per 'on' run of the exporter: ${XCPU[*]}; of the receiver: ${RCPU[*]}"
	echo "  (on this $(nproc)-CPU machine the exporter and the receiver compete with the worker and the server for the CPUs;"
	echo "  the worker's own CPU time is what tracing costs it wherever the collector runs)"
	echo "receiver: $RX_REQ requests, $RX_BYTES bytes of OTLP JSON in all"
	echo "Each run: TRUNCATE the read model, CHECKPOINT, create_subscription (from the beginning), timed until its"
	echo "checkpoint is at the head (polled every 5 ms by psql's \\watch, no snapshot held), then paused; checked: every"
	echo "event applied exactly once. 'on' spans: one per handler call plus one per batch of $BATCH."
}
exit 0
