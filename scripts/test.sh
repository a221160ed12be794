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
# Adding a suite: write a function suite_NAME (it runs in a subshell, cwd is
# the copied tree, `set -e` is on, run servers and tests via es_as_postgres),
# optionally diag_NAME (prints diagnostics when it fails), and add NAME to
# SUITES below.  Its output must contain a closing line we can count tests
# from (pg_regress's "All N tests passed.", prove's "Files=N, Tests=M",
# or a plain "N passed, N failed"): a suite that ran no test fails.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/common.sh
. "$SCRIPT_DIR/common.sh"

# ------------------------------------------------------------------ suites

SUITES=(
	scripts   # the set-up itself (scripts/common.sh) with stub apt-get/dpkg-query
	regress   # pg_regress: sql/*.sql vs expected/*.out (Makefile REGRESS)
	isolation # isolation specs in test/isolation (Makefile ISOLATION)
	tap       # TAP tests test/t/*.pl: crashes, restarts (Makefile PROVE_TESTS)
	pgtap     # pgTAP files test/pgtap/*.sql against a throwaway server
	examples  # examples/: asyncpg, psycopg, node-postgres, directly and via PgBouncer
	fuzz      # test/fuzz/fuzz.py: random and hostile calls of every eventsource.* function
)

MAKE_ARGS=(PG_CONFIG="$ES_PG_CONFIG")

# As postgres, against stubs only: nothing on the machine is installed or
# looked at (test/scripts/setup.sh).
suite_scripts() {
	es_as_postgres bash test/scripts/setup.sh
}

suite_regress() {
	es_as_postgres make installcheck ISOLATION= TAP_TESTS= ES_TEMP_INSTANCE=1 "${MAKE_ARGS[@]}"
}
diag_regress() {
	# pg_regress writes its temp instance's logs to ./log (its outputdir).
	show_files regression.diffs log/postmaster.log
	[[ -f log/postmaster.log ]] || show_files log/initdb.log
}

suite_isolation() {
	es_as_postgres make installcheck REGRESS= TAP_TESTS= ES_TEMP_INSTANCE=1 "${MAKE_ARGS[@]}"
}
diag_isolation() {
	show_files output_iso/regression.diffs output_iso/log/postmaster.log
	[[ -f output_iso/log/postmaster.log ]] || show_files output_iso/log/initdb.log
}

