/**
 * The peers' packages the tests name when they skip (./helpers/peers.ts) are the ones .ci/run
 * installs: the advice "run .ci/run as root, which installs every peer" holds for each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PEER_PACKAGES, needs } from './helpers/peers.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

test('every peer package a skipped test names is one .ci/run installs', () => {
  const script = readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8');
  const installed = new Set([...script.matchAll(/need\+=\(([^)]*)\)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)));
  for (const [path, pkg] of Object.entries(PEER_PACKAGES)) assert.ok(installed.has(pkg), `${path}: ${pkg} is not installed by .ci/run`);
});

test('a missing peer: the reason names it, its Debian package and the command; under CI it is never skipped', () => {
  const saved = process.env['CI'];
  try {
    delete process.env['CI'];
    assert.equal(needs(process.execPath, 'node'), false, 'present: not skipped');
    const missing = '/usr/sbin/postfix-that-is-not-there';
    assert.equal(needs(missing, 'a peer'), `needs a peer, and ${missing} is not installed (run .ci/run as root, which installs every peer)`);
    const known = Object.keys(PEER_PACKAGES)[0]!;
    process.env['CI'] = 'true';
    assert.equal(needs(missing, 'a peer'), false);
    assert.equal(needs(known, 'Postfix'), false);
  } finally {
    if (saved === undefined) delete process.env['CI'];
    else process.env['CI'] = saved;
  }
});
