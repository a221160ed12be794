#!/usr/bin/env bash
# test/bench/run_tracing.sh: what tracing costs the subscription worker.
# The per-event delivery rate of one subscription with spans exported to a
# live OTLP/HTTP receiver on loopback, against the same subscription with no
# endpoint set, in the same run on the same events (every event carries a
# traceparent, so both sides build the handler's trace context; only the
# spans and their export differ).  Target: tracing on costs <= 10%.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_tracing.sh                  # as root; ~3 minutes
#   BENCH_QUICK=1 test/bench/run_tracing.sh    # quick run, ~40 s
#
# Environment (BENCH_QUICK=1 changes the defaults marked *):
#   BENCH_TRACE_EVENTS   * events delivered per run (default 100000, quick 20000)
#   BENCH_TRACE_ROUNDS   * rounds; each has one run off and one on, the order
#                          alternating (default 15, quick 3)
#   BENCH_TRACE_BATCH      the subscription's batch_size (default 100)
#   BENCH_TRACE_PIN        1: the server on CPUs 0..n-2, the exporter and the
#                          receiver on the last CPU (taskset), so that what
#                          they use is not taken from the worker (default 0)
#   BENCH_TRACE_NICE       a nice value for the server and the receiver, e.g. -5
#                          (renice; default unset: left alone): on a machine
#                          shared with other work, a priority above it keeps
#                          that work from deciding the wall-clock figures (the
#                          worker, the exporter and the receiver still compete
#                          with each other, as on a machine of their own)
#   BENCH_TMPDIR           parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN                  PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Two measures per round, each as the ratio on/off: the wall-clock delivery
# rate (events/s, what a user sees; on a shared machine it also carries
# whatever else ran meanwhile), and the worker process's own CPU time per
# event (from /proc/<pid>/schedstat, nanoseconds: what tracing costs the
# worker wherever the exporter and the collector run).  The report gives the
# median of the per-round ratios and their spread (min, quartiles, max).
#
# The receiver is test/bench/otlp_sink.pl (a Perl process that reads each
# request whole and answers 200 on a kept-alive connection; it does not
# decode: it stands in for a collector elsewhere, cheaply).  Progress goes
# to stderr, the report to stdout.  Exits 0 whether or not the target is
# met; non-zero when something broke (a run that did not deliver every event
# exactly once).

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

if [ "$QUICK" = 1 ]; then
	EVENTS=${BENCH_TRACE_EVENTS:-20000}
	ROUNDS=${BENCH_TRACE_ROUNDS:-3}
else
	EVENTS=${BENCH_TRACE_EVENTS:-100000}
	ROUNDS=${BENCH_TRACE_ROUNDS:-15}
fi
BATCH=${BENCH_TRACE_BATCH:-100}
PIN=${BENCH_TRACE_PIN:-0}
NICE=${BENCH_TRACE_NICE:-}
STREAMS=1000

bench_require   # SO_MD5: the library the server will load
posint BENCH_TRACE_EVENTS "$EVENTS"
posint BENCH_TRACE_ROUNDS "$ROUNDS"
posint BENCH_TRACE_BATCH "$BATCH"
[[ "$PIN" =~ ^[01]$ ]] || die "BENCH_TRACE_PIN must be 0 or 1"
[ -z "$NICE" ] || [[ "$NICE" =~ ^-?[0-9]+$ ]] || die "BENCH_TRACE_NICE must be an integer"
NCPU=$(nproc)
if [ "$PIN" = 1 ]; then
	[ "$NCPU" -ge 2 ] || die "BENCH_TRACE_PIN=1 needs at least 2 CPUs"
	command -v taskset >/dev/null || die "BENCH_TRACE_PIN=1 needs taskset (util-linux)"
	SERVER_CPUS=0-$((NCPU - 2))
	TRACE_CPU=$((NCPU - 1))
fi
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
perl "$HERE/otlp_sink.pl" "$RX_DIR" &
for _ in $(seq 100); do [ -s "$RX_DIR/url" ] && break; sleep 0.05; done
read -r SINK_PID RX_URL <"$RX_DIR/url" || die "the receiver did not start"
# (it writes its counts when it exits)
stop_receiver() {
	if kill "$SINK_PID" 2>/dev/null; then wait "$SINK_PID" 2>/dev/null || true; fi
}
trap 'rc=$?; stop_receiver; set +e; (exit $rc); bench_cleanup' EXIT
say "== OTLP receiver at $RX_URL (pid $SINK_PID)"
if [ -n "$NICE" ]; then
	# the postmaster and its children (new ones inherit it), and the receiver
	PM_PID=$(head -1 "$DATA/postmaster.pid")
	renice -n "$NICE" -p "$PM_PID" $(pgrep -P "$PM_PID") "$SINK_PID" >/dev/null
	say "== reniced: server and receiver at nice $NICE"
