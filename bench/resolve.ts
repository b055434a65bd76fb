/**
 * Resolve calls per second through the actor interface: the trivial-rewrite service as the
 * server runs it (a piscina pool behind the router, master.cf `rewrite unix - - n - 1
 * trivial-rewrite`), with a texthash transport_maps of 1,000 domains.
 *
 *   uncached   router.request('rewrite', {op:'resolve'}) for distinct addresses, 64 in flight
 *   cached     qmgr's Resolver (actors/qmgr/resolve.ts): LRU + TTL in front of the same service,
 *              over a working set of 500 addresses
 *   in-process the pure module without threads, for reference
 *
 * Every phase is bounded by a count and a time limit.
 *   node_modules/.bin/node dist/bench/resolve.js [--count N] [--seconds S] [--threads T]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../src/config/load.js';
import { planServices } from '../actors/master/services.js';
import { ServicePool } from '../src/runtime/pool.js';
import { Router } from '../src/runtime/router.js';
import type { Actor } from '../src/runtime/endpoint.js';
import type { Logger } from '../src/log/maillog.js';
import { Resolver } from '../actors/qmgr/resolve.js';
import { TrivialRewrite } from '../src/rewrite/settings.js';
import type { ResolveReply, RewriteRequest } from '../actors/protocol.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: a positive number, got ${process.argv[i + 1]}`);
  return v;
}

const COUNT = arg('count', 50_000);
const SECONDS = arg('seconds', 10);
const THREADS = arg('threads', 1);
const IN_FLIGHT = 64;

/** Runs `call(i)` for i = 0.. with IN_FLIGHT at once, until COUNT calls or SECONDS pass. */
async function measure(name: string, call: (i: number) => Promise<unknown>): Promise<void> {
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  let next = 0;
  let done = 0;
  const lane = async () => {
    while (next < COUNT && performance.now() < deadline) {
      await call(next++);
      done++;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  const s = (performance.now() - started) / 1000;
  console.log(`${name.padEnd(12)} ${String(done).padStart(8)} calls in ${s.toFixed(2)} s = ${Math.round(done / s).toLocaleString('en-US').padStart(9)} resolves/s`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-resolve-'));
  try {
    writeFileSync(join(dir, 'transport'), Array.from({ length: 1000 }, (_, i) => `d${i}.example smtp:[10.0.${i >> 8}.${i & 255}]`).join('\n') + '\n');
    const mainCf = [
      'myhostname = mx.bench.test',
      'mydestination = $myhostname, localhost',
      `transport_maps = texthash:${join(dir, 'transport')}`,
      'relay_domains = relay.test',
    ].join('\n') + '\n';
    const config = buildConfig(dir, mainCf, `rewrite unix - - n - ${THREADS} trivial-rewrite\n`);
    const plan = planServices(config).services.find((s) => s.service === 'rewrite');
    if (!plan) throw new Error('no rewrite service in the plan');
    const pool = new ServicePool({
      service: 'rewrite', filename: plan.file.href, threads: plan.threads, concurrency: plan.concurrency, maxQueue: 20_000,
      workerData: { service: 'rewrite', index: 0, config: config.toJSON(), instance: 'bench' }, throttleSeconds: 60,
    });
    const router = new Router();
    router.addPool('rewrite', pool);
    const actor = { request: (to: string, body: unknown) => router.request(to, body) } as unknown as Actor;
    const quiet = { info: () => undefined, warn: () => undefined } as unknown as Logger;
    const addr = (i: number) => `user${i}@d${i % 1000}.example`;

    console.log(`resolve benchmark: ${THREADS} rewrite thread(s), ${IN_FLIGHT} in flight, at most ${COUNT} calls / ${SECONDS} s per phase; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
    await router.request('rewrite', { op: 'resolve', sender: 'sender@bench.example', address: 'warm@up.example' } satisfies RewriteRequest);
    await measure('uncached', (i) => router.request<ResolveReply>('rewrite', { op: 'resolve', sender: 'sender@bench.example', address: addr(i) } satisfies RewriteRequest));
    const resolver = new Resolver(config, actor, quiet);
    await measure('cached', (i) => resolver.route(addr(i % 500), 'sender@bench.example'));
    const local = new TrivialRewrite(config);
    await measure('in-process', (i) => local.handle({ op: 'resolve', sender: 'sender@bench.example', address: addr(i) }) as Promise<ResolveReply>);
    await pool.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`bench/resolve: ${e.message}`);
  process.exit(1);
});
