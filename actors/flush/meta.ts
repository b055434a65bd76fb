/**
 * flush's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start flush without loading flush's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'flush',
  kind: 'pool',
  concurrency: 64,
};

export default meta;
