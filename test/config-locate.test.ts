// Tests for locateConfigDirectory() (src/config/locate.ts): -c DIR, then MAIL_CONFIG, then
// POSTACTOR_CONFIG, then the system default directory when it holds a main.cf, then the
// embedded default; and Postfix's rule for set-id programs (alternate_config_directories).
// The commands' own use of it is tested end to end in test/own-state.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SYSTEM_CONFIG_DIRECTORY, locateConfigDirectory } from '../src/config/locate.js';
import { DEFAULTS } from '../src/config/index.js';
import { tempDirs } from './helpers/temp.js';


const tempDir = tempDirs('postactor-locate-');

const NONE = '/nonexistent/postactor-locate';

test('-c wins over MAIL_CONFIG, which wins over POSTACTOR_CONFIG, which wins over the system directory', () => {
  const system = tempDir({ 'main.cf': '' });
  const env = { MAIL_CONFIG: '/m', POSTACTOR_CONFIG: '/p' };
  assert.deepEqual(locateConfigDirectory('/c', { env, systemDir: system }), { dir: '/c', source: '-c' });
  assert.deepEqual(locateConfigDirectory(undefined, { env, systemDir: system }), { dir: '/m', source: 'MAIL_CONFIG' });
  assert.deepEqual(locateConfigDirectory(null, { env: { POSTACTOR_CONFIG: '/p' }, systemDir: system }), { dir: '/p', source: 'POSTACTOR_CONFIG' });
  assert.deepEqual(locateConfigDirectory('', { env: {}, systemDir: system }), { dir: system, source: 'system' });
});

test('empty values count as unset', () => {
  assert.deepEqual(locateConfigDirectory('', { env: { MAIL_CONFIG: '', POSTACTOR_CONFIG: '' }, systemDir: NONE }), { dir: null, source: 'embedded' });
});

test('the system directory counts only when it holds a main.cf; else the embedded default', () => {
  const empty = tempDir();
  assert.deepEqual(locateConfigDirectory(undefined, { env: {}, systemDir: empty }), { dir: null, source: 'embedded' });
  fs.writeFileSync(path.join(empty, 'main.cf'), 'myhostname = x.example\n');
  assert.deepEqual(locateConfigDirectory(undefined, { env: {}, systemDir: empty }), { dir: empty, source: 'system' });
});

test("the system directory is Postactor's own /etc/postactor, config_directory's default (not Postfix's /etc/postfix)", () => {
  assert.equal(SYSTEM_CONFIG_DIRECTORY, '/etc/postactor');
  assert.equal(DEFAULTS['config_directory'], SYSTEM_CONFIG_DIRECTORY);
  assert.equal(DEFAULTS['queue_directory'], '/var/spool/postactor');
  assert.equal(DEFAULTS['data_directory'], '/var/lib/postactor');
});

test('set-id process: a non-default directory must be authorized in the default main.cf, as Postfix requires', () => {
  const other = tempDir({ 'main.cf': '' });
  const system = tempDir({ 'main.cf': 'myhostname = x.example\n' });
  const opts = { env: { MAIL_CONFIG: other }, systemDir: system, privileged: true };
  assert.throws(() => locateConfigDirectory(undefined, opts), {
    name: 'ConfigError',
    message: `${other}: unauthorized configuration directory name: specify "alternate_config_directories = ${other}" or "multi_instance_directories = ${other}" in ${system}/main.cf`,
  });
  fs.writeFileSync(path.join(system, 'main.cf'), `alternate_config_directories = /elsewhere, ${other}\n`);
  assert.deepEqual(locateConfigDirectory(undefined, opts), { dir: other, source: 'MAIL_CONFIG' });
  // The default directory itself, and unprivileged callers, need no authorization.
  assert.equal(locateConfigDirectory(system, { ...opts, env: {} }).dir, system);
  assert.equal(locateConfigDirectory('/anywhere', { env: {}, systemDir: NONE, privileged: false }).dir, '/anywhere');
});
