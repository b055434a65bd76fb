// Tests of Postfix's indexed table types (hash:, btree:, cdb:, dbm:, sdbm:)
// as Postactor's lmdb table (src/maps/indexed.ts): postmap/postalias/newaliases
// build FILE.lmdb and never Postfix's FILE.db, every reader opens it, one
// informational line per thread, the missing-index error names the command
// that builds it, nis: is disabled as in Postfix without an NIS domain, and
// postconf -m lists the types like Postfix's (compared with Debian's).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EMBEDDED_MASTER_CF, loadConfig } from '../src/config/index.js';
import { newaliasesMain, postaliasMain, postmapMain } from '../src/maps/cli.js';
import { TABLE_TYPES, TableError, lookupAddress, openTable, setTableNotices } from '../src/maps/index.js';
import { needs } from './helpers/peers.js';
import { tempDirs } from './helpers/temp.js';
import { runMain } from './helpers/cli.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POSTFIX_POSTCONF = '/usr/sbin/postconf';

after(() => {
  setTableNotices(null);
});
const tempDir = tempDirs('postactor-indexed-');

const run = runMain;

/** Collects this thread's table notices while fn runs. */
function notices(fn: () => void): string[] {
  const seen: string[] = [];
  setTableNotices((level, text) => seen.push(`${level}: ${text}`));
  try {
    fn();
  } finally {
    setTableNotices(null);
  }
  return seen;
}

describe('postmap and postalias build and read hash: as FILE.lmdb', () => {
  test('postmap hash:FILE builds FILE.lmdb (no FILE.db); postmap -q reads it as hash:, btree:, lmdb: or a bare name', () => {
    const dir = tempDir();
    const src = path.join(dir, 'access');
    fs.writeFileSync(src, 'Example.COM REJECT go away\n10.1.2.3 OK\n');
    assert.deepEqual(run(postmapMain, [`hash:${src}`]), { code: 0, out: '', err: '' });
    assert.deepEqual(fs.readdirSync(dir).sort(), ['access', 'access.lmdb']);
    for (const spec of [`hash:${src}`, `btree:${src}`, `cdb:${src}`, `dbm:${src}`, `sdbm:${src}`, `lmdb:${src}`, src]) {
      assert.deepEqual(run(postmapMain, ['-q', 'example.com', spec]), { code: 0, out: 'REJECT go away\n', err: '' }, spec);
    }
    assert.equal(run(postmapMain, ['-q', 'nothere', `hash:${src}`]).code, 1);
  });
  test('every type builds the same file: postmap btree:FILE after hash:FILE replaces FILE.lmdb; -s and -d work on hash:', () => {
    const dir = tempDir();
    const src = path.join(dir, 't');
    fs.writeFileSync(src, 'a 1\n');
    assert.equal(run(postmapMain, [`hash:${src}`]).code, 0);
    fs.writeFileSync(src, 'a 2\nb 3\n');
    assert.equal(run(postmapMain, [`btree:${src}`]).code, 0);
    assert.deepEqual(run(postmapMain, ['-s', `hash:${src}`]), { code: 0, out: 'a\t2\nb\t3\n', err: '' });
    assert.equal(run(postmapMain, ['-d', 'a', `hash:${src}`]).code, 0);
    assert.equal(run(postmapMain, ['-q', 'a', `hash:${src}`]).code, 1);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => !f.endsWith('-lock')).sort(), ['t', 't.lmdb']);
  });
  test('postalias hash:FILE builds FILE.lmdb; lookups through postalias -q and openTable (as alias_maps does)', async () => {
    const dir = tempDir();
    const src = path.join(dir, 'aliases');
    fs.writeFileSync(src, 'postmaster: root\nTeam: alice,\n  bob\n');
    assert.deepEqual(run(postaliasMain, [`hash:${src}`]), { code: 0, out: '', err: '' });
    assert.deepEqual(fs.readdirSync(dir).sort(), ['aliases', 'aliases.lmdb']);
    assert.equal(run(postaliasMain, ['-q', 'team', `hash:${src}`]).out, 'alice,  bob\n');
    const t = openTable(`hash:${src}`);
    assert.deepEqual(t.lookup('postmaster'), { found: true, value: 'root' });
    assert.deepEqual(await lookupAddress(t, 'Team'), { found: true, value: 'alice,  bob', matchedKey: 'team' });
    t.close?.();
  });
  test('newaliases builds Postfix\'s default alias_database (hash:) and Postactor\'s default_database_type is hash', () => {
    const dir = tempDir();
    const aliases = path.join(dir, 'aliases');
    fs.writeFileSync(aliases, 'postmaster: root\n');
    fs.writeFileSync(path.join(dir, 'master.cf'), EMBEDDED_MASTER_CF);
    fs.writeFileSync(path.join(dir, 'main.cf'), `alias_database = hash:${aliases}\n`);
    assert.deepEqual(run(newaliasesMain, ['-c', dir]), { code: 0, out: '', err: '' });
    assert.deepEqual(openTable(`hash:${aliases}`).lookup('postmaster'), { found: true, value: 'root' });
    assert.ok(!fs.existsSync(`${aliases}.db`));
    fs.writeFileSync(path.join(dir, 'main.cf'), '');
    const c = loadConfig(dir);
    assert.equal(c.get('default_database_type'), 'hash');
    assert.equal(c.get('alias_database'), 'hash:/etc/aliases');
    assert.equal(c.get('alias_maps'), 'hash:/etc/aliases, nis:mail.aliases');
  });
  test('a type that has no index is refused for building; an unknown type is Postfix\'s "unsupported dictionary type"', () => {
    assert.match(run(postmapMain, ['texthash:/x']).err, /^postmap: fatal: texthash:\/x: cannot build a texthash: table/);
    assert.deepEqual(run(postmapMain, ['ldap:/x']), { code: 1, out: '', err: 'postmap: fatal: unsupported dictionary type: ldap\n' });
  });
});

