#!/usr/bin/python3
"""The Order scenario against eventsource's SQL API, with asyncpg.

Run it with Debian's interpreter (python3-asyncpg is installed for it):

    PGHOST=... PGPORT=... PGUSER=... PGDATABASE=... /usr/bin/python3 examples/python/order_asyncpg.py

The connection comes from the usual libpq variables (PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE) or from DATABASE_URL.  The database needs the
eventsource library in shared_preload_libraries; the program creates the
extension if it is missing, and its own schema `shop_asyncpg` and
subscriptions `orders_asyncpg` / `customers_asyncpg` (dropped and recreated on
every run, so it can share a database with the other examples).

It works the same directly and through PgBouncer in transaction pooling mode:

  * statement_cache_size=0: asyncpg then uses the unnamed statement, which
    it parses, binds and executes within one exchange that PgBouncer keeps on
    one server connection.  Its statement cache would create named prepared
    statements, which stay on the server connection PgBouncer lent us and are
    missing on the next one ("prepared statement __asyncpg_stmt_1__ does not
    exist");
  * one call = one transaction; what belongs together (the schema setup)
    runs in `async with conn.transaction()` on one connection;
  * nothing sets session state (no SET, no LISTEN, no temporary tables).

It exits non-zero on the first failed check.
"""

import asyncio
import json
import os
import re
import uuid
from decimal import Decimal

import asyncpg

from shop import CREATE_SUBSCRIPTION_SQL, Checks, Order, OrderError, setup_sql

CLIENT = "asyncpg"
SCHEMA = f"shop_{CLIENT}"
SUB_ORDERS = f"orders_{CLIENT}"
SUB_CUSTOMERS = f"customers_{CLIENT}"

check = Checks(CLIENT)
step = check.step


# --------------------------------------------------------------------------
# The repository: load() to rebuild, append() with the expected version.
# `db` is the pool or a connection acquired from it (writer B).
# --------------------------------------------------------------------------


async def load_order(db, order_id):
    doc = await db.fetchval("SELECT eventsource.load($1)", order_id)
    return Order.from_load(doc)


async def save_order(db, order):
    """Append the pending events, expecting the version the order was built from."""
    row = await db.fetchrow(
        "SELECT stream_version, first_position, last_position"
        "  FROM eventsource.append($1, $2, $3)",
        order.id, order.version, order.pending)   # $3: a list -> jsonb via the codec
    # the version append() gave the last event, not a count: since 1.1 a
    # stream's versions need not start at 1 (README, "Versions since 1.1")
    order.version = row["stream_version"]
    order.pending = []
    return dict(row)


async def execute(db, order_id, command, order=None, conflicts=None, max_attempts=3):
    """Run a command with optimistic concurrency: load, decide, append; on a
    wrong expected version (SQLSTATE ES001) re-read the stream and decide
    again.  `order`: state the caller already loaded (used for the first
    attempt).  `conflicts`: a list that collects the ES001 errors seen."""
    for attempt in range(1, max_attempts + 1):
        if order is None:
            order = await load_order(db, order_id)
        command(order)                      # may raise OrderError
        try:
            return await save_order(db, order)
        except asyncpg.PostgresError as e:
            if e.sqlstate != "ES001" or attempt == max_attempts:
                raise
            if conflicts is not None:
                conflicts.append(e)
            print(f"   conflict on {order_id}: {e.message} ({e.detail}); re-reading", flush=True)
            order = None
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------
# Connections and the example's schema.
# --------------------------------------------------------------------------


async def init_connection(conn):
    # jsonb <-> Python objects, for parameters and results.  A client-side
    # setting of the connection object: nothing is set in the server session.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                              schema="pg_catalog")


