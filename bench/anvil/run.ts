/**
 * What an anvil connection check costs (issue 12: "a connection check must not cost several
 * thread hops per connection: measure it"). Measures, per connection:
 *   - connect + disconnect on the shared table (src/anvil/table.ts) in one thread, for
 *     1,000 distinct clients (the address parse and masking included);
 *   - the same from 2 worker threads at once on one table (lock contention);
 *   - for comparison, one request/reply round trip to another thread over a MessageChannel,
 *     which is what a singleton anvil actor would cost at least twice per connection (connect
 *     and disconnect).
 *
 *   node_modules/.bin/tsc -p tsconfig.json && node_modules/.bin/node dist/bench/anvil/run.js
 */
import { MessageChannel, Worker, isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { AnvilTable, clientKey } from '../../src/anvil/table.js';
import { benchArgs } from '../args.js';

const CLIENTS = 1000;
const address = (i: number) => `198.51.${(i >> 8) & 255}.${i & 255}`;

/** ns per connect+disconnect for `n` connections on the table. */
function churn(table: AnvilTable, n: number, offset: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const key = clientKey(address((i + offset) % CLIENTS), 32, 84)!;
    table.connect(key);
    table.disconnect(key);
  }
  return Number(process.hrtime.bigint() - start) / n;
}

if (isMainThread) benchArgs('bench/anvil', 'usage: node dist/bench/anvil/run.js (no options)', {});

if (!isMainThread) {
  const { buffer, n, offset, port } = workerData as { buffer?: SharedArrayBuffer; n: number; offset: number; port?: MessagePort };
  if (port) {
    // The echo side of the round-trip measurement.
    port.on('message', (m: unknown) => port.postMessage(m));
  } else {
    parentPort!.postMessage(churn(new AnvilTable(buffer!), n, offset));
  }
} else {
  const n = 200_000;
  const table = AnvilTable.create(60);
  churn(table, 20_000, 0); // warm-up
  const one = churn(table, n, 0);
  console.log(`one thread: ${one.toFixed(0)} ns per connection (connect + disconnect, ${CLIENTS} clients)`);

  const here = new URL(import.meta.url);
  const two = await Promise.all([0, 1].map((k) => new Promise<number>((resolve, reject) => {
    const w = new Worker(here, { workerData: { buffer: table.buffer, n, offset: k * 500 } });
    w.once('message', (ns: number) => { resolve(ns); void w.terminate(); });
    w.once('error', reject);
  })));
  console.log(`two threads on one table: ${two.map((x) => x.toFixed(0)).join(' / ')} ns per connection`);

  const { port1, port2 } = new MessageChannel();
  const echo = new Worker(here, { workerData: { n: 0, offset: 0, port: port2 }, transferList: [port2] });
  const trips = 20_000;
  const rtt = await new Promise<number>((resolve) => {
    let left = trips;
    const start = process.hrtime.bigint();
    port1.on('message', () => {
      if (--left === 0) return resolve(Number(process.hrtime.bigint() - start) / trips);
      port1.postMessage({ type: 'connect', service: 'smtp', addr: '198.51.100.1' });
    });
    port1.postMessage({ type: 'connect', service: 'smtp', addr: '198.51.100.1' });
  });
  console.log(`one round trip to another thread (MessageChannel): ${rtt.toFixed(0)} ns; an anvil actor needs two per connection`);
  port1.close();
  await echo.terminate();
}
