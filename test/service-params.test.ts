/**
 * Service-defined parameters (Postfix's postconf_service.c): which master.cf services give
 * which "<service>_suffix" names, that a main.cf setting of one is not an "unused parameter"
 * (policyd-spf_time_limit for a spawn service), and that postconf lists the same names with
 * the same defaults as Debian's postconf for the same master.cf.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../src/config/index.js';
import { isServiceParameter, serviceParameterNames } from '../src/config/service-params.js';
import { needs } from './helpers/peers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = join(ROOT, 'node_modules/.bin/node');
const POSTCONF = join(ROOT, 'dist/bin/postconf.js');
const POSTFIX = '/usr/sbin/postconf';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const MASTER = [
  'policyd-spf unix - n n - 0 spawn user=nobody argv=/bin/true',
  'foo unix - n n - - smtpd',
  'relay2 unix - - n - - smtp',
  'pp unix - n n - - pipe argv=/bin/true',
  'retry unix - - n - - error',
  'dovecot unix - - n - - lmtp',
  'cleanup unix n - n - 0 cleanup',
  'qmgr unix n - n 300 1 qmgr',
  '',
].join('\n');

const MAIN = [
  'compatibility_level = 3.6',
  'queue_directory = /nonexistent/postactor-test-queue',
  'policyd-spf_time_limit = 3600',
  'foo_time_limit = 5',
  'foo_destination_concurrency_limit = 3',
  'relay2_time_limit = 10',
  'relay2_destination_concurrency_limit = 3',
  'pp_time_limit = 10',
  'pp_destination_concurrency_limit = 3',
  'dovecot_destination_recipient_limit = 1',
  'bogus_thing = 1',
  '',
].join('\n');

function configDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-service-params-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'main.cf'), MAIN);
  writeFileSync(join(dir, 'master.cf'), MASTER);
  return dir;
}

const SERVICES = [
  { name: 'policyd-spf', command: 'spawn' }, { name: 'foo', command: 'smtpd' }, { name: 'relay2', command: 'smtp' },
  { name: 'pp', command: 'pipe' }, { name: 'agent', command: '/opt/agents/deliver.js' },
];

test('which commands get which names: delivery agents the qmgr ones, pipe and spawn <service>_time_limit', () => {
  const names = serviceParameterNames(SERVICES);
  assert.equal(names.get('policyd-spf_time_limit'), '$command_time_limit');
  assert.equal(names.get('pp_time_limit'), '$command_time_limit');
  assert.equal(names.get('pp_destination_concurrency_limit'), '$default_destination_concurrency_limit');
  assert.equal(names.get('relay2_initial_destination_concurrency'), '$initial_destination_concurrency');
  assert.equal(names.get('agent_destination_rate_delay'), '$default_destination_rate_delay');
  assert.equal(names.has('relay2_time_limit'), false);
  assert.equal(names.has('policyd-spf_destination_concurrency_limit'), false);
  assert.equal([...names.keys()].some((n) => n.startsWith('foo_')), false, 'smtpd gets none');
  assert.equal(names.size, 1 + 17 + 16 + 16);
  assert.equal(isServiceParameter('policyd-spf_time_limit', SERVICES), true);
  assert.equal(isServiceParameter('foo_time_limit', SERVICES), false);
  assert.equal(isServiceParameter('relay2_recipient_limit', SERVICES), true);
  assert.equal(isServiceParameter('relay2_', SERVICES), false);
});

test('policyd-spf_time_limit = 3600 loads without a warning; names Postfix does not derive are unused parameters', () => {
  const dir = configDir();
  const c = loadConfig(dir);
  const unused = c.warnings.map((w) => /unused parameter: ([^=]+)=/.exec(w)?.[1]).filter(Boolean).sort();
  assert.deepEqual(unused, ['bogus_thing', 'foo_destination_concurrency_limit', 'foo_time_limit', 'relay2_time_limit']);
  assert.equal(c.get('policyd-spf_time_limit'), '3600');
  assert.equal(c.getTime('policyd-spf_time_limit'), 3600);
});

test('a service-defined parameter is checked as the parameter it defaults to (a time, here)', () => {
  const dir = configDir();
  writeFileSync(join(dir, 'main.cf'), MAIN.replace('policyd-spf_time_limit = 3600', 'policyd-spf_time_limit = soon'));
  assert.throws(() => loadConfig(dir), (e: Error) => /main\.cf:3: .*policyd-spf_time_limit/.test(e.message));
});

test('postconf -d lists the service-defined names as Debian\'s postconf does; -n warns about the same names', { skip: needs(POSTFIX, "Debian's postconf, the comparison peer") }, () => {
  const dir = configDir();
  const ours = spawnSync(NODE, [POSTCONF, '-c', dir, '-d'], { encoding: 'utf8' });
  const theirs = spawnSync(POSTFIX, ['-c', dir, '-d'], { encoding: 'utf8' });
  assert.equal(ours.status, 0, ours.stderr);
  const pick = (text: string) => text.split('\n').filter((l) => /^(policyd-spf|foo|relay2|pp|retry|dovecot)_/.test(l)).sort();
  assert.deepEqual(pick(ours.stdout), pick(theirs.stdout));
  const unused = (text: string) => text.split('\n').map((l) => /unused parameter: ([^=]+)=/.exec(l)?.[1]).filter(Boolean).sort();
  const oursN = spawnSync(NODE, [POSTCONF, '-c', dir, '-n'], { encoding: 'utf8' });
  const theirsN = spawnSync(POSTFIX, ['-c', dir, '-n'], { encoding: 'utf8' });
  assert.deepEqual(unused(oursN.stderr), unused(theirsN.stderr));
  assert.match(oursN.stdout, /^policyd-spf_time_limit = 3600$/m);
});
