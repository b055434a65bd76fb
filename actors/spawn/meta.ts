/**
 * spawn's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start spawn without loading spawn's code into its thread.
 */
import type { WorkerMetadata } from '../../src/runtime/service-meta.js';

const meta: WorkerMetadata = {
  name: 'spawn',
  kind: 'worker',
  // One thread per service line: the commands it runs are processes of their own.
  singleton: true,
};

export default meta;
