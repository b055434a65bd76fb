/**
 * The maildrop spool, `queue_directory/maildrop/`: where sendmail(1) leaves submissions for the
 * pickup actor, so that local mail can be submitted while the server is down.
 *
 * Permissions. Postfix makes maildrop mode 1730, owner $mail_owner, group postdrop, and writes
 * into it through the setgid-postdrop helper postdrop(1): any local user can submit, nobody can
 * list the directory or read another user's submission. Postactor has no setgid helper (yet) and
 * usually runs server and submitters as one user, so it creates the directory mode 1733
 * (owner rwx; group and others may create entries but not list them; the sticky bit stops one
 * user from removing or renaming another's files) and each file mode 0600 (only its owner, and
 * root, can read it). Pickup, running as the directory owner, may remove any entry (sticky-bit
 * rule: the directory owner can). With submitters under other uids the server would have to
 * run as root to read their 0600 files; a setgid postdrop is the Postfix way and is left for
 * later.
 *
 * Durability. A submission is written to a temporary name starting with ".", fsynced, then
 * linked to its final name and the temporary name removed (link fails instead of overwriting if
 * two submitters ever picked the same name), then the directory is fsynced: a file under a
 * final name is always complete, or absent.
 */
import { join } from 'node:path';
import { newQueueId } from '../queue/qid.js';
import { encodeMaildropHead, type MaildropEnvelope } from './format.js';

// Not `import … from 'node:fs'`: an ES module import of node:fs builds its namespace, which loads
// fs/promises and the streams (some 30 internal modules, milliseconds at every start of sendmail
// and mailq, which import this file). getBuiltinModule returns the already loaded module.
const { closeSync, fsyncSync, linkSync, mkdirSync, openSync, statSync, chmodSync, unlinkSync, writeSync, constants } = process.getBuiltinModule('node:fs');

export const MAILDROP_MODE = 0o1733;
export const MAILDROP_FILE_MODE = 0o600;

export function maildropDirectory(queueDir: string): string {
  return join(queueDir, 'maildrop');
}

/** Creates queue_directory and maildrop (mode 1733) when missing; returns the maildrop path. */
export function ensureMaildrop(queueDir: string): string {
  const dir = maildropDirectory(queueDir);
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
    return dir;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(queueDir, { recursive: true });
  try {
    mkdirSync(dir, { mode: MAILDROP_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return dir;
  }
  chmodSync(dir, MAILDROP_MODE); // mkdir's mode is filtered by the umask
  return dir;
}

function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/**
 * Writes one submission (envelope + message parts) into the maildrop; returns its file name.
 * Throws the file-system error (the caller maps it to EX_CANTCREAT / EX_TEMPFAIL).
 */
export function writeSubmission(dir: string, envelope: Omit<MaildropEnvelope, 'size'>, parts: Uint8Array[]): string {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const temp = join(dir, `.${process.pid}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}`);
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, MAILDROP_FILE_MODE);
  let linked: string | null = null;
  try {
    writeAll(fd, encodeMaildropHead({ ...envelope, size }));
    for (const p of parts) writeAll(fd, p);
    fsyncSync(fd);
    closeSync(fd);
    for (let attempt = 0; attempt < 100 && !linked; attempt++) {
      // Thread 0: the submitting command's main thread. Should a worker ever write here, a name
      // taken twice fails the link (EEXIST) and the next attempt takes a new one.
      const name = newQueueId(0);
      try {
        linkSync(temp, join(dir, name));
        linked = name;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    if (!linked) throw new Error('could not pick a unique maildrop file name');
  } catch (err) {
    try { closeSync(fd); } catch { /* closed already */ }
    try { unlinkSync(temp); } catch { /* gone */ }
    throw err;
  }
  unlinkSync(temp);
  try {
    const dfd = openSync(dir, constants.O_RDONLY);
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  } catch {
    // A directory one may write but not read (mode 1733, another owner) cannot be opened for
    // fsync; the file's own fsync and the link are what we have then.
  }
  return linked;
}
