#!/usr/bin/python3
"""The Order scenario against eventsource's SQL API, with psycopg 3.

Run it with Debian's interpreter (python3-psycopg is installed for it):

    PGHOST=... PGPORT=... PGUSER=... PGDATABASE=... /usr/bin/python3 examples/python/order_psycopg.py

The connection comes from the usual libpq variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE, or a service file) or from DATABASE_URL.  The database
needs the eventsource library in shared_preload_libraries; the program creates
the extension if it is missing, and its own schema `shop_psycopg` and
subscriptions `orders_psycopg` / `customers_psycopg` (dropped and recreated on
every run, so it can share a database with the other examples).

It works the same directly and through PgBouncer in transaction pooling mode:

  * prepare_threshold=None: psycopg never creates named prepared statements
    (they would stay behind on a server connection PgBouncer lends to others);
    each query goes out as one unnamed Parse/Bind/Execute/Sync;
  * autocommit: each call is its own transaction, and the few that belong
    together run in `with conn.transaction()`;
  * nothing sets session state (no SET, no LISTEN, no temporary tables).

It exits non-zero on the first failed check.
"""

import os
import re
import uuid
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from shop import CREATE_SUBSCRIPTION_SQL, Checks, Order, OrderError, setup_sql

CLIENT = "psycopg"
SCHEMA = f"shop_{CLIENT}"
SUB_ORDERS = f"orders_{CLIENT}"
SUB_CUSTOMERS = f"customers_{CLIENT}"

check = Checks(CLIENT)
step = check.step


def connect():
    # jsonb results come back as Python objects (psycopg's default loader);
    # parameters are wrapped in Jsonb(...).
    return psycopg.connect(os.environ.get("DATABASE_URL", ""),
                           autocommit=True, prepare_threshold=None)


# --------------------------------------------------------------------------
# The repository: load() to rebuild, append() with the expected version.
# --------------------------------------------------------------------------


def load_order(conn, order_id):
    doc = conn.execute("SELECT eventsource.load(%s)", (order_id,)).fetchone()[0]
    return Order.from_load(doc)


def save_order(conn, order):
    """Append the pending events, expecting the version the order was built from."""
    row = conn.execute(
        "SELECT stream_version, first_position, last_position"
        "  FROM eventsource.append(%s, %s, %s)",
        (order.id, order.version, Jsonb(order.pending))).fetchone()
    # the version append() gave the last event, not a count: since 1.1 a
    # stream's versions need not start at 1 (README, "Versions since 1.1")
    order.version = row[0]
    order.pending = []
    return {"stream_version": row[0], "first_position": row[1], "last_position": row[2]}


def execute(conn, order_id, command, order=None, conflicts=None, max_attempts=3):
    """Run a command with optimistic concurrency: load, decide, append; on a
    wrong expected version (SQLSTATE ES001) re-read the stream and decide
    again.  `order`: state the caller already loaded (used for the first
    attempt).  `conflicts`: a list that collects the ES001 errors seen."""
    for attempt in range(1, max_attempts + 1):
        if order is None:
            order = load_order(conn, order_id)
        command(order)                      # may raise OrderError
        try:
            return save_order(conn, order)
        except psycopg.Error as e:
            if e.sqlstate != "ES001" or attempt == max_attempts:
                raise
            if conflicts is not None:
                conflicts.append(e)
            print(f"   conflict on {order_id}: {e.diag.message_primary} "
                  f"({e.diag.message_detail}); re-reading", flush=True)
            order = None
    raise AssertionError("unreachable")


def scalar(conn, sql, params=()):
    return conn.execute(sql, params).fetchone()[0]


# --------------------------------------------------------------------------
# The example's schema.
# --------------------------------------------------------------------------


def setup(conn):
    step("1. Schema: read models, projection handlers, subscriptions")
    conn.execute("CREATE EXTENSION IF NOT EXISTS eventsource")
    # Drop this example's subscriptions from an earlier run first: a
    # subscription does not depend on its handler, so dropping the schema
    # alone would leave it calling a missing function.
    for name in (SUB_ORDERS, SUB_CUSTOMERS):
        try:
            conn.execute("SELECT eventsource.drop_subscription(%s)", (name,))
            print(f"   dropped subscription {name} of an earlier run")
        except psycopg.errors.UndefinedObject:     # 42704: there was none
            pass
    with conn.transaction():
        # No parameters: one script in the simple query protocol.
        conn.execute(setup_sql(SCHEMA))
        for name, handler in ((SUB_ORDERS, "project_orders"),
                              (SUB_CUSTOMERS, "project_customers")):
            conn.execute("SELECT " + CREATE_SUBSCRIPTION_SQL.format(name="%s", handler="%s"),
                         (name, f"{SCHEMA}.{handler}(eventsource.events)"))
    check(True, f"schema {SCHEMA} and subscriptions {SUB_ORDERS}, {SUB_CUSTOMERS} created")


