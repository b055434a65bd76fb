/**
 * The service skeleton: what every actor's start-up did by hand, once. An actor module says
 * what it is with defineService (its kind, whether it is a singleton, when master starts it,
 * how many requests a thread runs, the main.cf parameters it reads) and gives setup/handle/stop;
 * the skeleton does the rest in each of its threads, as Postfix's single_server/multi_server
 * skeletons do for its daemons:
 *
 * - the configuration master handed over, with the service's master.cf "-o" overrides applied
 *   (master applies them: actors/master/index.ts serviceConfig), and the declared parameters
 *   read once with their registry types (src/config/params): a name the registry does not know,
 *   or a type that is not its declared one, is a start-up error, not a silent empty string;
 * - the maillog with Postfix's identity, `$syslog_name/<command>[pid]`, and the thread's name;
 * - the queue store, opened once per thread on first use;
 * - stop: the service's own stop, then every resource registered with onStop (the store among
 *   them) is closed before the thread ends. A thread that exits with a store's write batch open
 *   can hang the process's exit (lmdb-js issue #336; src/queue/command-line.ts), so no actor
 *   ends its thread with process.exit() without closing first: a fatal start-up error closes too.
 *
 * Two kinds, as master hosts them (actors/master/services.ts):
 * - 'pool': a request/reply daemon in a pool (src/runtime/pool.ts). The module's default export
 *   is the handler pool-thread.ts calls for each request; setup runs as soon as the thread is
 *   ready (its `prepare`: a thread started ahead of its requests, by a warm request or a pool's
 *   minimum, has its store and tables open when they come), or at the first request should it
 *   have failed then (the error goes to that request). When the pool ends the thread (max_idle, stop, reload: its `end` frame), the
 *   thread runs the closers (the export's `close`) once its requests are answered and before it
 *   says `ended`; only then does the pool terminate() it, which runs no JavaScript in it.
 * - 'worker': a long-lived supervised thread (qmgr, pickup, verify, …). It starts when the module
 *   is the entry of a worker thread master started for one of its commands; master's
 *   `postactor:stop` runs stop and the closers, then the thread exits.
 *
 * The metadata (kind, commands, threads, start order: src/runtime/service-meta.ts) lives in a
 * module of its own, actors/<name>/meta.ts, which the entry file spreads into its definition and
 * master reads without loading the service's code. Importing an entry file in the main thread
 * starts nothing either.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ConfigError, configFromJSON, queueDirectory, type Config, type ConfigJSON, type MasterService } from '../config/index.js';
import { readParams, type ParamSpec, type Params } from '../config/declared.js';
import { configureMaillog, flushMaillog, maillog, type Logger } from '../log/maillog.js';
import { QueueStore } from '../queue/store.js';
import { flushCompileCacheSoon } from './compile-cache.js';
import type { Actor } from './endpoint.js';
import type { ActorWorkerData, WorkerLifecycle } from './wire.js';
import { serviceMeta, type PoolMetadata, type ServiceMeta, type WorkerMetadata } from './service-meta.js';

export type { PoolMetadata, ServiceMeta, ServiceMetadata, WorkerMetadata } from './service-meta.js';

// Declared parameters (their kinds, their reading) live in src/config/declared.ts, where the
// helpers in src/ that several services share declare theirs too.
export type { ParamKind, ParamSpec, Params } from '../config/declared.js';
export { readParams } from '../config/declared.js';

export interface ServiceContext<S extends ParamSpec = ParamSpec> {
  readonly data: ActorWorkerData<unknown>;
  /** The master.cf service name (first column): a transport's name, "retry" for error in defer mode. */
  readonly service: string;
  /** The master.cf command this thread runs as (qmgr or oqmgr, …). */
  readonly command: string;
  /** main.cf with this service's "-o name=value" overrides applied. */
  readonly config: Config;
  readonly params: Params<S>;
  /** Logs as `$syslog_name/<command>[pid]` (or the service name: logAs). */
  readonly log: Logger;
  /** This service's master.cf line, when found. */
  readonly line: MasterService | undefined;
  /** The queue store, opened on first use, once per thread, closed at stop. */
  readonly store: QueueStore;
  /** Long-lived workers: the data port to the router (requests to other services). */
  readonly actor: Actor;
  /** Registers what must be closed before the thread ends (run last registered first). */
  onStop(close: () => void | Promise<void>): void;
  /** Ends the thread: the closers run first (the store's commits its pending writes), then process.exit(code). */
  exit(code: number): void;
}

