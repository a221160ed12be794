# shellcheck shell=bash
# scripts/common.sh: helpers shared by scripts/test.sh, scripts/demo.sh and
# anything else that needs a machine set up, a build, or a throwaway server.
#
# Source it (do not run it):   . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
#
# Facts this file relies on (README.md, "Quick start" and "Installing"):
#   - the machine is Debian 12 and we are root; initdb refuses root, so every
#     server (pg_regress/isolation temp instances, TAP nodes, our own clusters)
#     runs as the `postgres` user via `runuser -u postgres --`;
#   - the tree the tests run in must be writable by postgres and every parent
#     traversable, so we work in a copy under /tmp (es_copy_tree);
#   - /usr/bin/pg_config picks the newest major: always use PG 15's own.
#
# Functions (all prefixed es_):
#   es_need_root                   exit with a clear message unless root
#   es_install_packages            apt-get install whatever of ES_PACKAGES is missing
#   es_copy_tree [SRC]             copy the repository to a fresh /tmp dir owned by
#                                  postgres; prints the path
#   es_build_install DIR           make clean; make ES_WERROR=1 (as postgres); make install (root)
#   es_as_postgres CMD...          run CMD as postgres, same cwd and environment
#   es_start_cluster DIR [LINE...] initdb + start a throwaway server in DIR; exports
#                                  PGHOST PGPORT PGUSER (and ES_CLUSTER_DIR, ES_PGDATA)
#   es_stop_cluster DIR            stop it (the files stay; rm -rf DIR to drop them)
#   es_stop_all_clusters           stop every cluster this shell started (for traps)
#   es_cleanup_on_exit             EXIT trap: es_stop_all_clusters + es_drop_registry
#
# Sourcing it also sets an ERR trap (see "failures" below): a script that
# stops on an unexpected failure under `set -e` says where and why in one
# line, never silently.  Call a function that prints on stdout and may
# es_die as  x="$(f)"  as usual: es_die's status tells the trap it was said.

# Guard against double sourcing.
if [[ -n "${ES_COMMON_SOURCED:-}" ]]; then
	return 0
fi
ES_COMMON_SOURCED=1

export LANG=C.UTF-8
unset LC_ALL LC_CTYPE LC_COLLATE LC_MESSAGES LANGUAGE

ES_PG_MAJOR=15
# ES_PG_ROOT: a private copy of the PostgreSQL installation (its usr/lib,
# usr/share and usr/include trees under that directory), for contributors who
# run two checkouts at once: `make install` then writes there, not into the
# system directories another run is using.  PostgreSQL finds its files
# relative to its binaries, so a copied tree works as it is.
ES_PG_BIN="${ES_PG_ROOT:-}/usr/lib/postgresql/${ES_PG_MAJOR}/bin"
ES_PG_CONFIG="${ES_PG_BIN}/pg_config"
export ES_PG_MAJOR ES_PG_BIN ES_PG_CONFIG

# Every Debian package the project needs, on every machine (developer and CI).
# Add new needs here, one word each.  The three core PostgreSQL packages are
# always installed/upgraded together in one apt-get call (see ES_PG_CORE).
ES_PACKAGES="
	postgresql-${ES_PG_MAJOR}
	postgresql-server-dev-${ES_PG_MAJOR}
	postgresql-client-${ES_PG_MAJOR}
	postgresql-${ES_PG_MAJOR}-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	libipc-run-perl
	make
	gcc
	libkrb5-dev
	pgbouncer
	prometheus-postgres-exporter
	python3-asyncpg
	python3-psycopg
	nodejs
	npm
	libcurl4-openssl-dev
	unzip
"
ES_PG_CORE="postgresql-${ES_PG_MAJOR} postgresql-server-dev-${ES_PG_MAJOR} postgresql-client-${ES_PG_MAJOR}"

# Packages that also count as present when a command of this name is on PATH.
# Needed because a machine may carry NodeSource's nodejs, which bundles npm and
# Conflicts with Debian's npm package (apt-get would refuse the whole call).
declare -A ES_PACKAGE_COMMANDS=([nodejs]=node [npm]=npm)

# ---------------------------------------------------------------- messages

# shellcheck disable=SC2034  # colours are used by the scripts that source this
if [[ -t 1 && "${CI:-}" != "true" && -z "${NO_COLOR:-}" ]]; then
	ES_C_RED=$'\e[31m' ES_C_GREEN=$'\e[32m' ES_C_YELLOW=$'\e[33m'
	ES_C_BOLD=$'\e[1m' ES_C_OFF=$'\e[0m'
