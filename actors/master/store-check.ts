/**
 * The deep check of the queue store (every tree page, src/queue/integrity.ts) for the commands
 * that read the store: only when no master runs, since then nothing writes the store and pages
 * cannot change under the check (with a master running, the file-size check that every open
 * does is what is safe). A page LMDB would crash on is then a fatal message, not a SIGSEGV.
 */
import { join } from 'node:path';
import { STORE_FILE, storeTreeProblem } from '../../src/queue/integrity.js';
import { LOCK_SUPPORTED, provenMaster } from './lock.js';

/** What is wrong with the stopped system's store, or null (also when a master runs). */
export function stoppedStoreProblem(queueDir: string): string | null {
  if (!LOCK_SUPPORTED || provenMaster(queueDir) !== null) return null;
  return storeTreeProblem(join(queueDir, STORE_FILE));
}
