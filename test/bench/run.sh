#!/usr/bin/env bash
# test/bench/run.sh: eventsource's append/read throughput against plain SQL
# baselines measured in the same run, on a throwaway cluster.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   test/bench/run.sh                       # as root; ~10 s per measurement
#   BENCH_SECONDS=3 test/bench/run.sh       # quick run
#
# Environment:
#   BENCH_SECONDS        duration of each measurement, per side (default 10)
#   BENCH_ROUNDS         each side runs in this many slices of
#                        ceil(BENCH_SECONDS / BENCH_ROUNDS) s, alternating
#                        with its baseline (default min(5, BENCH_SECONDS))
#   BENCH_STREAMS        streams the appends pick from (default 10000)
#   BENCH_BATCH_CLIENTS  client counts for the batch appends (default "1")
#   BENCH_READ_CLIENTS   client counts for the reads (default "1")
#   BENCH_LIFECYCLE_PCT  percent of the read streams truncated before their
#                        version 51 before the reads (default 0): the read
#                        paths then consult lifecycle rows (docs/lifecycle.md)
#   BENCH_LIFECYCLE_ROWS lifecycle rows of other streams (default 0): that many
#                        one-event streams Gone-N are appended and then
#                        deleted after the populate, so every read event is
#                        older than the newest lifecycle operation and the
#                        view probes stream_lifecycle for it; the ratios then
#                        show the cost of the view against that row count
#   BENCH_TMPDIR         parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN                PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr; the report (one table) to stdout.  The run exits 0
# whether or not the targets are met; non-zero only when something broke.
# See README.md for what each line measures and why the baselines are fair.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# PGBIN, QUICK, say, die, posint, bench_require, bench_cluster, bench_load
. "$HERE/lib.sh"

SECS=${BENCH_SECONDS:-10}
STREAMS=${BENCH_STREAMS:-10000}
BATCH_CLIENTS=${BENCH_BATCH_CLIENTS:-1}
READ_CLIENTS=${BENCH_READ_CLIENTS:-1}
LIFECYCLE_PCT=${BENCH_LIFECYCLE_PCT:-0}
LIFECYCLE_ROWS=${BENCH_LIFECYCLE_ROWS:-0}
ROUNDS=${BENCH_ROUNDS:-}

bench_require
posint BENCH_SECONDS "$SECS"
[ -n "$ROUNDS" ] || ROUNDS=$((SECS < 5 ? SECS : 5))
posint BENCH_ROUNDS "$ROUNDS"
SLICE=$(((SECS + ROUNDS - 1) / ROUNDS))
[[ "$STREAMS" =~ ^[1-9][0-9]*$ ]] && [ "$STREAMS" -ge 8 ] || die "BENCH_STREAMS must be an integer >= 8"

# ---------------------------------------------------------------------------
# The throwaway cluster
# ---------------------------------------------------------------------------
SETTINGS="shared_buffers=256MB max_wal_size=4GB checkpoint_timeout=30min"
bench_cluster es-bench "shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
# each measurement sets its own with PGOPTIONS; this is the default
synchronous_commit = on"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }

# ---------------------------------------------------------------------------
# Data: the batch arrays (of lib.sh's PAYLOAD), the read streams
# ---------------------------------------------------------------------------
EVENTS10=$(events_array 10)
EVENTS100=$(events_array 100)

say "== setup: extension, baseline table, 1,000 streams x 100 events"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -v payload="$PAYLOAD" -f "$HERE/setup.sql" >/dev/null
psql_q -d bench -c "VACUUM (FREEZE, ANALYZE)"
read -r PMIN PMAX NEVENTS < <(psql_q -d bench -F ' ' -c \
	"SELECT min(global_position), max(global_position), count(*) FROM eventsource.events") || true
