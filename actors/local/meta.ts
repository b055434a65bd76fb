/**
 * local's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start local without loading local's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'local',
  kind: 'pool',
  concurrency: 64,
  // Delivery agents log under their service name (as agentContext did).
  logAs: 'service',
};

export default meta;
