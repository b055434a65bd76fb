/**
 * bounce's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start bounce without loading bounce's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'bounce',
  kind: 'pool',
  concurrency: 16,
};

export default meta;
