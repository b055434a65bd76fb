import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { heapLimits, masterEnvironment, MASTER_NODE_FLAGS } from '../src/runtime/heap-limits.js';
import { REPO_ROOT } from './helpers/server.js';

test('the wrapper gives `postactor start-fg` the master\'s heap flags (as `postactor start` does)', () => {
  const wrapper = readFileSync(join(REPO_ROOT, 'bin', 'postactor'), 'utf8');
  assert.ok(wrapper.includes(`exec "$node" ${MASTER_NODE_FLAGS.join(' ')} "$js"`), `bin/postactor passes ${MASTER_NODE_FLAGS.join(' ')}`);
  const start = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['start']!;
  assert.equal(start, `node ${MASTER_NODE_FLAGS.join(' ')} dist/bin/postactor.js start-fg`, 'npm start passes the same flags');
  assert.ok(!MASTER_NODE_FLAGS.includes('--optimize-for-size'), 'no --optimize-for-size: a fifth more CPU per message (heap-limits.ts)');
});

test('every actor thread gets a small young generation and an old-generation ceiling; no V8 heap flag of the whole process overrides them', () => {
  for (const command of ['smtpd', 'cleanup', 'qmgr', 'smtp', 'local', '/opt/agent.js']) {
    const l = heapLimits(command);
    assert.equal(l.maxYoungGenerationSizeMb, 3, command);
    assert.ok(l.maxOldGenerationSizeMb! >= 256, command);
  }
  // --max-semi-space-size (and its kin) hold for every isolate of the process and win over a
  // Worker's resourceLimits: with one, the threads' young generations are not what heapLimits says.
  assert.ok(!MASTER_NODE_FLAGS.some((f) => /semi-space|young|old-space|heap-size/.test(f)), MASTER_NODE_FLAGS.join(' '));
  assert.ok(heapLimits('qmgr').maxOldGenerationSizeMb! > heapLimits('smtp').maxOldGenerationSizeMb!, 'qmgr holds the active queue');
});

test('the master gets one malloc arena per CPU and no preloaded allocator; an operator\'s LD_PRELOAD, MALLOC_CONF and MALLOC_ARENA_MAX pass through', () => {
  const env = masterEnvironment({ PATH: '/usr/bin' });
  assert.ok(Number(env['MALLOC_ARENA_MAX']) >= 2, 'glibc arenas bounded');
  assert.equal(env['LD_PRELOAD'], undefined, 'nothing preloaded: jemalloc cost two thirds more CPU with large messages');
  assert.equal(env['MALLOC_CONF'], undefined);
  assert.equal(masterEnvironment({ MALLOC_ARENA_MAX: '1' })['MALLOC_ARENA_MAX'], '1');
  const own = masterEnvironment({ LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2', MALLOC_CONF: 'narenas:1' });
  assert.equal(own['LD_PRELOAD'], '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2');
  assert.equal(own['MALLOC_CONF'], 'narenas:1');
});

test('bin/postactor preloads nothing for start-fg either, and bounds the arenas as masterEnvironment does', () => {
  const wrapper = readFileSync(join(REPO_ROOT, 'bin', 'postactor'), 'utf8');
  assert.ok(!/export LD_PRELOAD|MALLOC_CONF=/.test(wrapper), 'no LD_PRELOAD or MALLOC_CONF set by the wrapper');
  assert.ok(wrapper.includes('MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-$cpus}'));
});

test('in a process started with the master\'s flags, a thread\'s young generation is its resourceLimits: under the same churn a 3 MB thread scavenges far more often than a 48 MB one', async () => {
  // Each thread allocates 256 MB in 64 KiB arrays and keeps the last 2 MB alive (sessions in
  // flight), counting its minor collections. A process-wide V8 flag such as
  // --max-semi-space-size=1 (the master's until session 20) gives both the same small new space.
  const script = `
    const { Worker } = require('node:worker_threads');
    const [actor, large] = ${JSON.stringify([heapLimits('smtpd'), { ...heapLimits('smtpd'), maxYoungGenerationSizeMb: 48 }])};
    const body = \`
      const { PerformanceObserver, constants } = require('node:perf_hooks');
      let minor = 0;
      const obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++; });
      obs.observe({ entryTypes: ['gc'] });
      const live = [];
      for (let i = 0; i < 4096; i++) { live.push(new Array(8192).fill(i)); if (live.length > 32) live.shift(); }
      setTimeout(() => { obs.disconnect(); require('node:worker_threads').parentPort.postMessage(minor); }, 50);
    \`;
    const count = (resourceLimits) => new Promise((resolve, reject) => {
      const w = new Worker(body, { eval: true, resourceLimits });
      w.once('message', resolve); w.once('error', reject);
    });
    (async () => { const a = await count(actor); const b = await count(large); console.log(JSON.stringify({ actor: a, large: b })); process.exit(0); })();
  `;
  const out = execFileSync(process.execPath, [...MASTER_NODE_FLAGS, '-e', script], { encoding: 'utf8', timeout: 60_000 });
  const { actor, large } = JSON.parse(out) as { actor: number; large: number };
  assert.ok(actor > 0 && large > 0, out);
  assert.ok(large * 3 < actor, `a 3 MB thread scavenged ${actor} times, a 48 MB one ${large}: resourceLimits are not in effect`);
});
