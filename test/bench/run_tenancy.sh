#!/usr/bin/env bash
# test/bench/run_tenancy.sh: eventsource's append/read throughput with
# tenancy in use (issue 15), against the plain-table baselines of run.sh and
# against the same operations without tenancy, all measured in one run on a
# throwaway cluster.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run_tenancy.sh                 # as root; ~10 s per side and pair
#   BENCH_SECONDS=3 test/bench/run_tenancy.sh # quick run
#
# Four sides per operation:
#   tenancy   (T) BENCH_TENANTS registered tenants (default 1,000), each with
#                 10 streams x 100 events (read_stream: one of them;
#                 read_all(0, 1000): the tenant's whole log); the appends
#                 write the BENCH_STREAMS streams N and B write, spread over
#                 the tenants (BENCH_STREAMS_EACH=1: each tenant its own
#                 BENCH_STREAMS streams, a random tenant a call); the calls run
#                 as es_bench_app, a role that is not the owner (row-level
#                 security applies to it) and is bound to no tenant: every
#                 call names a random tenant in its last argument (the
#                 overloads with "tenant"): one statement
#   SET LOCAL (S) T with the tenant chosen per transaction instead, with
#                 SET LOCAL eventsource.tenant (as set_config(.., true)),
#                 sent as one pipeline BEGIN; set_config; <call>; COMMIT
#   no tenancy (N) the same call as run.sh makes it: the store's owner, one
#                 statement, the default tenant (which holds
#                 BENCH_DEFAULT_STREAMS streams x 100 events; read_stream of
#                 a random one, read_all of a random page of its range)
#   baseline  (B) plain SQL on bench.plain_events, a table of the shape
#                 eventsource.events had before tenancy (run.sh's baselines)
#                 holding a copy of every event (reads: as N)
# Each operation is measured as five pairs, T vs B, T vs N, S vs B, S vs N
# and N vs B (pairs.sh: ABBA rounds), so each ratio comes from back-to-back
# measurements.
#
# Environment:
#   BENCH_SECONDS  duration of each measurement, per side (default 10)
#   BENCH_ROUNDS   rounds per pair (default min(5, BENCH_SECONDS))
#   BENCH_TENANTS  registered tenants (default 1000); 0 measures N vs B only
#                  (a store without the tenancy SQL)
#   BENCH_STREAMS  streams the appends pick from (default 10000, at least
#                  BENCH_TENANTS); on the T and S sides spread over the
#                  tenants (stream n is tenant-<1 + n mod BENCH_TENANTS>'s),
#                  so that every side appends to as many streams: a store
#                  with tenants against the same store without
#   BENCH_STREAMS_EACH  1: T and S append to BENCH_STREAMS streams of each
#                  tenant instead (a random tenant a call; 1,000 tenants:
#                  1,000 times as many streams as N and B, each append
#                  likely a new stream; the shape this runner measured
#                  before, kept for comparison) (default 0)
#   BENCH_DEFAULT_STREAMS  read streams (x 100 events) of the default tenant
#                  (default 10 x BENCH_TENANTS, at least 1000: as many events
#                  as all the tenants hold, so that T, W, N and B read from
#                  working sets of the same size)
#   BENCH_SYNC     synchronous_commit values of the appends (default "on")
#   BENCH_TMPDIR   parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN          PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr; the report (one table) to stdout.  The run exits 0
# whether or not the targets are met; non-zero only when something broke.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster
. "$HERE/lib.sh"

SECS=${BENCH_SECONDS:-10}
TENANTS=${BENCH_TENANTS:-1000}
STREAMS=${BENCH_STREAMS:-10000}
EACH=${BENCH_STREAMS_EACH:-0}
DSTREAMS=${BENCH_DEFAULT_STREAMS:-}
SYNCS=${BENCH_SYNC:-on}
ROUNDS=${BENCH_ROUNDS:-}

bench_require
posint BENCH_SECONDS "$SECS"
[ -n "$ROUNDS" ] || ROUNDS=$((SECS < 5 ? SECS : 5))
posint BENCH_ROUNDS "$ROUNDS"
SLICE=$(((SECS + ROUNDS - 1) / ROUNDS))
[[ "$TENANTS" =~ ^[0-9]+$ ]] || die "BENCH_TENANTS must be a non-negative integer"
# the default tenant holds as much as all the tenants together (at least
# run.sh's 1,000 streams), so that every side reads from the same amount of data
[ -n "$DSTREAMS" ] || DSTREAMS=$((TENANTS * 10 > 1000 ? TENANTS * 10 : 1000))
posint BENCH_DEFAULT_STREAMS "$DSTREAMS"
[[ "$STREAMS" =~ ^[1-9][0-9]*$ ]] && [ "$STREAMS" -ge 8 ] || die "BENCH_STREAMS must be an integer >= 8"
[ "$EACH" = 0 ] || [ "$EACH" = 1 ] || die "BENCH_STREAMS_EACH must be 0 or 1"
# spread over the tenants, every tenant must get streams
[ "$EACH" = 1 ] || [ "$STREAMS" -ge "$TENANTS" ] ||
	die "BENCH_STREAMS ($STREAMS) must be at least BENCH_TENANTS ($TENANTS), or set BENCH_STREAMS_EACH=1"
