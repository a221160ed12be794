# shellcheck shell=bash
# scripts/lib/suites.sh: the test suites scripts/test.sh runs, one function
# each, and what to show when one fails.  scripts/test.sh calls suite_NAME in
# a subshell with the copied tree as cwd and `set -e` on, after the build and
# `make install`.
#
#   suite       runs                                          servers
#   scripts     test/scripts/setup.sh (stub apt-get, dpkg)     none
#   regress     make installcheck: pg_regress (REGRESS)         temp instance, test/pg.conf
#   isolation   make installcheck: isolation (ISOLATION)        temp instance, test/pg.conf
#   tap         make installcheck: prove test/t/*.pl            TAP nodes (test/perl/EsTest.pm)
#   pgtap       pg_prove test/pgtap/*.sql                       es_start_cluster
#   examples    examples/run.sh (asyncpg, psycopg, node; PgBouncer)  es_start_cluster
#   fuzz        test/fuzz/fuzz.py                               es_start_cluster
#
# The one-line result: every suite ends its output with
#     result: N passed, M failed
# (es_run_counted prints it from its runner's own closing line) and returns
# its runner's exit status; scripts/test.sh reads that line and nothing else.
#
# Adding a suite: write suite_NAME (run its runner through es_run_counted),
# optionally diag_NAME (prints diagnostics when it fails), and add NAME to
# SUITES in scripts/test.sh.