async def setup(pool):
    step("1. Schema: read models, projection handlers, subscriptions")
    async with pool.acquire() as conn:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS eventsource")
        # Drop this example's subscriptions from an earlier run first: a
        # subscription does not depend on its handler, so dropping the
        # schema alone would leave it calling a missing function.
        for name in (SUB_ORDERS, SUB_CUSTOMERS):
            try:
                await conn.execute("SELECT eventsource.drop_subscription($1)", name)
                print(f"   dropped subscription {name} of an earlier run")
            except asyncpg.PostgresError as e:
                if e.sqlstate != "42704":      # undefined_object: there was none
                    raise
        async with conn.transaction():
            # No arguments: one script in the simple query protocol.
            await conn.execute(setup_sql(SCHEMA))
            for name, handler in ((SUB_ORDERS, "project_orders"),
                                  (SUB_CUSTOMERS, "project_customers")):
                await conn.execute(
                    "SELECT " + CREATE_SUBSCRIPTION_SQL.format(name="$1", handler="$2"),
                    name, f"{SCHEMA}.{handler}(eventsource.events)")
    check(True, f"schema {SCHEMA} and subscriptions {SUB_ORDERS}, {SUB_CUSTOMERS} created")


async def main():
    dsn = os.environ.get("DATABASE_URL")
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2,
                                     statement_cache_size=0, init=init_connection)
    try:
        await scenario(pool)
    finally:
        await pool.close()