for s in $SYNCS; do
	[ "$s" = on ] || [ "$s" = off ] || die "BENCH_SYNC must list on and/or off"
done

SETTINGS="shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min"
bench_cluster es-bench-tenancy "shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
synchronous_commit = on"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
APP=(-U es_bench_app)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

EVENTS10=$(events_array 10)
EVENTS100=$(events_array 100)

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------
say "== setup: extension, baseline table, application role; default tenant $DSTREAMS streams x 100 events"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -f "$HERE/tenancy_setup.sql" >/dev/null
t=$SECONDS
psql_q -d bench -v payload="$PAYLOAD" -v first=0 -v last=0 -v streams="$DSTREAMS" \
	-f "$HERE/read_data.sql" >/dev/null
say "   loaded $((DSTREAMS * 100)) events in $((SECONDS - t)) s"
HAS_TENANTS=$(psql_q -d bench -c "SELECT count(*) FROM pg_attribute
	WHERE attrelid = 'eventsource.events'::regclass AND attname = 'tenant_id' AND NOT attisdropped")
if [ "$TENANTS" -gt 0 ]; then
	[ "$HAS_TENANTS" = 1 ] || die "this eventsource has no tenancy (no events.tenant_id); BENCH_TENANTS=0 measures the rest"
	say "== $TENANTS tenants, each 10 streams x 100 events (two sessions)"
	psql_q -d bench -c "SELECT count(eventsource.create_tenant('tenant-' || k))
		FROM generate_series(1, $TENANTS) k" >/dev/null
	t=$SECONDS
	half=$(((TENANTS + 1) / 2))
	psql_q -d bench -v payload="$PAYLOAD" -v first=1 -v last="$half" -v streams=10 -f "$HERE/read_data.sql" >/dev/null &
	p1=$!
	if [ "$TENANTS" -gt "$half" ]; then
		psql_q -d bench -v payload="$PAYLOAD" -v first=$((half + 1)) -v last="$TENANTS" \
			-v streams=10 -f "$HERE/read_data.sql" >/dev/null &
		p2=$!
		wait "$p2" || die "the tenants' load failed"
	fi
	wait "$p1" || die "the tenants' load failed"
	say "   loaded $((TENANTS * 1000)) events in $((SECONDS - t)) s"
fi
# The plain table gets a copy of every event (the same size as the log), a
# tenant's stream ids prefixed with the tenant (its key has no tenant).
if [ "$HAS_TENANTS" = 1 ]; then
	STREAM_EXPR="CASE WHEN tenant_id = 'default' THEN stream_id ELSE tenant_id || '/' || stream_id END"
	DEFAULT_ONLY="tenant_id = 'default'"
else
	STREAM_EXPR="stream_id"
	DEFAULT_ONLY="true"
fi
psql_q -d bench -c "INSERT INTO bench.plain_events
	SELECT global_position, $STREAM_EXPR, stream_version, event_id, event_type, data, metadata, recorded_at
	  FROM eventsource.events"
psql_q -d bench -c "SELECT setval('bench.plain_seq', (SELECT max(global_position) FROM bench.plain_events))" >/dev/null
psql_q -d bench -c "VACUUM (FREEZE, ANALYZE)"
read -r PMIN PMAX NDEFAULT < <(psql_q -d bench -F ' ' -c \
	"SELECT min(global_position), max(global_position), count(*) FROM eventsource.events WHERE $DEFAULT_ONLY") || true
[ "$NDEFAULT" = $((DSTREAMS * 100)) ] || die "expected $((DSTREAMS * 100)) events in the default tenant, found $NDEFAULT"
[ "$PMAX" = $((PMIN + DSTREAMS * 100 - 1)) ] || die "the default tenant's positions are not contiguous ($PMIN .. $PMAX)"
NTOTAL=$(psql_q -d bench -c "SELECT count(*) FROM bench.plain_events")
[ "$NTOTAL" = $((DSTREAMS * 100 + TENANTS * 1000)) ] || die "expected $((DSTREAMS * 100 + TENANTS * 1000)) events in all, found $NTOTAL"

# The reads must return what the rows claim (a silent empty result would
# make any function look fast), on each side and as each role.
check_count() { # expected sql [psql args...]
	local got want=$1 sql=$2
	shift 2
	got=$(psql_q -d bench "$@" -c "$sql")
	[ "$got" = "$want" ] || die "sanity check: expected $want, got $got: $sql"
}
check_count 100 "SELECT count(*) FROM eventsource.read_stream('Read-$DSTREAMS')"
check_count 1000 "SELECT count(*) FROM eventsource.read_all($PMAX - 1000, 1000)"
check_count 100 "SELECT count(*) FROM bench.plain_events WHERE stream_id = 'Read-$DSTREAMS'"
if [ "$TENANTS" -gt 0 ]; then
	one=(-c "SET eventsource.tenant = 'tenant-$TENANTS'")
	check_count 100 "SELECT count(*) FROM eventsource.read_stream('Read-10')" "${APP[@]}" "${one[@]}"
	check_count 1000 "SELECT count(*) FROM eventsource.read_all(0, 1000)" "${APP[@]}" "${one[@]}"
	# the tenant named in the call, without a setting
	check_count 100 "SELECT count(*) FROM eventsource.read_stream('Read-10', NULL, 1000, false, 'tenant-$TENANTS')" "${APP[@]}"
	check_count 1000 "SELECT count(*) FROM eventsource.read_all(0, 1000, NULL, NULL, 'tenant-$TENANTS')" "${APP[@]}"
	# row-level security applies to the role: the table shows its tenant only
	check_count 1000 "SELECT count(*) FROM eventsource.events" "${APP[@]}" "${one[@]}"
	check_count t "SELECT NOT rolbypassrls AND NOT rolsuper AND
		NOT pg_has_role('es_bench_app', (SELECT relowner FROM pg_class WHERE oid = 'eventsource.events'::regclass), 'USAGE')
		AND (SELECT relrowsecurity FROM pg_class WHERE oid = 'eventsource.events'::regclass)
		FROM pg_roles WHERE rolname = 'es_bench_app'"
fi

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
FAILED=0
declare -A TPS RATIO SPREAD
SEQ_EXT=eventsource.events_global_position_seq
SEQ_BASE=bench.plain_seq

. "$HERE/pairs.sh"

# measure KEY T_SCRIPT N_SCRIPT B_SCRIPT CLIENTS SYNC PER_CALL SEQ_B [pgbench -D args]
# T vs B, T vs N, S vs B and S vs N (S: the T script with set_local=1), and
# N vs B (only N vs B without tenants)
measure() {
	local key=$1 ts=$2 ns=$3 bs=$4 c=$5 sync=$6 per=$7 seqb=$8 seqe=-
	shift 8
	[ "$seqb" = - ] || seqe=$SEQ_EXT
	if [ "$TENANTS" -gt 0 ]; then
		PAIR_EXT_ARGS=("${APP[@]}" -D set_local=0)
		pair "tb_$key" "$ts" "$bs" "$c" "$sync" "$per" "$seqe" "$seqb" "$@"
		pair "tn_$key" "$ts" "$ns" "$c" "$sync" "$per" "$seqe" "$seqe" "$@"
		PAIR_EXT_ARGS=("${APP[@]}" -D set_local=1)
		pair "sb_$key" "$ts" "$bs" "$c" "$sync" "$per" "$seqe" "$seqb" "$@"
		pair "sn_$key" "$ts" "$ns" "$c" "$sync" "$per" "$seqe" "$seqe" "$@"
		PAIR_EXT_ARGS=()
	fi
	pair "nb_$key" "$ns" "$bs" "$c" "$sync" "$per" "$seqe" "$seqb" "$@"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
COMMON=(-D tenant_min=1 -D tenants="$TENANTS" -D tenant_streams=10 -D read_streams="$DSTREAMS"
	-D streams_each="$EACH"
	-D pmin="$PMIN" -D pmax="$PMAX")

measure rs tenancy_read_stream.sql read_stream.sql read_stream_base.sql 1 on 100 - "${COMMON[@]}"
measure ra tenancy_read_all.sql read_all.sql read_all_base.sql 1 on 1000 - "${COMMON[@]}"
for sync in $SYNCS; do
	measure "ae_$sync" tenancy_append_event.sql append_event.sql append_event_base.sql 8 "$sync" 1 \
		"$SEQ_BASE" "${COMMON[@]}" -D data="$PAYLOAD"
	measure "b10_$sync" tenancy_append_batch.sql append_batch.sql append_batch_base.sql 1 "$sync" 10 \
		"$SEQ_BASE" "${COMMON[@]}" -D batch=10 -D events="$EVENTS10"
	measure "b100_$sync" tenancy_append_batch.sql append_batch.sql append_batch_base.sql 1 "$sync" 100 \
		"$SEQ_BASE" "${COMMON[@]}" -D batch=100 -D events="$EVENTS100"
done

ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
PGVERSION=$(psql_q -d bench -c "SELECT version()")
EXTVERSION=$(psql_q -d bench -c "SELECT extversion FROM pg_extension WHERE extname = 'eventsource'")

FMT='%-27s %2s %4s %9s %9s %9s %9s %5s %9s %5s %9s %5s %9s %5s %9s %5s %9s\n'
LINE=$(printf '%.0s-' $(seq 150))
calls() { # TPS key -> calls/s, ERR, or - (not measured)
	local v=${TPS[$1]:-}
	if [ -z "$v" ]; then echo -; elif [ "$v" = ERR ]; then echo ERR; else printf '%.0f' "$v"; fi
}
ratio() { # key target -> "ratio spread met"
	local key=$1 target=$2 r
	if [ -z "${RATIO[$key]:-}" ]; then
		echo "- - -"
		return
	fi
	r=$(printf '%.2f' "${RATIO[$key]}")
	if awk -v r="$r" -v t="$target" 'BEGIN { exit !(r >= t) }'; then
		echo "$r ${SPREAD[$key]} yes"
	else
		echo "$r ${SPREAD[$key]} NO"
	fi
}
row() { # label clients sync key
	local tb tn sb sn nb
	read -r -a tb <<<"$(ratio "tb_$4" 0.8)"
	read -r -a tn <<<"$(ratio "tn_$4" 0.9)"
	read -r -a sb <<<"$(ratio "sb_$4" 0.8)"
	read -r -a sn <<<"$(ratio "sn_$4" 0.9)"
	read -r -a nb <<<"$(ratio "nb_$4" 0.8)"
	printf "$FMT" "$1" "$2" "$3" "$(calls "tb_${4}_ext")" "$(calls "sb_${4}_ext")" \
		"$(calls "nb_${4}_ext")" "$(calls "nb_${4}_base")" \
		"${tb[0]}" "${tb[1]}" "${tn[0]}" "${tn[1]}" "${sb[0]}" "${sb[1]}" "${sn[0]}" "${sn[1]}" \
		"${nb[0]}" "${nb[1]}"
	MET+=" ${tb[2]}:${tn[2]}(S ${sb[2]}:${sn[2]})"
}

{
	echo
	echo "eventsource tenancy benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s of measurements"
	echo "machine:  $(nproc) CPUs, load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "server:   $PGVERSION; eventsource $EXTVERSION"
	echo "settings: $SETTINGS shared_preload_libraries=eventsource; synchronous_commit as in 'sync'"
	echo "pgbench:  -n -M prepared; per pair $ROUNDS rounds of -T $SLICE per side (ABBA); 8 clients: -j 2"
	echo "data:     $TENANTS tenants x 10 streams x 100 events, default tenant $DSTREAMS streams x 100 events;"
	if [ "$EACH" = 1 ]; then
		echo "          appends to random streams: T and S among $STREAMS of a random tenant (BENCH_STREAMS_EACH=1),"
		echo "          N and B among $STREAMS; expected_version -1"
	else
		echo "          appends to random streams among $STREAMS (T and S: stream n of tenant-<1 + n mod $TENANTS>),"
		echo "          expected_version -1"
	fi
	echo
	printf "$FMT" operation cl sync "T calls/s" "S calls/s" "N calls/s" "B calls/s" "T/B" "rounds" "T/N" "rounds" "S/B" "rounds" "S/N" "rounds" "N/B" "rounds"
	echo "$LINE"
	MET=""
	for sync in $SYNCS; do
		row "append_event (1 event)" 8 "$sync" "ae_$sync"
		row "append (10 events a call)" 1 "$sync" "b10_$sync"
		row "append (100 events a call)" 1 "$sync" "b100_$sync"
	done
	row "read_stream (100 events)" 1 - rs
	row "read_all (page of 1,000)" 1 - ra
	echo "$LINE"
	echo "T: tenancy (es_bench_app, not the owner, RLS on; a random tenant of $TENANTS named in each call: one statement)."
	echo "S: T with the tenant chosen per transaction instead:"
	echo "   BEGIN; SELECT set_config('eventsource.tenant', 'tenant-<k>', true); <call>; COMMIT as one pipeline."
	echo "N: without tenancy (the owner, the default tenant, one statement: the call of run.sh)."
	echo "B: plain SQL on a table of today's shape (run.sh's baselines), holding a copy of every event."
	echo "T and S calls/s from the T/B and S/B pairs, N and B calls/s from the N/B pair. Ratios: medians of per-round ratios; rounds: their range."
	echo "Targets (issue 15): T/B >= 0.8 and T/N >= 0.9 (within 10%); the same shown for S. Met (T/B:T/N per row, S/B:S/N in brackets):$MET"
	[ "$FAILED" = 1 ] && echo "SOME MEASUREMENTS FAILED (ERR): see the pgbench output on stderr."
	true
}

[ "$FAILED" = 0 ] || exit 1
exit 0
