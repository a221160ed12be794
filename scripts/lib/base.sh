# shellcheck shell=bash
# scripts/lib/base.sh: what every script needs first: the locale, where
# PostgreSQL 15 is, messages (es_log, es_warn, es_die), the ERR trap that
# reports an unexpected failure in one line, es_need_root and es_as_postgres.
# Sourced by scripts/common.sh; nothing here installs, builds or starts.
#
# Facts this relies on (README.md, "Quick start" and "Installing"):
#   - the machine is Debian 12 and we are root; initdb refuses root, so every
#     server runs as the `postgres` user via `runuser -u postgres --`;
#   - /usr/bin/pg_config picks the newest major: always use PG 15's own.

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

# The repository these scripts belong to.
ES_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
export ES_REPO_ROOT

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

