#!/usr/bin/python3
"""test/fuzz/fuzz.py: a seeded fuzzer of eventsource's SQL API.

Throws random and hostile arguments at every function of schema eventsource
(found in pg_proc, so new ones are fuzzed too) from several sessions at once,
while subscription workers run hostile handlers (long errors, lifecycle calls
on their own subscription, erasures, slow calls), for a bounded time.  Then it checks:

  - the server is up and accepts connections;
  - no call ended in an internal error (XX000, XX001, XX002) or a lost
    connection (a crashed backend);
  - the server log (--log) has no PANIC, TRAP, "terminated by signal" nor,
    with log_error_verbosity = verbose, an internal error of a worker;
  - the store's invariants: every stream's versions are dense from 1 (from
    the first version the cleanup worker kept), every position is unique and
    at or below the sequence, every subscription has one partition row per
    partition, every dead letter is an event of the log (or one the cleanup
    removed).

It prints one line per check and closes with "N passed, N failed"; the exit
code is 1 if anything failed.  Same seed, same sequence of calls per session
(timing still differs: the workers and the sessions interleave freely).

    /usr/bin/python3 test/fuzz/fuzz.py --seed 7 --seconds 600 [--sessions 4] \
        [--dsn "host=... port=... dbname=..."] [--log path/to/postgresql.log]

Needs a server with the library preloaded (shared_preload_libraries =
'eventsource', eventsource.max_workers >= 8) and a database it may fill.
Only Debian's python3-psycopg.
"""

import argparse
import json
import random
import re
import sys
import threading
import time

import psycopg

INTERNAL = {"XX000", "XX001", "XX002"}
NO = object()

SETUP = r"""
CREATE EXTENSION IF NOT EXISTS eventsource;
CREATE SCHEMA IF NOT EXISTS fz;
CREATE TABLE IF NOT EXISTS fz.seen (sub text, pos bigint);
-- a handler that does what the event's data asks
CREATE OR REPLACE FUNCTION fz.h(e eventsource.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF e.data ? 'fail' THEN
    RAISE EXCEPTION '%', repeat(coalesce(e.data->>'fail', 'x'), 1 + (e.global_position % 9000)::int)
      USING ERRCODE = '42P01';
  ELSIF e.data ? 'call' THEN
    EXECUTE e.data->>'call';
  ELSIF e.data ? 'sleep' THEN
    PERFORM pg_sleep(least((e.data->>'sleep')::float8, 0.2));
  END IF;
  INSERT INTO fz.seen VALUES (current_setting('eventsource.subscription'), e.global_position);
END $$;
CREATE OR REPLACE FUNCTION fz.hb(es eventsource.events[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE e eventsource.events;
BEGIN
  FOREACH e IN ARRAY es LOOP PERFORM fz.h(e); END LOOP;
END $$;
CREATE OR REPLACE FUNCTION fz.wrong(x integer) RETURNS integer LANGUAGE sql AS 'SELECT x';
"""

NAMES = ["fz_a", "fz_b", "fz_c", "fz_d"]
HANDLERS = ["fz.h(eventsource.events)", "fz.hb(eventsource.events[])",
            "fz.wrong(integer)", "pg_catalog.now()",
            "pg_catalog.int4_avg_accum(bigint[],integer)", "no_such(eventsource.events)"]


