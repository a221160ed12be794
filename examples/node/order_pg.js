// The Order scenario against eventsource's SQL API, with node-postgres (pg).
//
//   cd examples/node && npm ci && PGHOST=... PGPORT=... PGUSER=... PGDATABASE=... node order_pg.js
//
// The connection comes from the usual libpq variables (PGHOST, PGPORT,
// PGUSER, PGPASSWORD, PGDATABASE; PGHOST may be a socket directory) or from
// DATABASE_URL.  The database needs the eventsource library in
// shared_preload_libraries; the program creates the extension if it is
// missing, and its own schema `shop_node` and subscriptions `orders_node` /
// `customers_node` (dropped and recreated on every run, so it can share a
// database with the other examples).
//
// It works the same directly and through PgBouncer in transaction pooling
// mode:
//   * no named statements (no `name:` in a query config): each query goes out
//     as one unnamed Parse/Bind/Execute/Sync, nothing stays on the server;
//   * one call = one transaction, and the few that belong together run
//     between BEGIN and COMMIT on one client;
//   * nothing sets session state (no SET, no LISTEN, no temporary tables).
//
// It exits non-zero on the first failed check.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import pg from 'pg';

const CLIENT = 'node';
const SCHEMA = `shop_${CLIENT}`;
const SUB_ORDERS = `orders_${CLIENT}`;
const SUB_CUSTOMERS = `customers_${CLIENT}`;

// bigint (int8) columns: positions and versions.  pg returns them as strings
// by default; numbers are exact up to 2^53, which we check.
pg.types.setTypeParser(pg.types.builtins.INT8, (text) => {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`int8 ${text} does not fit a JS number`);
  return n;
});
// jsonb results are parsed by pg; jsonb parameters are passed as
// JSON.stringify(value) with a ::jsonb cast (a JS array given as a parameter
// would be sent as a PostgreSQL array, not as JSON).
const json = (value) => JSON.stringify(value);

// ------------------------------------------------------------------ checks

class CheckFailed extends Error {}
let checks = 0;

function check(condition, what) {
  if (!condition) {
    console.log(`not ok - ${what}`);
    throw new CheckFailed(what);
  }
  checks += 1;
  console.log(`ok - ${what}`);
}

function step(title) {
  console.log(`\n== ${title}`);
}

// ------------------------------------------------------------------ the Order aggregate
// Its state is a fold over its events (from a snapshot on); commands check
// the state and record new events, which the repository appends with the
// version the state was built from.

class OrderError extends Error {}

class Order {
  constructor(id) {
    this.id = id;
    this.version = 0; // the stream version this state was built from
    this.status = 'draft'; // draft -> created -> shipped
    this.customerId = null;
    this.total = null;
    this.trackingNumber = null;
    this.pending = []; // events recorded by commands, not yet appended
  }

  // Rebuild from the jsonb of eventsource.load(stream_id):
  // {stream_id, version, snapshot: null | {version, schema_version, state},
  //  events: [{position, version, id, type, data, metadata, recorded_at}]}
  static fromLoad(doc) {
    const order = new Order(doc.stream_id);
    if (doc.snapshot !== null) {
      const { state } = doc.snapshot;
      order.status = state.status;
      order.customerId = state.customer_id;
      order.total = state.total;
      order.trackingNumber = state.tracking_number ?? null;
      order.version = doc.snapshot.version;
    }
    for (const event of doc.events) {
      order.apply(event.type, event.data);
      order.version = event.version;
    }
    if (order.version !== doc.version) {
      throw new Error(`load() of ${order.id}: events end at version ${order.version}, the stream is at ${doc.version}`);
    }
    return order;
  }

  apply(type, data) {
    if (type === 'OrderCreated') {
      this.status = 'created';
      this.customerId = data.customer_id;
      this.total = data.total;
    } else if (type === 'OrderShipped') {
      this.status = 'shipped';
      this.trackingNumber = data.tracking_number;
    }
  }

  record(type, data, eventId) {
    const event = { type, data, metadata: { correlation_id: `checkout-${this.id}` } };
    if (eventId !== undefined) event.id = eventId;
    this.pending.push(event);
    this.apply(type, data);
  }

  // Commands
  create(customerId, total, eventId) {
    if (this.status !== 'draft') throw new OrderError(`order ${this.id} already exists`);
    if (total < 0) throw new OrderError('an order total cannot be negative');
    this.record('OrderCreated', { customer_id: customerId, total }, eventId);
  }

  ship(trackingNumber) {
    if (this.status === 'draft') throw new OrderError(`order ${this.id} does not exist`);
    if (this.status === 'shipped') throw new OrderError(`order ${this.id} is already shipped`);
    this.record('OrderShipped', { tracking_number: trackingNumber });
  }

