# shellcheck shell=bash
# scripts/lib/build.sh: the build: copy the repository to a postgres-owned
# directory under /tmp, compile it with warnings as errors, install it into
# PostgreSQL 15 (or the private copy ES_PG_ROOT names).
#
#   es_copy_tree [SRC]     copy the repository to a fresh /tmp dir owned by
#                          postgres; prints the path
#   es_build_install DIR   make clean; make ES_WERROR=1 (as postgres); make install (root)
#
# Why a copy: the tests run as postgres, so the tree must be writable by
# postgres and every parent traversable (a clone under /root is not).

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

