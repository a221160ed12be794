#!/usr/bin/env bash
# test/scripts/setup.sh: the machine set-up of scripts/common.sh, against stub
# dpkg-query, dpkg, apt-get and id that are the only commands on PATH besides
# a few coreutils: no package of this machine is looked at, nothing is
# installed, any user can run it (scripts/test.sh runs it as postgres), and it
# takes a few seconds.
#
#   bash test/scripts/setup.sh        # last line: "setup: N passed, M failed"
#
# What it proves (issue 8: on a bare Debian 12 the README's two commands
# ended with status 1 and printed nothing, because reading the version of a
# package dpkg does not know failed under `set -euo pipefail`):
#   - es_install_packages goes on to `apt-get update` and ONE `apt-get install`
#     of every package when dpkg knows none of them, the three core PostgreSQL
#     packages first and together; also when only the dev package is missing,
#     and when the core versions differ; and calls no apt-get when all are there;
#   - an apt-get failure (no network, the dpkg lock, an unknown package, any
#     other) ends with one `error:` line that says why, names the packages and
#     a non-zero status; so does a package still missing after the install,
#     and running as a user other than root;
#   - the ERR trap prints one `error: FILE:LINE: 'COMMAND' failed (exit N)`
#     line for an unexpected failure, and nothing for failures the scripts
#     handle (conditions, `|| …`, set +e, es_die inside a $(…));
#   - es_start_cluster (scripts/lib/cluster.sh, against stub initdb, pg_ctl,
#     runuser) takes the next port when the server says one is in use, ends
#     with one error line when ten are, does not retry other failures, and
#     gives the server the settings of test/pg.conf;
#   - the layout holds: the package list and every apt-get call are in
#     scripts/lib/packages.sh only, test servers' settings in test/pg.conf
#     only, and each suite's closing line is read into the one fixed form
#     "result: N passed, M failed".

set -uo pipefail
# shellcheck disable=SC2016  # the cases are code for a child bash, in single quotes

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
COMMON="$HERE/../../scripts/common.sh"
[[ -f "$COMMON" ]] || {
	echo "error: $COMMON not found"
	exit 1
}
BASH_BIN="$(command -v bash)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/es-scripts-test.XXXXXXXX")" || exit 1
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------------------ stubs

# The PATH of every case: the stubs and the real tools common.sh needs, and
# nothing else (no node, npm or apt-get of this machine).
BIN="$WORK/bin"
mkdir -p "$BIN"
for tool in awk cat dirname basename grep sed sort tr wc tee tail seq mktemp rm mkdir touch env sh; do
	real="$(command -v "$tool")" || {
		echo "error: $tool not found"
		exit 1
	}
	ln -s "$real" "$BIN/$tool"
done

# State of the fake package database: $STATE/installed has "package version"
# lines; $STATE/apt.log one line per apt-get call (its arguments).
cat >"$BIN/dpkg-query" <<'EOF'
#!/bin/sh
# dpkg-query -W -f='${db:Status-Status} ${Version}\n' PACKAGE, as dpkg-query
# answers it: a package it does not know is an error (exit 1).
for pkg; do :; done
line="$(grep "^$pkg " "$STATE/installed" 2>/dev/null)"
if [ -z "$line" ]; then
	echo "dpkg-query: no packages found matching $pkg" >&2
	exit 1
fi
echo "installed ${line#* }"
EOF
cat >"$BIN/dpkg" <<'EOF'
#!/bin/sh
# dpkg -s PACKAGE
for pkg; do :; done
grep -q "^$pkg " "$STATE/installed" 2>/dev/null && exit 0
echo "dpkg-query: package '$pkg' is not installed and no information is available" >&2
exit 1
EOF
# apt-get: STUB_UPDATE_RC/STUB_UPDATE_OUT and STUB_INSTALL_RC/STUB_INSTALL_OUT
# say how each step ends; a successful install records every package except
# those in STUB_NOT_INSTALLED, at version STUB_VERSION.
cat >"$BIN/apt-get" <<'EOF'
#!/bin/sh
echo "$*" >>"$STATE/apt.log"
case "$1" in
update)
	printf '%b' "${STUB_UPDATE_OUT:-Reading package lists...\n}"
	exit "${STUB_UPDATE_RC:-0}"
	;;
