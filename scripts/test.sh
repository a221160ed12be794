#!/usr/bin/env bash
# scripts/test.sh: THE test command, for a newcomer and for CI (.ci/run).
#
#   bash scripts/test.sh                 # as root, from any directory
#   bash scripts/test.sh regress tap     # only the named suites
#   bash scripts/test.sh -v              # stream every suite's output live
#   bash scripts/test.sh --keep          # keep the /tmp copy even when all pass
#
# It installs the Debian packages the project needs (only when something is
# missing), copies the repository to a fresh /tmp directory owned by postgres,
# builds with warnings as errors, installs the extension (root), then runs
# each kind of test as the postgres user, separately, so every failure is
# seen.  It ends with a summary (each suite PASS/FAIL with its duration and
# test count) and exits non-zero if anything failed or a suite ran no test.
# On failure it prints the diagnostics: regression diffs, temp-instance server
# logs, TAP logs, pgTAP output.  CI=true: no colours and everything printed.
#
# The pieces: scripts/lib/packages.sh installs, scripts/lib/build.sh builds,
# scripts/lib/suites.sh holds one function per suite (what it runs, which
# server it uses); each ends with the line "result: N passed, M failed",
# the only thing this script reads of a suite's output.  A suite that ran
# no test fails.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/common.sh
. "$SCRIPT_DIR/common.sh"

# ------------------------------------------------------------------ suites

# The suite functions (suite_NAME, diag_NAME): scripts/lib/suites.sh.
# shellcheck source=scripts/lib/suites.sh
. "$SCRIPT_DIR/lib/suites.sh"

SUITES=(
	scripts   # the set-up itself (scripts/lib/*.sh) with stub apt-get/dpkg-query
	regress   # pg_regress: sql/*.sql vs expected/*.out (Makefile REGRESS)
	isolation # isolation specs in test/isolation (Makefile ISOLATION)
	tap       # TAP tests test/t/*.pl: crashes, restarts (Makefile PROVE_TESTS)
	pgtap     # pgTAP files test/pgtap/*.sql against a throwaway server
	examples  # examples/: asyncpg, psycopg, node-postgres, directly and via PgBouncer
	fuzz      # test/fuzz/fuzz.py: random and hostile calls of every eventsource.* function
)

# ------------------------------------------------------------------ options

usage() {
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
	exit "${1:-0}"
}

ES_VERBOSE=0
KEEP_TREE="${ES_KEEP_TREE:-0}"
SELECTED=()
while (($#)); do
	case "$1" in
	-v | --verbose) ES_VERBOSE=1 ;;
	--keep) KEEP_TREE=1 ;;
	-h | --help) usage 0 ;;
	-*) echo "unknown option: $1" >&2 && usage 2 >&2 ;;
	*)
		if ! declare -F "suite_$1" >/dev/null; then
			echo "unknown suite: $1 (known: ${SUITES[*]})" >&2
			exit 2
		fi
		SELECTED+=("$1")
		;;
	esac
	shift
