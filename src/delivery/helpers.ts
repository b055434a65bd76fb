/**
 * The agent side of the delivery helpers (helper.ts): each local(8) or virtual(8) worker thread
 * keeps up to `max` helper processes, started on demand and kept for later deliveries, and
 * sends them the mailbox writes (the writes wait in a FIFO queue here). The writes that came
 * in one turn of the event loop go in one request, up to MAX_BATCH, which the helper writes
 * together (batch.ts: their fsyncs overlap); a helper runs up to REQUESTS_PER_HELPER requests
 * at once, so a burst costs a few round trips and disk flushes, not one of each per message.
 *
 * Supervision, as Postfix's master does for its children: a helper that exits is logged
 * ("warning: process … pid N killed by signal 9", master's words) and replaced by the next
 * request that needs one. The request it was running is answered 4.3.0 "unknown mail
 * transport error" (what qmgr says when a delivery agent dies) — every write of the batch it
 * held — so the recipient is deferred and
 * retried, never lost: a helper killed before it linked the file into new/ (or appended to the
 * mbox) leaves no copy, one killed after that but before it replied leaves a copy that the retry
 * delivers again — at least once, Postfix's promise.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { HelperMessage, HelperRequest, WriteResult, WriterJob } from './protocol.js';

const HELPER = fileURLToPath(new URL('./helper.js', import.meta.url));

/** A helper that died before it said it was ready: a start-up failure. */
const STARTUP_FAILED: WriteResult = { ok: false, dsn: '4.3.0', reason: 'mail system configuration error: delivery helper did not start' };
const DIED: WriteResult = { ok: false, dsn: '4.3.0', reason: 'unknown mail transport error', died: true };

/** Writes per request at most: a batch waits for its slowest fsync, so keep it bounded. */
export const MAX_BATCH = 32;

interface Job { job: WriterJob; data: Uint8Array; resolve: (r: WriteResult) => void }

class Helper {
  readonly child: ChildProcess;
  ready = false;
  /** The requests sent and not finished, by id. */
  readonly inflight = new Map<number, Job[]>();
  /** The mboxes those requests write, with how many writes each. */
  readonly mboxes = new Map<string, number>();
  private id = 0;

