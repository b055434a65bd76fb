/**
 * error's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start error without loading error's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'error',
  kind: 'pool',
  concurrency: 256,
  // Delivery agents log under their service name (as agentContext did): postfix/retry.
  logAs: 'service',
};

export default meta;
