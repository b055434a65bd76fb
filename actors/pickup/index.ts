/**
 * pickup: local mail pickup, a singleton long-lived actor (master.cf
 * `pickup unix n - n 60 1 pickup`). Like Postfix's pickup(8) it takes the files sendmail(1)
 * leaves in `queue_directory/maildrop/`, oldest name first, and feeds each to cleanup:
 * it logs `ID: uid=UID from=<sender>`, prepends `Received: by $myhostname ($mail_name, from
 * userid UID) id ID; date`, and removes the file only after cleanup replied that the message
 * is safely in the incoming queue. When cleanup fails temporarily the file stays and is tried
 * again later; a submission cleanup refuses for good (5xx) is logged with a warning and removed,
 * as Postfix's pickup does. A file pickup does not recognise (not a regular file, or not in
 * Postactor's maildrop format) is never deleted, unlike Postfix's pickup: it may be another
 * program's, such as a Postfix maildrop file in a shared directory. It is moved to
 * queue_directory/maildrop-quarantine/ (mode 0700, under its own name) with a warning that
 * names both paths, and left where it is if even that fails.
 *
 * It scans on start (draining what was submitted while the server was down), whenever the
 * directory changes (fs.watch, for low latency), and every `wakeup` seconds (the master.cf
 * column; Postfix's master sends pickup a wake-up every 60 s), and keeps scanning while a scan
 * found files.
 *
 * Its thread runs only while there is mail to pick up: master starts it when maildrop/ gets a
 * file (actors/master/maildrop-watch.ts), and after `max_idle` seconds of scans that found
 * nothing it tells master it is idle and master stops it (Postfix's pickup is kept running by
 * master's wakeups; a thread costs memory even when it does nothing).
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { parentPort } from 'node:worker_threads';
import { queueDirectory, type Config } from '../../src/config/index.js';
import { maillog } from '../../src/log/maillog.js';
import { decodeMaildrop, isMaildropName, MaildropFormatError, type MaildropEnvelope } from '../../src/maildrop/format.js';
import { ensureMaildrop } from '../../src/maildrop/spool.js';
import { newQueueId } from '../../src/queue/qid.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import type { WorkerLifecycle } from '../../src/runtime/wire.js';
import { defineService, type Params } from '../../src/runtime/service.js';
import meta from './meta.js';
import { pickupReceivedHeader } from '../../src/maildrop/received.js';
import { cleanupService, type CleanupReply, type CleanupRequest } from '../protocol.js';

const log = maillog('pickup');

/** Submissions fed to cleanup at once (in name order); cleanup group-commits concurrent ones. */
const CONCURRENCY = 16;
/** A file that failed temporarily is not retried before this (ms), unless the wakeup comes first. */
const RETRY_DELAY = 5_000;
const DAY = 86_400_000;
const HOUR = 3_600_000;

/** What pickup reads, once per thread with the registry's types (src/runtime/service.ts). */
const PARAMS = {
  'myhostname': 'str',
  'mail_name': 'str',
  'content_filter': 'str',
  'max_idle': 'time',
} as const;

/** LF lines → CRLF (the queue holds messages as smtpd receives them). A bare CR stays as it is. */
export function toCrlf(msg: Buffer): Buffer {
  let lfs = 0;
  for (let i = msg.indexOf(0x0a); i >= 0; i = msg.indexOf(0x0a, i + 1)) if (i === 0 || msg[i - 1] !== 0x0d) lfs++;
  if (lfs === 0) return msg;
  const out = Buffer.allocUnsafe(msg.length + lfs);
  let o = 0;
  let start = 0;
  for (let i = msg.indexOf(0x0a); i >= 0; i = msg.indexOf(0x0a, i + 1)) {
    if (i > 0 && msg[i - 1] === 0x0d) continue;
    o += msg.copy(out, o, start, i);
    out[o++] = 0x0d;
    out[o++] = 0x0a;
    start = i + 1;
  }
  o += msg.copy(out, o, start);
  return out.subarray(0, o);
}

class Pickup {
  private readonly dir: string;
  private readonly quarantineDir: string;
  private readonly myhostname: string;
  private readonly mailName: string;
  private readonly busy = new Set<string>();
  private readonly retryAt = new Map<string, number>();
  private scanning = false;
  private again = false;
  private stopped = false;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inFlight = 0;
  private readonly contentFilter: string;
  private idle: (() => void) | null = null;
  /** When a scan last found a file, or one was in flight (max_idle counts from there). */
  private lastWork = Date.now();
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(config: Config, params: Params<typeof PARAMS>, private readonly actor: Actor, private readonly wakeup: number, private readonly maxIdle = 0, private readonly onIdle?: () => void) {
    this.dir = ensureMaildrop(queueDirectory(config));
    this.quarantineDir = join(queueDirectory(config), 'maildrop-quarantine');
    this.myhostname = params.myhostname;
    this.mailName = params.mail_name;
    this.contentFilter = params.content_filter.trim();
  }