class Gen:
    """Random SQL literals, by type, biased towards edge cases."""

    def __init__(self, rnd):
        self.r = rnd

    def text(self):
        r = self.r
        return r.choice([
            lambda: None, lambda: "", lambda: "Order-1", lambda: "Order-" + str(r.randint(1, 50)),
            lambda: r.choice(NAMES), lambda: r.choice(NAMES) + "/1", lambda: "x" * r.choice([250, 251, 255, 256, 1000, 1001, 9000]),
            lambda: "\u00e9" * r.randint(1, 600), lambda: "a-b-c-" * r.randint(1, 5),
            lambda: "beginning", lambda: "end", lambda: "checkpoint", lambda: str(r.randint(-5, 10 ** 20)),
            lambda: "every_event", lambda: "every_batch", lambda: "periodic", lambda: "'; DROP TABLE x; --",
            lambda: "\t\n ", lambda: "%s%n%x", lambda: "-", lambda: "Order",
        ])()

    def bigint(self):
        return self.r.choice([None, 0, 1, -1, -2, -3, 2, 5, 100, 2 ** 31, 2 ** 63 - 1, -2 ** 63,
                              self.r.randint(-10, 10 ** 6)])

    def integer(self):
        return self.r.choice([None, 0, 1, -1, 2, 3, 12, 13, 100, 1000, 10000, 10001, 100001,
                              2 ** 31 - 1, -2 ** 31, self.r.randint(-10, 2000)])

    def boolean(self):
        return self.r.choice([None, True, False])

    def interval(self):
        return self.r.choice([None, "0", "1 ms", "0.5 ms", "-1 s", "10 ms", "1 s", "7 days", "8 days",
                              "1 mon", "1 day -24 hours", "178000000 years", "100 ms"])

    def uuid(self):
        return self.r.choice([None, "00000000-0000-0000-0000-000000000000",
                              "01a23b1b-4c7d-718f-8504-ed2e292ac34a", str(self.r.getrandbits(128) | 1 << 127)[:0] or
                              "%032x" % self.r.getrandbits(128)])

    def event(self):
        r = self.r
        ev = {"type": r.choice(["A", "B", "Fail", "", None, 1, "T" * 300])}
        data = r.choice([{}, {"fail": r.choice(["x", "\u00e9", "no table "])}, {"sleep": 0.05},
                         {"call": r.choice([
                             "SELECT eventsource.reset_subscription(current_setting('eventsource.subscription'), 0)",
                             "SELECT eventsource.pause_subscription(current_setting('eventsource.subscription'))",
                             "SELECT eventsource.drop_subscription(current_setting('eventsource.subscription'))",
                             "SELECT eventsource.reset_subscription('fz_a', 0)",
                             "SELECT eventsource.retry_dead_letters('fz_b')",
                             "SELECT eventsource.erase_stream('Order-1', '{subject_id}')",
                             "SELECT eventsource.erase_by_metadata('subject_id', 's-1', NULL, 5)"])},
                         {"big": "y" * r.choice([10, 5000, 100000])}, [], None, "str"])
        if r.random() < 0.95:
            ev["data"] = data
        if r.random() < 0.3:
            ev["metadata"] = r.choice([{}, {"correlation_id": "c"}, [], "m", None,
                                       {"subject_id": r.choice(["s-1", "s-2"]), "ip": "10.0.0.1"}])
        if r.random() < 0.2:
            ev["id"] = r.choice(["not-a-uuid", "%032x" % r.getrandbits(128), None])
        if r.random() < 0.05:
            ev["extra"] = 1
        return ev

    def jsonb(self):
        r = self.r
        c = r.random()
        if c < 0.6:
            return json.dumps([self.event() for _ in range(r.choice([1, 1, 2, 5, 0, 30]))])
        return r.choice([None, "{}", "[]", "null", "1", '"s"', '{"a": ' * 50 + "1" + "}" * 50,
                         json.dumps({"k": "v" * r.choice([1, 2000000])})])

    def text_array(self):
        r = self.r
        return r.choice([None, [], ["A"], ["A", "B"], ["Order"], [None], ["A", None],
                         "{{A},{B}}", ["T%d" % i for i in range(r.choice([9, 10000, 10001, 50000]))]])

    def bigint_array(self):
        return self.r.choice([None, [], [1], [1, None], "{{1},{2}}", list(range(1000))])

    def regprocedure(self):
        return self.r.choice(HANDLERS + [None])

    def sane(self, pname):
        """A valid value for a parameter of this name, or the marker NO."""
        r = self.r
        pool = {
            "stream_id": lambda: r.choice(["Order-", "Cart-", "fz-"]) + str(r.randint(1, 30)),
            "expected_version": lambda: r.choice([-1, -1, -1, 0, -2, r.randint(1, 5)]),
            "events": lambda: json.dumps([{"type": r.choice(["A", "B", "Fail"]),
                                           "data": r.choice([{}, {}, {"fail": "x"}, {"sleep": 0.02}, {"n": 1}])}
                                          for _ in range(r.randint(1, 5))]),
            "event_type": lambda: r.choice(["A", "B", "Fail"]),
            "data": lambda: r.choice(["{}", '{"n": 1}', '{"fail": "\u00e9"}']),
            "metadata": lambda: "{}",
            "name": lambda: r.choice(NAMES + ["cp-1", "cp-2"]),
            "position": lambda: r.randint(0, 200),
            "after_position": lambda: r.randint(0, 200),
            "max_count": lambda: r.choice([1, 10, 1000]),
            "from_version": lambda: r.choice([None, 1, 2]),
            "backwards": lambda: r.choice([True, False]),
            "handler": lambda: r.choice(HANDLERS[:2]),
            "start_from": lambda: r.choice(["beginning", "end", "checkpoint", "3"]),
            "batch_size": lambda: r.choice([1, 10, 100]),
            "checkpoint_strategy": lambda: r.choice(["every_event", "every_batch", "periodic"]),
            "partitions": lambda: r.choice([1, 1, 2]),
            "schema_version": lambda: 1,
            "stream_version": lambda: r.randint(1, 5),
            "state": lambda: '{"s": 1}',
            "timeout": lambda: "100 ms",
            "checkpoint_interval": lambda: r.choice(["100 ms", "1 s"]),
            "processing_timeout": lambda: r.choice(["200 ms", "5 s"]),
            "retry_backoff": lambda: r.choice(["0", "10 ms"]),
            "circuit_breaker_reset": lambda: "200 ms",
            "max_retries": lambda: r.choice([0, 1, 2]),
            "continue_on_error": lambda: r.choice([True, True, False]),
            "circuit_breaker_threshold": lambda: r.choice([0, 2, 5]),
            "event_types": lambda: r.choice([None, ["A", "Fail"], ["B"]]),
            "categories": lambda: r.choice([None, ["Order"], ["fz", "Cart"]]),
            "ids": lambda: None,
            "metadata_keys": lambda: r.choice([None, [], ["ip"], ["subject_id", "ip"]]),
            "key": lambda: "subject_id",
            "value": lambda: r.choice(["s-1", "s-2"]),
            "max_events": lambda: r.choice([1, 10, 1000]),
        }
        return pool[pname]() if pname in pool else NO

    def value(self, typ):
        return {
            "text": self.text, "bigint": self.bigint, "integer": self.integer,
            "boolean": self.boolean, "interval": self.interval, "uuid": self.uuid,
            "jsonb": self.jsonb, "text[]": self.text_array, "bigint[]": self.bigint_array,
            "regprocedure": self.regprocedure,
        }.get(typ, lambda: None)()