  snapshotState() {
    return { status: this.status, customer_id: this.customerId, total: this.total,
             tracking_number: this.trackingNumber };
  }
}

// ------------------------------------------------------------------ the repository
// `db` is the pool or one client checked out of it (writer B).

async function scalar(db, text, values = []) {
  const { rows } = await db.query({ text, values, rowMode: 'array' });
  return rows[0][0];
}

async function loadOrder(db, orderId) {
  return Order.fromLoad(await scalar(db, 'SELECT eventsource.load($1)', [orderId]));
}

// Append the pending events, expecting the version the order was built from.
async function saveOrder(db, order) {
  const { rows } = await db.query(
    'SELECT stream_version, first_position, last_position FROM eventsource.append($1, $2, $3::jsonb)',
    [order.id, order.version, json(order.pending)]);
  // the version append() gave the last event, not a count: since 1.1 a
  // stream's versions need not start at 1 (README, "Versions since 1.1")
  order.version = rows[0].stream_version;
  order.pending = [];
  return { ...rows[0] };
}

// Run a command with optimistic concurrency: load, decide, append; on a wrong
// expected version (SQLSTATE ES001) re-read the stream and decide again.
// `order`: state the caller already loaded (used for the first attempt);
// `conflicts`: an array that collects the ES001 errors seen.
async function execute(db, orderId, command, { order = null, conflicts = null, maxAttempts = 3 } = {}) {
  for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
    if (order === null) order = await loadOrder(db, orderId);
    command(order); // may throw OrderError
    try {
      return await saveOrder(db, order);
    } catch (e) {
      if (e.code !== 'ES001' || attempt === maxAttempts) throw e;
      if (conflicts !== null) conflicts.push(e);
      console.log(`   conflict on ${orderId}: ${e.message} (${e.detail}); re-reading`);
      order = null;
    }
  }
  throw new Error('unreachable');
}

// ------------------------------------------------------------------ the example's schema

const SETUP_SQL = `
DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE;
CREATE SCHEMA ${SCHEMA};

CREATE TABLE ${SCHEMA}.orders (
    order_id    text PRIMARY KEY,
    customer_id text NOT NULL,
    status      text NOT NULL,
    total       numeric NOT NULL,
    tracking    text,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE ${SCHEMA}.customers (
    customer_id text PRIMARY KEY,
    orders      integer NOT NULL,
    total       numeric NOT NULL
);

-- Projection "orders": one row per order with its status.
CREATE FUNCTION ${SCHEMA}.project_orders(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    CASE e.event_type
    WHEN 'OrderCreated' THEN
        INSERT INTO ${SCHEMA}.orders
        VALUES (e.stream_id, e.data->>'customer_id', 'created',
                (e.data->>'total')::numeric, NULL, e.recorded_at);
    WHEN 'OrderShipped' THEN
        UPDATE ${SCHEMA}.orders
           SET status = 'shipped', tracking = e.data->>'tracking_number',
               updated_at = e.recorded_at
         WHERE order_id = e.stream_id;
    ELSE NULL;
    END CASE;
END $$;

-- Projection "customers": orders and total per customer.
CREATE FUNCTION ${SCHEMA}.project_customers(e eventsource.events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF e.event_type = 'OrderCreated' THEN
        INSERT INTO ${SCHEMA}.customers
        VALUES (e.data->>'customer_id', 1, (e.data->>'total')::numeric)
        ON CONFLICT (customer_id) DO UPDATE
           SET orders = ${SCHEMA}.customers.orders + 1,
               total = ${SCHEMA}.customers.total + excluded.total;
    END IF;
END $$;
`;