fi
if [ "$PIN" = 1 ]; then
	# the postmaster and its children (new ones inherit it) on the server's
	# CPUs; the receiver (and each exporter, in run) on the last one
	PM_PID=$(head -1 "$DATA/postmaster.pid")
	for p in $PM_PID $(pgrep -P "$PM_PID"); do taskset -a -pc "$SERVER_CPUS" "$p" >/dev/null; done
	taskset -a -pc "$TRACE_CPU" "$SINK_PID" >/dev/null
	say "== pinned: server on CPUs $SERVER_CPUS, exporter and receiver on CPU $TRACE_CPU"
fi

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
sql() { psql_q -d bench -c "$1"; }

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

# cpu_secs PID -> CPU seconds the process has used (schedstat: nanoseconds)
cpu_secs() {
	awk '{ printf "%.4f\n", $1 / 1e9 }' "/proc/$1/schedstat"
}
# rq_secs PID -> seconds the process has waited for a CPU while runnable
rq_secs() {
	awk '{ printf "%.4f\n", $2 / 1e9 }' "/proc/$1/schedstat"
}
# the exporter's counters: "exported dropped"
counters() { sql "SELECT spans_exported || ' ' || spans_dropped FROM eventsource.tracing"; }

SUBN=0
# run off|on: sets RESULT to "seconds spans_exported spans_dropped"
run() {
	local mode=$1 name secs got e0 d0 e1 d1 wpid wcpu wrq x0 x1 r0 r1 XPID
	SUBN=$((SUBN + 1))
	name="tr_${mode}_$SUBN"
	tracing "$mode"
	read -r e0 d0 < <(counters)
	# the exporter runs only while an endpoint is set (a new process each "on" run)
	XPID=$(sql "SELECT exporter_pid FROM eventsource.tracing")
	x0=0
	[ -n "$XPID" ] && x0=$(cpu_secs "$XPID")
	[ -n "$XPID" ] && [ "$PIN" = 1 ] && taskset -a -pc "$TRACE_CPU" "$XPID" >/dev/null
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
	wrq=$(rq_secs "$wpid")
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
	RESULT="$secs $((e1 - e0)) $((d1 - d0)) $wcpu $wrq $(awk -v a="$x0" -v b="$x1" 'BEGIN { print b - a }') $(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# spread VALUES... -> "min q1 q3 max" (quartiles by linear interpolation)
spread() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		function q(p,  h, l) { h = 1 + (NR - 1) * p; l = int(h); return l >= NR ? v[NR] : v[l] + (h - l) * (v[l + 1] - v[l]) }
		END { printf "%.3f %.3f %.3f %.3f\n", v[1], q(0.25), q(0.75), v[NR] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
pct() { awk -v r="$1" 'BEGIN { printf "%.1f", (1 - r) * 100 }'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
say "== warm-up run (tracing off, unmeasured)"
run off
declare -a OFF ON RATIO CRATIO EXPORTED DROPPED WCPU_OFF WCPU_ON WRQ_OFF WRQ_ON XCPU RCPU
for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="off on"; else order="on off"; fi
	for m in $order; do
		run "$m"
		read -r secs exported dropped wcpu wrq xcpu rcpu <<<"$RESULT"
		if [ "$m" = off ]; then
			off=$secs
			coff=$wcpu
			WCPU_OFF+=("$wcpu")
			WRQ_OFF+=("$wrq")
		else
			on=$secs
			con=$wcpu
			EXPORTED+=("$exported")
			DROPPED+=("$dropped")
			WCPU_ON+=("$wcpu")
			WRQ_ON+=("$wrq")
			XCPU+=("$xcpu")
			RCPU+=("$rcpu")
		fi
		say "   round $r: tracing $m $secs s ($exported spans exported, $dropped dropped; CPU s: worker $wcpu (waited for a CPU $wrq), exporter $xcpu, receiver $rcpu)"
	done
	OFF+=("$off")
	ON+=("$on")
	# events/s on / off = seconds off / on; CPU per event likewise
	RATIO+=("$(ratio "$off" "$on")")
	CRATIO+=("$(ratio "$coff" "$con")")
done
ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
stop_receiver
read -r RX_REQ RX_BYTES <"$RX_DIR/count" || [ -n "${RX_REQ:-}" ] || { RX_REQ=0; RX_BYTES=0; }

OFF_S=$(median "${OFF[@]}")
ON_S=$(median "${ON[@]}")
RATIO_M=$(median "${RATIO[@]}")
CRATIO_M=$(median "${CRATIO[@]}")
COST=$(pct "$RATIO_M")
CCOST=$(pct "$CRATIO_M")
MET=$(awk -v c="$COST" 'BEGIN { print (c <= 10 ? "yes" : "NO") }')
CMET=$(awk -v c="$CCOST" 'BEGIN { print (c <= 10 ? "yes" : "NO") }')
# the least disturbed run of each side (under noise that only ever adds time)
BEST=$(ratio "$(printf '%s\n' "${OFF[@]}" | sort -g | head -1)" "$(printf '%s\n' "${ON[@]}" | sort -g | head -1)")
CBEST=$(ratio "$(printf '%s\n' "${WCPU_OFF[@]}" | sort -g | head -1)" "$(printf '%s\n' "${WCPU_ON[@]}" | sort -g | head -1)")
COFF_M=$(median "${WCPU_OFF[@]}")
CON_M=$(median "${WCPU_ON[@]}")
LINE=$(printf '%.0s-' $(seq 100))
{
	echo
	echo "eventsource tracing benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s of measurements"
	echo "command:  ${0##*/} with BENCH_QUICK=$QUICK BENCH_TRACE_EVENTS=$EVENTS BENCH_TRACE_ROUNDS=$ROUNDS BENCH_TRACE_BATCH=$BATCH BENCH_TRACE_PIN=$PIN${NICE:+ BENCH_TRACE_NICE=$NICE}"
	echo "machine:  $NCPU CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')); load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	[ "$PIN" = 1 ] && echo "pinned:   server on CPUs $SERVER_CPUS; exporter and receiver on CPU $TRACE_CPU"
	echo "server:   $(sql "SELECT version()"); eventsource.so md5 $SO_MD5..."
	echo "settings: $SETTINGS, otherwise initdb and eventsource defaults (otlp_batch_size 512, flush 1 s, queue 4096)"
	echo "data:     $EVENTS events in $STREAMS streams, each with metadata traceparent; handler bench.count_event, batch_size $BATCH"
	echo
	printf '%-40s %10s %10s %14s\n' "median of $ROUNDS rounds" "seconds" "events/s" "worker CPU/ev"
	echo "$LINE"
	printf '%-40s %10.3f %10.0f %11.2f µs\n' "tracing off (no endpoint)" "$OFF_S" "$(awk -v n="$EVENTS" -v s="$OFF_S" 'BEGIN { print n / s }')" "$(awk -v n="$EVENTS" -v s="$COFF_M" 'BEGIN { print s / n * 1e6 }')"
	printf '%-40s %10.3f %10.0f %11.2f µs\n' "tracing on (live loopback receiver)" "$ON_S" "$(awk -v n="$EVENTS" -v s="$ON_S" 'BEGIN { print n / s }')" "$(awk -v n="$EVENTS" -v s="$CON_M" 'BEGIN { print s / n * 1e6 }')"
	echo "$LINE"
	echo "per-round ratios on/off (1 = no cost), median [min q1 q3 max]:"
	echo "  events/s, wall clock:          $RATIO_M [$(spread "${RATIO[@]}")]  cost $COST%   target <= 10%: $MET"
	echo "  worker CPU time per event:     $CRATIO_M [$(spread "${CRATIO[@]}")]  cost $CCOST%   target <= 10%: $CMET"
	echo "  (CPU ratio = off CPU / on CPU, so that 0.95 means tracing made each event cost 1/0.95 - 1 = 5.3% more CPU)"
	echo "fastest run on / fastest run off: events/s $BEST (cost $(pct "$BEST")%), worker CPU per event $CBEST (cost $(pct "$CBEST")%)"
	echo "wall-clock ratio per round: ${RATIO[*]}"
	echo "CPU ratio per round:        ${CRATIO[*]}"
	echo "seconds per round, off: ${OFF[*]}"
	echo "seconds per round, on:  ${ON[*]}"
	echo "worker CPU s, off: ${WCPU_OFF[*]}"
	echo "worker CPU s, on:  ${WCPU_ON[*]}"
	echo "worker waiting for a CPU (runnable, not running), s, median off: $(median "${WRQ_OFF[@]}")  on: $(median "${WRQ_ON[@]}")"
	echo "spans exported per 'on' run: ${EXPORTED[*]}   dropped: ${DROPPED[*]}"
	echo "CPU seconds per 'on' run, exporter: ${XCPU[*]}"
	echo "CPU seconds per 'on' run, receiver: ${RCPU[*]}"
	echo "receiver: $RX_REQ requests, $RX_BYTES bytes of OTLP JSON in all"
	echo "Each run: TRUNCATE the read model, CHECKPOINT, create_subscription (from the beginning), timed until its"
	echo "checkpoint is at the head (polled every 5 ms by psql's \\watch, no snapshot held), then paused; checked: every"
	echo "event applied exactly once. 'on' spans: one per handler call plus one per batch of $BATCH."
}
exit 0
