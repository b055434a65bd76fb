/**
 * bench/threads/probe — one actor thread's start, step by step, run as a worker thread by
 * ./start.ts: Node's own bootstrap (until this script runs), the compile cache switched on (or
 * not), the service's module loaded (import: reading, compiling and evaluating its module
 * graph), then what the service skeleton does at its first request (src/runtime/service.ts):
 * the configuration rebuilt, the queue store opened, and the service's own set-up (a pool's
 * handler called with an empty request runs it, then refuses the request). Each mark is a
 * wall-clock time in ms (timeOrigin + now), so ./start.ts can place them after its `new Worker`;
 * beside them the thread's own CPU time until then (the figure a busy machine changes least).
 *
 * workerData is the ActorWorkerData master gives the service (without `thread` for a long-lived
 * worker, so that importing its entry does not start it), plus `probe`.
 */
import { parentPort, workerData } from 'node:worker_threads';

const now = (): number => performance.timeOrigin + performance.now();
const marks: Record<string, number> = { script: now() };

interface Probe { file: string; cacheDir: string | null; pool: boolean; store: string }
const probe = (workerData as { probe: Probe }).probe;

async function main(): Promise<void> {
  const mod = process.getBuiltinModule('node:module');
  if (probe.cacheDir) mod.enableCompileCache(probe.cacheDir);
  marks['cache'] = now();
  const service = (await import(probe.file)) as { default?: unknown };
  marks['import'] = now();
  const { configFromJSON } = await import('../../src/config/load.js');
  configFromJSON((workerData as { config: Parameters<typeof configFromJSON>[0] }).config);
  marks['config'] = now();
  const { QueueStore } = await import('../../src/queue/store.js');
  const store = QueueStore.open(probe.store);
  marks['store'] = now();
  await store.close();
  if (probe.pool && typeof service.default === 'function') {
    // Runs the skeleton's start (context, declared parameters, the service's setup), then the
    // handler with a request it does not understand: an error or a refusal, both fine here.
    await Promise.resolve((service.default as (r: unknown) => unknown)({})).catch(() => undefined);
    marks['setup'] = now();
    await (service.default as { close?: () => Promise<void> }).close?.();
  }
  // This thread's own CPU time so far (ns since it was created, Linux): what a start costs
  // whatever else the machine runs. Not V8's helper threads (background compiling, GC).
  let cpu = NaN;
  try {
    cpu = Number(process.getBuiltinModule('node:fs').readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6;
  } catch {
    // not Linux
  }
  if (probe.cacheDir) mod.flushCompileCache();
  marks['flush'] = now();
  parentPort!.postMessage({ marks, cpu });
}

main().catch((err: unknown) => parentPort!.postMessage({ error: String((err as Error)?.stack ?? err) }));