def literal(value, typ):
    """An SQL literal of type typ (psycopg is not used for quoting: some values
    are deliberately not of the type, e.g. a multi-dimensional array as text)."""
    if value is None:
        return "NULL::" + typ
    if isinstance(value, bool):
        return ("true" if value else "false") + "::" + typ
    if isinstance(value, list):
        if typ == "text[]":
            items = ",".join("NULL" if v is None else '"%s"' % str(v).replace('"', '\\"') for v in value)
        else:
            items = ",".join("NULL" if v is None else str(v) for v in value)
        value = "{" + items + "}"
    return "'" + str(value).replace("'", "''") + "'::" + typ


def functions(conn):
    rows = conn.execute("""
        SELECT p.proname, pg_catalog.oidvectortypes(p.proargtypes), p.prorettype::regtype::text, p.proretset,
               coalesce(p.proargnames, '{}')
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'eventsource'::regnamespace ORDER BY p.oid""").fetchall()
    out = []
    for name, args, ret, retset, argnames in rows:
        types = [a.strip() for a in args.split(",")] if args else []
        names = list(argnames) + [""] * (len(types) - len(argnames))
        out.append((name, list(zip(types, names)), ret, retset))
    return out


class Session(threading.Thread):
    def __init__(self, dsn, seed, deadline, funcs, stats):
        super().__init__(daemon=True)
        self.dsn, self.deadline, self.funcs, self.stats = dsn, deadline, funcs, stats
        self.rnd = random.Random(seed)
        self.gen = Gen(self.rnd)

    def run(self):
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute("SET statement_timeout = '3s'")
        conn.execute("SET lock_timeout = '2s'")
        while time.time() < self.deadline:
            name, params, ret, retset = self.rnd.choice(self.funcs)
            # half the calls are mostly valid, to get past the argument checks
            sane = self.rnd.random() < 0.5
            values = []
            for typ, pname in params:
                v = self.gen.sane(pname) if sane and self.rnd.random() < 0.9 else NO
                values.append(literal(self.gen.value(typ) if v is NO else v, typ))
            args = ", ".join(values)
            call = "eventsource.%s(%s)" % (name, args)
            sql = ("SELECT count(*) FROM %s" if retset else "SELECT %s") % call
            if self.rnd.random() < 0.1:
                # inside a transaction block, sometimes rolled back
                sql = "BEGIN; %s; %s" % (sql, self.rnd.choice(["COMMIT", "ROLLBACK"]))
            try:
                conn.execute(sql)
                self.stats.note(name, "ok")
            except psycopg.OperationalError as e:
                if conn.closed or conn.broken:
                    self.stats.fail("lost connection after %s: %s" % (sql[:300], e))
                    return
                self.stats.note(name, e.sqlstate or "?")
            except psycopg.Error as e:
                state = e.sqlstate or "?"
                if state in INTERNAL:
                    self.stats.fail("%s from %s: %s" % (state, sql[:300], e))
                self.stats.note(name, state)
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    pass
        conn.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}
        self.failures = []

    def note(self, name, state):
        with self.lock:
            self.calls.setdefault(name, {}).setdefault(state, 0)
            self.calls[name][state] += 1

    def fail(self, msg):
        with self.lock:
            self.failures.append(msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--sessions", type=int, default=4)
    ap.add_argument("--dsn", default="")
    ap.add_argument("--log", help="the server's log file, checked for crashes")
    opts = ap.parse_args()

    rnd = random.Random(opts.seed)
    log_start = 0
    if opts.log:
        with open(opts.log, "rb") as f:
            log_start = f.seek(0, 2)
    admin = psycopg.connect(opts.dsn, autocommit=True)
    admin.execute("SET client_min_messages = warning")
    admin.execute(SETUP)
    for name in NAMES:
        admin.execute("SELECT eventsource.drop_subscription(s.name) FROM eventsource.subscriptions s WHERE s.name = %s", (name,))
    admin.execute("""SELECT eventsource.create_subscription('fz_a', 'fz.h(eventsource.events)',
                       max_retries => 1, retry_backoff => '10 ms', circuit_breaker_threshold => 3,
                       circuit_breaker_reset => '200 ms', processing_timeout => '1 s')""")
    admin.execute("""SELECT eventsource.create_subscription('fz_b', 'fz.hb(eventsource.events[])',
                       batch_size => 7, max_retries => 0, partitions => 2, checkpoint_strategy => 'periodic',
                       checkpoint_interval => '100 ms')""")
    admin.execute("""SELECT eventsource.create_subscription('fz_c', 'fz.h(eventsource.events)',
                       max_retries => 0, continue_on_error => false, event_types => ARRAY['A', 'Fail'])""")
    funcs = functions(admin)
    print("fuzzing %d functions of schema eventsource for %.0f s with %d sessions, seed %d"
          % (len(funcs), opts.seconds, opts.sessions, opts.seed))
    sys.stdout.flush()

    stats = Stats()
    deadline = time.time() + opts.seconds
    sessions = [Session(opts.dsn, rnd.getrandbits(64), deadline, funcs, stats) for _ in range(opts.sessions)]
    for s in sessions:
        s.start()
    for s in sessions:
        s.join(opts.seconds + 60)

    total = sum(sum(v.values()) for v in stats.calls.values())
    print("%d calls:" % total)
    for name in sorted(stats.calls):
        states = stats.calls[name]
        print("  %-22s %s" % (name, " ".join("%s=%d" % kv for kv in sorted(states.items()))))

    checks = []

    def check(ok, what, detail=""):
        checks.append(ok)
        print("%s - %s%s" % ("ok" if ok else "not ok", what, (": " + detail) if detail and not ok else ""))

    check(not stats.failures, "no internal error (XX000-XX002) and no lost connection",
          "; ".join(stats.failures[:5]))
    check(not any(s.is_alive() for s in sessions), "every session finished in time")
    try:
        conn = psycopg.connect(opts.dsn, autocommit=True, connect_timeout=10)
        up = conn.execute("SELECT 1").fetchone()[0] == 1
    except psycopg.Error as e:
        up, conn = False, None
        print("# %s" % e)
    check(up, "the server is up")
    if opts.log:
        bad = []
        # with log_error_verbosity = verbose, errors show their SQLSTATE
        crash = re.compile(r"PANIC:|TRAP:|was terminated by signal|(ERROR|FATAL):  XX00[0-2]:")
        with open(opts.log, "rb") as f:
            f.seek(log_start)
            for line in f:
                line = line[:2000].decode("utf-8", "replace")
                if crash.search(line):
                    bad.append(line.strip())
        check(not bad, "no crash in the server log", "; ".join(bad[:3]))
    if conn is not None:
        def q(sql):
            return conn.execute(sql).fetchone()[0]
        # events keep 1, 2, ... n; a stream's lifecycle operations (system
        # events, 1.1) take -1, -2, ... in the same stream (docs/lifecycle.md);
        # the cleanup worker removes hidden versions 1 .. cleaned_through
        # (never more than hidden_through: a constraint), so the stored ones
        # are dense from cleaned_through + 1.  A stream is (tenant, stream
        # id): the data functions' overloads name tenants the fuzzer made.
        check(q("""SELECT count(*) FROM (
                     SELECT min(e.stream_version) AS lo, max(e.stream_version) AS hi, count(*) AS n,
                            coalesce(max(l.cleaned_through), 0) AS cleaned
                       FROM eventsource.events e
                       LEFT JOIN eventsource.stream_lifecycle l USING (tenant_id, stream_id)
                      WHERE e.stream_version >= 1 GROUP BY e.tenant_id, e.stream_id) x
                    WHERE lo <> cleaned + 1 OR hi - cleaned <> n""") == 0,
              "every stream's versions are dense from 1 (from the first the cleanup kept)")
        check(q("""SELECT count(*) FROM (SELECT stream_id FROM eventsource.events
                    WHERE stream_version < 1 GROUP BY tenant_id, stream_id
                    HAVING max(stream_version) <> -1 OR min(stream_version) <> -count(*)) x""") == 0,
              "every stream's system events are dense from -1")
        print("(the log holds events of %d tenants)" % q("SELECT count(DISTINCT tenant_id) FROM eventsource.events"))
        check(q("SELECT count(*) = count(DISTINCT global_position) FROM eventsource.events"),
              "every position is unique")
        check(q("""SELECT coalesce(max(global_position), 0) <= (SELECT last_value FROM eventsource.events_global_position_seq)
                     FROM eventsource.events"""), "no position above the sequence")
        check(q("""SELECT count(*) FROM eventsource.subscriptions s
                    WHERE s.partitions <> (SELECT count(*) FROM eventsource.subscription_partitions p
                                            WHERE p.subscription = s.name)""") == 0,
              "every subscription has one partition row per partition")
        check(q("""SELECT count(*) FROM eventsource.dead_letters d
                    WHERE NOT EXISTS (SELECT FROM eventsource.events e
                                       WHERE e.global_position = d.global_position
                                         AND e.event_id = d.event_id)
                      AND NOT EXISTS (SELECT FROM eventsource.stream_lifecycle l
                                       WHERE l.tenant_id = d.tenant_id AND l.stream_id = d.stream_id
                                         AND d.stream_version BETWEEN 1 AND l.cleaned_through)""") == 0,
              "every dead letter is an event of the log (or one the cleanup removed)")
        conn.close()
    passed = sum(1 for c in checks if c)
    print("%d passed, %d failed" % (passed, len(checks) - passed))
    return 0 if passed == len(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
