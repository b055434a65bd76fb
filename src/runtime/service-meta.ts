/**
 * What a service says of itself for master to plan it (src/runtime/service.ts defineService):
 * its kind, commands, threads, start order. Each actor writes it in a module of its own
 * (actors/<name>/meta.ts) that imports nothing but these types, so master reads every
 * service's metadata without loading the services' code into its thread (their modules and the
 * libraries they import cost master 5 MB of heap, 15 MB of RSS and 0.2 s of start-up).
 * The actor's entry file hands the same object to defineService.
 */

interface CommonMetadata {
  /** The Postfix daemon (master.cf command) the module is; `commands` when it runs under several. */
  name: string;
  commands?: readonly string[];
  /**
   * The program name in the log tag: the command (default: postfix/qmgr, postfix/flush) or the
   * master.cf service name (the delivery agents: postfix/relay, postfix/retry).
   */
  logAs?: 'command' | 'service';
  /** One thread whatever maxproc says (qmgr, pickup, verify, spawn: Postfix's solitary daemons). */
  singleton?: boolean;
  /** Master starts lower numbers first and waits for them (default: pools 0, workers 2). */
  startOrder?: number;
}

/** A request/reply daemon in a pool (src/runtime/pool.ts). */
export interface PoolMetadata extends CommonMetadata {
  kind: 'pool';
  /** Requests one thread runs at once. */
  concurrency: number;
  /** Pool threads kept while idle (default 0). */
  minThreads?: number;
  /**
   * Requests each thread holds (running, and queued beyond `concurrency`) before the pool starts
   * another (default: `concurrency`, a thread full before the next starts). An agent whose work
   * waits elsewhere (local and virtual: in their helper processes) says more: one thread carries
   * it, and a second isolate with its own helpers would cost more than it brings.
   */
  spreadAt?: number;
}

/** A long-lived supervised thread (qmgr, pickup, smtpd, …). */
export interface WorkerMetadata extends CommonMetadata {
  kind: 'worker';
  /**
   * No thread until there is work; master starts it then, and it reports `postactor:idle`
   * after max_idle without work, for master to stop it (pickup).
   */
  onDemand?: boolean;
}

export type ServiceMetadata = PoolMetadata | WorkerMetadata;

/** What master needs to know of a service, without starting it: the metadata with its defaults. */
export interface ServiceMeta {
  /** The Postfix daemon (master.cf command) the module is; `commands` when it runs under several. */
  name: string;
  commands: readonly string[];
  kind: 'pool' | 'worker';
  /** One thread whatever maxproc says (qmgr, pickup, verify, spawn: Postfix's solitary daemons). */
  singleton: boolean;
  /** Master starts lower numbers first and waits for them: pools 0, qmgr 1, listeners 2. */
  startOrder: number;
  /** Requests one thread runs at once. */
  concurrency: number;
  /** Pool threads kept while idle (the rest start on demand and end after max_idle). */
  minThreads: number;
  /** Requests each pool thread holds before another starts; undefined: master's default. */
  spreadAt: number | undefined;
  /** A long-lived worker master starts only when there is work (pickup: actors/master/maildrop-watch.ts). */
  onDemand: boolean;
}

/** The metadata with its defaults filled in. */
export function serviceMeta(m: ServiceMetadata): ServiceMeta {
  return Object.freeze({
    name: m.name,
    commands: m.commands ?? [m.name],
    kind: m.kind,
    singleton: m.singleton ?? false,
    startOrder: m.startOrder ?? (m.kind === 'pool' ? 0 : 2),
    concurrency: m.kind === 'pool' ? m.concurrency : 1,
    minThreads: m.kind === 'pool' ? (m.minThreads ?? 0) : 1,
    spreadAt: m.kind === 'pool' ? m.spreadAt : undefined,
    onDemand: m.kind === 'worker' ? (m.onDemand ?? false) : false,
  });
}