/** What a definition adds to its metadata (actors/<name>/meta.ts: src/runtime/service-meta.ts). */
interface Common<S extends ParamSpec, T> {
  params: S;
  setup(ctx: ServiceContext<S>): T | Promise<T>;
  /** Before the closers run: finish or hand back the work in flight. */
  stop?(state: T, ctx: ServiceContext<S>): void | Promise<void>;
}

export interface PoolDefinition<S extends ParamSpec, T, Req, Res> extends Common<S, T>, PoolMetadata {
  handle(state: T, req: Req, ctx: ServiceContext<S>): Res | Promise<Res>;
}

export interface WorkerDefinition<S extends ParamSpec, T, Req, Res> extends Common<S, T>, WorkerMetadata {
  /** Requests the router routes to this thread (none: it takes none). */
  handle?(state: T, req: Req, ctx: ServiceContext<S>): Res | Promise<Res>;
  /** Control API for master (comlink): each gets the state, null while setup runs. */
  control?: Record<string, (state: T | null, ...args: never[]) => unknown>;
  /** Most requests this thread may have in flight to other services (endpoint.ts). */
  maxInFlight?: number;
  /**
   * The service hears `postactor:stop` itself and ends its thread with ctx.exit when its work
   * is done (smtpd: its sessions get a grace period, and a reload's retire lets them finish).
   */
  stopsItself?: boolean;
  /** A fatal start-up error is logged with its stack (default), or only its message (smtpd's bind errors). */
  fatalStack?: boolean;
}

/**
 * A pool service's module export: the handler pool-thread.ts calls, carrying the metadata and
 * the thread's closers (`close`: pool-thread.ts runs it before it says `ended`).
 */
export type PoolService<Req, Res> = ((req: Req) => Promise<Res>) & {
  readonly service: ServiceMeta;
  readonly close: () => Promise<void>;
  /** Runs the set-up now (pool-thread.ts, once the thread is ready) instead of at the first request. */
  readonly prepare: () => Promise<void>;
};
/** A worker service's module export. */
export interface WorkerService { readonly service: ServiceMeta }

export function defineService<S extends ParamSpec, T, Req, Res>(def: PoolDefinition<S, T, Req, Res>): PoolService<Req, Res>;
export function defineService<S extends ParamSpec, T, Req, Res>(def: WorkerDefinition<S, T, Req, Res>): WorkerService;
export function defineService<S extends ParamSpec, T, Req, Res>(def: PoolDefinition<S, T, Req, Res> | WorkerDefinition<S, T, Req, Res>): PoolService<Req, Res> | WorkerService {
  const meta = serviceMeta(def);
  if (def.kind === 'worker') {
    if (runsHere(meta)) void runWorker(def);
    return { service: meta };
  }
  return poolHandler(def, meta);
}

/** Whether this thread is a worker master started for this service (its entry module). */
function runsHere(meta: ServiceMeta): boolean {
  if (isMainThread || !parentPort) return false;
  const d = workerData as Partial<ActorWorkerData<unknown>> | null;
  return typeof d?.thread === 'string' && meta.commands.includes(d.thread);
}

/** The closers of this thread, run once at stop (last registered first). */
const closers: (() => void | Promise<void>)[] = [];
let closing: Promise<void> | null = null;

/** Ends this thread once its closers ran. */
function exitThread(code: number): void {
  void closeService().finally(() => process.exit(code));
}

/** Runs every registered closer (a failed one does not keep the others from running). */
export function closeService(): Promise<void> {
  return (closing ??= (async () => {
    while (closers.length > 0) {
      const close = closers.pop()!;
      try {
        await close();
      } catch {
        // closing anyway: the thread ends next
      }
    }
    flushMaillog();
  })());
}

