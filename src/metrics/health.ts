/**
 * The store half of /health: the queue directory takes a write that reaches the disk (a full or
 * read-only file system fails here before it fails a message).
 */
import { closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** null when a small file can be written and synced in queue_directory/pid, else why not. */
export function storeWritable(queueDir: string): string | null {
  const probe = join(queueDir, 'pid', `health.${process.pid}`);
  try {
    const fd = openSync(probe, 'w', 0o600);
    try {
      writeSync(fd, 'ok\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    rmSync(probe, { force: true });
    return null;
  } catch (err) {
    return `${probe}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}
