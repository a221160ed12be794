#!/usr/bin/env bash
# examples/run.sh: run every client example (asyncpg, psycopg, node-postgres)
# against a running server, directly and through PgBouncer in transaction
# pooling mode, and print each one's output.
#
#   PGHOST=/path/to/socket/dir PGPORT=5432 PGUSER=postgres PGDATABASE=shop \
#       bash examples/run.sh [--direct-only] [--no-npm] [--pgbouncer-dir DIR]
#
# The server is found through the libpq variables; it needs eventsource in
# shared_preload_libraries (the examples create the extension if missing).
# PgBouncer (Debian's pgbouncer, /usr/sbin/pgbouncer) is started on a free
# port of 127.0.0.1 with its own ini and auth file in a temporary directory
# (or DIR), pool_mode = transaction, auth_type = trust, and stopped at the
# end, also on failure or Ctrl-C.  Run as root, it runs PgBouncer as postgres.
#
#   --direct-only        do not start PgBouncer; run the examples once
#   --no-npm             do not run `npm ci` in examples/node (node_modules
#                        must be there already)
#   --pgbouncer-dir DIR  PgBouncer's files (ini, log, pid) go to DIR, kept
#
# Exit status: 0 when every run passed.  The last line counts the runs:
# "examples: N passed, M failed".

set -euo pipefail

EXAMPLES="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/common.sh
. "$EXAMPLES/../scripts/common.sh"

PYTHON=/usr/bin/python3 # Debian's, which has python3-asyncpg and python3-psycopg
PGBOUNCER=/usr/sbin/pgbouncer

WITH_PGBOUNCER=1
RUN_NPM=1
BOUNCER_DIR=""
KEEP_BOUNCER_DIR=0
while (($#)); do
	case "$1" in
	--direct-only) WITH_PGBOUNCER=0 ;;
	--no-npm) RUN_NPM=0 ;;
	--pgbouncer-dir)
		BOUNCER_DIR="${2:?--pgbouncer-dir needs a directory}"
		KEEP_BOUNCER_DIR=1
		shift
		;;
	-h | --help)
		sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done

: "${PGUSER:=$(id -un)}"
: "${PGDATABASE:=$PGUSER}"
export PGUSER PGDATABASE

# ------------------------------------------------------------------ pgbouncer

BOUNCER_PORT=""
BOUNCER_STARTED=0

bouncer_pid() {
	[[ -n "$BOUNCER_DIR" && -s "$BOUNCER_DIR/pgbouncer.pid" ]] || return 1
	local pid
	pid="$(cat "$BOUNCER_DIR/pgbouncer.pid" 2>/dev/null)" || return 1
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && printf '%s\n' "$pid"
}

# Stop the PgBouncer this script started (by its pid), waiting until it is gone.
stop_bouncer() {
	((BOUNCER_STARTED)) || return 0
	local pid i
	if pid="$(bouncer_pid)"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			es_warn "pgbouncer $pid did not stop on SIGTERM; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	BOUNCER_STARTED=0
}

as_bouncer_user() {
	if [[ "$(id -u)" -eq 0 ]]; then
		es_as_postgres "$@" # PgBouncer refuses to run as root
	else
		"$@"
	fi
}

