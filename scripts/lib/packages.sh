# shellcheck shell=bash
# scripts/lib/packages.sh: THE list of Debian packages the project needs
# (ES_PACKAGES: the build, every test suite, the examples; README,
# "Installing", points here) and es_install_packages, the only code that
# calls apt-get.  It calls apt-get only when a package is missing or the
# PostgreSQL server/client/dev versions differ: on a machine that has them
# all (a CI image, a developer's box) it installs nothing.
#
#   es_install_packages    apt-get install whatever of ES_PACKAGES is missing;
#                          one clear `error:` line when apt-get fails

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

# Prints the installed version of a package, or nothing.
# Always succeeds: dpkg-query exits non-zero for a package dpkg has never
# heard of, which under `set -o pipefail` would otherwise end the caller's
# `v="$(es__pkg_version …)"` silently (issue 8).
es__pkg_version() {
	{ dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null || true; } |
		awk '$1 == "installed" { print $2 }'
}

# Is the package installed (or, for those in ES_PACKAGE_COMMANDS, its command
# on PATH)?
es__pkg_present() {
	local cmd="${ES_PACKAGE_COMMANDS[$1]:-}"
	[[ -n "$(es__pkg_version "$1")" ]] && return 0
	[[ -n "$cmd" ]] && command -v "$cmd" >/dev/null 2>&1
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
	local pkg missing=()
	for pkg in $ES_PACKAGES; do
		es__pkg_present "$pkg" || missing+=("$pkg")
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
		if ! es__pkg_present "$pkg"; then
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

