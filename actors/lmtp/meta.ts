/**
 * lmtp's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start lmtp without loading lmtp's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'lmtp',
  kind: 'pool',
  concurrency: 256,
  // Delivery agents log under their service name (as agentContext did).
  logAs: 'service',
};

export default meta;
