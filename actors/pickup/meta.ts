/**
 * pickup's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start pickup without loading pickup's code into its thread.
 */
import type { WorkerMetadata } from '../../src/runtime/service-meta.js';

const meta: WorkerMetadata = {
  name: 'pickup',
  kind: 'worker',
  singleton: true,
  // No thread while maildrop/ is empty: master starts it when a file comes (actors/master/maildrop-watch.ts).
  onDemand: true,
};

export default meta;
