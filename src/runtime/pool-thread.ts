/**
 * One thread of a request/reply pool (./pool.ts), the server end of Postfix's private/ sockets:
 * it loads the service's module (its default export answers one request) and serves requests on
 * every port it holds — the master's (requests the router carries: a client's first one, pool
 * workers' service requests, control) and one direct channel per client thread the master wired
 * to it (./channels.ts). It runs at most `concurrency` requests at once and queues up to
 * `maxQueue` more; beyond that it answers BUSY, as a full pool did.
 *
 * The thread is a client of other services too (local(8) passes a delivery on to its
 * mailbox_transport): its first request to one goes through the master, which wires it, and
 * the next ones go on direct channels (./service-request.ts sends them).
 *
 * It ends itself, with the master's leave, after `idleMs` without a request (Postfix's max_idle):
 * it says `bye` on every direct channel and waits for each client's `bye` back, so nothing a
 * client sent is dropped, answers what it holds, closes what it holds (a defineService module's
 * closers: its queue store) and reports `ended`; the master then ends it.
 */
import { parentPort, type MessagePort } from 'node:worker_threads';
import { DirectChannels } from './channels.js';
import { flushCompileCacheSoon } from './compile-cache.js';
import { useThreadRequests } from './service-request.js';
import { PendingReplies, type Frame, type PoolFrame, type WireError } from './wire.js';

/** What the master sends first (parentPort): the module to serve and the master's port. */
export interface ServeMessage {
  type: 'postactor:serve';
  filename: string;
  port: MessagePort;
  concurrency: number;
  maxQueue: number;
  /** max_idle in ms; 0: never idle. */
  idleMs: number;
}

type Handler = (body: unknown) => unknown;

/** How long the thread's closers may take before it says `ended` anyway (ms). */
const CLOSE_WAIT_MS = 10_000;

/** The longest a thread's set-up delays its `ready` (see serve()). */
const READY_WAIT_MS = 2_000;

if (parentPort) {
  parentPort.once('message', (msg: ServeMessage) => void serve(msg));
}

