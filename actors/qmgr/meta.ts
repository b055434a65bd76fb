/**
 * qmgr's service metadata (src/runtime/service-meta.ts), apart from ./index.ts: master reads it
 * to plan and start qmgr without loading qmgr's code into its thread.
 */
import type { WorkerMetadata } from '../../src/runtime/service-meta.js';

const meta: WorkerMetadata = {
  name: 'qmgr',
  // The same actor with oqmgr's scheduler (./strategy.ts), chosen by the master.cf command name;
  // Postfix logs under the program's name: postfix/qmgr, or postfix/oqmgr.
  commands: ['qmgr', 'oqmgr'],
  kind: 'worker',
  singleton: true,
  // After the pools it hands deliveries to, before the listeners that feed it.
  startOrder: 1,
};

export default meta;
