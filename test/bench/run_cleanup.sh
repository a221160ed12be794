#!/usr/bin/env bash
# test/bench/run_cleanup.sh: the background cleanup (docs/lifecycle.md) at
# scale.  Loads BENCH_EVENTS events through append() (streams of 100 events,
# category Exp), hides BENCH_REMOVE of them with a max_count retention rule
# (the cleanup worker's retention pass truncates every stream: the same
# truncate_stream() as by hand), then reports, in one run:
#
#   1. single-event appends (8 clients, append_event.sql on other streams)
#      while the cleanup worker removes the expired events, against the same
#      appends with the cleanup paused (eventsource.cleanup = off), in
#      alternating slices (ABAB...), so a drift of the machine hits both;
#      target >= 0.8x;
#   2. the cleanup rate (events/s): with the rate limit of the settings
#      (during 1.), and unthrottled on its own (a second BENCH_REMOVE events
#      expired, eventsource.cleanup_max_rows_per_second = 0);
#   3. space reuse: the table's size before that second cleanup, and after
#      it, VACUUM (autovacuum's job in production) and BENCH_REMOVE new
#      appends of the same size: not larger.
#
#   make install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config   # as root
#   BENCH_EVENTS=1000000 BENCH_REMOVE=100000 test/bench/run_cleanup.sh   # ~5 min on 2 cores
#   test/bench/run_cleanup.sh        # the issue's size: 10M events, 1M removed
#
# Environment:
#   BENCH_EVENTS     events loaded (default 10000000; multiple of 100)
#   BENCH_REMOVE     events expired per cleanup (default 1000000; a multiple
#                    of BENCH_EVENTS / 100, below BENCH_EVENTS)
#   BENCH_SECONDS    seconds per side of the append ratio (default 12, in
#                    BENCH_ROUNDS slices)
#   BENCH_ROUNDS     slices per side (default 3)
#   BENCH_CLIENTS    appending clients (default 8)
#   BENCH_RATE       eventsource.cleanup_max_rows_per_second during 1.
#                    (default 10000, the setting's default)
#   BENCH_BATCH      eventsource.cleanup_batch_size (default 1000)
#   BENCH_TMPDIR     parent of the cluster's directory (default $TMPDIR or /tmp)
#   PGBIN            PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#
# Progress goes to stderr, the report to stdout.  Exits 0 whether or not the
# targets are met; non-zero only when something broke.

set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
EVENTS=${BENCH_EVENTS:-10000000}
REMOVE=${BENCH_REMOVE:-1000000}
SECS=${BENCH_SECONDS:-12}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-8}
RATE=${BENCH_RATE:-10000}
BATCH=${BENCH_BATCH:-1000}
SLICE=$(((SECS + ROUNDS - 1) / ROUNDS))
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