install)
	printf '%b' "${STUB_INSTALL_OUT:-}"
	[ "${STUB_INSTALL_RC:-0}" = 0 ] || exit "$STUB_INSTALL_RC"
	shift
	skip=0
	for arg; do
		if [ "$skip" = 1 ]; then skip=0; continue; fi
		case "$arg" in
		-o) skip=1 ;;
		-*) ;;
		*)
			case " ${STUB_NOT_INSTALLED:-} " in *" $arg "*) continue ;; esac
			grep -v "^$arg " "$STATE/installed" >"$STATE/installed.new" 2>/dev/null
			echo "$arg ${STUB_VERSION:-15.10-0+deb12u1}" >>"$STATE/installed.new"
			cat "$STATE/installed.new" >"$STATE/installed"
			;;
		esac
	done
	mkdir -p "$ES_PG_ROOT/usr/lib/postgresql/15/bin"
	touch "$ES_PG_ROOT/usr/lib/postgresql/15/bin/pg_config"
	chmod 755 "$ES_PG_ROOT/usr/lib/postgresql/15/bin/pg_config"
	exit 0
	;;
esac
exit 0
EOF
cat >"$BIN/id" <<'EOF'
#!/bin/sh
[ "$1" = -u ] && echo "${STUB_UID:-0}" && exit 0
echo "uid=${STUB_UID:-0}"
EOF
# runuser -u postgres -- CMD: runs CMD as whoever runs this; chown: nothing.
cat >"$BIN/runuser" <<'EOF'
#!/bin/sh
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do shift; done
shift
exec "$@"
EOF
printf '#!/bin/sh\nexit 0\n' >"$BIN/chown"
ln -s "$(command -v chmod)" "$BIN/chmod"
chmod 755 "$BIN"/dpkg-query "$BIN"/dpkg "$BIN"/apt-get "$BIN"/id "$BIN"/runuser "$BIN"/chown

# PostgreSQL's initdb and pg_ctl, for es_start_cluster: initdb writes a
# postgresql.conf; `pg_ctl start` reads the port from postgresql.auto.conf
# and, as the server does, logs "Address already in use" and fails when it is
# one of STUB_BUSY_PORTS, or fails otherwise when STUB_START_FAILS is set.
PGBIN_STUBS="$WORK/pgbin"
mkdir -p "$PGBIN_STUBS"
cat >"$PGBIN_STUBS/initdb" <<'EOF'
#!/bin/sh
while [ "$#" -gt 0 ]; do [ "$1" = -D ] && data="$2"; shift; done
mkdir -p "$data" && echo "# initdb's postgresql.conf" >"$data/postgresql.conf" &&
	: >"$data/postgresql.auto.conf"
EOF
cat >"$PGBIN_STUBS/pg_ctl" <<'EOF'
#!/bin/sh
while [ "$#" -gt 0 ]; do
	case "$1" in
	-D) data="$2"; shift ;;
	-l) log="$2"; shift ;;
	-m | -t) shift ;;
	start | stop) action="$1" ;;
	esac
	shift
done
echo "$action" >>"$STATE/pg_ctl.log"
if [ "$action" = stop ]; then rm -f "$data/postmaster.pid"; exit 0; fi
port="$(sed -n "s/^port = '\([0-9]*\)'/\1/p" "$data/postgresql.auto.conf")"
case " ${STUB_BUSY_PORTS:-} " in *" $port "*)
	echo "LOG:  could not bind Unix socket: Address already in use" >>"$log"
	echo "FATAL:  could not create any Unix-domain sockets" >>"$log"
	exit 1 ;;
esac
if [ -n "${STUB_START_FAILS:-}" ]; then
	echo "FATAL:  could not map anonymous shared memory: Cannot allocate memory" >>"$log"
	exit 1
