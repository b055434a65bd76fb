/**
 * trivial-rewrite's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start trivial-rewrite without loading trivial-rewrite's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'trivial-rewrite',
  kind: 'pool',
  concurrency: 256,
};

export default meta;