[ "$NEVENTS" = 100000 ] || die "expected 100000 populated events, found $NEVENTS"
# Wait until the cleanup worker has removed every hidden row (it starts
# after the first lifecycle operation), so that both sides of the reads
# measure the steady state rather than a table the cleanup is still
# deleting from; a store whose cleanup is off is measured as it is.
wait_cleanup() {
	local i pending
	for i in $(seq 1 600); do
		pending=$(psql_q -d bench -c "SELECT coalesce(sum(pending_versions), 0)
			FROM eventsource.stream_cleanup WHERE current_setting('eventsource.cleanup')::boolean")
		[ "$pending" = 0 ] && return 0
		sleep 0.5
	done
	die "the cleanup worker did not finish in 300 s ($pending versions pending)"
}

[[ "$LIFECYCLE_PCT" =~ ^[0-9]+$ ]] && [ "$LIFECYCLE_PCT" -le 100 ] ||
	die "BENCH_LIFECYCLE_PCT must be an integer from 0 to 100"
if [ "$LIFECYCLE_PCT" -gt 0 ]; then
	# streams Read-2 .. spread evenly: lifecycle rows for that share of the
	# streams, half of each one's events hidden (Read-1 and Read-1000 stay
	# whole for the checks below)
	say "== lifecycle: truncating $LIFECYCLE_PCT% of the read streams before version 51"
	psql_q -d bench -c "SELECT count(eventsource.truncate_stream('Read-' || s, 51))
		FROM generate_series(2, 999) s WHERE s % (100 / $LIFECYCLE_PCT) = 0" >/dev/null
	wait_cleanup
	psql_q -d bench -c "VACUUM (FREEZE, ANALYZE)"
fi
[[ "$LIFECYCLE_ROWS" =~ ^[0-9]+$ ]] || die "BENCH_LIFECYCLE_ROWS must be a non-negative integer"
if [ "$LIFECYCLE_ROWS" -gt 0 ]; then
	say "== lifecycle: $LIFECYCLE_ROWS other streams appended and deleted"
	# 1,000 streams per transaction: each holds its streams' locks to commit
	psql_q -d bench -c "DO \$\$
	BEGIN
	  FOR b IN 0 .. ($LIFECYCLE_ROWS - 1) / 1000 LOOP
	    PERFORM eventsource.append_event('Gone-' || s, 0, 'A', '{}')
	       FROM generate_series(b * 1000 + 1, least((b + 1) * 1000, $LIFECYCLE_ROWS)) s;
	    PERFORM eventsource.delete_stream('Gone-' || s, 1)
	       FROM generate_series(b * 1000 + 1, least((b + 1) * 1000, $LIFECYCLE_ROWS)) s;
	    COMMIT;
	  END LOOP;
	END \$\$" >/dev/null
	wait_cleanup
	psql_q -d bench -c "VACUUM (FREEZE, ANALYZE)"
	check_rows=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.stream_lifecycle")
	[ "$check_rows" -ge "$LIFECYCLE_ROWS" ] || die "expected $LIFECYCLE_ROWS lifecycle rows, found $check_rows"
fi

# The reads must return what the rows claim (a silent empty result would
# make any function look fast).
check_count() { # expected sql
	local got
	got=$(psql_q -d bench -c "$2")
	[ "$got" = "$1" ] || die "sanity check: expected $1 rows, got $got: $2"
}
check_count 100 "SELECT count(*) FROM eventsource.read_stream('Read-1')"
check_count 100 "SELECT count(*) FROM eventsource.read_stream('Read-1000')"
check_count 100 "SELECT count(*) FROM (SELECT * FROM bench.plain_events WHERE stream_id = 'Read-1' ORDER BY stream_version LIMIT 1000) s"
check_count 1000 "SELECT count(*) FROM eventsource.read_all($PMIN - 1, 1000)"
check_count 1000 "SELECT count(*) FROM eventsource.read_all($PMAX - 1000, 1000)"
check_count 1000 "SELECT count(*) FROM (SELECT * FROM bench.plain_events WHERE global_position > $PMAX - 1000 ORDER BY global_position LIMIT 1000) s"

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------
FAILED=0
declare -A TPS       # key -> calls per second (median over the rounds), or ERR
declare -A RATIO     # pair key -> median of the per-round ratios eventsource/baseline
declare -A SPREAD    # pair key -> "min-max" of the per-round ratios
SEQ_EXT=eventsource.events_global_position_seq
SEQ_BASE=bench.plain_seq

. "$HERE/pairs.sh"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

# reads first, on the freshly populated and vacuumed table
for c in $READ_CLIENTS; do
	pair "rs_$c" read_stream.sql read_stream_base.sql "$c" on 100 - - -D read_streams=1000
	pair "ra_$c" read_all.sql read_all_base.sql "$c" on 1000 - - -D pmin="$PMIN" -D pmax="$PMAX"
done

for sync in on off; do
	for c in 1 8; do
		pair "ae_${sync}_$c" append_event.sql append_event_base.sql "$c" "$sync" 1 \
			"$SEQ_EXT" "$SEQ_BASE" -D data="$PAYLOAD"
	done
done

for sync in on off; do
	for c in $BATCH_CLIENTS; do
		pair "b10_${sync}_$c" append_batch.sql append_batch_base.sql "$c" "$sync" 10 \
			"$SEQ_EXT" "$SEQ_BASE" -D batch=10 -D events="$EVENTS10"
		pair "b100_${sync}_$c" append_batch.sql append_batch_base.sql "$c" "$sync" 100 \
			"$SEQ_EXT" "$SEQ_BASE" -D batch=100 -D events="$EVENTS100"
	done
done

ELAPSED=$((SECONDS - T0))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------
PGVERSION=$(psql_q -d bench -c "SELECT version()")
EXTVERSION=$(psql_q -d bench -c "SELECT extversion FROM pg_extension WHERE extname = 'eventsource'")
EVENT_BYTES=$(psql_q -d bench -c "SELECT octet_length('$PAYLOAD'::text) || ' bytes as text, ' || pg_column_size('$PAYLOAD'::jsonb) || ' as jsonb'")

FMT='%-32s %3s %4s %11s %12s %12s %13s %6s %10s %7s %4s\n'
LINE=$(printf '%.0s-' $(seq 127))
row() { # label clients sync events_per_call pair_key target
	local label=$1 clients=$2 sync=$3 per_call=$4 key=$5 target=$6
	local ext=${TPS[${key}_ext]:-ERR} base=${TPS[${key}_base]:-ERR}
	local ecalls=ERR eevs=ERR bcalls=ERR bevs=ERR ratio=ERR spread=ERR met="ERR"
	if [ "$ext" != ERR ] && [ "$base" != ERR ]; then
		ecalls=$(printf '%.0f' "$ext")
		bcalls=$(printf '%.0f' "$base")
		eevs=$(awk -v t="$ext" -v k="$per_call" 'BEGIN { printf "%.0f", t * k }')
		bevs=$(awk -v t="$base" -v k="$per_call" 'BEGIN { printf "%.0f", t * k }')
		ratio=$(printf '%.2f' "${RATIO[$key]}")
		spread=${SPREAD[$key]}
		if [ "$target" = - ]; then
			met="-"
		elif awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r >= t) }'; then
			met="yes"
		else
			met="NO"
		fi
	fi
	[ "$target" != - ] && target=">=$target"
	printf "$FMT" "$label" "$clients" "$sync" "$ecalls" "$eevs" "$bcalls" "$bevs" \
		"$ratio" "$spread" "$target" "$met"
}