fi
echo "$port" >"$data/postmaster.pid"
EOF
chmod 755 "$PGBIN_STUBS"/initdb "$PGBIN_STUBS"/pg_ctl

# ------------------------------------------------------------------ cases

# The package list, as common.sh has it.
PACKAGES="$(env -i PATH="$BIN" "$BASH_BIN" -c '. "$1" && echo $ES_PACKAGES' - "$COMMON")"
CORE="$(env -i PATH="$BIN" "$BASH_BIN" -c '. "$1" && echo $ES_PG_CORE' - "$COMMON")"
if [[ -z "$PACKAGES" || "$CORE" != "postgresql-15 postgresql-server-dev-15 postgresql-client-15" ]]; then
	echo "error: could not read ES_PACKAGES/ES_PG_CORE from $COMMON (got '$CORE')"
	exit 1
fi

# run_case VAR=VALUE... -- SCRIPT: run SCRIPT (after `set -euo pipefail` and
# sourcing common.sh) in a clean environment with the stubs; sets RC, OUT
# (stdout), ERR (stderr), APT (the apt-get calls).  The fake database starts
# from $INSTALLED (lines "package version").
INSTALLED=""
CASE=0
run_case() {
	local vars=()
	while [[ "$1" != -- ]]; do
		vars+=("$1")
		shift
	done
	shift
	CASE=$((CASE + 1))
	local dir="$WORK/case$CASE"
	mkdir -p "$dir/state" "$dir/pgroot/usr/lib/postgresql/15/bin"
	ln -s "$PGBIN_STUBS/initdb" "$PGBIN_STUBS/pg_ctl" "$dir/pgroot/usr/lib/postgresql/15/bin/"
	printf '%s' "$INSTALLED" >"$dir/state/installed"
	if grep -q '^postgresql-client-15 ' "$dir/state/installed"; then # its pg_config
		printf '#!/bin/sh\n' >"$dir/pgroot/usr/lib/postgresql/15/bin/pg_config"
		chmod 755 "$dir/pgroot/usr/lib/postgresql/15/bin/pg_config"
	fi
	: >"$dir/state/apt.log"
	(cd "$dir" && env -i PATH="$BIN" HOME="$dir" TMPDIR="$dir" STATE="$dir/state" \
		ES_PG_ROOT="$dir/pgroot" NO_COLOR=1 "${vars[@]}" \
		"$BASH_BIN" -c 'set -euo pipefail; . "$1"; eval "$2"' case.sh "$COMMON" "$1" \
		>"$dir/out" 2>"$dir/err")
	RC=$?
	OUT="$(cat "$dir/out")"
	ERR="$(cat "$dir/err")"
	APT="$(cat "$dir/state/apt.log")"
}

# installed_all VERSION [EXCEPT...]: every package at VERSION but EXCEPT.
installed_all() {
	local v="$1" p
	shift
	INSTALLED=""
	for p in $PACKAGES; do
		[[ " $* " == *" $p "* ]] && continue
		INSTALLED+="$p $v"$'\n'
	done
}

