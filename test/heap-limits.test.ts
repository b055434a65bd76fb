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

test('every actor thread gets a small young generation and an old-generation ceiling; the master\'s --max-semi-space-size, which overrides them, says the same', () => {
  for (const command of ['smtpd', 'cleanup', 'qmgr', 'smtp', 'local', '/opt/agent.js']) {
    const l = heapLimits(command);
    assert.equal(l.maxYoungGenerationSizeMb, 3, command);
    assert.ok(l.maxOldGenerationSizeMb! >= 256, command);
  }
  // --max-semi-space-size holds for every isolate of the process and wins over a Worker's
  // resourceLimits: it must say what heapLimits says (a young generation is three semi-spaces).
  const semi = MASTER_NODE_FLAGS.map((f) => /^--max-semi-space-size=(\d+)$/.exec(f)?.[1]).find(Boolean);
  for (const command of ['smtpd', 'cleanup', 'qmgr', 'smtp', 'local']) assert.equal(Number(semi) * 3, heapLimits(command).maxYoungGenerationSizeMb, command);
  assert.ok(!MASTER_NODE_FLAGS.some((f) => /min-semi-space|young|old-space|heap-size/.test(f)), MASTER_NODE_FLAGS.join(' '));
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

test('the master\'s --max-semi-space-size decides every thread\'s young generation, over its resourceLimits: under the same churn a thread given 48 MB scavenges as often as one given 3 MB, and far less often without the flag', async () => {
  // Each thread allocates 256 MB in 64 KiB arrays and keeps the last 2 MB alive (sessions in
  // flight), counting its minor collections.
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
  const run = (flags: readonly string[]) => JSON.parse(execFileSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', timeout: 60_000 })) as { actor: number; large: number };
  const flagged = run(MASTER_NODE_FLAGS);
  assert.ok(flagged.actor > 0 && flagged.large > 0, JSON.stringify(flagged));
  assert.ok(flagged.large * 1.5 > flagged.actor, `with the master's flags a 48 MB thread scavenged ${flagged.large} times, a 3 MB one ${flagged.actor}: the flag no longer decides`);
  const bare = run(MASTER_NODE_FLAGS.filter((f) => !f.startsWith('--max-semi-space-size')));
  assert.ok(bare.large * 3 < bare.actor, `without the flag a 48 MB thread scavenged ${bare.large} times, a 3 MB one ${bare.actor}`);
});
