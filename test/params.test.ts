// The parameter registry keeps every setting honest: what it declares implemented is read by
// the code, what the code reads is declared implemented, and `postconf -d` agrees with
// Debian's Postfix on every default both know except the documented differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { needs } from './helpers/peers.js';
import { declaration, declarations, parameterNames } from '../src/config/params/registry.js';
import { DIFFERENCES, POSTACTOR_PARAMS, READERS } from '../src/config/params/support.js';
import { loadConfig } from '../src/config/index.js';
import { checkConfig } from '../actors/master/index.js';
import { tempDirs } from './helpers/temp.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NODE = path.join(ROOT, 'node_modules/.bin/node');
const POSTCONF = path.join(ROOT, 'dist/bin/postconf.js');
const DEBIAN_POSTCONF = '/usr/sbin/postconf';
const NO_POSTFIX = needs(DEBIAN_POSTCONF, "Debian's postconf, the comparison peer");
const DEBIAN_MASTER = '/usr/share/postfix/master.cf.dist'; // the postfix package's stock master.cf

const tempDir = tempDirs('postactor-params-');

/** The project's TypeScript sources outside the registry itself. */
function sources(): { file: string; text: string }[] {
  const out: { file: string; text: string }[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !p.includes(`${path.sep}params${path.sep}`) && !p.endsWith('defaults.ts')) {
        out.push({ file: path.relative(ROOT, p), text: fs.readFileSync(p, 'utf8') });
      }
    }
  };
  for (const top of ['src', 'actors', 'bin']) walk(path.join(ROOT, top));
  return out;
}

// Names the code reads through a computed name rather than a literal one.
const COMPUTED_READS: Record<string, string> = {
  alternate_config_directories: 'src/config/locate.ts reads the system main.cf for set-id callers',
  multi_instance_directories: 'src/config/locate.ts reads the system main.cf for set-id callers',
  postscreen_blacklist_action: 'Postfix\'s legacy name, read by the default of postscreen_denylist_action',
  postscreen_dnsbl_whitelist_threshold: 'Postfix\'s legacy name, read by the default of postscreen_dnsbl_allowlist_threshold',
  postscreen_dnsbl_ttl: 'Postfix\'s legacy name, read by the default of postscreen_dnsbl_max_ttl',
  postscreen_whitelist_interfaces: 'Postfix\'s legacy name, read by the default of postscreen_allowlist_interfaces',
  compatibility_level: 'read by the ${{$compatibility_level} <level {…} ? …} expressions of Postfix\'s own defaults',
};

test('every parameter declared implemented is read by the code', () => {
  const code = sources();
  for (const [reader, names] of Object.entries(READERS)) {
    for (const name of names) {
      assert.ok(declaration(name) !== undefined, `${reader}: ${name} is not a Postfix parameter`);
      if (Object.hasOwn(COMPUTED_READS, name)) continue;
      if (name.startsWith('default_') || name === 'initial_destination_concurrency') continue; // transportParam() falls back to these
      const re = new RegExp(`['"\`$({]${name}['"\`})]|\\$${name}\\b`);
      assert.ok(code.some((f) => re.test(f.text)), `${name} is declared read by ${reader} but no source names it`);
    }
  }
});

test('Postactor\'s own parameters: read by the code, listed by postconf -d, marked own in postconf --support', () => {
  const code = sources();
  const names = Object.keys(POSTACTOR_PARAMS);
  assert.ok(names.length > 0);
  for (const name of names) {
    assert.ok(code.some((f) => f.text.includes(`'${name}'`)), `${name} is declared but no source names it`);
    assert.equal(declaration(name)?.support, 'implemented', name);
  }
  const d = spawnSync(NODE, [POSTCONF, '-d', ...names], { encoding: 'utf8' });
  assert.equal(d.status, 0, d.stderr);
  assert.deepEqual(d.stdout.trim().split('\n'), names.map((n) => `${n} = ${POSTACTOR_PARAMS[n]!.default}`.trimEnd()));
  const r = spawnSync(NODE, [POSTCONF, '--support', ...names], { encoding: 'utf8' });
  const j = JSON.parse(r.stdout) as Record<string, { support: string; own?: boolean; postfix_default?: string; readers?: string[] }>;
  for (const name of names) {
    assert.equal(j[name]!.own, true, name);
    assert.equal(j[name]!.postfix_default, undefined, name);
    assert.deepEqual(j[name]!.readers, POSTACTOR_PARAMS[name]!.readers);
  }
});