# The runners' closing lines, each read by one counter that prints "P F".
count_pg_regress() { # "All 13 tests passed." or "2 of 13 tests failed."
	sed -nE 's/^[ #]*All ([0-9]+) tests passed\..*/\1 0/p
		s/^[ #]*([0-9]+) of ([0-9]+) tests failed.*/\2 \1/p' "$1" |
		awk '{ p += $1 - ($2 > 0 ? $2 : 0); f += $2 } END { printf "%d %d\n", p, f }'
}
count_prove() { # "Files=3, Tests=42, …" and, when some failed, "Failed 2/10 subtests"
	awk '/^Files=[0-9]+, Tests=[0-9]+/ { split($0, a, /[=,]/); t += a[4] }
		/^Failed [0-9]+\/[0-9]+ subtests/ { split($2, b, "/"); f += b[1] }
		END { printf "%d %d\n", t - f, f }' "$1"
}
count_plain() { # "N passed, M failed" (setup.sh, examples/run.sh, fuzz.py), maybe after "name: "
	sed -nE 's/^([a-z]+: )?([0-9]+) passed, ([0-9]+) failed$/\2 \3/p' "$1" | tail -n 1
}

# es_run_counted COUNTER CMD...: run CMD (its output shown and kept), then
# print "result: N passed, M failed" from COUNTER over that output; return
# CMD's status.
es_run_counted() {
	local counter="$1" out rc=0 passed failed
	shift
	out="$(mktemp "${LOGDIR:-/tmp}/runner.XXXXXXXX")" || es_die "mktemp failed"
	"$@" 2>&1 | tee "$out" || rc="${PIPESTATUS[0]}"
	read -r passed failed < <("$counter" "$out") || true # nothing counted: 0 0
	rm -f "$out"
	echo "result: ${passed:-0} passed, ${failed:-0} failed"
	return "$rc"
}

MAKE_ARGS=(PG_CONFIG="$ES_PG_CONFIG")

# As postgres, against stubs only: nothing on the machine is installed or
# looked at (test/scripts/setup.sh).
suite_scripts() {
	es_run_counted count_plain es_as_postgres bash test/scripts/setup.sh
}

# ES_TEMP_INSTANCE=1: pg_regress and isolation start a private server
# configured by test/pg.conf (Makefile); without it `make installcheck` uses
# the server PGHOST/PGPORT name, as a contributor runs it.
suite_regress() {
	es_run_counted count_pg_regress es_as_postgres make installcheck ISOLATION= TAP_TESTS= \
		ES_TEMP_INSTANCE=1 "${MAKE_ARGS[@]}"
}
diag_regress() {
	# pg_regress writes its temp instance's logs to ./log (its outputdir).
	show_files regression.diffs log/postmaster.log
	[[ -f log/postmaster.log ]] || show_files log/initdb.log
}

suite_isolation() {
	es_run_counted count_pg_regress es_as_postgres make installcheck REGRESS= TAP_TESTS= \
		ES_TEMP_INSTANCE=1 "${MAKE_ARGS[@]}"
}
diag_isolation() {
	show_files output_iso/regression.diffs output_iso/log/postmaster.log
	[[ -f output_iso/log/postmaster.log ]] || show_files output_iso/log/initdb.log
}

suite_tap() {
	local flags="--timer"
	[[ "$ES_VERBOSE" == 1 ]] && flags+=" --verbose"
	es_run_counted count_prove es_as_postgres make installcheck REGRESS= ISOLATION= \
		PROVE_FLAGS="$flags" "${MAKE_ARGS[@]}"
}
diag_tap() {
	show_files tmp_check/log/*
}

# suite_server NAME [CONF_LINE...]: a throwaway server in ./tmp_check_NAME
# with database es_NAME, stopped when the suite's subshell exits (also
# when it is interrupted).  Exports PGHOST PGPORT PGUSER; sets SUITE_DIR.
suite_server() {
	# Global, not local: the EXIT trap runs after the function returned.
	SUITE_DIR="$PWD/tmp_check_$1"
	local db="es_$1"
	shift
	rm -rf "$SUITE_DIR"
	trap 'es_stop_cluster "$SUITE_DIR"' EXIT
	es_start_cluster "$SUITE_DIR" "$@"
	es_as_postgres "$ES_PG_BIN/createdb" "$db"
}

suite_pgtap() {
	shopt -s nullglob
	local files=(test/pgtap/*.sql)
	shopt -u nullglob
	if ((${#files[@]} == 0)); then
		echo "error: no pgTAP test files (test/pgtap/*.sql): a missing suite does not pass"
		return 1
	fi
	suite_server pgtap
	es_as_postgres "$ES_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d es_pgtap \
		-c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION eventsource'
	local flags=(--timer --failures --comments)
	[[ "$ES_VERBOSE" == 1 ]] && flags=(--timer --verbose)
	es_run_counted count_prove es_as_postgres pg_prove "${flags[@]}" -b "$ES_PG_BIN/psql" \
		-U postgres -d es_pgtap "${files[@]}"
}
diag_pgtap() {
	show_files tmp_check_pgtap/log/postgresql.log
	[[ -f tmp_check_pgtap/log/postgresql.log ]] || show_files tmp_check_pgtap/log/initdb.log
}

# The client examples (examples/run.sh): each one runs the Order scenario
# against a throwaway server, once directly and once through a PgBouncer in
# transaction pooling mode that run.sh starts (and stops).
suite_examples() {
	suite_server examples
	trap 'examples_cleanup' EXIT
	es_as_postgres "$ES_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d es_examples \
		-c 'CREATE EXTENSION eventsource'
	PGDATABASE=es_examples es_run_counted count_plain \
		bash examples/run.sh --pgbouncer-dir "$SUITE_DIR/pgbouncer"
}
# run.sh stops its PgBouncer itself; this is for a run.sh that was killed.
examples_cleanup() {
	local pid_file="$SUITE_DIR/pgbouncer/pgbouncer.pid" pid
	if [[ -s "$pid_file" ]]; then
		pid="$(cat "$pid_file" 2>/dev/null)" || pid=""
		if [[ "$pid" =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == pgbouncer ]]; then
			kill -TERM "$pid" 2>/dev/null || true
		fi
	fi
	es_stop_cluster "$SUITE_DIR"
}
diag_examples() {
	show_files tmp_check_examples/log/postgresql.log tmp_check_examples/pgbouncer/pgbouncer.log
}

# The SQL API fuzzer (test/fuzz/fuzz.py) against a throwaway server with
# workers running: about a minute here (ES_FUZZ_SECONDS, ES_FUZZ_SEED; longer
# runs: README, Tests).  It ends with "N passed, N failed" over its checks.
suite_fuzz() {
	suite_server fuzz "statement_timeout = '10s'" "log_error_verbosity = verbose"
	es_run_counted count_plain es_as_postgres /usr/bin/python3 test/fuzz/fuzz.py \
		--seed "${ES_FUZZ_SEED:-1}" --seconds "${ES_FUZZ_SECONDS:-50}" --sessions 4 \
		--dsn "host=$PGHOST port=$PGPORT user=postgres dbname=es_fuzz" \
		--log "$SUITE_DIR/log/postgresql.log"
}
diag_fuzz() {
	show_files tmp_check_fuzz/log/postgresql.log
}
