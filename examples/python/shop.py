"""The driver-independent half of the Python examples: the Order aggregate,
the read-model schema with its projection handlers, and the check helpers.

order_asyncpg.py and order_psycopg.py import it; each adds what depends on
its driver (connections, parameters, errors).
"""

import sys
from decimal import Decimal


# --------------------------------------------------------------------------
# Checks: each prints "ok - ..." or "not ok - ..." and the first failure
# stops the program with a non-zero exit status.
# --------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


class Checks:
    def __init__(self, client):
        self.client = client
        self.count = 0

    def __call__(self, condition, what):
        if not condition:
            print(f"not ok - {what}", flush=True)
            raise CheckFailed(what)
        self.count += 1
        print(f"ok - {what}", flush=True)

    @staticmethod
    def step(title):
        print(f"\n== {title}", flush=True)

    def run(self, main):
        """Run main() (a function or a coroutine runner); exit 0 only when it
        returned and every check passed."""
        try:
            main()
        except CheckFailed as e:
            print(f"{self.client}: FAILED: check failed: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
        except BaseException as e:  # noqa: BLE001 - anything else is a failure too
            print(f"{self.client}: FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
        print(f"\n{self.client}: all {self.count} checks passed", flush=True)


# --------------------------------------------------------------------------
# The Order aggregate: its state is a fold over its events (from a snapshot
# on); commands check the state and record new events, which the repository
# appends with the version the state was built from.
# --------------------------------------------------------------------------


class OrderError(Exception):
    """A command the aggregate refuses (a business rule, not a database error)."""


class Order:
    def __init__(self, order_id):
        self.id = order_id
        self.version = 0          # the stream version this state was built from
        self.status = "draft"     # draft -> created -> shipped
        self.customer_id = None
        self.total = None
        self.tracking_number = None
        self.pending = []         # events recorded by commands, not yet appended

    @classmethod
    def from_load(cls, doc):
        """Rebuild from the jsonb of eventsource.load(stream_id):
        {stream_id, version, snapshot: null | {version, schema_version, state},
         events: [{position, version, id, type, data, metadata, recorded_at}]}"""
        order = cls(doc["stream_id"])
        snapshot = doc["snapshot"]
        if snapshot is not None:
            state = snapshot["state"]
            order.status = state["status"]
            order.customer_id = state["customer_id"]
            order.total = Decimal(str(state["total"]))
            order.tracking_number = state.get("tracking_number")
            order.version = snapshot["version"]
        for event in doc["events"]:
            order._apply(event["type"], event["data"])
            order.version = event["version"]
        if order.version != doc["version"]:
            raise RuntimeError(f"load() of {order.id}: events end at version {order.version}, "
                               f"the stream is at {doc['version']}")
        return order

    def _apply(self, event_type, data):
        if event_type == "OrderCreated":
            self.status = "created"
            self.customer_id = data["customer_id"]
            self.total = Decimal(str(data["total"]))
        elif event_type == "OrderShipped":
            self.status = "shipped"
            self.tracking_number = data["tracking_number"]

    def _record(self, event_type, data, event_id=None):
        event = {"type": event_type, "data": data,
                 "metadata": {"correlation_id": f"checkout-{self.id}"}}
        if event_id is not None:
            event["id"] = str(event_id)
        self.pending.append(event)
        self._apply(event_type, data)

    # Commands
    def create(self, customer_id, total, event_id=None):
        if self.status != "draft":
            raise OrderError(f"order {self.id} already exists")
        if total < 0:
            raise OrderError("an order total cannot be negative")
        self._record("OrderCreated", {"customer_id": customer_id, "total": total}, event_id)

    def ship(self, tracking_number):
        if self.status == "draft":
            raise OrderError(f"order {self.id} does not exist")
        if self.status == "shipped":
            raise OrderError(f"order {self.id} is already shipped")
        self._record("OrderShipped", {"tracking_number": tracking_number})

    def snapshot_state(self):
        return {"status": self.status, "customer_id": self.customer_id,
                "total": float(self.total), "tracking_number": self.tracking_number}


# --------------------------------------------------------------------------
# The read models and their projections (PL/pgSQL handlers that the
# subscriptions call, in the database, once per event).
# --------------------------------------------------------------------------


def setup_sql(schema):
    """DDL for the example's own schema (a fixed identifier, not user input)."""
    return f"""
DROP SCHEMA IF EXISTS {schema} CASCADE;
CREATE SCHEMA {schema};

CREATE TABLE {schema}.orders (
    order_id    text PRIMARY KEY,
    customer_id text NOT NULL,
    status      text NOT NULL,
    total       numeric NOT NULL,
    tracking    text,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE {schema}.customers (
    customer_id text PRIMARY KEY,
    orders      integer NOT NULL,
    total       numeric NOT NULL
);

-- Projection "orders": one row per order with its status.
CREATE FUNCTION {schema}.project_orders(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE e.event_type
    WHEN 'OrderCreated' THEN
        INSERT INTO {schema}.orders
        VALUES (e.stream_id, e.data->>'customer_id', 'created',
                (e.data->>'total')::numeric, NULL, e.recorded_at);
    WHEN 'OrderShipped' THEN
        UPDATE {schema}.orders
           SET status = 'shipped', tracking = e.data->>'tracking_number',
               updated_at = e.recorded_at
         WHERE order_id = e.stream_id;
    ELSE NULL;
    END CASE;
END $$;

-- Projection "customers": orders and total per customer.
CREATE FUNCTION {schema}.project_customers(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'OrderCreated' THEN
        INSERT INTO {schema}.customers
        VALUES (e.data->>'customer_id', 1, (e.data->>'total')::numeric)
        ON CONFLICT (customer_id) DO UPDATE
           SET orders = {schema}.customers.orders + 1,
               total = {schema}.customers.total + excluded.total;
    END IF;
END $$;
"""


# create_subscription(name, handler, ...) with start_from 'end': the read
# models are new and follow the orders placed from now on (a projection of
# existing history would start from 'beginning').  The filters run in the
# server.  Parameters: $1 name, $2 handler signature as text.
CREATE_SUBSCRIPTION_SQL = (
    "eventsource.create_subscription({name}, {handler}::text::regprocedure,"
    " start_from => 'end',"
    " event_types => ARRAY['OrderCreated', 'OrderShipped'], categories => ARRAY['Order'])")
