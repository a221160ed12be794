# shellcheck shell=bash
# test/bench/lib.sh: what every benchmark runner starts with, in one source
# (run.sh, run_scale.sh, run_subscriptions.sh, run_tracing.sh,
# run_erasure.sh).  The runner sets HERE (its directory), then
#
#     . "$HERE/lib.sh"
#
# which gives it scripts/common.sh (es_die, and the ERR trap that reports an
# unexpected failure in one line instead of ending the run silently),
# cluster.sh (bench_cluster), and:
#
#   PGBIN              PostgreSQL's binaries: $PGBIN if set, else those of
#                      ES_PG_ROOT's copy, else /usr/lib/postgresql/15/bin
#   QUICK              1 when BENCH_QUICK=1 (the runner's quick defaults)
#   say TEXT...        progress, on stderr
#   die TEXT...        "<runner>: TEXT" and exit non-zero
#   posint NAME VALUE  die unless VALUE is a positive integer
#   bench_require      die unless run as root with a postgres user, pgbench
#                      and an installed eventsource.so in $PGBIN; sets SO
#                      (the library's path) and SO_MD5 (its checksum's start)
#   PAYLOAD            the ~200-byte event data every runner appends
#   events_array N     a jsonb array of N events with that data
#   bench_load FROM TO ARGS
#                      fill the log from FROM to TO events with
#                      CALL bench.load(first_batch, last_batch, ARGS) (batches
#                      of 100) in two sessions on disjoint batch ranges;
#                      prints the events per second (needs psql_q)

# shellcheck source=scripts/common.sh
. "$HERE/../../scripts/common.sh"
# shellcheck source=test/bench/cluster.sh
. "$HERE/cluster.sh"

BENCH_NAME=$(basename "$0")
PGBIN=${PGBIN:-$ES_PG_BIN}
QUICK=${BENCH_QUICK:-0}

PAYLOAD='{"customer_id": "Customer-004711", "total": 149.97, "currency": "EUR", "items": [{"sku": "SKU-10001", "qty": 2, "price": 49.99}, {"sku": "SKU-20002", "qty": 1, "price": 49.99}], "channel": "web"}'

events_array() { # N -> a jsonb array of N events with the payload
	local i out="["
	for ((i = 1; i <= $1; i++)); do
		[ "$i" -gt 1 ] && out+=", "
		out+="{\"type\": \"OrderItemAdded\", \"data\": $PAYLOAD}"
	done
	printf '%s]' "$out"
}

say() { printf '%s\n' "$*" >&2; }
die() { es_die "$BENCH_NAME: $*"; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }

bench_require() {
	[ "$(id -u)" = 0 ] || die "run as root (the server runs as postgres through runuser)"
	id postgres >/dev/null 2>&1 || die "no postgres user"
	[ -x "$PGBIN/pgbench" ] || die "no pgbench in $PGBIN"
	SO=$("$PGBIN/pg_config" --pkglibdir)/eventsource.so
	[ -f "$SO" ] ||
		die "eventsource is not installed: make -C <repo> install PG_CONFIG=$PGBIN/pg_config"
	SO_MD5=$(md5sum "$SO" | cut -c1-12)
}

bench_load() {
	local from=$1 to=$2 args=$3 first last mid t p1 p2
	first=$((from / 100))
	last=$((to / 100 - 1))
	mid=$(((first + last) / 2))
	t=$SECONDS
	psql_q -d bench -c "CALL bench.load($first, $mid, $args)" &
	p1=$!
	psql_q -d bench -c "CALL bench.load($((mid + 1)), $last, $args)" &
	p2=$!
	wait "$p1" && wait "$p2" || die "the load failed"
	echo $(((to - from) / (SECONDS - t > 0 ? SECONDS - t : 1)))
}