else
	ES_C_RED='' ES_C_GREEN='' ES_C_YELLOW='' ES_C_BOLD='' ES_C_OFF=''
fi

es_log() { printf '%s==> %s%s\n' "$ES_C_BOLD" "$*" "$ES_C_OFF"; }
es_warn() { printf '%swarning: %s%s\n' "$ES_C_YELLOW" "$*" "$ES_C_OFF" >&2; }
# es_die MESSAGE: print `error: MESSAGE` (one line: what failed and what to
# do) and end the script.  Inside a subshell or a command substitution it
# exits with ES_REPORTED, so the ERR trap of the shell around it knows the
# failure has been reported and stays quiet.
es_die() {
	printf '%serror: %s%s\n' "$ES_C_RED" "$*" "$ES_C_OFF" >&2
	((BASH_SUBSHELL == 0)) || exit "$ES_REPORTED"
	exit 1
}

# ---------------------------------------------------------------- failures

# Under `set -euo pipefail` a failing command, pipeline or command
# substitution ends a script without a word (issue 8: a dpkg-query that did
# not know a package ended the set-up, status 1, nothing printed).  This
# safety net prints one line for such an unexpected failure:
#     error: FILE:LINE: 'COMMAND' failed (exit N); <what to do>
# It stays quiet for every failure a script handles: conditions, `|| …`
# (bash does not run the ERR trap there), code running with `set +e`, and
# subshells (the suites of scripts/test.sh, a $(…)): only the top-level
# shell prints, once, when the failure reaches it.  A subshell that ended
# in es_die exits with ES_REPORTED and is not reported twice.
ES_REPORTED=97
set -E                   # functions, subshells and $(…) inherit the trap
shopt -s inherit_errexit # a $(…) stops at its first failure, as its caller would
es__on_err() {
	local rc="$1" line="$2" cmd="$3" src="${BASH_SOURCE[1]:-$0}"
	if [[ "$-" != *e* ]] || ((BASH_SUBSHELL > 0 || rc == ES_REPORTED)); then
		return 0
	fi
	if [[ "$src" == */* ]]; then # relative to the repository, if inside it
		src="$(cd "${src%/*}" 2>/dev/null && pwd -P)/${src##*/}"
		src="${src#"${ES_REPO_ROOT:-/nonexistent}/"}"
	fi
	cmd="${cmd//[$'\n\t']/ }"
	((${#cmd} <= 160)) || cmd="${cmd:0:157}..."
	printf "%serror: %s:%s: '%s' failed (exit %s); unexpected: the lines above may say why; run 'bash -x %s' to trace it and report it if they do not%s\n" \
		"$ES_C_RED" "$src" "$line" "$cmd" "$rc" "$0" "$ES_C_OFF" >&2
	return 0
}
trap 'es__on_err "$?" "$LINENO" "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------- root, users

es_need_root() {
	if [[ "$(id -u)" -ne 0 ]]; then
		es_die "$(basename "$0") must run as root (it installs packages, runs 'make install' into system directories, and starts servers as the postgres user). Run it as root: bash $0"
	fi
	command -v runuser >/dev/null || es_die "runuser (util-linux) is missing"
}

# Run a command as postgres, keeping the environment (HOME points at a
# directory postgres can use, so nothing tries to read /root) and the cwd when
# postgres may enter it.  When it may not (a clone under /root), the command
# starts in that HOME instead: PostgreSQL's programs change back to their
# starting directory after locating themselves and would print a spurious
# `could not change directory to "/root/…": Permission denied`.  A command
# that needs its cwd (make in the tree) must run from a directory postgres can
# enter, such as es_copy_tree's copy.
es_as_postgres() {
	local home=/var/lib/postgresql
	[[ -d "$home" ]] || home=/tmp
	# shellcheck disable=SC2016  # $1 $2 $@ are sh's
	runuser -u postgres -- env HOME="$home" sh -c \
		'cd -- "$1" 2>/dev/null || cd -- "$2" || exit; shift 2; exec "$@"' \
		es_as_postgres "$PWD" "$home" "$@"
}

# ---------------------------------------------------------------- packages

# Prints the installed version of a package, or nothing.
# Always succeeds: dpkg-query exits non-zero for a package dpkg has never
# heard of, which under `set -o pipefail` would otherwise end the caller's
# `v="$(es__pkg_version …)"` silently (issue 8).
es__pkg_version() {
	{ dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null || true; } |
		awk '$1 == "installed" { print $2 }'
}

# es__apt_failed STEP RC LOG PACKAGE...: apt-get STEP ended with RC; say why
# in one line (from apt's messages in LOG) and what to do, then exit.
es__apt_failed() {
	local step="$1" rc="$2" log="$3" why unknown
	shift 3
	if grep -qE 'Could not get lock|Unable to acquire the dpkg frontend lock|Unable to lock' "$log"; then
		why="another apt-get or dpkg holds the package lock: wait until it is done, then run this again"
	elif grep -qE 'Temporary failure resolving|Could not resolve|Failed to fetch|Network is unreachable|No route to host|Connection timed out|Could not connect|Connection failed|Connection refused' "$log"; then
		why="apt could not download from the Debian mirrors (no network?): connect this machine to the network (or set a proxy or mirror in /etc/apt), then run this again"
	elif grep -qE 'Unable to locate package|has no installation candidate' "$log"; then
		unknown="$(sed -nE 's/.*Unable to locate package ([^ ]+).*/\1/p; s/.*Package .?([[:alnum:].+-]+).? has no installation candidate.*/\1/p' "$log" | sort -u | tr '\n' ' ')"
		why="apt does not know ${unknown:-some of them}(is this Debian 12 bookworm, with its main component in /etc/apt/sources.list?)"
	else
		why="see apt-get's messages above, fix that, then run this again"
	fi
	rm -f "$log"
	es_die "apt-get $step failed (exit $rc): $why; the packages this needs: $*"
}

es_install_packages() {
	local pkg missing=() cmd
	for pkg in $ES_PACKAGES; do
		if [[ -n "$(es__pkg_version "$pkg")" ]]; then
			continue
		fi
		cmd="${ES_PACKAGE_COMMANDS[$pkg]:-}"
		if [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1; then
			continue
		fi
		missing+=("$pkg")
	done

	# Server, client and dev must have the same minor version (pg_regress,
	# PGXS and the server's ABI come from different packages).
	local core_versions=() v mismatch=0
	for pkg in $ES_PG_CORE; do
		v="$(es__pkg_version "$pkg")"
		[[ -n "$v" ]] && core_versions+=("$v")
	done
	if ((${#core_versions[@]} > 1)) &&
		[[ "$(printf '%s\n' "${core_versions[@]}" | sort -u | wc -l)" -gt 1 ]]; then
		mismatch=1
	fi

	if ((${#missing[@]} == 0 && mismatch == 0)); then
		es_log "packages: all present"
		es__check_pg_config
		return 0
	fi
	if ((${#missing[@]} > 0)); then
		es_log "packages: installing ${missing[*]}"
	fi
	if ((mismatch)); then
		es_log "packages: PostgreSQL server/client/dev versions differ (${core_versions[*]}); upgrading them together"
	fi

	# Whenever we call apt-get, the three core packages go in the same call so
	# they end up at one version.
	local want=() seen=" "
	for pkg in $ES_PG_CORE "${missing[@]}"; do
		[[ "$seen" == *" $pkg "* ]] && continue
		seen+="$pkg "
		want+=("$pkg")
	done

	command -v apt-get >/dev/null 2>&1 ||
		es_die "apt-get not found: this set-up needs Debian 12 (bookworm); install these packages by hand, then run this again: ${want[*]}"
	# apt's output is shown and kept, to say why it failed.  `apt-get update`
	# exits 0 when it could not reach a mirror (a warning), so its messages
	# also count when the install fails.
	local log rc=0
	log="$(mktemp /tmp/eventsource-apt.XXXXXXXX)" || es_die "mktemp failed"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q 2>&1 | tee "$log" || rc="${PIPESTATUS[0]}"
	((rc == 0)) || es__apt_failed update "$rc" "$log" "${want[@]}"
	apt-get install -y -q -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold "${want[@]}" 2>&1 | tee -a "$log" || rc="${PIPESTATUS[0]}"
	((rc == 0)) || es__apt_failed install "$rc" "$log" "${want[@]}"
	rm -f "$log"

	for pkg in "${missing[@]}"; do
		cmd="${ES_PACKAGE_COMMANDS[$pkg]:-}"
		if [[ -z "$(es__pkg_version "$pkg")" ]] &&
			! { [[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1; }; then
			es_die "package $pkg is still not installed after apt-get install (see apt's messages above): install it by hand (apt-get install $pkg), then run this again"
		fi
	done
	es__check_pg_config
}

# PostgreSQL 15's own pg_config must be there (the build and the tests use it).
es__check_pg_config() {
	[[ -x "$ES_PG_CONFIG" ]] && return 0
	if [[ -n "${ES_PG_ROOT:-}" ]]; then
		es_die "$ES_PG_CONFIG not found: ES_PG_ROOT=$ES_PG_ROOT must hold a copy of the installed PostgreSQL (its usr/lib, usr/share and usr/include trees); copy them there or unset ES_PG_ROOT"
	fi
	es_die "$ES_PG_CONFIG not found although the packages are installed (it comes with postgresql-client-${ES_PG_MAJOR}): apt-get install --reinstall postgresql-client-${ES_PG_MAJOR}, then run this again"
}

# ---------------------------------------------------------------- tree, build

# es_copy_tree [SRC]: copy SRC (default: the repository holding this script)
# without .git and without test/build leftovers into a new /tmp/eventsource.XXXXXX
# directory owned by postgres.  Prints the new path on stdout.
es_copy_tree() {
	local src="${1:-$ES_REPO_ROOT}" dst
	[[ -f "$src/Makefile" ]] || es_die "es_copy_tree: $src does not look like the repository"
	dst="$(mktemp -d /tmp/eventsource.XXXXXXXX)" || es_die "mktemp failed"
	tar -C "$src" \
		--exclude=./.git \
		--exclude='./tmp_check*' \
		--exclude=./results \
		--exclude=./output_iso \
		--exclude=./log \
		--exclude=./regression.diffs \
		--exclude=./regression.out \
		-cf - . | tar -C "$dst" -xf - || es_die "copying $src to $dst failed"
	if ! { chown -R postgres: "$dst" && chmod 755 "$dst"; }; then
		es_die "could not give $dst to the postgres user (does it exist? it comes with postgresql-common)"
	fi
	# /tmp is world-traversable; check for the record (a failure here would
	# otherwise show up later as an odd initdb/pg_regress error).
	runuser -u postgres -- test -w "$dst" ||
		es_die "$dst is not writable by postgres (is a parent directory not traversable?)"
	printf '%s\n' "$dst"
}

# es_build_install DIR: clean build with warnings as errors (as postgres, in
# DIR), then `make install` as root.
es_build_install() {
	local dir="${1:?es_build_install needs the tree}"
	[[ -x "$ES_PG_CONFIG" ]] || es_die "$ES_PG_CONFIG not found (run es_install_packages)"
	(
		cd "$dir" || exit 1
		# The copy may carry objects from a build in the clone: start clean so
		# every file is really compiled with -Werror.
		es_as_postgres make -s clean PG_CONFIG="$ES_PG_CONFIG" >/dev/null &&
			es_as_postgres make -j"$(nproc)" ES_WERROR=1 PG_CONFIG="$ES_PG_CONFIG"
	) || es_die "the build failed (warnings are errors: ES_WERROR=1): see the compiler's messages above"
	make -C "$dir" install ES_WERROR=1 PG_CONFIG="$ES_PG_CONFIG" ||
		es_die "make install into $("$ES_PG_CONFIG" --pkglibdir) failed: see make's messages above"
	# make install as root may have written into the tree; give it back.
	chown -R postgres: "$dir"
}

# ---------------------------------------------------------------- clusters

# Clusters started by this shell and its subshells are listed in a file (not a
# variable, so subshells can add to it), so a trap can stop them all.  Call
# es_registry_init in the main shell before starting clusters in subshells;
# es_start_cluster calls it too.
es_registry_init() {
	if [[ -z "${ES_CLUSTER_REGISTRY:-}" ]]; then
		ES_CLUSTER_REGISTRY="$(mktemp /tmp/eventsource-clusters.XXXXXXXX)" ||
			es_die "mktemp failed"
		export ES_CLUSTER_REGISTRY
	fi
}

# For scripts that just want servers gone at exit (benchmarks, demos):
# es_cleanup_on_exit sets an EXIT trap that stops every cluster this run
# started and removes the registry (it replaces an existing EXIT trap).
es_cleanup_on_exit() {
	es_registry_init
	trap 'es_stop_all_clusters; es_drop_registry' EXIT
	trap 'exit 130' INT TERM
}

# Is a TCP port or a PostgreSQL socket name in use anywhere on the machine?
es__port_in_use() {
	local port="$1" hex
	hex="$(printf '%04X' "$port")"
	if awk -v hex="$hex" 'NR > 1 { split($2, a, ":"); if (a[2] == hex && $4 == "0A") found = 1 }
			END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
		return 0
	fi
	grep -q "\.s\.PGSQL\.${port}\$" /proc/net/unix 2>/dev/null && return 0
	[[ -e "/tmp/.s.PGSQL.${port}.lock" || -e "/var/run/postgresql/.s.PGSQL.${port}.lock" ]]
}

es_free_port() {
	local port="${1:-5440}"
	while ((port < 65000)); do
		if ! es__port_in_use "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
		port=$((port + 1))
	done
	es_die "no free port found"
}

# es_start_cluster DIR [CONF_LINE...]
# initdb a throwaway cluster in DIR/data (DIR is created if missing and given to
# postgres), with the extension preloaded, no TCP, the socket in DIR, a free
# port, and the server log in DIR/log/postgresql.log.  Extra postgresql.conf
# lines come from the arguments and from $ES_EXTRA_CONF (newline-separated);
# they are appended last, so they override the defaults (e.g.
# ES_EXTRA_CONF="synchronous_commit = off").
# Exports PGHOST=DIR PGPORT PGUSER=postgres ES_CLUSTER_DIR ES_PGDATA.
es_start_cluster() {
	local dir="${1:?es_start_cluster needs a directory}"
	shift
	mkdir -p "$dir" || es_die "cannot create $dir"
	dir="$(cd "$dir" && pwd -P)"
	# Unix socket paths are limited to 107 bytes.
	if ((${#dir} > 80)); then
		es_die "cluster directory path too long for a unix socket: $dir"
	fi
	local data="$dir/data" port
	[[ -e "$data" ]] && es_die "$data already exists"
	if ! { chown postgres: "$dir" && mkdir -p "$dir/log" && chown postgres: "$dir/log"; }; then
		es_die "could not prepare $dir for the postgres user"
	fi
	port="$(es_free_port "${ES_PORT_START:-5440}")"

	(cd "$dir" && es_as_postgres "$ES_PG_BIN/initdb" -D "$data" -A trust -U postgres \
		-E UTF8 --locale=C.UTF-8 --no-sync >"$dir/log/initdb.log" 2>&1) || {
		cat "$dir/log/initdb.log" >&2
		es_die "initdb in $data failed"
	}

	{
		echo ""
		echo "# --- test/pg.conf: the settings of every test server ---"
		cat "$ES_REPO_ROOT/test/pg.conf"
		echo "# --- added by scripts/common.sh es_start_cluster ---"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "port = $port"
		local line
		for line in "$@"; do
			printf '%s\n' "$line"
		done
		if [[ -n "${ES_EXTRA_CONF:-}" ]]; then
			echo "# --- ES_EXTRA_CONF ---"
			printf '%s\n' "$ES_EXTRA_CONF"
		fi
	} >>"$data/postgresql.conf"

	es_registry_init
	printf '%s\n' "$dir" >>"$ES_CLUSTER_REGISTRY"
	(cd "$dir" && es_as_postgres "$ES_PG_BIN/pg_ctl" -D "$data" -l "$dir/log/postgresql.log" \
		-w -t 60 start >/dev/null) || {
		tail -n 50 "$dir/log/postgresql.log" >&2 || true
		if grep -qE 'Address already in use|could not create lock file|Is another postmaster' \
			"$dir/log/postgresql.log" 2>/dev/null; then
			es_die "server in $data did not start: port $port (socket $dir/.s.PGSQL.$port) is in use by another server; stop it or run this again (it picks a free port; ES_PORT_START sets where the search starts)"
		fi
		es_die "server in $data did not start: see its log above ($dir/log/postgresql.log)"
	}

	export PGHOST="$dir" PGPORT="$port" PGUSER=postgres
	export ES_CLUSTER_DIR="$dir" ES_PGDATA="$data"
	es_log "server started: PGHOST=$dir PGPORT=$port PGUSER=postgres (log: $dir/log/postgresql.log)"
}

# es_stop_cluster DIR: fast shutdown if it is running.  Leaves the files.
es_stop_cluster() {
	local dir="${1:?es_stop_cluster needs a directory}"
	local data="$dir/data"
	[[ -f "$data/postmaster.pid" ]] || return 0
	(cd "$dir" && es_as_postgres "$ES_PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null 2>&1) ||
		(cd "$dir" && es_as_postgres "$ES_PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1) ||
		es_warn "could not stop the server in $data"
	return 0
}

# Stop every cluster registered by es_start_cluster in this run.  For traps.
es_stop_all_clusters() {
	local dir
	[[ -f "${ES_CLUSTER_REGISTRY:-}" ]] || return 0
	while IFS= read -r dir; do
		[[ -n "$dir" ]] && es_stop_cluster "$dir"
	done <"$ES_CLUSTER_REGISTRY"
	: >"$ES_CLUSTER_REGISTRY"
}

# Remove the registry file (call at the very end, after es_stop_all_clusters).
es_drop_registry() {
	[[ -n "${ES_CLUSTER_REGISTRY:-}" ]] && rm -f "$ES_CLUSTER_REGISTRY"
	return 0
}

# The repository this file belongs to.
ES_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export ES_REPO_ROOT
