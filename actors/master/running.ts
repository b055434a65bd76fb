/**
 * Whether Postactor's master runs for a configuration: what `postactor stop`/`abort`/`status`
 * and postsuper ask, apart from master's own code (./index.ts), which these commands then do not
 * load (start, check and reload load it for checkConfig).
 */
import { queueDirectory, type Config } from '../../src/config/index.js';
import { controlRequest, controlSocketPath } from '../../src/runtime/control.js';
import { LOCK_SUPPORTED, pidFromFile, provenMaster } from './lock.js';

/**
 * The pid of the process proven to be Postactor's master for this queue directory (its lock
 * and command line: lock.ts), or null. A pid file alone, stale or another MTA's, is not enough.
 * Where the lock is not supported (not Linux), the master must answer on its control socket
 * with the pid the pid file names.
 */
export async function runningMaster(config: Config): Promise<number | null> {
  const queueDir = queueDirectory(config);
  if (LOCK_SUPPORTED) return provenMaster(queueDir);
  const pid = pidFromFile(queueDir);
  if (pid === null) return null;
  try {
    const status = (await controlRequest(controlSocketPath(queueDir), 'status', undefined, 2000)) as { pid?: number };
    return status.pid === pid ? pid : null;
  } catch {
    return null;
  }
}
