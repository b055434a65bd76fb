/**
 * Packaging: the systemd unit (packaging/postactor.service) passes `systemd-analyze verify`
 * (with /opt/postactor pointed at this checkout) and runs only real postactor commands with the
 * pid file the master writes; the Dockerfile is well-formed (known instructions, FROM first,
 * every COPY source in the repository, exec-form commands that are real postactor commands);
 * and every command in bin/ answers --help with a manual page (exit 0) and a bad option with its
 * usage on standard error (exit 64).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, REPO_ROOT } from './helpers/server.js';
import { pidFilePath } from '../actors/master/lock.js';
import { DEFAULTS } from '../src/config/defaults.js';
import { tempDirs } from './helpers/temp.js';
import { needs } from './helpers/peers.js';

const tempDir = tempDirs('postactor-packaging-');
const UNIT = join(REPO_ROOT, 'packaging', 'postactor.service');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const POSTACTOR_COMMANDS = new Set(['start-fg', 'start', 'stop', 'abort', 'reload', 'status', 'check', 'flush']);

/** A unit file as sections of key → values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([A-Za-z]+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    assert.ok(kv && current, `${UNIT}:${i + 1}: not a unit file line: ${raw}`);
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!]);
  }
  return sections;
}

test('the systemd unit runs postactor start/stop/reload/check and names the pid file the master writes', () => {
  const unit = parseUnit(readFileSync(UNIT, 'utf8'));
  assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
  const service = unit.get('Service')!;
  assert.deepEqual(service.get('Type'), ['forking']);
  assert.deepEqual(service.get('PIDFile'), [pidFilePath(DEFAULTS['queue_directory']!)]);
  const commands = ['ExecStartPre', 'ExecStart', 'ExecStop', 'ExecReload'].map((k) => [k, service.get(k)?.[0]] as const);
  assert.deepEqual(commands.map(([, v]) => v!.split(' ').at(-1)), ['check', 'start', 'stop', 'reload']);
  for (const [key, value] of commands) {
    const argv = value!.split(' ');
    assert.equal(argv[0], '/opt/postactor/bin/postactor', key);
    assert.deepEqual(argv.slice(1, 3), ['-c', '/etc/postactor'], key);
    assert.ok(POSTACTOR_COMMANDS.has(argv[3]!), key);
  }
  assert.deepEqual(unit.get('Install')!.get('WantedBy'), ['multi-user.target']);
});

test('systemd-analyze verify accepts the unit', { skip: needs(SYSTEMD_ANALYZE, 'systemd-analyze') }, () => {
  const dir = tempDir();
  const file = join(dir, 'postactor.service');
  // Installed under /opt/postactor; here the checkout stands in for it, so the commands exist.
  writeFileSync(file, readFileSync(UNIT, 'utf8').replaceAll('/opt/postactor', REPO_ROOT.replace(/\/$/, '')));
  const r = spawnSync(SYSTEMD_ANALYZE, ['verify', '--man=no', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.split('\n').filter((l) => l.includes('postactor.service')).join('\n'), '', 'no warning about the unit');
});

/** Dockerfile instructions, continuation lines joined. */
function dockerInstructions(text: string): { line: number; keyword: string; args: string }[] {
  const out: { line: number; keyword: string; args: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + ' ' + lines[++i]!.trim();
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile:${start + 1}: not an instruction: ${line}`);
    out.push({ line: start + 1, keyword: m[1]!.toUpperCase(), args: m[2]!.trim() });
  }
  return out;
}

test('the Dockerfile is well formed: FROM first, COPY sources exist, exec-form commands run real postactor commands', () => {
  const known = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL']);
  const ins = dockerInstructions(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
  assert.equal(ins[0]!.keyword, 'FROM');
  const stages = new Set<string>();
  for (const { line, keyword, args } of ins) {
    assert.ok(known.has(keyword), `Dockerfile:${line}: unknown instruction ${keyword}`);
    if (keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(m, `Dockerfile:${line}: FROM image [AS name]`);
      assert.match(m[1]!, /^node:24[-.]/, 'the pinned runtime\'s major version');
      if (m[2]) stages.add(m[2]);
    }
    if (keyword === 'COPY') {
      const words = args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='));
      const paths = words.filter((w) => !w.startsWith('--'));
      assert.ok(paths.length >= 2, `Dockerfile:${line}: COPY src... dest`);
      if (from) assert.ok(stages.has(from.slice(7)), `Dockerfile:${line}: no stage ${from}`);
      else for (const src of paths.slice(0, -1)) assert.ok(existsSync(join(REPO_ROOT, src)), `Dockerfile:${line}: ${src} is not in the repository`);
    }
    if (keyword === 'CMD' || keyword === 'HEALTHCHECK') {
      const json = keyword === 'CMD' ? args : args.replace(/^(--\S+\s+)*CMD\s+/, '');
      const argv = JSON.parse(json) as string[];
      assert.equal(argv[0], '/opt/postactor/bin/postactor', `Dockerfile:${line}`);
      assert.ok(POSTACTOR_COMMANDS.has(argv.at(-1)!), `Dockerfile:${line}: ${argv.at(-1)}`);
    }
  }
  const cmd = ins.filter((i) => i.keyword === 'CMD').at(-1)!;
  assert.equal((JSON.parse(cmd.args) as string[]).at(-1), 'start-fg', 'the master is the container\'s foreground process');
  assert.ok(existsSync(join(REPO_ROOT, '.dockerignore')));
  assert.match(readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'), /^node_modules$/m);
});

/** Every command in bin/ (each has a dist/bin/NAME.js). */
const COMMANDS = readdirSync(join(REPO_ROOT, 'bin')).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).filter((n) => n !== 'sink');

test('every command in bin/ answers --help with a manual page on stdout, exit 0', () => {
  assert.ok(COMMANDS.includes('sendmail') && COMMANDS.length >= 12, COMMANDS.join(' '));
  for (const name of COMMANDS) {
    const r = spawnSync(NODE, [join(REPO_ROOT, 'dist', 'bin', `${name}.js`), '--help'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.equal(r.stderr, '', name);
    assert.match(r.stdout, new RegExp(`^usage: ${name} `), name);
    for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'OPTIONS', 'ENVIRONMENT', 'SEE ALSO']) {
      assert.match(r.stdout, new RegExp(`^${section}$`, 'm'), `${name}: ${section}`);
    }
    assert.match(r.stdout, new RegExp(`^NAME\\n    ${name} - `, 'm'), name);
  }
});

test('a bad option still prints the usage on stderr and exits 64 (postlock: 75, as Postfix\'s)', () => {
  for (const name of COMMANDS) {
    const r = spawnSync(NODE, [join(REPO_ROOT, 'dist', 'bin', `${name}.js`), '-Z'], { encoding: 'utf8', timeout: 20_000, input: '' });
    assert.equal(r.status, name === 'postlock' ? 75 : 64, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /usage: /, name);
    assert.doesNotMatch(r.stdout, /^NAME$/m, name);
  }
});
