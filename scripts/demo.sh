#!/usr/bin/env bash
# scripts/demo.sh: THE setup-and-demo command.  As root, from any directory:
#
#   bash scripts/demo.sh           # set up, run demo/demo.sql, clean up
#   bash scripts/demo.sh --keep    # leave the server running and say how to connect
#
# It installs the Debian packages the project needs (only when something is
# missing), copies the repository to /tmp, builds it with warnings as errors,
# installs the extension, starts a throwaway server (eventsource preloaded,
# unix socket only), creates database `demo`, runs demo/demo.sql with psql and
# prints its output.  Without --keep the server and its files are removed at
# the end, also on failure or Ctrl-C.
#
# The pieces: scripts/lib/packages.sh installs, scripts/lib/build.sh builds,
# scripts/lib/cluster.sh starts the server (settings: test/pg.conf, like
# every test server).  Extra server settings:
#   ES_EXTRA_CONF="synchronous_commit = off" bash scripts/demo.sh

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=scripts/common.sh
. "$SCRIPT_DIR/common.sh"

KEEP=0
while (($#)); do
	case "$1" in
	--keep) KEEP=1 ;;
	-h | --help)
		sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $1 (usage: bash scripts/demo.sh [--keep])" >&2
		exit 2
		;;
	esac
	shift
done

TREE=""
CLUSTER=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ "$KEEP" == 1 && "$rc" == 0 ]]; then
		es_started_clusters_drop
		exit 0
	fi
	if [[ "$rc" != 0 && -n "$CLUSTER" && -f "$CLUSTER/log/postgresql.log" ]]; then
		echo "----- last lines of the server log -----" >&2
		tail -n 30 "$CLUSTER/log/postgresql.log" >&2
	fi
	es_stop_all_clusters
	es_started_clusters_drop
	[[ -n "$CLUSTER" ]] && rm -rf "$CLUSTER"
	[[ -n "$TREE" ]] && rm -rf "$TREE"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

es_need_root
es_started_clusters_init
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGDATA PGOPTIONS PGSERVICE \
	PGSERVICEFILE 2>/dev/null || true

es_install_packages

es_log "copying $ES_REPO_ROOT"
TREE="$(es_copy_tree "$ES_REPO_ROOT")"
[[ -f "$TREE/demo/demo.sql" ]] || es_die "demo/demo.sql is missing"

es_log "build (ES_WERROR=1) and install"
# In a subshell: es_build_install's own es_die must not end the demo with its
# message inside build.log (which the cleanup removes).
(es_build_install "$TREE") >"$TREE/build.log" 2>&1 || {
	rc=$?
	cat "$TREE/build.log" >&2 # ends with es_build_install's error line, if it had one
	((rc == ES_REPORTED)) && exit 1
	es_die "the build failed (warnings are errors: ES_WERROR=1): see the messages above"
}

CLUSTER="$(mktemp -d /tmp/eventsource-demo.XXXXXXXX)" || es_die "mktemp failed"
es_start_cluster "$CLUSTER"
es_as_postgres "$ES_PG_BIN/createdb" demo || es_die "createdb demo failed: see the message above"

es_log "psql -X -v ON_ERROR_STOP=1 -d demo -f demo/demo.sql"
echo
(cd "$TREE" && es_as_postgres "$ES_PG_BIN/psql" -X -v ON_ERROR_STOP=1 -d demo -f demo/demo.sql) ||
	es_die "demo/demo.sql failed"
echo

if [[ "$KEEP" == 1 ]]; then
	# The copied tree is no longer needed: the extension is installed.
	rm -rf "$TREE"
	TREE=""
	cat <<EOF
The demo server keeps running (data: $CLUSTER/data, log: $CLUSTER/log/postgresql.log).
Connect:
    psql -h $CLUSTER -p $PGPORT -U postgres demo
or:
    export PGHOST=$CLUSTER PGPORT=$PGPORT PGUSER=postgres; psql demo
Stop and remove it:
    (cd / && runuser -u postgres -- $ES_PG_BIN/pg_ctl -D $CLUSTER/data stop) && rm -rf $CLUSTER
EOF
else
	es_log "demo done; stopping and removing the server"
fi