say() { printf '%s\n' "$*" >&2; }
die() { say "run_cleanup.sh: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the server runs as postgres through runuser)"
[ -x "$PGBIN/pgbench" ] || die "no pgbench in $PGBIN"
[[ "$EVENTS" =~ ^[0-9]+$ ]] && [ $((EVENTS % 100)) = 0 ] && [ "$EVENTS" -ge 1000 ] ||
	die "BENCH_EVENTS must be a multiple of 100, at least 1000"
NSTREAMS=$((EVENTS / 100))
[[ "$REMOVE" =~ ^[0-9]+$ ]] && [ $((REMOVE % NSTREAMS)) = 0 ] && [ "$REMOVE" -gt 0 ] &&
	[ $((2 * REMOVE)) -lt "$EVENTS" ] ||
	die "BENCH_REMOVE must be a positive multiple of BENCH_EVENTS / 100 ($NSTREAMS), below half of BENCH_EVENTS"
PER_STREAM=$((REMOVE / NSTREAMS))
[ -f "$("$PGBIN/pg_config" --pkglibdir)/eventsource.so" ] ||
	die "eventsource is not installed: make -C <repo> install PG_CONFIG=$PGBIN/pg_config"

. "$HERE/cluster.sh"
bench_cluster es-cleanup "shared_buffers = 1GB
max_wal_size = 16GB
checkpoint_timeout = 30min
eventsource.cleanup = off
eventsource.cleanup_naptime = 1s
eventsource.cleanup_batch_size = $BATCH
eventsource.cleanup_max_rows_per_second = $RATE"

CONN=(-h "$WORK" -p "$PORT" -U postgres)
psql_q() { "$PGBIN/psql" "${CONN[@]}" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
set_conf() { # setting value: ALTER SYSTEM and reload
	psql_q -d bench -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
}
pending() { psql_q -d bench -c "SELECT versions_pending FROM eventsource.cleanup_status"; }
table_size() { psql_q -d bench -c "SELECT pg_relation_size('eventsource.events')"; }

PAYLOAD='{"customer_id": "Customer-004711", "total": 149.97, "currency": "EUR", "items": [{"sku": "SKU-10001", "qty": 2, "price": 49.99}, {"sku": "SKU-20002", "qty": 1, "price": 49.99}], "channel": "web"}'

say "== setup"
psql_q -d postgres -c "CREATE DATABASE bench"
psql_q -d bench -v payload="$PAYLOAD" >/dev/null <<'SQL'
CREATE EXTENSION eventsource;
CREATE SCHEMA bench;
CREATE TABLE bench.batch AS
    SELECT jsonb_agg(jsonb_build_object('type', 'Measured', 'data', :'payload'::jsonb)) AS events
      FROM generate_series(1, 100);
-- streams first .. last of the category, 100 events each, one transaction
-- per stream
CREATE PROCEDURE bench.load(first bigint, last bigint, prefix text)
    LANGUAGE plpgsql AS $$
DECLARE
    evs jsonb := (SELECT events FROM bench.batch);
BEGIN
    FOR s IN first .. last LOOP
        PERFORM eventsource.append(prefix || s, -1, evs);
        COMMIT;
    END LOOP;
END
$$;
SQL

say "== load: $EVENTS events in $NSTREAMS streams of 100, 2 sessions"
t=$SECONDS
mid=$((NSTREAMS / 2))
psql_q -d bench -c "CALL bench.load(1, $mid, 'Exp-')" &
p1=$!
psql_q -d bench -c "CALL bench.load($((mid + 1)), $NSTREAMS, 'Exp-')" &
p2=$!
wait "$p1" && wait "$p2" || die "the load failed"
say "   loaded in $((SECONDS - t)) s"
psql_q -d bench -c "VACUUM (ANALYZE) eventsource.events" -c "CHECKPOINT"

# expire(keep): a max_count rule on the category, the retention pass turns
# it into one truncation per stream; waits until every stream is truncated
# (the cleanup is on for the pass, at the rate of the moment)
expire() {
	local keep=$1 t0=$SECONDS
	psql_q -d bench -c "SELECT eventsource.set_category_retention('Exp', max_count => $keep)" >/dev/null
	until [ "$(psql_q -d bench -c "SELECT count(*) FROM eventsource.stream_lifecycle
	                                WHERE stream_id LIKE 'Exp-%' AND hidden_through = 100 - $keep")" = "$NSTREAMS" ]; do
		[ $((SECONDS - t0)) -lt 3600 ] || die "the retention pass did not truncate every stream"
		sleep 1
	done
	psql_q -d bench -c "SELECT eventsource.clear_category_retention('Exp')" >/dev/null
	say "   $NSTREAMS truncations by the retention pass in $((SECONDS - t0)) s"
}

# -- 1. appends with and without the cleanup running -----------------------
say "== expiring $REMOVE events ($PER_STREAM of each stream)"
set_conf eventsource.cleanup_max_rows_per_second 1 # the pass runs, the removal crawls
set_conf eventsource.cleanup on
expire $((100 - PER_STREAM))
set_conf eventsource.cleanup off
set_conf eventsource.cleanup_max_rows_per_second "$RATE"
psql_q -d bench -c "CHECKPOINT"
PENDING0=$(pending)
say "   $PENDING0 versions pending"

slice() { # prints tps of one pgbench slice of append_event.sql
	local out tps
	out=$("$PGBIN/pgbench" "${CONN[@]}" -n -M prepared -T "$SLICE" -c "$CLIENTS" -j 2 \
		-f "$HERE/append_event.sql" -D nclients="$CLIENTS" -D streams=100000 -D data="$PAYLOAD" bench 2>&1) ||
		{ say "$out"; die "pgbench failed"; }
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
	[ -n "$tps" ] || { say "$out"; die "no tps from pgbench"; }
	echo "$tps"
}
say "== appends ($CLIENTS clients, append_event) with the cleanup paused / running, $ROUNDS x ${SLICE}s each"
bases=() withs=() ratios=()
short=0
removed_during=0
during_s=0
for ((r = 1; r <= ROUNDS; r++)); do
	set_conf eventsource.cleanup off
	sleep 1
	b=$(slice)
	before=$(pending)
	set_conf eventsource.cleanup on
	t0=$(date +%s.%N)
	w=$(slice)
	t1=$(date +%s.%N)
	after=$(pending)
	removed_during=$((removed_during + before - after))
	during_s=$(awk -v a="$t0" -v b="$t1" -v s="$during_s" 'BEGIN { printf "%.3f", s + b - a }')
	say "   round $r: paused $b, cleanup running $w appends/s (cleanup removed $((before - after)))"
	if [ "$after" -gt 0 ]; then
		bases+=("$b")
		withs+=("$w")
		ratios+=("$(awk -v a="$w" -v b="$b" 'BEGIN { printf "%.4f", a / b }')")
	else
		# the cleanup did not run for the whole slice: not a measurement of it
		say "   !! the cleanup finished during round $r (not counted): raise BENCH_REMOVE or lower BENCH_SECONDS"
		short=1
	fi
	[ "$after" -gt 0 ] || break
done
set_conf eventsource.cleanup on
t0=$SECONDS
until [ "$(pending)" = 0 ]; do
	[ $((SECONDS - t0)) -lt 7200 ] || die "the cleanup did not finish"
	sleep 1
done
leftover=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.events e JOIN eventsource.stream_lifecycle l
                                USING (stream_id) WHERE e.stream_version BETWEEN 1 AND l.hidden_through")
[ "$leftover" = 0 ] || die "$leftover hidden rows left after the cleanup"

# -- 2./3. unthrottled cleanup rate, space reuse -----------------------------
say "== expiring $REMOVE more events, measuring the unthrottled cleanup alone"
set_conf eventsource.cleanup_max_rows_per_second 1
expire $((100 - 2 * PER_STREAM))
set_conf eventsource.cleanup off
psql_q -d bench -c "VACUUM eventsource.events" -c "CHECKPOINT"
SIZE_BEFORE=$(table_size)
ROWS_BEFORE=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.events")
PENDING1=$(pending)
set_conf eventsource.cleanup_max_rows_per_second 0
t0=$(date +%s.%N)
set_conf eventsource.cleanup on
until [ "$(pending)" = 0 ]; do sleep 0.2; done
t1=$(date +%s.%N)
psql_q -d bench -c "VACUUM eventsource.events"
say "== appending $REMOVE new events ($((REMOVE / 100)) streams of 100)"
psql_q -d bench -c "CALL bench.load(1, $((REMOVE / 100)), 'New-')"
SIZE_AFTER=$(table_size)
ROWS_AFTER=$(psql_q -d bench -c "SELECT count(*) FROM eventsource.events")

# -- report ------------------------------------------------------------------
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
RATIO=n/a
[ "${#ratios[@]}" -gt 0 ] && RATIO="$(median "${ratios[@]}")x"
DURING="$(awk -v n="$removed_during" -v s="$during_s" 'BEGIN { printf "%.0f", n / s }') events/s"
[ "$short" = 0 ] || DURING="at least $DURING (it finished during a slice)"
echo "eventsource cleanup benchmark: $EVENTS events in $NSTREAMS streams, $REMOVE expired per cleanup (max_count), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "settings: cleanup_batch_size=$BATCH cleanup_max_rows_per_second=$RATE (phase 1), $CLIENTS clients, $ROUNDS x ${SLICE}s per side"
echo
echo "| measurement | value | target |"
echo "|---|---|---|"
echo "| append_event, cleanup running vs paused (median of rounds) | ${RATIO} (rounds: ${ratios[*]}; appends/s paused: ${bases[*]}, running: ${withs[*]}) | >= 0.8x |"
echo "| cleanup rate while appending, rate limit $RATE rows/s | $DURING | |"
echo "| cleanup rate alone, unthrottled | $(awk -v n="$PENDING1" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }') events/s ($PENDING1 in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s) | |"
echo "| table size before the cleanup ($ROWS_BEFORE rows) / after cleanup, VACUUM and $REMOVE new appends ($ROWS_AFTER rows) | $SIZE_BEFORE / $SIZE_AFTER bytes ($(awk -v a="$SIZE_AFTER" -v b="$SIZE_BEFORE" 'BEGIN { printf "%.3f", a / b }')x) | <= 1x |"
