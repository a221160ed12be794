# shellcheck shell=bash
# test/bench/cluster.sh: the throwaway cluster of the benchmark runners.
# Sourced by lib.sh (which defines say() and die()), after the runner set
# PGBIN.
#
#   bench_cluster NAME CONF   makes $WORK (mktemp -d), initdb's $DATA as
#                             postgres on a free $PORT with its socket in $WORK,
#                             appends CONF (postgresql.conf lines) to the
#                             common settings, starts it, and sets traps that
#                             stop it and remove $WORK on exit, error or signal.

bench_cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ "${SERVER_STARTED:-0}" = 1 ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m fast -t 60 stop >/dev/null 2>&1 ||
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
	fi
	[ -n "${WORK:-}" ] && rm -rf "$WORK"
	exit "$rc"
}

bench_free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q . &&
			[ ! -e "/tmp/.s.PGSQL.$p" ] && [ ! -e "/var/run/postgresql/.s.PGSQL.$p" ]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

bench_cluster() {
	local name=$1 conf=$2
	WORK=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/$name.XXXXXX")
	DATA=$WORK/data
	SERVER_STARTED=0
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	chown postgres: "$WORK"
	chmod 700 "$WORK"
	PORT=$(bench_free_port) || die "no free port found"

	say "== initdb in $DATA (port $PORT)"
	runuser -u postgres -- "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust \
		--encoding=UTF8 --locale=C.UTF-8 >"$WORK/initdb.log" 2>&1 ||
		{ cat "$WORK/initdb.log" >&2; die "initdb failed"; }
	cat >>"$DATA/postgresql.conf" <<CONF

# test/bench ($name)
listen_addresses = ''
port = $PORT
unix_socket_directories = '$WORK'
shared_preload_libraries = 'eventsource'
$conf
CONF
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w -t 60 start >/dev/null ||
		{ cat "$WORK/server.log" >&2; die "server did not start"; }
	SERVER_STARTED=1
}