  constructor(private readonly pool: DeliveryHelpers) {
    // No inherited execArgv or environment: the helper needs neither, and runs as root. Few
    // threads (one V8 worker, no SIGUSR1 inspector thread): glibc applies each set*id() call to
    // every thread in turn, so each thread makes every credential switch dearer.
    // libuv's threads run a batch's fsyncs side by side (batch.ts); they start with the first batch.
    this.child = fork(HELPER, [], { serialization: 'advanced', execArgv: ['--v8-pool-size=1', '--disable-sigusr1'], env: { PATH: '/usr/bin:/bin', UV_THREADPOOL_SIZE: String(FSYNC_THREADS) }, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    this.child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
    this.child.on('message', (m: HelperMessage) => {
      if (m.type === 'ready') { this.ready = true; this.pool.idle(); return; }
      const js = m.type === 'reply' ? this.inflight.get(m.id) : undefined;
      if (!js) return;
      if (m.partial) {
        // Answered now; the rest of the request follows (a second resolve() changes nothing).
        js.forEach((j, k) => { const r = m.results[k]; if (r) j.resolve(r); });
        return;
      }
      this.inflight.delete(m.id);
      this.forget(js);
      js.forEach((j, k) => j.resolve(m.results[k] ?? DIED));
      this.pool.idle();
    });
    this.child.on('error', () => { /* reported by 'exit' */ });
    this.child.on('exit', (code, signal) => this.pool.exited(this, code, signal, stderr.trim().split('\n')[0] ?? ''));
  }

  send(js: Job[]): void {
    const id = ++this.id;
    this.inflight.set(id, js);
    for (const j of js) if (j.job.kind === 'mbox') this.mboxes.set(j.job.path, (this.mboxes.get(j.job.path) ?? 0) + 1);
    const req: HelperRequest = { type: 'write', id, writes: js.map((j) => ({ job: j.job, data: j.data })) };
    this.child.send(req, (err) => {
      // The channel is gone: 'exit' follows and answers the job.
      if (err) this.child.kill('SIGKILL');
    });
  }

  /** A request is finished: its mboxes are no longer written here. */
  forget(js: Job[]): void {
    for (const j of js) {
      if (j.job.kind !== 'mbox') continue;
      const n = (this.mboxes.get(j.job.path) ?? 1) - 1;
      if (n > 0) this.mboxes.set(j.job.path, n); else this.mboxes.delete(j.job.path);
    }
  }
}

export class DeliveryHelpers {
  private readonly helpers = new Set<Helper>();
  private readonly queue: Job[] = [];
  private dispatchSoon = false;
  /** prestart()'s callers, told when a helper is ready or the one starting has died. */
  private whenStarted: (() => void)[] = [];

  constructor(
    private readonly max: number,
    private readonly warn: (text: string) => void,
  ) {}

  /** Writes data as job says, in a helper; the result is never a rejection. */
  write(job: WriterJob, data: Uint8Array): Promise<WriteResult> {
    return new Promise((resolve) => {
      this.queue.push({ job, data, resolve });
      // After this turn of the event loop: the deliveries that came in the same batch of
      // messages from qmgr go to a helper together (one request, their fsyncs shared).
      if (!this.dispatchSoon) {
        this.dispatchSoon = true;
        setImmediate(() => {
          this.dispatchSoon = false;
          this.dispatch();
        });
      }
    });
  }

  /**
   * Starts one helper now if there is none, so the first delivery need not wait for one to boot;
   * resolves when a helper is ready, or the one started has died (the first delivery reports it).
   */
  prestart(): Promise<void> {
    if (this.helpers.size === 0) this.start();
    if ([...this.helpers].some((h) => h.ready)) return Promise.resolve();
    return new Promise((resolve) => this.whenStarted.push(resolve));
  }

  private start(): void {
    const n = new Helper(this);
    this.helpers.add(n);
    // Neither the helper nor its channel keeps this thread alive.
    n.child.unref();
    (n.child.channel as unknown as { unref?: () => void } | undefined)?.unref?.();
  }

  /** Helper pids (for tests and diagnostics). */
  get pids(): number[] {
    return [...this.helpers].map((h) => h.child.pid ?? -1);
  }

  private dispatch(): void {
    // A message for an mbox that a helper is writing goes to that helper, whatever its load:
    // there it waits for the other write to finish (batch.ts), where another helper would find
    // the dot-lock taken and wait deliver_lock_delay (a second) before it tried again.
    for (const h of this.helpers) {
      if (!h.ready || h.mboxes.size === 0) continue;
      const same = this.queue.filter((j) => j.job.kind === 'mbox' && h.mboxes.has(j.job.path));
      if (same.length === 0) continue;
      for (let k = this.queue.length - 1; k >= 0; k--) if (same.includes(this.queue[k]!)) this.queue.splice(k, 1);
      for (let k = 0; k < same.length; k += MAX_BATCH) h.send(same.slice(k, k + MAX_BATCH));
    }
    while (this.queue.length > 0) {
      // The least busy helper with room takes what waits, up to MAX_BATCH writes in one request.
      let h: Helper | null = null;
      for (const x of this.helpers) if (x.ready && x.inflight.size < REQUESTS_PER_HELPER && (h === null || x.inflight.size < h.inflight.size)) h = x;
      if (h) {
        h.send(this.queue.splice(0, MAX_BATCH));
        continue;
      }
      // Every helper is full: start another, one at a time.
      const starting = [...this.helpers].some((x) => !x.ready);
      if (this.helpers.size < this.max && !starting) {
        this.start();
        continue;
      }
      break;
    }
  }

  idle(): void {
    this.started();
    this.dispatch();
  }

  private started(): void {
    for (const tell of this.whenStarted.splice(0)) tell();
  }

  exited(h: Helper, code: number | null, signal: NodeJS.Signals | null, stderr: string): void {
    this.helpers.delete(h);
    if (!h.ready) this.started();
    const how = signal ? `killed by signal ${signalNumber(signal)}` : `exit status ${code}`;
    if (signal || code !== 0) this.warn(`process ${HELPER} pid ${h.child.pid} ${how}${stderr ? `: ${stderr}` : ''}`);
    if (h.inflight.size > 0) {
      for (const js of h.inflight.values()) for (const j of js) j.resolve(DIED);
      h.inflight.clear();
      h.mboxes.clear();
    } else if (!h.ready && this.queue.length > 0) {
      // It never started: fail what is waiting rather than start helpers in a loop.
      for (const j of this.queue.splice(0)) j.resolve(STARTUP_FAILED);
    }
    this.dispatch();
  }
}

/**
 * Requests a helper runs at once (helper.ts): while one batch waits for its fsyncs, the next
 * is written, as several local(8) processes of Postfix's would write side by side.
 */
const REQUESTS_PER_HELPER = 4;

/**
 * libuv threads per helper (UV_THREADPOOL_SIZE): how many of a batch's fsyncs wait at once.
 * Each thread more makes every credential switch dearer (glibc signals each thread on each
 * set*id() call: with 8, a seteuid there and back cost ~0.3 ms of CPU here, with 4 about half).
 */
const FSYNC_THREADS = 4;

const signalNumber = (s: NodeJS.Signals) => constants.signals[s] ?? s;
