/**
 * cleanup's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start cleanup without loading cleanup's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'cleanup',
  kind: 'pool',
  concurrency: 256,
  // No thread kept warm: smtpd asks for one at the first accepted recipient (WARM_REQUEST),
  // before it waits for cleanup's reply at the end of DATA (actors/master/services.ts).
};

export default meta;
