/**
 * virtual's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start virtual without loading virtual's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'virtual',
  kind: 'pool',
  concurrency: 64,
  // The mailbox writes wait in the thread's helper processes (two, each running four batches of
  // up to 32): one thread carries the load, running 64 deliveries and queueing the rest. A
  // second one (its own isolate, helpers and batches) cost more than it brought: bench/delivery,
  // mbox 384 → 492/s and maildir 404 → 476/s with one thread (bench/README.md, session 13).
  spreadAt: 256,
  // Delivery agents log under their service name (as agentContext did).
  logAs: 'service',
};

export default meta;