async function setup(pool) {
  step('1. Schema: read models, projection handlers, subscriptions');
  await pool.query('CREATE EXTENSION IF NOT EXISTS eventsource');
  // Drop this example's subscriptions from an earlier run first: a
  // subscription does not depend on its handler, so dropping the schema
  // alone would leave it calling a missing function.
  for (const name of [SUB_ORDERS, SUB_CUSTOMERS]) {
    try {
      await pool.query('SELECT eventsource.drop_subscription($1)', [name]);
      console.log(`   dropped subscription ${name} of an earlier run`);
    } catch (e) {
      if (e.code !== '42704') throw e; // undefined_object: there was none
    }
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(SETUP_SQL); // no parameters: one script, simple query protocol
    // start_from 'end': the read models are new and follow the orders placed
    // from now on (a projection of existing history would start from
    // 'beginning').  The filters run in the server.
    for (const [name, handler] of [[SUB_ORDERS, 'project_orders'], [SUB_CUSTOMERS, 'project_customers']]) {
      await client.query(
        `SELECT eventsource.create_subscription($1, $2::text::regprocedure, start_from => 'end',
                event_types => ARRAY['OrderCreated', 'OrderShipped'], categories => ARRAY['Order'])`,
        [name, `${SCHEMA}.${handler}(eventsource.events)`]);
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    client.release();
  }
  check(true, `schema ${SCHEMA} and subscriptions ${SUB_ORDERS}, ${SUB_CUSTOMERS} created`);
}

// ------------------------------------------------------------------ the scenario

async function expectRefusal(promise, what) {
  try {
    await promise;
  } catch (e) {
    if (e instanceof OrderError) return e;
    throw e;
  }
  check(false, what);
  return null;
}

async function scenario(pool) {
  const server = await scalar(pool, 'SHOW server_version');
  console.log(`node ${process.version}, pg ${pgVersion()}, server ${server}`);
  await setup(pool);

  const run = randomUUID().slice(0, 8);
  const [alice, bob, carol] = ['alice', 'bob', 'carol'].map((n) => `${n}-${run}`);
  const [o1, o2, o3, o4] = [1, 2, 3, 4].map(() => `Order-${randomUUID()}`);
  let lastPosition = 0;
  const seen = (result) => { lastPosition = Math.max(lastPosition, result.last_position); };

  step('2. Commands: three orders created (expected version 0: the stream must not exist)');
  for (const [orderId, customer, total] of [[o1, alice, 120.0], [o2, bob, 35.5], [o3, alice, 15.25]]) {
    const result = await execute(pool, orderId, (o) => o.create(customer, total));
    check(result.stream_version === 1, `${orderId} created at version 1, position ${result.first_position}`);
    seen(result);
  }

  step('3. A snapshot, then the aggregate rebuilt from it plus the tail');
  let order = await loadOrder(pool, o1);
  await pool.query('SELECT eventsource.save_snapshot($1, $2, $3::jsonb)',
    [o1, order.version, json(order.snapshotState())]);
  let result = await execute(pool, o1, (o) => o.ship('TRK-001'));
  check(result.stream_version === 2, `${o1} shipped at version 2`);
  seen(result);
  let doc = await scalar(pool, 'SELECT eventsource.load($1)', [o1]);
  check(doc.snapshot.version === 1 && isDeepStrictEqual(doc.events.map((e) => e.version), [2]),
    'load() returns the snapshot at version 1 and only the event after it');
  order = Order.fromLoad(doc);
  check(isDeepStrictEqual([order.status, order.version, order.customerId, order.trackingNumber],
    ['shipped', 2, alice, 'TRK-001']),
  'rebuilt from snapshot + tail: shipped, version 2, customer and tracking kept');

  step('4. The aggregate refuses to ship twice');
  let refusal = await expectRefusal(execute(pool, o1, (o) => o.ship('TRK-002')), 'shipping twice is refused');
  check(/already shipped/.test(refusal.message), `shipping twice is refused: ${refusal.message}`);
  check(await scalar(pool, 'SELECT eventsource.stream_version($1)', [o1]) === 2,
    'nothing was appended by the refused command');

  step('5. Optimistic concurrency: two writers (two connections) saw version 1');
  const writerB = await pool.connect();
  try {
    const stale = await loadOrder(writerB, o2); // writer B reads version 1 ...
    result = await execute(pool, o2, (o) => o.ship('TRK-101')); // ... writer A ships
    check(result.stream_version === 2, 'writer A shipped at version 2');
    seen(result);
    // Writer B appends with the version it saw: ES001.  It re-reads the
    // stream, decides again, and the aggregate refuses: already shipped.
    const conflicts = [];
    refusal = await expectRefusal(
      execute(writerB, o2, (o) => o.ship('TRK-102'), { order: stale, conflicts }),
      "writer B's retry is refused by the aggregate");
    check(/already shipped/.test(refusal.message),
      `writer B: after the conflict and a re-read, the aggregate refuses: ${refusal.message}`);
    check(conflicts.length === 1 && conflicts[0].code === 'ES001',
      `writer B's first append failed with SQLSTATE ES001: ${conflicts[0]?.message}`);
    check(/[Ee]xpected version 1\b.*actual version 2\b/.test(conflicts[0].detail ?? ''),
      `DETAIL names the expected and the actual version: ${conflicts[0].detail}`);
  } finally {
    writerB.release();
  }
  order = await loadOrder(pool, o2);
  check(isDeepStrictEqual([order.status, order.version, order.trackingNumber], ['shipped', 2, 'TRK-101']),
    "the stream holds writer A's shipment only");

  step('6. Idempotent retry: the same request (same client-generated event id) twice');
  const eventId = randomUUID();
  const first = await execute(pool, o4, (o) => o.create(carol, 60, eventId));
  order = new Order(o4); // the client retries the very same request
  order.create(carol, 60, eventId);
  const again = await saveOrder(pool, order);
  check(isDeepStrictEqual(again, first), `the retry returns the original result ${JSON.stringify(again)}`);
  doc = await scalar(pool, 'SELECT eventsource.load($1)', [o4]);
  check(doc.version === 1 && isDeepStrictEqual(doc.events.map((e) => e.id), [eventId]),
    "one event stored, with the client's id");
  seen(first);
  try {
    await pool.query("SELECT * FROM eventsource.append_event($1, 0, $2, $3::jsonb, '{}', $4::uuid)",
      [`Order-${randomUUID()}`, 'OrderCreated', json({ customer_id: carol, total: 60 }), eventId]);
    check(false, 'the same event id in another stream is refused');
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    check(e.code === 'ES002', `the same event id in another stream: SQLSTATE ${e.code}`);
  }

  step('7. Read-your-writes: wait for both projections, then query the read models');
  for (const name of [SUB_ORDERS, SUB_CUSTOMERS]) {
    const caughtUp = await scalar(pool,
      "SELECT eventsource.wait_for_subscription($1, $2, '10 seconds')", [name, lastPosition]);
    check(caughtUp === true, `${name} reached position ${lastPosition}`);
  }
  const orders = (await pool.query(
    `SELECT order_id, customer_id, status, total, tracking
       FROM ${SCHEMA}.orders WHERE order_id = ANY($1::text[]) ORDER BY order_id`, [[o1, o2, o3, o4]])).rows;
  for (const r of orders) {
    console.log(`   orders:    ${r.order_id}  ${r.customer_id.padEnd(15)} ${r.status.padEnd(8)} `
      + `${r.total.padStart(7)} ${r.tracking ?? ''}`);
  }
  // numeric comes back as a string: compare its value.
  const gotOrders = Object.fromEntries(orders.map((r) => [r.order_id, [r.customer_id, r.status, Number(r.total), r.tracking]]));
  check(isDeepStrictEqual(gotOrders, {
    [o1]: [alice, 'shipped', 120, 'TRK-001'],
    [o2]: [bob, 'shipped', 35.5, 'TRK-101'],
    [o3]: [alice, 'created', 15.25, null],
    [o4]: [carol, 'created', 60, null],
  }), 'orders read model: one row per order with its status');
  const customers = (await pool.query(
    `SELECT customer_id, orders, total FROM ${SCHEMA}.customers
      WHERE customer_id = ANY($1::text[]) ORDER BY customer_id`, [[alice, bob, carol]])).rows;
  for (const r of customers) {
    console.log(`   customers: ${r.customer_id.padEnd(15)} ${r.orders} orders, total ${r.total}`);
  }
  const gotCustomers = Object.fromEntries(customers.map((r) => [r.customer_id, [r.orders, Number(r.total)]]));
  check(isDeepStrictEqual(gotCustomers, { [alice]: [2, 135.25], [bob]: [1, 35.5], [carol]: [1, 60] }),
    'customers read model: orders and total per customer');

  step('8. Probes: readiness() and health()');
  const readiness = await scalar(pool, 'SELECT eventsource.readiness()');
  check(readiness.ready === true, `readiness: ${JSON.stringify(readiness)}`);
  const health = await scalar(pool, 'SELECT eventsource.health()');
  const mine = Object.fromEntries(health.subscriptions
    .filter((s) => s.name === SUB_ORDERS || s.name === SUB_CUSTOMERS)
    .map((s) => [s.name, s.status]));
  check(isDeepStrictEqual(mine, { [SUB_ORDERS]: 'healthy', [SUB_CUSTOMERS]: 'healthy' }),
    `health: overall ${health.status}, ours ${JSON.stringify(mine)}`);
}

function pgVersion() {
  try {
    return JSON.parse(readFileSync(new URL('./node_modules/pg/package.json', import.meta.url))).version;
  } catch {
    return '?';
  }
}

// ------------------------------------------------------------------ main

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
// An idle client's error (server gone) must not crash the process silently.
pool.on('error', (e) => console.error(`${CLIENT}: idle client error: ${e.message}`));

try {
  await scenario(pool);
  console.log(`\n${CLIENT}: all ${checks} checks passed`);
} catch (e) {
  const why = e instanceof CheckFailed ? `check failed: ${e.message}` : `${e.name}: ${e.message}`;
  console.error(`${CLIENT}: FAILED: ${why}`);
  process.exitCode = 1;
} finally {
  await pool.end();
}
