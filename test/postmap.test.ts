// Tests of postmap / postalias / newaliases (src/maps/cli.ts): each case
// names the postmap(1)/postalias(1) behaviour it pins. Most run in-process;
// a few spawn bin/NAME to check the wrapper, exit codes and stderr.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EMBEDDED_MASTER_CF } from '../src/config/index.js';
import { newaliasesMain, postaliasMain, postmapMain } from '../src/maps/cli.js';
import { openTable } from '../src/maps/index.js';
import { tempDirs } from './helpers/temp.js';
import { runMain } from './helpers/cli.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/maps/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const tempDir = tempDirs('postactor-postmap-');

const run = runMain;

describe('postmap', () => {
  test('build [lmdb:]file -> file.lmdb; -q prints the value, exit 0; a miss exits 1', () => {
    const dir = tempDir();
    const src = path.join(dir, 'access');
    fs.copyFileSync(`${FIX}access.texthash`, src);
    const b = run(postmapMain, [src]);
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /^postmap: warning: .*access:12: duplicate entry: "user@example\.com"/);
    // No temporary build files left (the -lock file appears with the first reader).
    assert.deepEqual(fs.readdirSync(dir).sort(), ['access', 'access.lmdb']);
    assert.deepEqual(run(postmapMain, ['-q', 'USER@example.com', src]), { code: 0, out: 'OK\n', err: '' });
    assert.deepEqual(run(postmapMain, ['-q', 'long', `lmdb:${src}`]), { code: 0, out: 'first part,    second part\n', err: '' });
    assert.equal(run(postmapMain, ['-q', 'nobody', src]).code, 1);
  });
  test('-q searches the maps in order, any type (texthash:, regexp:, inline:, cidr:)', () => {
    assert.equal(run(postmapMain, ['-q', 'b', 'inline:{a=1}', 'inline:{b=2}', 'static:3']).out, '2\n');
    assert.equal(run(postmapMain, ['-q', 'Joe@Example.COM', `regexp:${FIX}virtual.regexp`]).out, 'local:Joe\n');
    assert.equal(run(postmapMain, ['-q', '10.1.2.3', `cidr:${FIX}clients.cidr`]).out, 'HOST\n');
    assert.equal(run(postmapMain, ['-q', 'MixedCase', `texthash:${FIX}access.texthash`]).out, 'Value Keeps Case\n');
  });
  test('-q - reads keys from stdin and prints "key<TAB>value" for the found ones', () => {
    const r = run(postmapMain, ['-q', '-', 'inline:{a=1, c=3}'], 'a\nb\nC\n');
    assert.deepEqual(r, { code: 0, out: 'a\t1\nC\t3\n', err: '' });
  });
  test('-s dumps all entries; -f keeps key case', () => {
    const dir = tempDir();
    const src = path.join(dir, 'm');
    fs.writeFileSync(src, 'Key Value\nother x\n');
    assert.equal(run(postmapMain, ['-f', src]).code, 0);
    assert.equal(run(postmapMain, ['-s', src]).out.split('\n').sort().join('\n'), '\nKey\tValue\nother\tx');
    assert.equal(run(postmapMain, ['-f', '-q', 'key', src]).code, 1);
    assert.equal(run(postmapMain, ['-f', '-q', 'Key', src]).out, 'Value\n');
  });
  test('-i adds lines from stdin to the existing table; -d deletes (exit 1 when absent)', () => {
    const dir = tempDir();
    const src = path.join(dir, 'm');
    fs.writeFileSync(src, 'a 1\n');
    run(postmapMain, [src]);
    assert.equal(run(postmapMain, ['-i', src], 'B 2\na dup\n').code, 0);
    assert.equal(run(postmapMain, ['-q', 'b', src]).out, '2\n');
    assert.equal(run(postmapMain, ['-q', 'a', src]).out, '1\n', 'without -r an existing key is kept');
    assert.equal(run(postmapMain, ['-i', '-r', src], 'a new\n').code, 0);
    assert.equal(run(postmapMain, ['-q', 'a', src]).out, 'new\n');
    assert.equal(run(postmapMain, ['-d', 'A', src]).code, 0);
    assert.equal(run(postmapMain, ['-q', 'a', src]).code, 1);
    assert.equal(run(postmapMain, ['-d', 'a', src]).code, 1);
  });
  test('an unknown type is refused: "unsupported dictionary type", exit 1 (hash: etc.: test/indexed-tables.test.ts)', () => {
    assert.deepEqual(run(postmapMain, ['ldap:/etc/postfix/x']), {
      code: 1, out: '', err: 'postmap: fatal: unsupported dictionary type: ldap\n',
    });
  });
  test('a broken input file: "postmap: fatal: file:line: ...", exit 1, no table written', () => {
    const dir = tempDir();
    const src = path.join(dir, 'm');
    fs.writeFileSync(src, 'a 1\nbroken\n');
    const r = run(postmapMain, [src]);
    assert.equal(r.code, 1);
    assert.equal(r.err, `postmap: fatal: ${src}:2: expected format: key whitespace value: "broken"\n`);
    assert.deepEqual(fs.readdirSync(dir), ['m']);
  });
  test('a texthash:/regexp: table cannot be built or updated', () => {
    assert.match(run(postmapMain, [`regexp:${FIX}virtual.regexp`]).err, /^postmap: fatal: .*cannot build a regexp: table/);
  });
  test('bin/postmap: --help exit 0; bad flag -> usage on stderr, exit 64; fatal without stack trace', () => {
    const bin = path.join(ROOT, 'bin/postmap');
    const h = spawnSync(bin, ['--help'], { encoding: 'utf8' });
    assert.equal(h.status, 0);
    assert.match(h.stdout, /^usage: postmap /);
    const u = spawnSync(bin, ['-Z', 'x'], { encoding: 'utf8' });
    assert.equal(u.status, 64);
    assert.match(u.stderr, /^postmap: invalid option -- 'Z'\nusage: postmap /);
    const f = spawnSync(bin, ['-q', 'k', '/nonexistent/table'], { encoding: 'utf8' });
    assert.equal(f.status, 1);
    assert.equal(f.stderr, 'postmap: fatal: open database /nonexistent/table.lmdb: No such file or directory\n');
  });
});