async def scenario(pool):
    server = await pool.fetchval("SELECT current_setting('server_version')")
    print(f"{CLIENT} {asyncpg.__version__}, server {server}")
    await setup(pool)

    run = uuid.uuid4().hex[:8]
    alice, bob, carol = (f"{name}-{run}" for name in ("alice", "bob", "carol"))
    o1, o2, o3, o4 = (f"Order-{uuid.uuid4()}" for _ in range(4))
    last_position = 0

    step("2. Commands: three orders created (expected version 0: the stream must not exist)")
    for order_id, customer, total in ((o1, alice, 120.00), (o2, bob, 35.50), (o3, alice, 15.25)):
        result = await execute(pool, order_id, lambda o, c=customer, t=total: o.create(c, t))
        check(result["stream_version"] == 1, f"{order_id} created at version 1, "
              f"position {result['first_position']}")
        last_position = max(last_position, result["last_position"])

    step("3. A snapshot, then the aggregate rebuilt from it plus the tail")
    order = await load_order(pool, o1)
    await pool.fetchval("SELECT eventsource.save_snapshot($1, $2, $3)",
                        o1, order.version, order.snapshot_state())
    result = await execute(pool, o1, lambda o: o.ship("TRK-001"))
    check(result["stream_version"] == 2, f"{o1} shipped at version 2")
    last_position = max(last_position, result["last_position"])
    doc = await pool.fetchval("SELECT eventsource.load($1)", o1)
    check(doc["snapshot"]["version"] == 1 and [e["version"] for e in doc["events"]] == [2],
          "load() returns the snapshot at version 1 and only the event after it")
    order = Order.from_load(doc)
    check((order.status, order.version, order.customer_id, order.tracking_number)
          == ("shipped", 2, alice, "TRK-001"),
          "rebuilt from snapshot + tail: shipped, version 2, customer and tracking kept")

    step("4. The aggregate refuses to ship twice")
    try:
        await execute(pool, o1, lambda o: o.ship("TRK-002"))
        check(False, "shipping twice is refused")
    except OrderError as e:
        check("already shipped" in str(e), f"shipping twice is refused: {e}")
    check(await pool.fetchval("SELECT eventsource.stream_version($1)", o1) == 2,
          "nothing was appended by the refused command")

    step("5. Optimistic concurrency: two writers (two connections) saw version 1")
    async with pool.acquire() as writer_b:
        stale = await load_order(writer_b, o2)                  # writer B reads version 1 ...
        result = await execute(pool, o2, lambda o: o.ship("TRK-101"))   # ... writer A ships
        check(result["stream_version"] == 2, "writer A shipped at version 2")
        last_position = max(last_position, result["last_position"])
        # Writer B appends with the version it saw: ES001.  It re-reads the
        # stream, decides again, and the aggregate refuses: already shipped.
        conflicts = []
        try:
            await execute(writer_b, o2, lambda o: o.ship("TRK-102"),
                          order=stale, conflicts=conflicts)
            check(False, "writer B's retry is refused by the aggregate")
        except OrderError as e:
            check("already shipped" in str(e),
                  f"writer B: after the conflict and a re-read, the aggregate refuses: {e}")
    check(len(conflicts) == 1 and conflicts[0].sqlstate == "ES001",
          f"writer B's first append failed with SQLSTATE ES001: "
          f"{conflicts[0].message if conflicts else None}")
    check(re.search(r"[Ee]xpected version 1\b.*actual version 2\b", conflicts[0].detail or ""),
          f"DETAIL names the expected and the actual version: {conflicts[0].detail}")
    order = await load_order(pool, o2)
    check((order.status, order.version, order.tracking_number) == ("shipped", 2, "TRK-101"),
          "the stream holds writer A's shipment only")

    step("6. Idempotent retry: the same request (same client-generated event id) twice")
    event_id = uuid.uuid4()
    first = await execute(pool, o4, lambda o: o.create(carol, 60, event_id=event_id))
    order = Order(o4)                     # the client retries the very same request
    order.create(carol, 60, event_id=event_id)
    again = await save_order(pool, order)
    check(again == first, f"the retry returns the original result {again}")
    doc = await pool.fetchval("SELECT eventsource.load($1)", o4)
    check(doc["version"] == 1 and [e["id"] for e in doc["events"]] == [str(event_id)],
          "one event stored, with the client's id")
    last_position = max(last_position, first["last_position"])
    try:
        await pool.fetchrow("SELECT * FROM eventsource.append_event($1, 0, $2, $3, '{}', $4)",
                            f"Order-{uuid.uuid4()}", "OrderCreated",
                            {"customer_id": carol, "total": 60}, event_id)
        check(False, "the same event id in another stream is refused")
    except asyncpg.PostgresError as e:
        check(e.sqlstate == "ES002", f"the same event id in another stream: SQLSTATE {e.sqlstate}")

    step("7. Read-your-writes: wait for both projections, then query the read models")
    for name in (SUB_ORDERS, SUB_CUSTOMERS):
        caught_up = await pool.fetchval(
            "SELECT eventsource.wait_for_subscription($1, $2, '10 seconds')",
            name, last_position)
        check(caught_up is True, f"{name} reached position {last_position}")
    async with pool.acquire() as conn:
        async with conn.transaction():
            orders = await conn.fetch(
                f"SELECT order_id, customer_id, status, total, tracking"
                f"  FROM {SCHEMA}.orders WHERE order_id = ANY($1::text[]) ORDER BY order_id",
                [o1, o2, o3, o4])
            customers = await conn.fetch(
                f"SELECT customer_id, orders, total FROM {SCHEMA}.customers"
                f" WHERE customer_id = ANY($1::text[]) ORDER BY customer_id",
                [alice, bob, carol])
    got = {r["order_id"]: (r["customer_id"], r["status"], r["total"], r["tracking"])
           for r in orders}
    want = {o1: (alice, "shipped", Decimal("120"), "TRK-001"),
            o2: (bob, "shipped", Decimal("35.5"), "TRK-101"),
            o3: (alice, "created", Decimal("15.25"), None),
            o4: (carol, "created", Decimal("60"), None)}
    for r in orders:
        print(f"   orders:    {r['order_id']}  {r['customer_id']:<15} {r['status']:<8} "
              f"{r['total']:>7} {r['tracking'] or ''}")
    check(got == want, "orders read model: one row per order with its status")
    got = {r["customer_id"]: (r["orders"], r["total"]) for r in customers}
    for r in customers:
        print(f"   customers: {r['customer_id']:<15} {r['orders']} orders, total {r['total']}")
    check(got == {alice: (2, Decimal("135.25")), bob: (1, Decimal("35.5")),
                  carol: (1, Decimal("60"))},
          "customers read model: orders and total per customer")

    step("8. Probes: readiness() and health()")
    readiness = await pool.fetchval("SELECT eventsource.readiness()")
    check(readiness["ready"] is True, f"readiness: {readiness}")
    health = await pool.fetchval("SELECT eventsource.health()")
    mine = {s["name"]: s["status"] for s in health["subscriptions"]
            if s["name"] in (SUB_ORDERS, SUB_CUSTOMERS)}
    check(mine == {SUB_ORDERS: "healthy", SUB_CUSTOMERS: "healthy"},
          f"health: overall {health['status']}, ours {mine}")


if __name__ == "__main__":
    check.run(lambda: asyncio.run(main()))
