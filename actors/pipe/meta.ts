/**
 * pipe's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start pipe without loading pipe's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'pipe',
  kind: 'pool',
  // One command per thread: maxproc limits concurrent commands, as in Postfix (maxproc 1 = serial).
  concurrency: 1,
  // Delivery agents log under their service name (as agentContext did).
  logAs: 'service',
};

export default meta;