/** Builds this thread's context: configuration, parameters, logging, the store on demand. */
export function serviceContext<S extends ParamSpec>(name: string, spec: S, actor?: Actor, logAs: 'command' | 'service' = 'command'): ServiceContext<S> {
  const data = workerData as ActorWorkerData<ConfigJSON>;
  const base = configFromJSON(data.config);
  const service = data.service;
  const line = base.services.find((s) => s.name === service && s.type === 'unix') ?? base.services.find((s) => s.name === service);
  // Master applied the line's overrides already; a thread started otherwise (a test, a custom
  // agent's own pool) gets them here. Applying them twice changes nothing.
  const config = line && Object.keys(line.overrides).length > 0 ? base.withOverrides(line.overrides) : base;
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  const command = data.thread ?? name;
  let store: QueueStore | null = null;
  return {
    data,
    service,
    command,
    config,
    params: readParams(config, spec, name),
    log: maillog(logAs === 'service' ? service : command),
    line,
    get store(): QueueStore {
      if (!store) {
        const opened = QueueStore.open(queueDirectory(config));
        store = opened;
        closers.push(() => opened.close());
      }
      return store;
    },
    get actor(): Actor {
      if (!actor) throw new Error(`${name}: a pool service has no data port`);
      return actor;
    },
    onStop(close) {
      closers.push(close);
    },
    exit: exitThread,
  };
}

function poolHandler<S extends ParamSpec, T, Req, Res>(def: PoolDefinition<S, T, Req, Res>, meta: ServiceMeta): PoolService<Req, Res> {
  let ready: Promise<{ state: T; ctx: ServiceContext<S> }> | null = null;
  const start = async () => {
    const ctx = serviceContext(def.name, def.params, undefined, def.logAs);
    const state = await def.setup(ctx);
    if (def.stop) closers.push(() => def.stop!(state, ctx));
    return { state, ctx };
  };
  const setUp = () => (ready ??= start().catch((err: unknown) => {
    ready = null; // the next request tries again (the error goes back to this one's caller)
    throw err;
  }));
  const handler = async (req: Req): Promise<Res> => {
    const { state, ctx } = await setUp();
    return await def.handle(state, req, ctx);
  };
  return Object.assign(handler, { service: meta, close: closeService, prepare: async () => void (await setUp()) });
}

async function runWorker<S extends ParamSpec, T, Req, Res>(def: WorkerDefinition<S, T, Req, Res>): Promise<void> {
  let log = maillog(def.name);
  let state: T | null = null;
  let ctx: ServiceContext<S> | null = null;
  try {
    const control = def.control
      ? Object.fromEntries(Object.entries(def.control).map(([k, f]) => [k, (...args: never[]) => f(state, ...args)]))
      : undefined;
    // Loaded here, not at the top: a pool thread has no data port, and the endpoint brings
    // comlink (the control API), modules every pool thread would load for nothing.
    const { startActor } = await import('./endpoint.js');
    const actor = await startActor<Req, Res>({
      ...(def.handle ? {
        onRequest: (req: Req) => {
          if (state === null || ctx === null) throw new Error(`${def.name}: not ready`);
          return def.handle!(state, req, ctx);
        },
      } : {}),
      ...(control ? { control } : {}),
      ...(def.maxInFlight ? { maxInFlight: def.maxInFlight } : {}),
    });
    const c = serviceContext(def.name, def.params, actor, def.logAs);
    ctx = c;
    log = c.log;
    let stopping = false;
    if (!def.stopsItself) {
      parentPort!.on('message', (msg: { type?: string } | null) => {
        if (msg?.type !== 'postactor:stop' || stopping) return;
        stopping = true;
        const stop = state !== null && def.stop ? Promise.resolve().then(() => def.stop!(state!, c)) : Promise.resolve();
        void stop.catch((err: Error) => log.warn(`${def.name}: stop: ${err.message}`)).finally(() => exitThread(0));
      });
    }
    state = await def.setup(c);
    parentPort!.postMessage({ type: 'postactor:ready' } satisfies WorkerLifecycle);
    flushCompileCacheSoon();
  } catch (err) {
    const e = err as Error;
    // A configuration error (a wrong-typed value of a declared parameter: file:line) by its message, as Postfix's fatal.
    const brief = def.fatalStack === false || err instanceof ConfigError;
    log.fatal(`${def.name}: ${(brief ? e?.message : e?.stack) ?? String(err)}`);
    // master names the reason in its own start-up error (the maillog may be a file the
    // operator does not look at first).
    const fatal: WorkerLifecycle = { type: 'postactor:fatal', text: `${def.name}: ${e?.message ?? String(err)}` };
    parentPort?.postMessage(fatal);
    exitThread(1);
  }
}