test('every parameter the code reads by name is declared implemented', () => {
  const re = /\.(?:get|getInt|getBool|getTime|getSize|getList|raw|isSet)\(\s*'([a-z0-9_]+)'\s*\)/g;
  const wrong: string[] = [];
  for (const { file, text } of sources()) {
    for (const m of text.matchAll(re)) {
      const d = declaration(m[1]!);
      if (d !== undefined && d.support !== 'implemented') wrong.push(`${file}: ${m[1]} (${d.support})`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('every declaration has a type, and refused ones say why', () => {
  for (const d of declarations()) {
    assert.ok(['str', 'raw', 'int', 'nint', 'long', 'bool', 'nbool', 'time'].includes(d.type), d.name);
    if (d.support === 'refused') assert.ok((d.refusal ?? '').length > 10, d.name);
    if (d.type === 'time') assert.match(d.unit ?? '', /^[smhdw]$/, d.name);
  }
});

test('postconf -d lists Postfix 3.8\'s parameters (at least 900 with Postfix\'s stock master.cf)', { skip: NO_POSTFIX }, () => {
  assert.ok(parameterNames().length >= 830, `${parameterNames().length} names`);
  const dir = tempDir({ 'main.cf': '', 'master.cf': fs.readFileSync(DEBIAN_MASTER, 'utf8') });
  const r = spawnSync(NODE, [POSTCONF, '-c', dir, '-d'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(r.stdout.split('\n').filter(Boolean).length >= 900, `${r.stdout.split('\n').length} lines`);
});

test('postconf -d agrees with Debian\'s postconf -d on every default both list, except the documented differences', { skip: NO_POSTFIX }, () => {
  const dir = tempDir({ 'main.cf': '', 'master.cf': fs.readFileSync(DEBIAN_MASTER, 'utf8') });
  const listing = (out: string): Map<string, string> => new Map(out.split('\n').filter(Boolean).map((l) => {
    const i = l.indexOf(' =');
    return [l.slice(0, i), l.slice(i + 2).replace(/^ /, '')];
  }));
  const ours = listing(spawnSync(NODE, [POSTCONF, '-c', dir, '-d'], { encoding: 'utf8' }).stdout);
  const theirs = listing(spawnSync(DEBIAN_POSTCONF, ['-c', dir, '-d'], { encoding: 'utf8' }).stdout);
  // Postfix 3.7 (Debian 12) and 3.8 differ here; the registry holds 3.8's.
  const version38 = new Set(['milter_default_action', 'tls_export_cipherlist', 'tls_high_cipherlist', 'tls_low_cipherlist',
    'tls_medium_cipherlist', 'tls_null_cipherlist', 'smtp_tls_dane_insecure_mx_policy', 'tlsproxy_client_policy_maps',
    'tlsproxy_client_security_level', 'mail_version', 'mail_release_date']);
  const perProcess = new Set(['process_id', 'mynetworks']); // each process's pid; mynetworks: derived from mynetworks_style when read
  const differ: string[] = [];
  let both = 0;
  for (const [name, value] of theirs) {
    if (!ours.has(name)) continue;
    both++;
    if (ours.get(name) === value || Object.hasOwn(DIFFERENCES, name) || version38.has(name) || perProcess.has(name)) continue;
    differ.push(`${name}: Postactor "${ours.get(name)}", Postfix "${value}"`);
  }
  assert.ok(both >= 900, `${both} names in both listings`);
  assert.deepEqual(differ, []);
});

test('check refuses each security setting Postactor has not built, naming it; and warns for the rest', () => {
  const master = '127.0.0.1:2599 inet n - n - 1 smtpd\ncleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
  const refused = [
    'smtp_tls_security_level = dane', 'lmtp_tls_per_site = hash:/etc/postfix/tls_per_site',
    'smtpd_proxy_filter = 127.0.0.1:10025', 'smtp_tls_per_site = hash:/etc/postfix/tls_per_site',
  ];
  for (const line of refused) {
    const dir = tempDir({ 'main.cf': `queue_directory = ${os.tmpdir()}/pa-q\n${line}\n`, 'master.cf': master });
    const problems = checkConfig(loadConfig(dir));
    const name = line.split(' ')[0]!;
    assert.ok(problems.some((p) => p.startsWith(`${dir}/main.cf:2: ${line}: not supported by Postactor (`)), `${line}: ${problems.join('; ')}`);
    assert.equal(problems.length, 1, name);
  }
  // The same values as the defaults, and "none", are accepted silently.
  const dir = tempDir({ 'main.cf': 'smtpd_tls_security_level = none\nsmtpd_milters =\nsmtpd_client_connection_count_limit = 50\nbiff = no\n', 'master.cf': master });
  const c = loadConfig(dir);
  assert.deepEqual(checkConfig(c), []);
  assert.deepEqual(c.warnings, [`${dir}/main.cf:4: biff = no: not supported by Postactor, ignored`]);
  // -o settings are refused with the master.cf line.
  const o = tempDir({ 'main.cf': '', 'master.cf': master.replace('smtpd\n', 'smtpd -o smtpd_proxy_filter=127.0.0.1:10025\n') });
  assert.match(checkConfig(loadConfig(o)).join('\n'), new RegExp(`^${o}/master.cf:1: smtpd_proxy_filter = 127.0.0.1:10025: not supported by Postactor`));
});

test('postconf --support says what Postactor does with a parameter', () => {
  const r = spawnSync(NODE, [POSTCONF, '--support', 'smtpd_milters', 'smtpd_proxy_filter', 'smtpd_tls_req_ccert', 'smtpd_banner', 'biff'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as Record<string, { support: string; readers?: string[] }>;
  assert.equal(j['smtpd_milters']!.support, 'implemented');
  assert.equal(j['smtpd_proxy_filter']!.support, 'refused');
  assert.equal(j['smtpd_tls_req_ccert']!.support, 'implemented');
  assert.equal(j['smtpd_banner']!.support, 'implemented');
  assert.deepEqual(j['smtpd_banner']!.readers, ['smtpd']);
  assert.equal(j['biff']!.support, 'unsupported');
});
