// proxy:TYPE:NAME — Postfix's proxymap(8): lookups go to one place that holds the table open,
// so a set of database connections is shared by all threads instead of one per thread.
//
// Here proxymap lives in the master thread. An actor thread's proxy: table sends each lookup
// over a BroadcastChannel (postactor:INSTANCE:proxymap) and waits for the answer; the master
// opens each approved table once and answers from it. The main thread itself (the master, or
// a command such as postmap -q) looks up in-process through the same server object.
//
// As Postfix's proxymap, only tables listed (with their proxy: prefix) in proxy_read_maps are
// served; any other is refused with proxymap's two warnings, and the asking side fails the
// lookup ('proxymap service is not configured for table "TYPE:NAME"'): a table error, so a
// temporary failure (Postfix's daemon exits fatally there; the mail waits either way).
// The actor-side table still parses the table's file (not connecting) to know whether it is a
// fixed or pattern table, and so that a broken file is found at start-up.

import { BroadcastChannel, isMainThread, threadId, workerData } from 'node:worker_threads';

import { TableError, found, NOT_FOUND, type InfoTable, type LookupResult } from './types.js';

interface ProxyRequest { id: number; replyTo: string; spec: string; key: string; fold: boolean }
type ProxyReply = { id: number; ok: true; found: boolean; value: string } | { id: number; ok: false; error: string };

const channelName = (instance: string) => `postactor:${instance}:proxymap`;
const TIMEOUT_MS = 100_000;

export type TableOpener = (spec: string, fold: boolean) => InfoTable;

/** Strips every leading "proxy:" (proxymap does the same). */
export function unproxied(spec: string): string {
  let s = spec;
  while (s.startsWith('proxy:')) s = s.slice(6);
  return s;
}

/** The tables proxy_read_maps approves: its "proxy:TYPE:NAME" entries, without the prefix. */
export function approvedTables(proxyReadMaps: string): Set<string> {
  return new Set(proxyReadMaps.split(/[\s,]+/).filter((w) => w.startsWith('proxy:')).map(unproxied).filter((s) => s.includes(':')));
}

/** The proxymap server: opens each approved table once, answers lookups from it. */
export class Proxymap {
  private readonly tables = new Map<string, InfoTable>();
  private approved = new Set<string>();

  constructor(private readonly open: TableOpener, public warn: (text: string) => void) {}

  /** New settings (start, reload): the approved list is read again and open tables close, as proxymap restarts. */
  configure(proxyReadMaps: string): void {
    this.approved = approvedTables(proxyReadMaps);
    this.closeAll();
  }

  async lookup(spec: string, key: string, fold: boolean): Promise<LookupResult> {
    const name = unproxied(spec);
    if (!this.approved.has(name)) {
      this.warn(`request for unapproved table: "${name}"`);
      this.warn(`to approve this table for read-only access, list proxy:${name} in main.cf:proxy_read_maps`);
      throw new TableError(`proxymap service is not configured for table "${name}"`);
    }
    const id = `${fold ? 'f' : 'n'}:${name}`;
    let t = this.tables.get(id);
    if (!t) {
      t = this.open(name, fold);
      this.tables.set(id, t);
    }
    return t.lookup(key);
  }

  closeAll(): void {
    for (const t of this.tables.values()) t.close?.();
    this.tables.clear();
  }
}

let local: Proxymap | null = null;

/** The main thread's proxymap (created by the first caller that configures it). */
export function localProxymap(open?: TableOpener, warn?: (text: string) => void): Proxymap | null {
  if (!local && open) local = new Proxymap(open, warn ?? (() => undefined));
  else if (local && warn) local.warn = warn;
  return local;
}

/** In the master: answers the proxy: lookups of every actor thread. Returns a function that stops. */
export function serveProxymap(instance: string, server: Proxymap): () => void {
  const inbox = new BroadcastChannel(channelName(instance));
  inbox.unref();
  const outboxes = new Map<string, BroadcastChannel>();
  inbox.onmessage = (event) => {
    const r = (event as MessageEvent).data as ProxyRequest;
    let out = outboxes.get(r.replyTo);
    if (!out) {
      out = new BroadcastChannel(r.replyTo);
      out.unref();
      outboxes.set(r.replyTo, out);
    }
    const o = out;
    server.lookup(r.spec, r.key, r.fold).then(
      (res) => o.postMessage({ id: r.id, ok: true, found: res.found, value: res.found ? res.value : '' } satisfies ProxyReply),
      (e: unknown) => o.postMessage({ id: r.id, ok: false, error: e instanceof Error ? e.message : String(e) } satisfies ProxyReply),
    );
  };
  return () => {
    inbox.close();
    for (const o of outboxes.values()) o.close();
  };
}

// ---- the actor side

let outbox: BroadcastChannel | null = null;
let replies: BroadcastChannel | null = null;
let nextId = 1;
const waiting = new Map<number, { resolve: (r: LookupResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

function remoteLookup(instance: string, spec: string, key: string, fold: boolean): Promise<LookupResult> {
  const replyTo = `${channelName(instance)}:reply:${threadId}`;
  if (!replies) {
    replies = new BroadcastChannel(replyTo);
    replies.unref();
    replies.onmessage = (event) => {
      const f = (event as MessageEvent).data as ProxyReply;
      const w = waiting.get(f.id);
      if (!w) return;
      waiting.delete(f.id);
      clearTimeout(w.timer);
      if (waiting.size === 0) replies?.unref();
      if (f.ok) w.resolve(f.found ? found(f.value) : NOT_FOUND);
      else w.reject(new TableError(f.error));
    };
  }
  if (!outbox) {
    outbox = new BroadcastChannel(channelName(instance));
    outbox.unref();
  }
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      waiting.delete(id);
      if (waiting.size === 0) replies?.unref();
      reject(new TableError(`proxy:${spec}: no reply from the proxymap service within ${TIMEOUT_MS / 1000}s`));
    }, TIMEOUT_MS);
    timer.unref();
    waiting.set(id, { resolve, reject, timer });
    replies!.ref();
    outbox!.postMessage({ id, replyTo, spec, key, fold } satisfies ProxyRequest);
  });
}

/** proxy:TYPE:NAME as a table: `inner` (opened, never queried) tells its kind. */
export class ProxyTable implements InfoTable {
  readonly kind: 'fixed' | 'pattern';
  readonly foldsCase: boolean;
  readonly warnings: readonly string[];
  private readonly innerSpec: string;
  private readonly instance: string | null;

  constructor(readonly spec: string, inner: InfoTable) {
    this.innerSpec = unproxied(inner.spec);
    this.kind = inner.kind;
    this.foldsCase = inner.foldsCase;
    this.warnings = inner.warnings;
    const data = workerData as { instance?: unknown } | null | undefined;
    this.instance = !isMainThread && typeof data?.instance === 'string' ? data.instance : null;
    inner.close?.();
  }

  lookup(key: string): Promise<LookupResult> {
    if (this.instance !== null) return remoteLookup(this.instance, this.innerSpec, key, this.foldsCase);
    const server = localProxymap();
    if (!server) return Promise.reject(new TableError(`${this.spec}: the proxymap service is not available in this process`));
    return server.lookup(this.innerSpec, key, this.foldsCase);
  }
}