describe('postalias / newaliases', () => {
  test('alias syntax: continuation, quoted names, :include: verbatim, first duplicate wins, "@" entry', () => {
    const dir = tempDir();
    const src = path.join(dir, 'aliases');
    fs.copyFileSync(`${FIX}aliases`, src);
    const b = run(postaliasMain, [src]);
    assert.equal(b.code, 0, b.err);
    assert.match(b.err, /duplicate entry: "root"/);
    const cases: [string, string][] = [
      ['root', 'admin, ops,                oncall@example.com'],
      ['quoted name', 'someone'],
      ['list', ':include:/etc/postactor/list.txt'],
      ['pipe', '"|/usr/bin/procmail -a x"'],
      ['@', '@'],
    ];
    for (const [k, v] of cases) assert.equal(run(postaliasMain, ['-q', k, src]).out, `${v}\n`, k);
  });
  test('a line without "name:" is fatal with file:line (Postfix: warning, skipped)', () => {
    const dir = tempDir();
    const src = path.join(dir, 'aliases');
    fs.writeFileSync(src, 'a: b\nbad line\n');
    assert.deepEqual(run(postaliasMain, [src]), { code: 1, out: '', err: `postalias: fatal: ${src}:2: need name:value pair\n` });
  });
  test('newaliases builds alias_database from main.cf; a texthash: alias_database is refused', () => {
    const dir = tempDir();
    const aliases = path.join(dir, 'aliases');
    fs.writeFileSync(aliases, 'postmaster: root\n');
    fs.writeFileSync(path.join(dir, 'master.cf'), EMBEDDED_MASTER_CF);
    fs.writeFileSync(path.join(dir, 'main.cf'), `alias_database = lmdb:${aliases}\n`);
    assert.deepEqual(run(newaliasesMain, ['-c', dir]), { code: 0, out: '', err: '' });
    assert.deepEqual(openTable(`lmdb:${aliases}`).lookup('PostMaster'), { found: true, value: 'root' });
    fs.writeFileSync(path.join(dir, 'main.cf'), `alias_database = texthash:${aliases}\n`);
    const r = run(newaliasesMain, ['-c', dir]);
    assert.equal(r.code, 1);
    assert.match(r.err, /^newaliases: fatal: alias_database = texthash:.*: texthash:.*: cannot build a texthash: table /);
  });
});
