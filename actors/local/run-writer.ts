/**
 * Writes one message into one mailbox (an mbox appended under its locks, or a Maildir) as the
 * mailbox's owner: the writers shared by local(8) and virtual(8).
 *
 * Running as root, the write happens in a short-lived child process (writer.ts) that switches to
 * the owner's uid/gid itself: set*id() would change the credentials of every thread of this
 * process. Not running as root, we cannot switch users: a mailbox of our own uid is written
 * in-process, any other is refused with 4.2.0 (deferred, nothing lost) and that reason.
 */
import { spawn } from 'node:child_process';
import { appendMbox, deliverMaildir, MailboxError, type Privs } from './mailbox.js';
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

/** Writes `data` as job.uid/job.gid: through the child as root, in-process for our own uid. */
export async function writeMailbox(job: WriterJob, data: Buffer, owner: string): Promise<WriteResult> {
  if (process.getuid?.() === 0) return runWriter(job, data);
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
