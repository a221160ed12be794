# shellcheck shell=bash
# scripts/common.sh: the scripts' library, in one `source`.  Scripts that set
# up a machine, build, or start a throwaway server (scripts/demo.sh,
# scripts/test.sh, examples/run.sh, test/bench/*.sh) start with
#
#     . "$(dirname "${BASH_SOURCE[0]}")/common.sh"
#
# which sources, in this order (each file's header says what it holds):
#   lib/base.sh      locale, PostgreSQL 15's paths (ES_PG_ROOT), messages,
#                    the ERR trap, es_need_root, es_as_postgres
#   lib/packages.sh  ES_PACKAGES (every Debian package needed) and
#                    es_install_packages, the only caller of apt-get
#   lib/build.sh     es_copy_tree, es_build_install
#   lib/cluster.sh   throwaway servers: es_start_cluster, es_stop_cluster, …
# The test suites themselves are in scripts/lib/suites.sh (scripts/test.sh).
#
# Sourcing it sets an ERR trap (lib/base.sh): a script that stops on an
# unexpected failure under `set -e` says where and why in one line, never
# silently.  Call a function that prints on stdout and may es_die as
# x="$(f)" as usual: es_die's status tells the trap it was said.

# Guard against double sourcing.
if [[ -n "${ES_COMMON_SOURCED:-}" ]]; then
	return 0
fi
ES_COMMON_SOURCED=1

# shellcheck source=scripts/lib/base.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/base.sh"
# shellcheck source=scripts/lib/packages.sh
. "$ES_REPO_ROOT/scripts/lib/packages.sh"
# shellcheck source=scripts/lib/build.sh
. "$ES_REPO_ROOT/scripts/lib/build.sh"
# shellcheck source=scripts/lib/cluster.sh
. "$ES_REPO_ROOT/scripts/lib/cluster.sh"
