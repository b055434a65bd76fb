import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { heapLimits, JEMALLOC_PATHS, jemallocConf, masterEnvironment, MASTER_NODE_FLAGS } from '../src/runtime/heap-limits.js';
import { needs } from './helpers/peers.js';
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

test('the master gets jemalloc preloaded where the system has it, unless LD_PRELOAD or MALLOC_CONF say otherwise', () => {
  const lib = JEMALLOC_PATHS[0]!;
  const only = (p: string) => p === lib;
  const env = masterEnvironment({ PATH: '/usr/bin' }, only);
  assert.equal(env['LD_PRELOAD'], lib);
  assert.equal(env['MALLOC_CONF'], jemallocConf());
  assert.ok(Number(env['MALLOC_ARENA_MAX']) >= 2, 'glibc arenas bounded too (a child that drops the preload)');
  assert.equal(masterEnvironment({ MALLOC_CONF: 'narenas:1' }, only)['MALLOC_CONF'], 'narenas:1', "the operator's MALLOC_CONF wins");
  const own = masterEnvironment({ LD_PRELOAD: '' }, only);
  assert.equal(own['LD_PRELOAD'], '', 'an empty LD_PRELOAD keeps glibc');
  assert.equal(own['MALLOC_CONF'], undefined);
  assert.equal(masterEnvironment({ LD_PRELOAD: '/opt/lib/libtcmalloc.so' }, only)['LD_PRELOAD'], '/opt/lib/libtcmalloc.so');
  const none = masterEnvironment({}, () => false);
  assert.equal(none['LD_PRELOAD'], undefined, 'no jemalloc on the system: glibc');
  assert.equal(none['MALLOC_CONF'], undefined);
});

test('bin/postactor preloads jemalloc for start-fg with the same settings, from the same places', () => {
  const wrapper = readFileSync(join(REPO_ROOT, 'bin', 'postactor'), 'utf8');
  assert.ok(wrapper.includes(jemallocConf().replace(/^narenas:\d+/, 'narenas:$cpus')), 'the same MALLOC_CONF');
  for (const p of JEMALLOC_PATHS.slice(1)) assert.ok(wrapper.includes(p), p);
  assert.ok(wrapper.includes('/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so.2'));
  assert.ok(wrapper.includes('if [ -z "${LD_PRELOAD+set}" ]'), 'an operator\'s LD_PRELOAD, even empty, wins');
});

test('the pinned Node runs with the preload: jemalloc is mapped and malloc is its', { skip: JEMALLOC_PATHS.length === 0 ? 'jemalloc is preloaded on Linux only (this is not Linux)' : needs(JEMALLOC_PATHS[0]!, 'jemalloc (Debian package libjemalloc2)') }, async () => {
  const env = masterEnvironment({ PATH: process.env['PATH'] });
  assert.ok(env['LD_PRELOAD'] && existsSync(env['LD_PRELOAD']), 'masterEnvironment found the library');
  // A child of the pinned Node with the master's environment: it starts, allocates, and maps jemalloc.
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['-e', `
    const a = []; for (let i = 0; i < 2000; i++) a.push(Buffer.alloc(70000));
    process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8'));`], { env, maxBuffer: 16 * 1024 * 1024 });
  assert.equal(stderr, '', 'no complaint from jemalloc about MALLOC_CONF');
  assert.match(stdout, /libjemalloc\.so\.2/);
});