{
	echo
	echo "eventsource benchmark, $(date -u '+%Y-%m-%d %H:%M:%SZ'), $ELAPSED s of measurements"
	echo "machine:  $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/ { print $2 }') GB RAM; load avg before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "server:   $PGVERSION; eventsource $EXTVERSION"
	echo "settings: $SETTINGS shared_preload_libraries=eventsource, otherwise initdb defaults"
	echo "          (fsync on, autovacuum on); synchronous_commit as in the 'sync' column (PGOPTIONS)"
	echo "pgbench:  -n -M prepared; per row $ROUNDS rounds, each runs both sides for -T $SLICE (order alternates: AB BA AB ...);"
	echo "          1 client: -j 1, 8 clients: -j 2; CHECKPOINT before each row"
	echo "data:     event data $EVENT_BYTES; appends to random streams among $STREAMS, expected_version -1,"
	echo "          client k of c only uses streams n = k mod c (both sides); reads on 1,000 streams x 100 events"
	echo
	printf "$FMT" "operation" "cl" "sync" "ext calls/s" "ext events/s" "base calls/s" "base events/s" "ratio" "per round" "target" "met"
	echo "$LINE"
	for sync in on off; do
		row "1 append_event (1 event)" 1 "$sync" 1 "ae_${sync}_1" -
		row "1 append_event (1 event)" 8 "$sync" 1 "ae_${sync}_8" 0.8
	done
	for sync in on off; do
		for c in $BATCH_CLIENTS; do
			row "2 append (10 events a call)" "$c" "$sync" 10 "b10_${sync}_$c" 0.8
			row "2 append (100 events a call)" "$c" "$sync" 100 "b100_${sync}_$c" 0.8
		done
	done
	for c in $READ_CLIENTS; do
		row "3 read_stream (100-event stream)" "$c" - 100 "rs_$c" 0.9
		row "4 read_all (page of 1,000)" "$c" - 1000 "ra_$c" -
	done
	echo "$LINE"
	echo "calls/s: median over the rounds; events/s = calls/s x events a call (reads: rows returned/s). ratio: median of"
	echo "the per-round ratios eventsource/baseline (each round runs both sides back to back, so a slow spell of the machine"
	echo "hits both); 'per round': their range (wide = noisy machine). 'met': target met in THIS run; it never fails the run."
	echo "Baselines (same run, same server, same payload, plain SQL, no extension code):"
	echo "  1  INSERT ... VALUES of the same row into bench.plain_events (the columns and indexes eventsource.events had in 1.0,"
	echo "     no trigger): nextval() of a CACHE 1 sequence, stream_version = (SELECT coalesce(max(stream_version),0)+1"
	echo "     ...) (the same PK probe append() makes), a time-ordered uuid, now(). It takes no stream lock and keeps no"
	echo "     horizon: it relies on the PK to catch a race, which is why clients use disjoint streams (on both sides)."
	echo "     append_event also locks the stream, reserves its positions in shared memory and runs the guard trigger."
	echo "  2  one INSERT ... SELECT ... FROM jsonb_array_elements(<the same jsonb array>) WITH ORDINALITY: one statement"
	echo "     inserting the same 10/100 rows, one version probe, consecutive versions."
	echo "  3  SELECT * FROM bench.plain_events WHERE stream_id = \$1 ORDER BY stream_version LIMIT 1000 (the plain table,"
	echo "     a copy of the same rows keyed as eventsource.events was before tenancy)."
	echo "  4  SELECT * FROM bench.plain_events WHERE global_position > \$1 ORDER BY global_position LIMIT 1000"
	echo "     (the same copy; read_all also computes the safe horizon and reads with a fresh snapshot)."
	if [ "$FAILED" = 1 ]; then
		echo "SOME MEASUREMENTS FAILED (ERR): see the pgbench output on stderr."
	fi
}

[ "$FAILED" = 0 ] || exit 1
exit 0
