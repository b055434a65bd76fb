import { test } from 'node:test';
import assert from 'node:assert/strict';
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

test('every actor thread gets a small young generation and an old-generation ceiling', () => {
  for (const command of ['smtpd', 'cleanup', 'qmgr', 'smtp', 'local', '/opt/agent.js']) {
    const l = heapLimits(command);
    assert.equal(l.maxYoungGenerationSizeMb, 3, command);
    assert.ok(l.maxOldGenerationSizeMb! >= 256, command);
  }
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
