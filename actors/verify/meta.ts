/**
 * verify's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start verify without loading verify's code into its thread.
 */
import type { WorkerMetadata } from '../../src/runtime/service-meta.js';

const meta: WorkerMetadata = {
  name: 'verify',
  kind: 'worker',
  // Postfix's verify is a "solitary" server: one thread, whatever maxproc says.
  singleton: true,
};

export default meta;
