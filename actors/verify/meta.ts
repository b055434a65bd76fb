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
  // No thread until its first request (master's router starts it), as Postfix's master spawns
  // verify when smtpd or qmgr first connects: most servers never verify an address. Its cache
  // is in the queue store, so nothing is lost by a thread that was never started. Once started
  // it stays (it does not report idle, as pickup does).
  onDemand: true,
};

export default meta;
