/**
 * smtp's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start smtp without loading smtp's code into its thread.
 */
import type { PoolMetadata } from '../../src/runtime/service-meta.js';

const meta: PoolMetadata = {
  name: 'smtp',
  kind: 'pool',
  concurrency: 256,
  // Logs under its service name (as before): postfix/smtp, postfix/relay.
  logAs: 'service',
};

export default meta;