  start(): void {
    try {
      this.watcher = watch(this.dir, () => this.kick());
      this.watcher.on('error', (err) => log.warn(`watch ${this.dir}: ${err.message}; relying on the ${this.wakeup}s wakeup`));
    } catch (err) {
      log.warn(`watch ${this.dir}: ${(err as Error).message}; relying on the ${this.wakeup}s wakeup`);
    }
    if (this.wakeup > 0) this.timer = setInterval(() => this.kick(), this.wakeup * 1000);
    if (this.maxIdle > 0 && this.onIdle) {
      this.idleTimer = setInterval(() => {
        if (this.scanning || this.inFlight > 0 || this.retryAt.size > 0 || Date.now() - this.lastWork < this.maxIdle * 1000) return;
        clearInterval(this.idleTimer!);
        this.onIdle!();
      }, Math.min(this.maxIdle * 1000, 10_000));
    }
    this.kick();
  }

  /** Stops taking new files; resolves when the ones in flight are done (so none is queued twice). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.idleTimer) clearInterval(this.idleTimer);
    if (this.inFlight > 0) await new Promise<void>((r) => { this.idle = r; });
  }

  /** Requests a scan; coalesces requests that arrive while one runs. */
  kick(): void {
    if (this.stopped) return;
    if (this.scanning) {
      this.again = true;
      return;
    }
    this.scanning = true;
    void this.scanLoop().finally(() => { this.scanning = false; });
  }

