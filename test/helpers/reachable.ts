/**
 * Directories another user can reach. Tests run as root, but some deliveries run as another user
 * (pipe(8) user=nobody, local(8) and virtual(8) as the recipient or default_privs), and the
 * checkout may sit under a directory only root can enter (a clone in /root/x): that user can
 * neither execute a command nor read a fixture inside it (EACCES). Everything such a user needs —
 * commands, fixtures, output directories — goes into a fresh directory under os.tmpdir() instead.
 */
import { chmodSync, copyFileSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

/**
 * A fresh directory under os.tmpdir() that every user can enter: mode 0755, or 0777 (sticky
 * not set) for the output of a command that runs as someone else. The caller removes it.
 */
export function reachableDir(prefix: string, mode: 0o755 | 0o777 = 0o755): string {
  assertSearchable(tmpdir());
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, mode); // mkdtemp makes 0700, and the umask may narrow a mode given to mkdir
  return dir;
}

/** Copies a fixture (a command, a table) into `dir`, readable and executable by everyone. */
export function reachableCopy(dir: string, file: string): string {
  const to = join(dir, basename(file));
  copyFileSync(file, to);
  chmodSync(to, 0o755);
  return to;
}

/** Every directory from `path` up to / must let others pass (o+x), or nothing below is reachable. */
function assertSearchable(path: string): void {
  for (let p = path; ; p = dirname(p)) {
    if ((statSync(p).mode & 0o001) === 0) {
      throw new Error(`${p}: not searchable by other users (mode ${(statSync(p).mode & 0o777).toString(8)}): set TMPDIR to a directory every user can reach`);
    }
    if (dirname(p) === p) return;
  }
}
