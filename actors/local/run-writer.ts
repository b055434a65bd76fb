/**
 * Writes one message into one mailbox (an mbox appended under its locks, or a Maildir) as the
 * mailbox's owner: the writers shared by local(8) and virtual(8).
 *
 * Running as root, the write happens in a short-lived child process (writer.ts) that switches to
 * the owner's uid/gid itself: set*id() would change the credentials of every thread of this
 * process. Not running as root, we cannot switch users: a mailbox of our own uid is written
 * in-process, any other is refused with 4.2.0 (deferred, nothing lost) and that reason.
 *
 * A Maildir delivery as root first takes a cheap path: util-linux's setpriv switches to the
 * owner (uid, gid, no other groups) and runs a few lines of sh — mkdir -p tmp new cur, write
 * tmp/NAME exclusively, fsync it (coreutils sync FILE), link it into new/, remove tmp/NAME,
 * fsync new/ — a few milliseconds instead of starting Node.js. If any step before the link
 * fails, nothing is in new/, and the Node.js helper runs the delivery again to report the
 * failure in Postfix's words; a failure after the link (the fsync of new/) is reported as is.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendMbox, deliverMaildir, maildirName, MailboxError, type Privs } from './mailbox.js';
import type { WriterJob } from './writer.js';

export type WriteResult = { ok: true } | { ok: false; dsn: string; reason: string };

const WRITER = new URL('./writer.js', import.meta.url);

/** Runs writer.ts as a child process (as root; it switches to the recipient itself). */
export function runWriter(job: WriterJob, data: Buffer): Promise<WriteResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WRITER.pathname], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.stdin.on('error', () => {});
    child.on('error', (e) => resolve({ ok: false, dsn: '4.3.0', reason: `local delivery helper: ${e.message}` }));
    child.on('close', (code) => {
      try {
        const r = JSON.parse(out.trim().split('\n').pop() ?? '') as { ok: boolean; dsn?: string; reason?: string };
        resolve(r.ok ? { ok: true } : { ok: false, dsn: r.dsn ?? '4.3.0', reason: r.reason ?? 'unknown error' });
      } catch {
        resolve({ ok: false, dsn: '4.3.0', reason: `local delivery helper exited with status ${code}${err ? `: ${err.trim().split('\n')[0]}` : ''}` });
      }
    });
    child.stdin.end(Buffer.concat([Buffer.from(JSON.stringify(job) + '\n'), data]));
  });
}

const SETPRIV = '/usr/bin/setpriv';
/** $1 = the Maildir, $2 = the file name; exit 3 = linked into new/ but new/ not synced. */
const MAILDIR_SH = 'umask 077; set -C; mkdir -p "$1tmp" "$1new" "$1cur" && cat > "$1tmp/$2" && sync "$1tmp/$2" && ln "$1tmp/$2" "$1new/$2" || { rm -f "$1tmp/$2"; exit 1; }; rm -f "$1tmp/$2"; sync "$1new" || exit 3';

/** The cheap Maildir path (see above): 'ok', 'unsynced' (exit 3), or 'retry' (use the Node.js helper). */
function fastMaildir(job: WriterJob, data: Buffer): Promise<'ok' | 'unsynced' | 'retry'> {
  return new Promise((resolve) => {
    const dir = job.path.endsWith('/') ? job.path : `${job.path}/`;
    const child = spawn(SETPRIV, [`--reuid=${job.uid}`, `--regid=${job.gid}`, `--groups=${job.gid}`, '--', '/bin/sh', '-c', MAILDIR_SH, 'maildir', dir, maildirName()], { stdio: ['pipe', 'ignore', 'ignore'], env: { PATH: '/usr/bin:/bin' } });
    child.stdin.on('error', () => {});
    child.on('error', () => resolve('retry'));
    child.on('close', (code) => resolve(code === 0 ? 'ok' : code === 3 ? 'unsynced' : 'retry'));
    child.stdin.end(data);
  });
}

const hasSetpriv = existsSync(SETPRIV);

/** Writes `data` as job.uid/job.gid: through a child as root, in-process for our own uid. */
export async function writeMailbox(job: WriterJob, data: Buffer, owner: string): Promise<WriteResult> {
  if (process.getuid?.() === 0) {
    if (job.kind === 'maildir' && hasSetpriv && !(job.sizeLimit > 0 && data.length > job.sizeLimit)) {
      const r = await fastMaildir(job, data);
      if (r === 'ok') return { ok: true };
      if (r === 'unsynced') return { ok: false, dsn: '4.2.0', reason: `fsync ${job.path}new: failed` };
    }
    return runWriter(job, data);
  }
  const me = process.getuid?.() ?? -1;
  if (job.uid !== me) return { ok: false, dsn: '4.2.0', reason: `cannot deliver as user ${owner} (uid ${job.uid}): Postactor is not running as root (uid ${me})` };
  const privs: Privs = { asUser: (fn) => fn(), asSpool: (fn) => fn(), uid: job.anyOwner ? -1 : me, gid: process.getgid?.() ?? -1 };
  try {
    if (job.kind === 'maildir') await deliverMaildir(job.path, data, privs, job.sizeLimit);
    else await appendMbox(job.path, data, privs, job.locks, job.inSpool, job.sizeLimit);
    return { ok: true };
  } catch (e) {
    if (e instanceof MailboxError) return { ok: false, dsn: e.dsn, reason: e.message };
    throw e;
  }
}