  private async scanLoop(): Promise<void> {
    do {
      this.again = false;
      let names: string[];
      try {
        names = readdirSync(this.dir).filter(isMaildropName).sort();
      } catch (err) {
        log.warn(`scan ${this.dir}: ${(err as Error).message}`);
        return;
      }
      const now = Date.now();
      if (names.length > 0) this.lastWork = now;
      const todo = names.filter((n) => !this.busy.has(n) && (this.retryAt.get(n) ?? 0) <= now);
      let next = 0;
      let done = 0;
      const worker = async () => {
        while (next < todo.length && !this.stopped) {
          const name = todo[next++]!;
          if (await this.pickupFile(name)) done++;
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, todo.length) }, worker));
      // Keep scanning while files were taken (more may have arrived meanwhile), as Postfix does.
      if (done > 0) this.again = true;
      for (const n of this.retryAt.keys()) if (!names.includes(n)) this.retryAt.delete(n);
    } while (this.again && !this.stopped);
  }

  /** Feeds one maildrop file to cleanup; true when the file was removed. */
  private async pickupFile(name: string): Promise<boolean> {
    const path = join(this.dir, name);
    this.busy.add(name);
    this.inFlight++;
    try {
      let st;
      try {
        st = lstatSync(path);
      } catch {
        return false; // gone (another scan took it)
      }
      if (!st.isFile()) return this.quarantine(name, `${path}: not a regular file`);
      let envelope: MaildropEnvelope;
      let message: Buffer;
      try {
        ({ envelope, message } = decodeMaildrop(readFileSync(path)));
      } catch (err) {
        if (err instanceof MaildropFormatError) return this.quarantine(name, `uid=${st.uid}: malformed maildrop file ${path}: ${err.message}`);
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return false;
        log.warn(`open input file ${path}: ${(err as Error).message}`);
        this.retryAt.set(name, Date.now() + RETRY_DELAY);
        return false;
      }

      const queueId = newQueueId();
      const now = Date.now();
      let arrival = envelope.arrival;
      // Time-warped stamps, as Postfix's pickup checks the file time.
      if (arrival > now + 2 * HOUR) {
        log.warn(`${queueId}: message ${path} dated ${Math.round((arrival - now) / 1000)} seconds into the future`);
        arrival = now;
      } else if (arrival < now - DAY) {
        log.warn(`${queueId}: message ${path} has been queued for ${Math.floor((now - arrival) / DAY)} days`);
      }
      // The file owner is the submitter (the uid written inside the file is not trusted).
      log.info(`${queueId}: uid=${st.uid} from=<${envelope.sender}>`);

      const received = Buffer.from(pickupReceivedHeader(this.myhostname, this.mailName, st.uid, queueId, arrival, '\r\n'), 'latin1');
      const body = toCrlf(message);
      // Content that starts with white space would continue our Received header: put an empty
      // line in between, as Postfix's pickup does (the whole content becomes body).
      const gap = body.length > 0 && (body[0] === 0x20 || body[0] === 0x09) ? Buffer.from('\r\n') : null;
      const content = new Uint8Array(received.length + (gap?.length ?? 0) + body.length);
      content.set(received, 0);
      if (gap) content.set(gap, received.length);
      content.set(body, received.length + (gap?.length ?? 0));

      const request: CleanupRequest = {
        queueId,
        sender: envelope.sender,
        recipients: envelope.recipients.map((address) => ({
          address, ...(envelope.notify ? { notify: envelope.notify } : {}),
          ...(envelope.original !== undefined ? { original: envelope.original } : {}), ...(envelope.orcpt ? { orcpt: envelope.orcpt } : {}),
        })),
        content,
        arrival,
        ...(envelope.envId ? { envId: envelope.envId } : {}),
        ...(envelope.ret ? { ret: envelope.ret } : {}),
        ...(envelope.trace ? { trace: envelope.trace } : {}),
        origin: 'pickup',
        ...(this.contentFilter ? { contentFilter: this.contentFilter } : {}),
        local: { rewriteContext: envelope.rewriteContext, ...(envelope.fullName ? { fullName: envelope.fullName } : {}) },
      };
      let reply: CleanupReply;
      try {
        reply = await cleanupService.call(this.actor, request);
      } catch (err) {
        log.warn(`${queueId}: error writing ${path}: cleanup: ${(err as Error).message}`);
        this.retryAt.set(name, Date.now() + RETRY_DELAY);
        return false;
      }
      if (reply.ok) return this.remove(path);
      if (reply.code >= 500) {
        log.warn(`${queueId}: ${path}: cleanup refused the message: ${reply.code} ${reply.dsn} ${reply.text} -- removed`);
        return this.remove(path);
      }
      log.warn(`${queueId}: error writing ${path}: ${reply.code} ${reply.dsn} ${reply.text}`);
      this.retryAt.set(name, Date.now() + RETRY_DELAY);
      return false;
    } finally {
      this.busy.delete(name);
      if (--this.inFlight === 0 && this.idle) this.idle();
    }
  }

  /**
   * Moves a file pickup does not recognise out of the maildrop, never deleting it; true when it
   * is gone from the maildrop. A file that cannot be moved stays and is not looked at again by
   * this pickup (one warning, not one per scan).
   */
  private quarantine(name: string, why: string): boolean {
    const from = join(this.dir, name);
    try {
      mkdirSync(this.quarantineDir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return this.keep(name, why, err as Error);
    }
    // Never over another file: a free name (NAME, NAME.1, …) in a directory only pickup writes.
    const taken = (p: string) => { try { lstatSync(p); return true; } catch { return false; } };
    let to = join(this.quarantineDir, name);
    for (let n = 1; taken(to); n++) {
      if (n > 1000) return this.keep(name, why, new Error('no free name'));
      to = join(this.quarantineDir, `${name}.${n}`);
    }
    try {
      renameSync(from, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      return this.keep(name, why, err as Error);
    }
    log.warn(`${why} -- moved to ${to}`);
    return true;
  }

  private keep(name: string, why: string, err: Error): false {
    log.warn(`${why} -- left in place (cannot move it to ${this.quarantineDir}: ${err.message})`);
    this.retryAt.set(name, Number.POSITIVE_INFINITY);
    return false;
  }

  private remove(path: string): boolean {
    try {
      unlinkSync(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      log.warn(`remove ${path}: ${(err as Error).message}`);
      return false;
    }
  }
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup(ctx): Pickup {
    const line = ctx.line ?? ctx.config.services.find((s) => s.command === 'pickup');
    // master stops an idle pickup (it asks, and master answers with postactor:stop).
    const pickup = new Pickup(ctx.config, ctx.params, ctx.actor, line?.wakeup || 60, ctx.params.max_idle, () => parentPort!.postMessage({ type: 'postactor:idle' } satisfies WorkerLifecycle));
    // The first scan starts now; master hears "ready" as it begins (it drains in the background).
    pickup.start();
    return pickup;
  },
  control: {
    status: (pickup) => ({ running: pickup !== null }),
    wakeup: (pickup) => pickup?.kick(),
  },
  stop: (pickup) => pickup.stop(),
});