describe('opening hash: tables', () => {
  test('the source file without its index: Postfix\'s "open database" error plus the command that builds it', () => {
    const dir = tempDir();
    const src = path.join(dir, 'aliases');
    fs.writeFileSync(src, 'a: b\n');
    const err = (fn: () => unknown): string => {
      try {
        fn();
      } catch (e) {
        assert.ok(e instanceof TableError);
        return e.message;
      }
      assert.fail('expected a TableError');
    };
    assert.equal(err(() => openTable(`hash:${src}`)), `open database ${src}.lmdb: No such file or directory (run "postmap hash:${src}" to build it from ${src})`);
    assert.equal(err(() => openTable(`hash:${src}`, { builder: 'postalias' })), `open database ${src}.lmdb: No such file or directory (run "postalias hash:${src}" to build it from ${src})`);
    // Without a source file either: Postfix's text alone.
    assert.equal(err(() => openTable(`btree:${dir}/none`)), `open database ${dir}/none.lmdb: No such file or directory`);
    assert.deepEqual(run(postmapMain, ['-q', 'a', `hash:${src}`]), {
      code: 1, out: '', err: `postmap: fatal: open database ${src}.lmdb: No such file or directory (run "postmap hash:${src}" to build it from ${src})\n`,
    });
  });
  test('one informational line the first time a thread opens a hash: table, none for lmdb:', () => {
    const dir = tempDir();
    const src = path.join(dir, 'virtual');
    fs.writeFileSync(src, 'a@example.com b@example.net\n');
    assert.equal(run(postmapMain, [`hash:${src}`]).code, 0);
    const seen = notices(() => {
      for (let i = 0; i < 3; i++) openTable(`hash:${src}`).close?.();
      openTable(`lmdb:${src}`).close?.();
    });
    assert.deepEqual(seen, [`info: hash:${src} is read as Postactor's lmdb table ${src}.lmdb (built by "postmap hash:${src}" or postalias; Postfix's ${src}.db is not used)`]);
    // A second type naming the same file is its own line.
    assert.equal(notices(() => openTable(`cdb:${src}`).close?.()).length, 1);
  });
  test('an index older than its source file: Postfix\'s warning, on stderr for postmap -q', () => {
    const dir = tempDir();
    const src = path.join(dir, 'transport');
    fs.writeFileSync(src, 'example.com smtp:[10.0.0.1]\n');
    assert.equal(run(postmapMain, [`hash:${src}`]).code, 0);
    const later = new Date(Date.now() + 3_600_000);
    fs.utimesSync(src, later, later);
    assert.deepEqual(run(postmapMain, ['-q', 'example.com', `hash:${src}`]), {
      code: 0, out: 'smtp:[10.0.0.1]\n', err: `postmap: warning: database ${src}.lmdb is older than source file ${src}\n`,
    });
  });
  test('nis: opens with one warning and finds nothing (Postfix on a host without an NIS domain)', () => {
    const seen = notices(() => {
      const t = openTable('nis:mail.aliases');
      assert.deepEqual(t.lookup('root'), { found: false });
      openTable('nis:other.map');
    });
    assert.deepEqual(seen, ['warning: nis:mail.aliases: NIS is not supported by Postactor - NIS lookups disabled']);
  });
});

describe('postconf -m', () => {
  const postconfM = () => spawnSync(path.join(ROOT, 'bin/postconf'), ['-m'], { encoding: 'utf8' });
  test('lists the table types one per line, sorted, hash and btree among them; -m takes no modifier', () => {
    const r = postconfM();
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, TABLE_TYPES.map((t) => `${t}\n`).join(''));
    assert.deepEqual([...TABLE_TYPES].sort(), TABLE_TYPES);
    for (const t of ['hash', 'btree', 'lmdb', 'texthash', 'regexp', 'pcre', 'cidr', 'inline', 'static']) assert.ok(TABLE_TYPES.includes(t), t);
    const bad = spawnSync(path.join(ROOT, 'bin/postconf'), ['-m', '-d'], { encoding: 'utf8' });
    assert.deepEqual([bad.status, bad.stderr], [64, 'postconf: fatal: with option -m, do not specify -d\n']);
  });
  test('same format and order as Debian\'s postconf -m for the types both have', { skip: needs(POSTFIX_POSTCONF, "Debian's postconf, the comparison peer") }, () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'main.cf'), '');
    fs.writeFileSync(path.join(dir, 'master.cf'), '');
    const theirs = spawnSync(POSTFIX_POSTCONF, ['-c', dir, '-m'], { encoding: 'utf8' });
    assert.equal(theirs.status, 0, theirs.stderr);
    const ours = postconfM().stdout.split('\n').filter((l) => l !== '');
    const postfix = theirs.stdout.split('\n').filter((l) => l !== '');
    const both = new Set(ours.filter((t) => postfix.includes(t)));
    assert.deepEqual(ours.filter((t) => both.has(t)), postfix.filter((t) => both.has(t)));
    for (const t of ['hash', 'btree', 'cidr', 'inline', 'regexp', 'static', 'texthash']) assert.ok(both.has(t), `${t} in both`);
  });
});
