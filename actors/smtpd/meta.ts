/**
 * smtpd's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start smtpd without loading smtpd's code into its thread.
 */
import type { WorkerMetadata } from '../../src/runtime/service-meta.js';

const meta: WorkerMetadata = {
  name: 'smtpd',
  kind: 'worker',
};

export default meta;
