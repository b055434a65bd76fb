/**
 * Starts the on-demand pickup thread when there is something to pick up (actors/master/services.ts
 * `onDemand`). Postfix's master keeps pickup running and writes it a wakeup every `wakeup`
 * seconds (the master.cf column); here master watches queue_directory/maildrop/ itself and starts
 * pickup when a file arrives (fs.watch, as pickup itself watches while it runs), when the
 * server starts with files left there, and at every wakeup that finds a file (a change the watch
 * missed, a file pickup set aside to retry after it ended). Pickup ends again after max_idle
 * without files (actors/pickup/index.ts). The check is one readdir of a directory that is empty
 * nearly always.
 */
import { readdirSync, watch, type FSWatcher } from 'node:fs';
import { isMaildropName } from '../../src/maildrop/format.js';
import { ensureMaildrop } from '../../src/maildrop/spool.js';

export interface MaildropTrigger {
  /** Starts pickup's thread unless it runs (supervisor.ts `demand()`). */
  demand(): void;
  /** master.cf's wakeup column of the pickup line (seconds; 0: none). */
  wakeup: number;
}

/** Watches queueDir's maildrop for the pickup services; returns the function that stops it. */
export function watchMaildrop(queueDir: string, triggers: readonly MaildropTrigger[], warn: (text: string) => void): () => void {
  if (triggers.length === 0) return () => undefined;
  const dir = ensureMaildrop(queueDir);
  const demandAll = () => {
    for (const t of triggers) t.demand();
  };
  const check = () => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      warn(`scan ${dir}: ${(err as Error).message}`);
      return;
    }
    if (names.some(isMaildropName)) demandAll();
  };
  let watcher: FSWatcher | null = null;
  try {
    // Any change: a new name is what sendmail makes; pickup reads the directory itself.
    watcher = watch(dir, (_event, name) => {
      if (name === null || isMaildropName(name)) demandAll();
    });
    watcher.on('error', (err) => warn(`watch ${dir}: ${err.message}; relying on pickup's wakeup`));
  } catch (err) {
    warn(`watch ${dir}: ${(err as Error).message}; relying on pickup's wakeup`);
  }
  const timers = triggers.filter((t) => t.wakeup > 0).map((t) => setInterval(check, t.wakeup * 1000).unref());
  check();
  return () => {
    watcher?.close();
    for (const t of timers) clearInterval(t);
  };
}