PASSED=0
FAILED=0
TEST=""
FAILS=()
# check DESCRIPTION CONDITION...: one assertion of the current test.
check() {
	local what="$1"
	shift
	if ! "$@"; then
		FAILS+=("$what")
	fi
}
begin() {
	TEST="$1"
	FAILS=()
}
end() {
	if ((${#FAILS[@]} == 0)); then
		PASSED=$((PASSED + 1))
		echo "ok - $TEST"
	else
		FAILED=$((FAILED + 1))
		echo "not ok - $TEST"
		local f
		for f in "${FAILS[@]}"; do
			echo "#   failed: $f"
		done
		echo "#   exit status: $RC"
		echo "#   apt-get calls:"
		sed 's/^/#     /' <<<"$APT"
		echo "#   stdout:"
		sed 's/^/#     /' <<<"$OUT"
		echo "#   stderr:"
		sed 's/^/#     /' <<<"$ERR"
	fi
}

has() { [[ "$1" == *"$2"* ]]; }
hasnt() { [[ "$1" != *"$2"* ]]; }
has_lines() { # TEXT LINES: every line of LINES is a line of TEXT
	local line
	while IFS= read -r line; do
		grep -qxF -- "$line" <<<"$1" || return 1
	done <<<"$2"
}
lines() { # TEXT N: TEXT has exactly N non-empty lines
	[[ "$(grep -c . <<<"$1")" == "$2" ]]
}
errors() { # TEXT N: TEXT has exactly N lines starting with "error:"
	[[ "$(grep -c '^error:' <<<"$1")" == "$2" ]]
}
install_line() { sed -n '2p' <<<"$APT"; }
# The packages of the install call, options dropped, in order.
install_pkgs() {
	install_line | awk '{ for (i = 2; i <= NF; i++) { if ($i == "-o") { i++; continue } if ($i !~ /^-/) printf "%s ", $i } }' |
		sed 's/ $//'
}
all_in_install() {
	local p pkgs
	pkgs=" $(install_pkgs) "
	for p in $PACKAGES; do
		[[ "$pkgs" == *" $p "* ]] || return 1
	done
}

INSTALL='es_install_packages; echo "es_install_packages returned"'

# ---- 1. the bug of issue 8
begin "dpkg knows none of the packages: apt-get update, then one apt-get install of all of them"
INSTALLED=""
run_case -- "$INSTALL"
check "exit status 0" test "$RC" = 0
check "it returned" has "$OUT" "es_install_packages returned"
check "it said what it installs" has "$OUT" "packages: installing"
check "exactly two apt-get calls" lines "$APT" 2
check "first apt-get update" test "$(sed -n 1p <<<"$APT")" = "update -q"
check "then apt-get install" has "$(install_line)" "install -y"
check "the three core packages first, in one call" has "$(install_pkgs)" "$CORE"
check "every package of ES_PACKAGES in that call" all_in_install
check "no error" errors "$ERR" 0
end

begin "es__pkg_version succeeds, printing nothing, for a package dpkg does not know"
run_case -- 'v="$(es__pkg_version no-such-package)"; echo "status $? version [$v]"'
check "exit status 0" test "$RC" = 0
check "empty version" has "$OUT" "status 0 version []"
end

begin "postgresql-15 and the client installed, the dev package not: all three core packages installed together"
installed_all 15.10-0+deb12u1 postgresql-server-dev-15
run_case -- "$INSTALL"
check "exit status 0" test "$RC" = 0
check "apt-get update, then install" test "$(sed -n 1p <<<"$APT")" = "update -q"
check "install the three core packages only" test "$(install_pkgs)" = "$CORE"
end

begin "every package installed: no apt-get call"
installed_all 15.10-0+deb12u1
run_case -- "$INSTALL"
check "exit status 0" test "$RC" = 0
check "says all present" has "$OUT" "packages: all present"
check "no apt-get call" test -z "$APT"
end

begin "core versions differ: the three upgraded together"
installed_all 15.10-0+deb12u1
INSTALLED="$(sed 's/^postgresql-server-dev-15 .*/postgresql-server-dev-15 15.8-0+deb12u1/' <<<"$INSTALLED")"$'\n'
run_case -- "$INSTALL"
check "exit status 0" test "$RC" = 0
check "says so" has "$OUT" "versions differ"
check "install the three core packages" test "$(install_pkgs)" = "$CORE"
end

# ---- 2. failures end with one clear line
begin "apt-get update fails without network: one error line, names the packages, non-zero exit"
INSTALLED=""
run_case STUB_UPDATE_RC=100 \
	STUB_UPDATE_OUT="Err:1 http://deb.debian.org/debian bookworm InRelease\n  Temporary failure resolving 'deb.debian.org'\nE: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease\n" \
	-- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "did not return" hasnt "$OUT" "es_install_packages returned"
check "one error line" errors "$ERR" 1
check "says apt-get update failed" has "$ERR" "error: apt-get update failed (exit 100)"
check "says: no network" has "$ERR" "no network"
check "names the packages" has "$ERR" "postgresql-server-dev-15"
check "names the packages" has "$ERR" "libipc-run-perl"
check "no install attempted" lines "$APT" 1
end

begin "apt-get update warns (no network, exit 0), apt-get install exits 100: says no network"
run_case STUB_UPDATE_OUT="W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'\n" \
	STUB_INSTALL_RC=100 STUB_INSTALL_OUT="E: Unable to locate package postgresql-15\n" -- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "one error line" errors "$ERR" 1
check "says apt-get install failed" has "$ERR" "error: apt-get install failed (exit 100)"
check "says: no network" has "$ERR" "no network"
check "names the packages" has "$ERR" "postgresql-15-pgtap"
end

begin "apt-get install exits 100 on an unknown package: says which"
run_case STUB_INSTALL_RC=100 STUB_INSTALL_OUT="E: Unable to locate package postgresql-15-pgtap\n" -- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "one error line" errors "$ERR" 1
check "names the unknown package" has "$ERR" "apt does not know postgresql-15-pgtap"
end

begin "apt-get install exits 100, the dpkg lock is held: says so"
run_case STUB_INSTALL_RC=100 \
	STUB_INSTALL_OUT="E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n" -- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "one error line" errors "$ERR" 1
check "says another apt-get or dpkg" has "$ERR" "another apt-get or dpkg holds the package lock"
end

begin "apt-get install fails for another reason: one error line pointing at apt's messages"
run_case STUB_INSTALL_RC=100 STUB_INSTALL_OUT="E: Sub-process /usr/bin/dpkg returned an error code (1)\n" -- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "one error line" errors "$ERR" 1
check "says apt-get install failed" has "$ERR" "error: apt-get install failed (exit 100): see apt-get's messages above"
check "names the packages" has "$ERR" "python3-psycopg"
end

begin "a package still missing after apt-get install: reported, non-zero exit"
run_case STUB_NOT_INSTALLED=pgbouncer -- "$INSTALL"
check "non-zero exit" test "$RC" != 0
check "did not return" hasnt "$OUT" "es_install_packages returned"
check "one error line" errors "$ERR" 1
check "names it" has "$ERR" "error: package pgbouncer is still not installed"
end

begin "not root: es_need_root says so in one line, exit 1"
run_case STUB_UID=1000 -- 'es_need_root; echo "es_need_root returned"'
check "exit status 1" test "$RC" = 1
check "did not return" hasnt "$OUT" "es_need_root returned"
check "one line, that one" lines "$ERR" 1
check "says it must run as root" has "$ERR" "must run as root"
end

# ---- 3. the ERR trap
begin "ERR trap: an unexpected failure (the old es__pkg_version) prints one line with file, line, command, status"
INSTALLED=""
run_case -- 'old() { dpkg-query -W -f="\${Version}" "$1" 2>/dev/null | awk "{ print }"; }
v="$(old no-such-package)"
echo "not reached"'
check "exit status 1" test "$RC" = 1
check "stopped there" hasnt "$OUT" "not reached"
check "exactly one line" lines "$ERR" 1
check "error: FILE:LINE: 'COMMAND' failed (exit N)" \
	grep -qE "^error: case.sh:2: 'v=\"\\\$\(old no-such-package\)\"' failed \(exit 1\); .*bash -x" <<<"$ERR"
end

begin "ERR trap: with es__pkg_version as it was before the fix, es_install_packages fails loudly, naming common.sh and the line"
INSTALLED=""
run_case -- "es__pkg_version() {
	dpkg-query -W -f='\${db:Status-Status} \${Version}\\n' \"\$1\" 2>/dev/null |
		awk '\$1 == \"installed\" { print \$2 }'
}
$INSTALL"
check "non-zero exit" test "$RC" != 0
check "no apt-get call" test -z "$APT"
check "exactly one line" lines "$ERR" 1
check "names scripts/lib/packages.sh, its line and the command" \
	grep -qE "^error: scripts/lib/packages.sh:[0-9]+: 'v=\"\\\$\(es__pkg_version \"\\\$pkg\"\)\"' failed \(exit 1\)" <<<"$ERR"
end

begin "ERR trap: quiet for failures the script handles"
run_case -- 'if false; then :; fi
false || true
x="$(false)" || true
set +e; (false); false | cat; set -e
( set -e; f() { false; }; f ) || true
while false; do :; done
! true
echo "all handled"'
check "exit status 0" test "$RC" = 0
check "ran to the end" has "$OUT" "all handled"
check "nothing on stderr" test -z "$ERR"
end

begin "ERR trap: es_die inside \$(...) reports once (its own line), non-zero exit"
run_case -- 'x="$(es_die "cannot do X: do Y")"; echo "not reached"'
check "non-zero exit" test "$RC" != 0
check "exactly one line" lines "$ERR" 1
check "es_die's line" test "$ERR" = "error: cannot do X: do Y"
end

begin "ERR trap: a failing subshell at the top level reports once"
run_case -- '( cd / && false ); echo "not reached"'
check "exit status 1" test "$RC" = 1
check "exactly one line" lines "$ERR" 1
check "names the subshell" has "$ERR" "'( cd / && false )' failed (exit 1)"
end

# ---- 4. no `local x=$(...)`: local's status would hide the failure
begin "no 'local NAME=\$(...)' (its status hides the failure) in scripts/, examples/run.sh, test/bench, test/scripts"
ROOT="$HERE/../.."
hits="$(grep -nE '^[[:space:]]*(local|declare|readonly|export)[[:space:]]([^=]*[[:space:]])?[A-Za-z_][A-Za-z_0-9]*=("[^"]*)?\$\(' \
	"$ROOT"/scripts/*.sh "$ROOT"/scripts/lib/*.sh "$ROOT"/examples/run.sh "$ROOT"/test/bench/*.sh "$ROOT"/test/scripts/*.sh 2>/dev/null)"
RC=0 OUT="$hits" ERR="" APT=""
check "none found" test -z "$hits"
end

# ---- 5. throwaway servers: ports and settings (scripts/lib/cluster.sh)
CLUSTER='es_start_cluster "$PWD/c1"; echo "PGPORT=$PGPORT PGHOST=$PGHOST"; cat "$PWD/c1/data/postgresql.conf"'
SETTINGS="$(grep -v '^#' "$HERE/../pg.conf" | grep .)"
begin "es_start_cluster: ports 5440 and 5441 in use: the server starts on 5442 and says so"
INSTALLED=""
run_case STUB_BUSY_PORTS="5440 5441" -- "$CLUSTER"
check "exit status 0" test "$RC" = 0
check "PGPORT is 5442" has "$OUT" "PGPORT=5442 PGHOST=$WORK/case$CASE/c1"
check "said 5440 was in use" has "$OUT" "port 5440 is in use; trying 5441"
check "said 5441 was in use" has "$OUT" "port 5441 is in use; trying 5442"
check "three starts" test "$(grep -c start "$WORK/case$CASE/state/pg_ctl.log")" = 3
check "no error" errors "$ERR" 0
end

begin "es_start_cluster: the server gets the settings of test/pg.conf, then its own"
run_case -- "$CLUSTER"
check "exit status 0" test "$RC" = 0
check "PGPORT is ES_PORT_START's default" has "$OUT" "PGPORT=5440 "
check "every line of test/pg.conf" has_lines "$OUT" "$SETTINGS"
check "unix socket only" has "$OUT" "listen_addresses = ''"
end

begin "es_start_cluster: ten ports in use: one error line, non-zero exit"
run_case STUB_BUSY_PORTS="$(seq -s ' ' 7000 7009)" ES_PORT_START=7000 -- "$CLUSTER"
check "non-zero exit" test "$RC" != 0
check "one error line" errors "$ERR" 1
check "names the ports and ES_PORT_START" has "$ERR" "ports 7000..7009 are in use; stop what holds them or set ES_PORT_START"
end

begin "es_start_cluster: a failure other than a busy port is not retried: one error line"
run_case STUB_START_FAILS=1 -- "$CLUSTER"
check "non-zero exit" test "$RC" != 0
check "one start" test "$(grep -c start "$WORK/case$CASE/state/pg_ctl.log")" = 1
check "one error line" errors "$ERR" 1
check "points at the log" has "$ERR" "did not start: see its log above"
check "the log is shown" has "$ERR" "could not map anonymous shared memory"
end

# ---- 6. one place for each fact
ROOT="$(cd "$HERE/../.." && pwd -P)"
begin "the package list is in scripts/lib/packages.sh only, and only it calls apt-get"
hits="$(grep -rlE '^[^#]*(libipc-run-perl|postgresql-15-pgtap|python3-asyncpg)' "$ROOT"/scripts "$ROOT"/.ci \
	"$ROOT"/examples/run.sh "$ROOT"/test/bench/*.sh "$ROOT"/Makefile 2>/dev/null)"
apt="$(grep -rlE '^[^#]*apt-get (install|update)' "$ROOT"/scripts "$ROOT"/.ci 2>/dev/null |
	grep -v '/scripts/lib/packages.sh$')"
RC=0 OUT="$hits"$'\n'"$apt" ERR="" APT=""
check "the list: packages.sh only" test "$hits" = "$ROOT/scripts/lib/packages.sh"
check "apt-get: packages.sh only" test -z "$apt"
end

begin "test servers' settings are in test/pg.conf only (scripts, Makefile, EsTest.pm read it)"
hits="$(grep -rnE '^[^#]*(max_worker_processes|eventsource\.max_workers|max_prepared_transactions) *=' \
	"$ROOT"/scripts "$ROOT"/test/perl "$ROOT"/Makefile "$ROOT"/examples/run.sh 2>/dev/null)"
RC=0 OUT="$hits" ERR="" APT=""
check "no copy" test -z "$hits"
check "the Makefile's temp instances use it" grep -q -- '--temp-config=test/pg.conf' "$ROOT/Makefile"
check "EsTest.pm reads it" grep -q "/../pg.conf'" "$ROOT/test/perl/EsTest.pm"
check "scripts/lib/cluster.sh reads it" grep -q 'test/pg.conf"$' "$ROOT/scripts/lib/cluster.sh"
end

begin "each suite's closing line becomes one 'result: N passed, M failed' line"
run_case -- '. "$ES_REPO_ROOT/scripts/lib/suites.sh"; LOGDIR="$PWD"
es_run_counted count_pg_regress printf "%s\n" "test a ... ok" " 2 of 13 tests failed. "
es_run_counted count_pg_regress printf "%s\n" "All 10 tests passed."
es_run_counted count_prove printf "%s\n" "t/1.pl .. " "Failed 3/40 subtests" "Files=2, Tests=50, 3 wallclock secs" "Result: FAIL"
es_run_counted count_plain printf "%s\n" "ok - x" "setup: 7 passed, 1 failed"
es_run_counted count_plain sh -c "echo 4 passed, 0 failed; exit 3" || echo "status $?"
es_run_counted count_plain echo nothing'
check "exit status 0" test "$RC" = 0
check "pg_regress failed" has "$OUT" "result: 11 passed, 2 failed"
check "pg_regress passed" has "$OUT" "result: 10 passed, 0 failed"
check "prove" has "$OUT" "result: 47 passed, 3 failed"
check "plain" has "$OUT" "result: 7 passed, 1 failed"
check "the runner's status is returned" has "$OUT" $'result: 4 passed, 0 failed\nstatus 3'
check "no closing line: 0 passed, 0 failed" has "$OUT" $'nothing\nresult: 0 passed, 0 failed'
end

begin "every file of scripts/lib says what it does in its first line"
RC=0 OUT="" ERR="" APT=""
for f in "$ROOT"/scripts/lib/*.sh; do
	check "${f##*/}" grep -q "^# scripts/lib/${f##*/}: " "$f"
done
end

echo "setup: $PASSED passed, $FAILED failed"
((FAILED == 0))
