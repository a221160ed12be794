# shellcheck shell=bash
# test/bench/pairs.sh: paired pgbench measurements, shared by run.sh and
# run_scale.sh (sourced after cluster.sh).  The caller defines PGBIN, CONN,
# HERE, SLICE (seconds per slice), ROUNDS, STREAMS, say(), psql_q(), and
# FAILED=0 plus the associative arrays TPS, RATIO and SPREAD that pair()
# fills in.  Optionally the arrays PAIR_EXT_ARGS and PAIR_BASE_ARGS: pgbench
# arguments of one side only (e.g. -U ROLE, or a -D that overrides the
# pair's), set around a pair() call.

PAIR_EXT_ARGS=()
PAIR_BASE_ARGS=()

seq_last() { psql_q -d bench -c "SELECT last_value FROM $1"; }

# slice SCRIPT CLIENTS SYNC EVENTS_PER_CALL SEQUENCE|- [pgbench -D args...]
# One pgbench run of SLICE seconds; prints its tps, or fails.
slice() {
	local script=$1 clients=$2 sync=$3 per_call=$4 seq=$5
	shift 5
	local jobs=1 out rc=0 tps xacts before=0 after
	[ "$clients" -gt 1 ] && jobs=2
	[ "$seq" != - ] && before=$(seq_last "$seq")
	out=$(PGOPTIONS="-c synchronous_commit=$sync" "$PGBIN/pgbench" "${CONN[@]}" -n -M prepared \
		-T "$SLICE" -c "$clients" -j "$jobs" -f "$HERE/$script" \
		-D nclients="$clients" -D streams="$STREAMS" "$@" bench 2>&1) || rc=$?
	tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)
	xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
	if [ "$rc" != 0 ] || [ -z "$tps" ] || [ -z "$xacts" ] ||
		grep -q 'aborted\|^number of failed transactions: [1-9]' <<<"$out"; then
		say "$out"
		say "!! $script failed (pgbench exit $rc)"
		return 1
	fi
	# the rows must really be there: positions handed out = calls x events
	if [ "$seq" != - ]; then
		after=$(seq_last "$seq")
		if [ $((after - before)) != $((xacts * per_call)) ]; then
			say "!! $script: $xacts calls x $per_call events, but $seq moved by $((after - before))"
			return 1
		fi
	fi
	echo "$tps"
}

# pair KEY EXT_SCRIPT BASE_SCRIPT CLIENTS SYNC EVENTS_PER_CALL SEQ_EXT|- SEQ_BASE|- [pgbench -D args...]
# ROUNDS rounds of one slice each, alternating which side goes first (ABBA),
# so that a drift of the machine during the pair hits both sides alike.
pair() {
	local key=$1 ext=$2 base=$3 clients=$4 sync=$5 per_call=$6 seq_ext=$7 seq_base=$8
	shift 8
	local r e b exts=() bases=() ratios=()
	say "-- $key: $ext vs $base, $clients client(s), synchronous_commit=$sync, $ROUNDS x ${SLICE}s each"
	psql_q -d bench -c "CHECKPOINT"
	for ((r = 1; r <= ROUNDS; r++)); do
		if ((r % 2)); then
			e=$(slice "$ext" "$clients" "$sync" "$per_call" "$seq_ext" "$@" "${PAIR_EXT_ARGS[@]}") &&
				b=$(slice "$base" "$clients" "$sync" "$per_call" "$seq_base" "$@" "${PAIR_BASE_ARGS[@]}") || break
		else
			b=$(slice "$base" "$clients" "$sync" "$per_call" "$seq_base" "$@" "${PAIR_BASE_ARGS[@]}") &&
				e=$(slice "$ext" "$clients" "$sync" "$per_call" "$seq_ext" "$@" "${PAIR_EXT_ARGS[@]}") || break
		fi
		say "   round $r: eventsource $e, baseline $b calls/s"
		exts+=("$e")
		bases+=("$b")
		ratios+=("$(awk -v a="$e" -v b="$b" 'BEGIN { printf "%.4f", a / b }')")
	done
	if [ "$r" -le "$ROUNDS" ]; then
		TPS[${key}_ext]=ERR
		TPS[${key}_base]=ERR
		FAILED=1
		return 0
	fi
	TPS[${key}_ext]=$(median "${exts[@]}")
	TPS[${key}_base]=$(median "${bases[@]}")
	RATIO[$key]=$(median "${ratios[@]}")
	SPREAD[$key]=$(printf '%s\n' "${ratios[@]}" | sort -g |
		awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }')
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

