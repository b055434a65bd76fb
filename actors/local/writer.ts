/**
 * The privileged helper of local(8) when Postactor runs as root: a short-lived child process
 * (one per mailbox delivery) that writes one message into one mailbox as the recipient.
 *
 * Why a child: set*id() changes the credentials of the whole process (Node.js and glibc apply
 * them to every thread), and the local pool's worker threads share the process with every
 * other actor, so switching to a recipient's uid there would change smtpd's and qmgr's too.
 * The child starts as root, keeps root only for what Postfix does with root or spool
 * privileges (creating the lock file and the mailbox in a mail_spool_directory that is not
 * world-writable, then chown to the recipient), and performs every write with the recipient's
 * effective uid/gid and only the recipient's group (Postfix's set_eugid()).
 *
 * Protocol: stdin is one JSON line (the job) and then the message bytes; stdout is one JSON
 * line: {"ok":true,"path":…} or {"ok":false,"dsn":…,"reason":…}.
 */
import { appendMbox, deliverMaildir, MailboxError, type LockSettings, type Privs } from './mailbox.js';

export interface WriterJob {
  kind: 'mbox' | 'maildir';
  path: string;
  uid: number;
  gid: number;
  inSpool: boolean;
  locks: LockSettings;
  sizeLimit: number;
  /** A /file from an alias: any owner (the mailbox owner check does not apply). */
  anyOwner?: boolean;
}

async function readAll(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function main(): Promise<void> {
  const input = await readAll();
  const nl = input.indexOf(10);
  const job = JSON.parse(input.subarray(0, nl).toString('utf8')) as WriterJob;
  const data = input.subarray(nl + 1);
  const root = process.getuid?.() === 0;
  const privs: Privs = {
    uid: job.anyOwner ? -1 : job.uid,
    gid: job.gid,
    async asUser(fn) {
      if (!root) return fn();
      process.setegid!(job.gid);
      process.seteuid!(job.uid);
      try { return await fn(); } finally { process.seteuid!(0); process.setegid!(0); }
    },
    asSpool: (fn) => fn(),
  };
  if (root) process.setgroups!([job.gid]);
  try {
    const path = job.kind === 'mbox' ? (await appendMbox(job.path, data, privs, job.locks, job.inSpool, job.sizeLimit), job.path) : await deliverMaildir(job.path, data, privs, job.sizeLimit);
    process.stdout.write(JSON.stringify({ ok: true, path }) + '\n');
  } catch (e) {
    const err = e instanceof MailboxError ? e : new MailboxError(String((e as Error).message ?? e));
    process.stdout.write(JSON.stringify({ ok: false, dsn: err.dsn, reason: err.message }) + '\n');
  }
}

main().catch((e: unknown) => {
  process.stdout.write(JSON.stringify({ ok: false, dsn: '4.3.0', reason: `local delivery helper: ${String((e as Error).message ?? e)}` }) + '\n');
});
