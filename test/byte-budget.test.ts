/**
 * src/runtime/byte-budget.ts: requests hold bytes up to the limit, wait in order beyond it, and a
 * request larger than the whole budget passes alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ByteBudget } from '../src/runtime/byte-budget.js';

const tick = () => new Promise((r) => setImmediate(r));

test('holds up to the limit; the next waits until enough is given back, in order', async () => {
  const b = new ByteBudget(100);
  const r1 = await b.acquire(60);
  const r2 = await b.acquire(40);
  assert.equal(b.held, 100);
  const order: string[] = [];
  const p3 = b.acquire(30).then((r) => { order.push('third'); return r; });
  const p4 = b.acquire(10).then((r) => { order.push('fourth'); return r; });
  await tick();
  assert.deepEqual(order, [], 'nothing fits while the budget is full (and the small one does not jump the queue)');
  r2();
  r2(); // given back once only
  const r3 = await p3;
  const r4 = await p4;
  assert.deepEqual(order, ['third', 'fourth']);
  assert.equal(b.held, 100);
  r1(); r3(); r4();
  assert.equal(b.held, 0);
});

test('a request larger than the budget passes when nothing else is held, and holds the rest back', async () => {
  const b = new ByteBudget(100);
  const big = await b.acquire(500);
  assert.equal(b.held, 500);
  let small = false;
  const p = b.acquire(1).then((r) => { small = true; return r; });
  await tick();
  assert.equal(small, false);
  big();
  (await p)();
  assert.equal(small, true);
  assert.equal(b.held, 0);
});