start_bouncer() {
	[[ -x "$PGBOUNCER" ]] || es_die "$PGBOUNCER not found (apt-get install pgbouncer)"
	if [[ -z "$BOUNCER_DIR" ]]; then
		BOUNCER_DIR="$(mktemp -d /tmp/eventsource-pgbouncer.XXXXXXXX)" || es_die "mktemp failed"
	fi
	mkdir -p "$BOUNCER_DIR" || es_die "cannot create $BOUNCER_DIR"
	BOUNCER_DIR="$(cd "$BOUNCER_DIR" && pwd -P)"
	[[ "$(id -u)" -eq 0 ]] && chown postgres: "$BOUNCER_DIR"

	# The server PgBouncer talks to: the same one the direct runs use.
	local server_host="${PGHOST:-/var/run/postgresql}" server_port="${PGPORT:-5432}"
	printf '"%s" ""\n' "$PGUSER" >"$BOUNCER_DIR/userlist.txt"

	local attempt
	for attempt in 1 2 3 4 5; do
		# A port from 6432 up, different on each attempt: PgBouncer itself
		# says when it is taken (it exits; the checks below see that it is
		# not ours that answers), and the next attempt takes another.
		BOUNCER_PORT=$((6432 + RANDOM % 2000))
		cat >"$BOUNCER_DIR/pgbouncer.ini" <<-EOF
			;; written by examples/run.sh for one test run
			[databases]
			* = host=$server_host port=$server_port

			[pgbouncer]
			listen_addr = 127.0.0.1
			listen_port = $BOUNCER_PORT
			unix_socket_dir =
			auth_type = trust
			auth_file = $BOUNCER_DIR/userlist.txt
			admin_users = $PGUSER
			pool_mode = transaction
			; two server connections, handed out in turn: a client that relied
			; on session state (a named prepared statement, a SET) would land
			; on the other connection and fail.
			default_pool_size = 2
			server_round_robin = 1
			max_client_conn = 50
			ignore_startup_parameters = extra_float_digits
			logfile = $BOUNCER_DIR/pgbouncer.log
			pidfile = $BOUNCER_DIR/pgbouncer.pid
		EOF
		rm -f "$BOUNCER_DIR/pgbouncer.pid"
		[[ "$(id -u)" -eq 0 ]] && chown postgres: "$BOUNCER_DIR"/*
		BOUNCER_STARTED=1
		if (cd "$BOUNCER_DIR" && as_bouncer_user "$PGBOUNCER" -d -q "$BOUNCER_DIR/pgbouncer.ini"); then
			local i
			for ((i = 0; i < 100; i++)); do
				# Ours must be alive (not another one that won the port).
				if bouncer_pid >/dev/null &&
					"$ES_PG_BIN/psql" -X -q -h 127.0.0.1 -p "$BOUNCER_PORT" -d "$PGDATABASE" \
						-c 'SELECT 1' >/dev/null 2>&1; then
					es_log "pgbouncer $("$PGBOUNCER" --version | head -n 1 | awk '{print $2}') (pid $(bouncer_pid)) on 127.0.0.1:$BOUNCER_PORT, pool_mode = transaction -> $server_host:$server_port (files: $BOUNCER_DIR)"
					return 0
				fi
				sleep 0.1
			done
		fi
		stop_bouncer
		es_warn "pgbouncer did not come up on port $BOUNCER_PORT (attempt $attempt)"
		tail -n 5 "$BOUNCER_DIR/pgbouncer.log" 2>/dev/null >&2 || true
	done
	if grep -q 'Address already in use' "$BOUNCER_DIR/pgbouncer.log" 2>/dev/null; then
		es_die "could not start pgbouncer: the ports it tried on 127.0.0.1 (last $BOUNCER_PORT) were in use; run this again (log: $BOUNCER_DIR/pgbouncer.log)"
	fi
	es_die "could not start pgbouncer on 127.0.0.1 (5 attempts, last port $BOUNCER_PORT): see its log, $BOUNCER_DIR/pgbouncer.log"
}

# ------------------------------------------------------------------ cleanup

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_bouncer
	if [[ -n "$BOUNCER_DIR" && "$KEEP_BOUNCER_DIR" == 0 ]]; then
		if [[ "$rc" == 0 ]]; then
			rm -rf "$BOUNCER_DIR"
		else
			echo "pgbouncer's files (ini, log) are kept in $BOUNCER_DIR" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------------ run

CLIENTS=(asyncpg psycopg node)
declare -A CMD=(
	[asyncpg]="$PYTHON $EXAMPLES/python/order_asyncpg.py"
	[psycopg]="$PYTHON $EXAMPLES/python/order_psycopg.py"
	[node]="node $EXAMPLES/node/order_pg.js"
)

if ((RUN_NPM)); then
	es_log "npm ci in examples/node (pg from the npm registry, into examples/node/node_modules)"
	(cd "$EXAMPLES/node" && npm ci --no-audit --no-fund --loglevel=error) ||
		es_die "npm ci failed in $EXAMPLES/node"
fi
[[ -d "$EXAMPLES/node/node_modules/pg" ]] || es_die "examples/node/node_modules/pg is missing: run npm ci there"

MODES=(direct)
if ((WITH_PGBOUNCER)); then
	start_bouncer
	MODES+=(pgbouncer)
fi

RESULTS=()
n_pass=0
n_fail=0
for mode in "${MODES[@]}"; do
	for client in "${CLIENTS[@]}"; do
		if [[ "$mode" == pgbouncer ]]; then
			env_args=(PGHOST=127.0.0.1 PGPORT="$BOUNCER_PORT")
			where="through pgbouncer 127.0.0.1:$BOUNCER_PORT"
		else
			env_args=()
			where="directly to ${PGHOST:-default host}:${PGPORT:-5432}"
		fi
		echo
		es_log "example $client, $where (database $PGDATABASE)"
		t0="${EPOCHREALTIME/,/.}"
		set +e
		# shellcheck disable=SC2086  # CMD values are word lists
		(cd "$EXAMPLES" && env "${env_args[@]}" ${CMD[$client]}) 2>&1
		rc=$?
		set -e
		secs="$(awk -v a="$t0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1fs", b - a }')"
		if ((rc == 0)); then
			n_pass=$((n_pass + 1))
			RESULTS+=("PASS  $client ($mode, $secs)")
		else
			n_fail=$((n_fail + 1))
			RESULTS+=("FAIL  $client ($mode, $secs, exit $rc)")
		fi
	done
done

if ((WITH_PGBOUNCER)); then
	echo
	es_log "pgbouncer: what went through it (SHOW STATS, SHOW POOLS)"
	"$ES_PG_BIN/psql" -X -h 127.0.0.1 -p "$BOUNCER_PORT" -d pgbouncer \
		-c "SHOW STATS" -c "SHOW POOLS" || es_warn "pgbouncer's admin console did not answer"
	# The pgbouncer runs must really have gone through it.
	xacts="$("$ES_PG_BIN/psql" -X -At -F ' ' -h 127.0.0.1 -p "$BOUNCER_PORT" -d pgbouncer \
		-c "SHOW STATS" 2>/dev/null | awk -v db="$PGDATABASE" '$1 == db { print $2 }')" || xacts=""
	if [[ "${xacts:-0}" =~ ^[0-9]+$ ]] && ((${xacts:-0} > 0)); then
		echo "pgbouncer carried $xacts transactions to database $PGDATABASE"
	else
		echo "error: pgbouncer's SHOW STATS shows no transaction for database $PGDATABASE"
		n_fail=$((n_fail + 1))
	fi
	if ((n_fail > 0)); then
		echo "----- last lines of $BOUNCER_DIR/pgbouncer.log -----"
		tail -n 40 "$BOUNCER_DIR/pgbouncer.log" || true
	fi
fi

echo
for line in "${RESULTS[@]}"; do
	echo "  $line"
done
echo "examples: $n_pass passed, $n_fail failed"
((n_fail == 0)) || exit 1