suite_tap() {
	local flags="--timer"
	[[ "$ES_VERBOSE" == 1 ]] && flags+=" --verbose"
	es_as_postgres make installcheck REGRESS= ISOLATION= PROVE_FLAGS="$flags" "${MAKE_ARGS[@]}"
}
diag_tap() {
	show_files tmp_check/log/*
}

suite_pgtap() {
	shopt -s nullglob
	local files=(test/pgtap/*.sql)
	shopt -u nullglob
	if ((${#files[@]} == 0)); then
		echo "error: no pgTAP test files (test/pgtap/*.sql): a missing suite does not pass"
		return 1
	fi
	# Global, not local: the EXIT trap runs after the function returned.
	PGTAP_DIR="$PWD/tmp_check_pgtap"
	rm -rf "$PGTAP_DIR"
	trap 'es_stop_cluster "$PGTAP_DIR"' EXIT
	es_start_cluster "$PGTAP_DIR"
	es_as_postgres "$ES_PG_BIN/createdb" es_pgtap
	es_as_postgres "$ES_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d es_pgtap \
		-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION eventsource'
	local flags=(--timer --failures --comments)
	[[ "$ES_VERBOSE" == 1 ]] && flags=(--timer --verbose)
	local rc=0
	es_as_postgres pg_prove "${flags[@]}" -b "$ES_PG_BIN/psql" -U postgres -d es_pgtap \
		"${files[@]}" || rc=$?
	es_stop_cluster "$PGTAP_DIR"
	return "$rc"
}
diag_pgtap() {
	show_files tmp_check_pgtap/log/postgresql.log
	[[ -f tmp_check_pgtap/log/postgresql.log ]] || show_files tmp_check_pgtap/log/initdb.log
}

# The client examples (examples/run.sh): each one runs the Order scenario
# against a throwaway server, once directly and once through a PgBouncer in
# transaction pooling mode that run.sh starts (and stops) on a free port.
suite_examples() {
	# Global, not local: the EXIT trap runs after the function returned.
	EXAMPLES_DIR="$PWD/tmp_check_examples"
	rm -rf "$EXAMPLES_DIR"
	trap 'examples_cleanup' EXIT
	es_start_cluster "$EXAMPLES_DIR"
	es_as_postgres "$ES_PG_BIN/createdb" es_examples
	es_as_postgres "$ES_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d es_examples \
		-c 'CREATE EXTENSION eventsource'
	local rc=0
	PGDATABASE=es_examples bash examples/run.sh --pgbouncer-dir "$EXAMPLES_DIR/pgbouncer" || rc=$?
	examples_cleanup
	return "$rc"
}
# run.sh stops its PgBouncer itself; this is for a run.sh that was killed.
examples_cleanup() {
	local pid_file="$EXAMPLES_DIR/pgbouncer/pgbouncer.pid" pid
	if [[ -s "$pid_file" ]]; then
		pid="$(cat "$pid_file" 2>/dev/null)" || pid=""
		if [[ "$pid" =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]]; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	fi
	es_stop_cluster "$EXAMPLES_DIR"
}
diag_examples() {
	show_files tmp_check_examples/log/postgresql.log tmp_check_examples/pgbouncer/pgbouncer.log
}

# The SQL API fuzzer (test/fuzz/fuzz.py) against a throwaway server with
# workers running: about a minute here (ES_FUZZ_SECONDS, ES_FUZZ_SEED; longer
# runs: README, Tests).  It ends with "N passed, N failed" over its checks.
suite_fuzz() {
	# Global, not local: the EXIT trap runs after the function returned.
	FUZZ_DIR="$PWD/tmp_check_fuzz"
	rm -rf "$FUZZ_DIR"
	trap 'es_stop_cluster "$FUZZ_DIR"' EXIT
	es_start_cluster "$FUZZ_DIR" "statement_timeout = '10s'" "log_error_verbosity = verbose"
	es_as_postgres "$ES_PG_BIN/createdb" es_fuzz
	local rc=0
	es_as_postgres /usr/bin/python3 test/fuzz/fuzz.py --seed "${ES_FUZZ_SEED:-1}" \
		--seconds "${ES_FUZZ_SECONDS:-50}" --sessions 4 \
		--dsn "host=$PGHOST port=$PGPORT user=postgres dbname=es_fuzz" \
		--log "$FUZZ_DIR/log/postgresql.log" || rc=$?
	es_stop_cluster "$FUZZ_DIR"
	return "$rc"
}
diag_fuzz() {
	show_files tmp_check_fuzz/log/postgresql.log
}

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

# count_tests LOG: print "passed failed" counted from the runners' closing
# lines in LOG (pg_regress, prove/pg_prove, plain "N passed, N failed").
count_tests() {
	awk '
	/^[ #]*All [0-9]+ tests passed\./ { for (i = 1; i <= NF; i++) if ($i == "All") { p += $(i+1); break } }
	/^[ #]*[0-9]+ of [0-9]+ tests (failed|passed)/ {
		sub(/^[ #]*/, ""); split($0, w, " ")
		if (w[5] ~ /^failed/) { f += w[1]; p += w[3] - w[1] } else { p += w[1]; f += w[3] - w[1] }
	}
	/^Files=[0-9]+, Tests=[0-9]+/ { split($0, a, /[=,]/); tap_total = a[4] + 0; tap = 1; next }
	/^Failed [0-9]+\/[0-9]+ subtests/ { split($2, b, "/"); tap_failed += b[1] }
	/^Result: / {
		if (tap) { p += tap_total - tap_failed; f += tap_failed }
		tap = 0; tap_total = 0; tap_failed = 0
	}
	/^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed/ {
		line = $0; sub(/^[A-Za-z]+: /, "", line); split(line, c, /[ ,]+/)
		p += c[1]; f += c[3]
	}
	END { printf "%d %d\n", p, f }
	' "$1"
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
	es_drop_registry
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
es_registry_init
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
		read -r passed failed < <(count_tests "$log")
		note="$passed passed, $failed failed"
		if ((passed == 0 && failed == 0)); then
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