async function serve(msg: ServeMessage): Promise<void> {
  const mod = (await import(msg.filename)) as { default?: Handler & { close?: () => Promise<void>; prepare?: () => Promise<void> } };
  const handler = mod.default;
  if (typeof handler !== 'function') throw new Error(`${msg.filename}: no default export to answer requests`);
  // A service written with defineService (./service.ts) closes what the thread holds (its queue
  // store) before the thread says `ended`: the pool then terminate()s it, which runs no JavaScript.
  const close = typeof handler.close === 'function' ? handler.close : null;
  let finished = false;
  const master = msg.port;
  const clients = new Set<MessagePort>();
  const queue: (() => void)[] = [];
  let running = 0;
  let lastActive = Date.now();
  let idleSaid = false;
  let ending = false;
  /** Clients that have not answered bye yet (while ending). */
  const unanswered = new Set<MessagePort>();

  // This thread's own requests to other services.
  const direct = new DirectChannels((frame) => master.postMessage(frame));
  const calls = new PendingReplies();
  useThreadRequests(<T>(to: string, body: unknown, transfer?: ArrayBuffer[]) =>
    direct.request<T>(to, body, transfer) ??
    calls.expect<T>((id) => master.postMessage((transfer && transfer.length ? { k: 'call', id, to, body, t: transfer } : { k: 'call', id, to, body }) satisfies PoolFrame, transfer ?? [])));

  const settled = () => {
    running--;
    lastActive = Date.now();
    idleSaid = false;
    const next = queue.shift();
    if (next) next();
    else if (ending) finish();
  };
  const run = (port: MessagePort, id: number, body: unknown) => {
    running++;
    Promise.resolve()
      .then(() => handler(body))
      .then(
        (value) => port.postMessage({ k: 'res', id, ok: true, value } satisfies Frame),
        (err: unknown) => {
          const message = String((err as Error)?.message ?? err);
          // A handler reports expected failures as values: a throw is a bug, counted as a crash.
          master.postMessage({ k: 'fault', message } satisfies PoolFrame);
          port.postMessage({ k: 'res', id, ok: false, error: { code: 'CRASHED', message } } satisfies Frame);
        },
      )
      .finally(settled);
  };
  const take = (port: MessagePort, id: number, body: unknown) => {
    lastActive = Date.now();
    idleSaid = false;
    if (running < msg.concurrency) return run(port, id, body);
    if (queue.length >= msg.maxQueue) {
      const error: WireError = { code: 'BUSY', message: 'mailbox full' };
      port.postMessage({ k: 'res', id, ok: false, error } satisfies Frame);
      master.postMessage({ k: 'busy' } satisfies PoolFrame);
      return;
    }
    queue.push(() => run(port, id, body));
  };
  const finish = () => {
    if (running > 0 || queue.length > 0 || unanswered.size > 0 || finished) return;
    finished = true;
    for (const c of clients) c.close();
    const ended = () => master.postMessage({ k: 'ended' } satisfies PoolFrame);
    if (!close) return ended();
    // Bounded: a close that never settles must not keep the pool's drain (a stop) waiting.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => { timer = setTimeout(r, CLOSE_WAIT_MS); });
    void Promise.race([close().catch(() => undefined), bound]).finally(() => {
      clearTimeout(timer);
      ended();
    });
  };
  const addClient = (port: MessagePort) => {
    clients.add(port);
    port.on('message', (frame: Frame) => {
      if (frame.k === 'req') take(port, frame.id, frame.body);
      else if (frame.k === 'bye' && unanswered.delete(port) && ending) finish();
    });
    // The client thread ended: nothing more comes from it.
    port.on('close', () => {
      clients.delete(port);
      if (unanswered.delete(port) && ending) finish();
    });
    if (ending) {
      unanswered.add(port);
      port.postMessage({ k: 'bye' } satisfies Frame);
    }
  };

  master.on('message', (frame: PoolFrame) => {
    if (frame.k === 'wire' || frame.k === 'throttle') return void direct.handle(frame);
    switch (frame.k) {
      case 'answer':
        calls.settle(frame);
        return;
      case 'req':
        return take(master, frame.id, frame.body);
      case 'client':
        return addClient(frame.port);
      case 'end':
        if (ending) return;
        ending = true;
        for (const c of clients) {
          unanswered.add(c);
          c.postMessage({ k: 'bye' } satisfies Frame);
        }
        return finish();
    }
  });

  if (msg.idleMs > 0) {
    const timer = setInterval(() => {
      if (ending || idleSaid || running > 0 || queue.length > 0) return;
      if (Date.now() - lastActive < msg.idleMs) return;
      idleSaid = true;
      master.postMessage({ k: 'idle' } satisfies PoolFrame);
    }, Math.max(20, Math.min(1000, Math.floor(msg.idleMs / 4))));
    timer.unref();
  }
  // The service's set-up (defineService: configuration, store, tables, a delivery agent's
  // helper process) now rather than at the first request, and the thread says it is ready only
  // then: until it has, its pool and the direct clients keep sending to the threads that are
  // (a second local(8) thread used to take deliveries while its helper was still booting, and
  // they waited for it, up to a second under load). A set-up that fails says ready all the same:
  // the error goes to the first request, which tries again. One that takes longer than
  // READY_WAIT_MS (a slow table server) says ready then, and its requests wait for it as before:
  // the pool would otherwise count the thread as lost after 5 s and start another. The set-up
  // counts as a request running, so that the thread neither idles nor ends (its closers)
  // halfway through it.
  if (typeof handler.prepare === 'function') {
    running++;
    let said = false;
    const sayReady = () => {
      if (said) return;
      said = true;
      master.postMessage({ k: 'ready' } satisfies PoolFrame);
    };
    const late = setTimeout(sayReady, READY_WAIT_MS);
    void handler.prepare().catch(() => undefined).finally(() => {
      clearTimeout(late);
      sayReady();
      settled();
      flushCompileCacheSoon();
    });
  } else {
    master.postMessage({ k: 'ready' } satisfies PoolFrame);
    flushCompileCacheSoon();
  }
}