done
((${#SELECTED[@]})) || SELECTED=("${SUITES[@]}")
# CI: print everything (stream each suite live, diagnostics in full).
[[ "${CI:-}" == "true" ]] && ES_VERBOSE=1
export ES_VERBOSE

# ------------------------------------------------------------------ helpers

now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fs", b - a }'; }

# show_files FILE...: print each existing file under a header (paths relative
# to the tree).  Locally long files are cut to their last 400 lines.
show_files() {
	local f n
	for f in "$@"; do
		[[ -f "$f" ]] || continue
		n="$(wc -l <"$f")"
		printf '\n%s----- %s (%s lines) -----%s\n' "$ES_C_BOLD" "$TREE/$f" "$n" "$ES_C_OFF"
		if [[ "$ES_VERBOSE" == 1 || "$n" -le 400 ]]; then
			cat "$f"
		else
			echo "[... first $((n - 400)) lines cut; full file: $TREE/$f ...]"
			tail -n 400 "$f"
		fi
	done
}

# Stop any server left running inside the tree (pg_regress temp instances,
# TAP nodes, our clusters), e.g. after an interrupt.
sweep_servers() {
	[[ -n "${TREE:-}" && -d "$TREE" ]] || return 0
	local pid_file data
	while IFS= read -r pid_file; do
		data="$(dirname "$pid_file")"
		(cd / && es_as_postgres "$ES_PG_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1) || true
	done < <(find "$TREE" -name postmaster.pid 2>/dev/null)
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	es_stop_all_clusters
	sweep_servers
	es_started_clusters_drop
	if [[ -n "${TREE:-}" && -d "$TREE" ]]; then
		if [[ "$rc" == 0 && "$KEEP_TREE" != 1 ]]; then
			rm -rf "$TREE"
		else
			echo "The test tree (build, logs, diffs) is kept in $TREE"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ------------------------------------------------------------------ main

es_need_root
es_started_clusters_init
# Start from a clean libpq environment: our servers are found explicitly.
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGDATA PGOPTIONS PGSERVICE \
	PGSERVICEFILE PGSSLMODE PGAPPNAME PGTZ PGDATESTYLE 2>/dev/null || true

RUN_START="$(now)"
es_install_packages

es_log "copying $ES_REPO_ROOT"
TREE="$(es_copy_tree "$ES_REPO_ROOT")"
LOGDIR="$TREE/test-logs"
mkdir -p "$LOGDIR"
es_log "test tree: $TREE"

NAMES=()
RESULTS=()
TIMES=()
NOTES=()

es_log "build (ES_WERROR=1) and install"
t0="$(now)"
set +e
(es_build_install "$TREE") >"$LOGDIR/build.log" 2>&1
build_rc=$?
set -e
NAMES+=(build)
TIMES+=("$(elapsed "$t0" "$(now)")")
if ((build_rc != 0)); then
	RESULTS+=(FAIL)
	NOTES+=("warnings are errors; see the compiler output above")
	cat "$LOGDIR/build.log"
	for name in "${SELECTED[@]}"; do
		NAMES+=("$name")
		RESULTS+=(SKIP)
		TIMES+=("-")
		NOTES+=("not run: the build failed")
	done
else
	RESULTS+=(PASS)
	NOTES+=("")
	[[ "$ES_VERBOSE" == 1 ]] && cat "$LOGDIR/build.log"
	for name in "${SELECTED[@]}"; do
		log="$LOGDIR/$name.log"
		es_log "suite $name"
		t0="$(now)"
		set +e
		if [[ "$ES_VERBOSE" == 1 ]]; then
			(
				set -e
				cd "$TREE"
				"suite_$name"
			) 2>&1 | tee "$log"
			rc=${PIPESTATUS[0]}
		else
			(
				set -e
				cd "$TREE"
				"suite_$name"
			) >"$log" 2>&1
			rc=$?
		fi
		set -e
		# The suite's one-line result (scripts/lib/suites.sh): its last
		# "result: N passed, M failed".
		note="$(sed -n 's/^result: //p' "$log" | tail -n 1)"
		if [[ -z "$note" || "$note" == "0 passed, 0 failed" ]]; then
			note="ran no test"
			((rc != 0)) || rc=1
		fi
		NAMES+=("$name")
		TIMES+=("$(elapsed "$t0" "$(now)")")
		NOTES+=("$note")
		if ((rc == 0)); then
			RESULTS+=(PASS)
			printf '    %sPASS%s %s (%s)\n' "$ES_C_GREEN" "$ES_C_OFF" "$name" "$note"
		else
			RESULTS+=(FAIL)
			NOTES[-1]="$note; exit $rc"
			printf '    %sFAIL%s %s (%s, exit %s)\n' "$ES_C_RED" "$ES_C_OFF" "$name" "$note" "$rc"
		fi
	done
fi

# ------------------------------------------------------------------ report

n_pass=0
n_fail=0
for i in "${!NAMES[@]}"; do
	case "${RESULTS[$i]}" in
	PASS) n_pass=$((n_pass + 1)) ;;
	FAIL) n_fail=$((n_fail + 1)) ;;
	esac
done

# Failed suites other than the build (whose compiler output is printed above).
n_suite_fail=$((build_rc == 0 ? n_fail : n_fail - 1))
if ((n_suite_fail > 0)); then
	echo
	printf '%s==================== diagnostics of failed suites ====================%s\n' "$ES_C_RED" "$ES_C_OFF"
	for i in "${!NAMES[@]}"; do
		name="${NAMES[$i]}"
		[[ "${RESULTS[$i]}" == FAIL && "$name" != build ]] || continue
		printf '\n%s#################### %s ####################%s\n' "$ES_C_BOLD" "$name" "$ES_C_OFF"
		# The suite's own output (pg_regress/prove/pg_prove lines), unless it
		# was already streamed above.
		if [[ "$ES_VERBOSE" != 1 ]]; then
			(cd "$TREE" && show_files "test-logs/$name.log") || true
		fi
		if declare -F "diag_$name" >/dev/null; then
			(cd "$TREE" && "diag_$name") || true
		fi
	done
fi

echo
printf '%s==================== summary ====================%s\n' "$ES_C_BOLD" "$ES_C_OFF"
for i in "${!NAMES[@]}"; do
	case "${RESULTS[$i]}" in
	PASS) color="$ES_C_GREEN" ;;
	SKIP) color="$ES_C_YELLOW" ;;
	*) color="$ES_C_RED" ;;
	esac
	printf '  %s%-4s%s  %-10s %7s  %s\n' "$color" "${RESULTS[$i]}" "$ES_C_OFF" \
		"${NAMES[$i]}" "${TIMES[$i]}" "${NOTES[$i]}"
done
printf '  total %s\n' "$(elapsed "$RUN_START" "$(now)")"
echo "suites: $n_pass passed, $n_fail failed"
if ((build_rc != 0)); then
	es_die "the build failed (warnings are errors: ES_WERROR=1): see the compiler's messages above (log: $LOGDIR/build.log)"
fi
if ((n_fail > 0)); then
	printf '%serror: %s of %s suites failed: see their diagnostics and the summary above%s\n' \
		"$ES_C_RED" "$n_fail" "$((n_pass + n_fail))" "$ES_C_OFF" >&2
	exit 1
fi