def main():
    with connect() as conn, connect() as writer_b:
        scenario(conn, writer_b)


def scenario(conn, writer_b):
    print(f"{CLIENT} {psycopg.__version__} (libpq {psycopg.pq.version()}, "
          f"{psycopg.pq.__impl__}), server {scalar(conn, 'SHOW server_version')}")
    setup(conn)

    run = uuid.uuid4().hex[:8]
    alice, bob, carol = (f"{name}-{run}" for name in ("alice", "bob", "carol"))
    o1, o2, o3, o4 = (f"Order-{uuid.uuid4()}" for _ in range(4))
    last_position = 0

    step("2. Commands: three orders created (expected version 0: the stream must not exist)")
    for order_id, customer, total in ((o1, alice, 120.00), (o2, bob, 35.50), (o3, alice, 15.25)):
        result = execute(conn, order_id, lambda o, c=customer, t=total: o.create(c, t))
        check(result["stream_version"] == 1, f"{order_id} created at version 1, "
              f"position {result['first_position']}")
        last_position = max(last_position, result["last_position"])

    step("3. A snapshot, then the aggregate rebuilt from it plus the tail")
    order = load_order(conn, o1)
    conn.execute("SELECT eventsource.save_snapshot(%s, %s, %s)",
                 (o1, order.version, Jsonb(order.snapshot_state())))
    result = execute(conn, o1, lambda o: o.ship("TRK-001"))
    check(result["stream_version"] == 2, f"{o1} shipped at version 2")
    last_position = max(last_position, result["last_position"])
    doc = scalar(conn, "SELECT eventsource.load(%s)", (o1,))
    check(doc["snapshot"]["version"] == 1 and [e["version"] for e in doc["events"]] == [2],
          "load() returns the snapshot at version 1 and only the event after it")
    order = Order.from_load(doc)
    check((order.status, order.version, order.customer_id, order.tracking_number)
          == ("shipped", 2, alice, "TRK-001"),
          "rebuilt from snapshot + tail: shipped, version 2, customer and tracking kept")

    step("4. The aggregate refuses to ship twice")
    try:
        execute(conn, o1, lambda o: o.ship("TRK-002"))
        check(False, "shipping twice is refused")
    except OrderError as e:
        check("already shipped" in str(e), f"shipping twice is refused: {e}")
    check(scalar(conn, "SELECT eventsource.stream_version(%s)", (o1,)) == 2,
          "nothing was appended by the refused command")

    step("5. Optimistic concurrency: two writers (two connections) saw version 1")
    stale = load_order(writer_b, o2)                      # writer B reads version 1 ...
    result = execute(conn, o2, lambda o: o.ship("TRK-101"))   # ... writer A ships
    check(result["stream_version"] == 2, "writer A shipped at version 2")
    last_position = max(last_position, result["last_position"])
    # Writer B appends with the version it saw: ES001.  It re-reads the
    # stream, decides again, and the aggregate refuses: already shipped.
    conflicts = []
    try:
        execute(writer_b, o2, lambda o: o.ship("TRK-102"), order=stale, conflicts=conflicts)
        check(False, "writer B's retry is refused by the aggregate")
    except OrderError as e:
        check("already shipped" in str(e),
              f"writer B: after the conflict and a re-read, the aggregate refuses: {e}")
    check(len(conflicts) == 1 and conflicts[0].sqlstate == "ES001",
          f"writer B's first append failed with SQLSTATE ES001: "
          f"{conflicts[0].diag.message_primary if conflicts else None}")
    detail = conflicts[0].diag.message_detail or ""
    check(re.search(r"[Ee]xpected version 1\b.*actual version 2\b", detail),
          f"DETAIL names the expected and the actual version: {detail}")
    order = load_order(conn, o2)
    check((order.status, order.version, order.tracking_number) == ("shipped", 2, "TRK-101"),
          "the stream holds writer A's shipment only")

    step("6. Idempotent retry: the same request (same client-generated event id) twice")
    event_id = uuid.uuid4()
    first = execute(conn, o4, lambda o: o.create(carol, 60, event_id=event_id))
    order = Order(o4)                     # the client retries the very same request
    order.create(carol, 60, event_id=event_id)
    again = save_order(conn, order)
    check(again == first, f"the retry returns the original result {again}")
    doc = scalar(conn, "SELECT eventsource.load(%s)", (o4,))
    check(doc["version"] == 1 and [e["id"] for e in doc["events"]] == [str(event_id)],
          "one event stored, with the client's id")
    last_position = max(last_position, first["last_position"])
    try:
        conn.execute("SELECT * FROM eventsource.append_event(%s, 0, %s, %s, '{}', %s)",
                     (f"Order-{uuid.uuid4()}", "OrderCreated",
                      Jsonb({"customer_id": carol, "total": 60}), event_id))
        check(False, "the same event id in another stream is refused")
    except psycopg.Error as e:
        check(e.sqlstate == "ES002", f"the same event id in another stream: SQLSTATE {e.sqlstate}")

    step("7. Read-your-writes: wait for both projections, then query the read models")
    for name in (SUB_ORDERS, SUB_CUSTOMERS):
        caught_up = scalar(conn, "SELECT eventsource.wait_for_subscription(%s, %s, '10 seconds')",
                           (name, last_position))
        check(caught_up is True, f"{name} reached position {last_position}")
    with conn.transaction():
        orders = conn.execute(
            f"SELECT order_id, customer_id, status, total, tracking"
            f"  FROM {SCHEMA}.orders WHERE order_id = ANY(%s) ORDER BY order_id",
            ([o1, o2, o3, o4],)).fetchall()
        customers = conn.execute(
            f"SELECT customer_id, orders, total FROM {SCHEMA}.customers"
            f" WHERE customer_id = ANY(%s) ORDER BY customer_id",
            ([alice, bob, carol],)).fetchall()
    for order_id, customer_id, status, total, tracking in orders:
        print(f"   orders:    {order_id}  {customer_id:<15} {status:<8} {total:>7} {tracking or ''}")
    got = {r[0]: tuple(r[1:]) for r in orders}
    want = {o1: (alice, "shipped", Decimal("120"), "TRK-001"),
            o2: (bob, "shipped", Decimal("35.5"), "TRK-101"),
            o3: (alice, "created", Decimal("15.25"), None),
            o4: (carol, "created", Decimal("60"), None)}
    check(got == want, "orders read model: one row per order with its status")
    for customer_id, n, total in customers:
        print(f"   customers: {customer_id:<15} {n} orders, total {total}")
    got = {r[0]: tuple(r[1:]) for r in customers}
    check(got == {alice: (2, Decimal("135.25")), bob: (1, Decimal("35.5")),
                  carol: (1, Decimal("60"))},
          "customers read model: orders and total per customer")

    step("8. Probes: readiness() and health()")
    readiness = scalar(conn, "SELECT eventsource.readiness()")
    check(readiness["ready"] is True, f"readiness: {readiness}")
    health = scalar(conn, "SELECT eventsource.health()")
    mine = {s["name"]: s["status"] for s in health["subscriptions"]
            if s["name"] in (SUB_ORDERS, SUB_CUSTOMERS)}
    check(mine == {SUB_ORDERS: "healthy", SUB_CUSTOMERS: "healthy"},
          f"health: overall {health['status']}, ours {mine}")

    step("9. Trace context for one transaction (SET LOCAL: safe behind transaction pooling)")
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    note = f"Trace-{uuid.uuid4()}"       # a stream no projection subscribes to
    with conn.transaction():
        # set_config(..., true) is SET LOCAL with a bound parameter
        conn.execute("SELECT set_config('eventsource.traceparent', %s, true)", (traceparent,))
        conn.execute("SELECT eventsource.append_event(%s, 0, 'Noted', '{}')", (note,))
    metadata = scalar(conn, "SELECT metadata FROM eventsource.read_stream(%s)", (note,))
    check(metadata.get("traceparent") == traceparent,
          f"the append kept the transaction's traceparent: {metadata}")
    check(scalar(conn, "SELECT current_setting('eventsource.traceparent')") == "",
          "the next transaction starts without it (nothing leaks to the pooled connection)")
    try:
        conn.execute("SELECT set_config('eventsource.traceparent', %s, true)",
                     ("00-" + "0" * 32 + "-" + "1" * 16 + "-01",))
        check(False, "an all-zero trace id is refused")
    except psycopg.Error as e:
        check(e.sqlstate == "22023", f"an all-zero trace id is refused: SQLSTATE {e.sqlstate}")


if __name__ == "__main__":
    check.run(main)
