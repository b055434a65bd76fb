import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { heapLimits, MASTER_NODE_FLAGS } from '../src/runtime/heap-limits.js';
import { REPO_ROOT } from './helpers/server.js';

test('the wrapper gives `postactor start-fg` the master\'s heap flags (as `postactor start` does)', () => {
  const wrapper = readFileSync(join(REPO_ROOT, 'bin', 'postactor'), 'utf8');
  assert.ok(wrapper.includes(`exec "$node" ${MASTER_NODE_FLAGS.join(' ')} "$js"`), `bin/postactor passes ${MASTER_NODE_FLAGS.join(' ')}`);
});

test('every actor thread gets a small young generation and an old-generation ceiling', () => {
  for (const command of ['smtpd', 'cleanup', 'qmgr', 'smtp', 'local', '/opt/agent.js']) {
    const l = heapLimits(command);
    assert.equal(l.maxYoungGenerationSizeMb, 3, command);
    assert.ok(l.maxOldGenerationSizeMb! >= 256, command);
  }
  assert.ok(heapLimits('qmgr').maxOldGenerationSizeMb! > heapLimits('smtp').maxOldGenerationSizeMb!, 'qmgr holds the active queue');
});
