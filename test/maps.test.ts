// Tests of the lookup tables (src/maps): each case names the Postfix
// behaviour it pins. The last group runs Debian's /usr/sbin/postmap -q on the
// same fixture files and compares the output literally (skipped when Postfix
// or a table type is not installed).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  TableError, addressKeys, domainKeys, lookupAddress, lookupDomain, openTable, writeLmdb, type LookupTable,
} from '../src/maps/index.js';
import { tempDirs } from './helpers/temp.js';
import { needs } from './helpers/peers.js';

// Tests run from dist/test/; fixtures stay in the source tree.
const FIX = fileURLToPath(new URL('../../test/fixtures/maps/', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const POSTFIX_POSTMAP = '/usr/sbin/postmap';

const tempDir = tempDirs('postactor-maps-');
function write(dir: string, name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}
async function q(table: LookupTable, key: string): Promise<string | null> {
  const r = await table.lookup(key);
  return r.found ? r.value : null;
}
function throwsTable(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof TableError && re.test(e.message), `expected TableError ${re}`);
}

describe('inline: and static: parsing', () => {
  const cases: { name: string; spec: string; key: string; want: string | null }[] = [
    { name: 'inline key=value items separated by commas', spec: 'inline:{ab=c,d=e}', key: 'd', want: 'e' },
    { name: 'inline items separated by whitespace', spec: 'inline:{ a=1 b=2 }', key: 'b', want: '2' },
    { name: 'inline {key = value with spaces}: blanks around = dropped', spec: 'inline:{ {ab = c d}, x=y}', key: 'ab', want: 'c d' },
    { name: 'inline braced value may contain commas', spec: 'inline:{ {k = a, b} }', key: 'k', want: 'a, b' },
    { name: 'inline keys fold to lower case, values keep case', spec: 'inline:{Key=Value}', key: 'KEY', want: 'Value' },
    { name: 'inline miss is NOT FOUND', spec: 'inline:{a=1}', key: 'b', want: null },
    { name: 'static:value answers every key', spec: 'static:OK', key: 'anything', want: 'OK' },
    { name: 'static:{ value with spaces } strips braces and blanks', spec: 'static:{ REJECT go away }', key: 'x', want: 'REJECT go away' },
  ];
  for (const c of cases) {
    test(c.name, async () => assert.equal(await q(openTable(c.spec), c.key), c.want));
  }
  const bad: { name: string; spec: string; re: RegExp }[] = [
    { name: 'inline:{} is a syntax error (Postfix: fatal bad syntax)', spec: 'inline:{}', re: /bad syntax/ },
    { name: 'inline item without = (Postfix: missing \'=\' after attribute name)', spec: 'inline:{x}', re: /missing '=' after attribute name/ },
    { name: 'inline key with whitespace, even in braces (Postfix rejects it)', spec: 'inline:{ {a b = c} }', re: /missing '='/ },
    { name: 'unbraced "key = value" splits into tokens (Postfix rejects it)', spec: 'inline:{ ab = cd }', re: /missing '='/ },
    { name: 'static: without a value (Postfix: fatal, expecting "type:name")', spec: 'static:', re: /static: needs a value/ },
    { name: 'unknown type (Postfix: unsupported dictionary type)', spec: 'ldap:/etc/postfix/ldap.cf', re: /^unsupported dictionary type: ldap$/ },
  ];
  for (const c of bad) test(c.name, () => throwsTable(() => openTable(c.spec), c.re));
});

describe('address query order (virtual(5)/canonical(5))', () => {
  const all = ['user+ext@example.com', 'user@example.com', 'user+ext', 'user', '@example.com'];
  const table = (keys: string[]) => openTable(`inline:{ ${keys.map((k) => `${k}=${k}`).join(', ')} }`);
  const cases: { name: string; keys: string[]; addr: string; delim?: string; local?: boolean; want: string | null }[] = [
    { name: 'user+ext@domain is tried first', keys: all, addr: 'user+ext@example.com', delim: '+', want: 'user+ext@example.com' },
    { name: 'then the unextended user@domain (recipient_delimiter=+)', keys: all.slice(1), addr: 'user+ext@example.com', delim: '+', want: 'user@example.com' },
    { name: 'then the bare user+ext', keys: all.slice(2), addr: 'user+ext@example.com', delim: '+', want: 'user+ext' },
    { name: 'then the bare user', keys: all.slice(3), addr: 'user+ext@example.com', delim: '+', want: 'user' },
    { name: 'then @domain', keys: all.slice(4), addr: 'user+ext@example.com', delim: '+', want: '@example.com' },
    { name: 'without recipient_delimiter user+ext is not split: user@domain is never tried', keys: ['user@example.com'], addr: 'user+ext@example.com', want: null },
    { name: 'without recipient_delimiter: user@domain, user, @domain', keys: ['user', '@example.com'], addr: 'user@example.com', want: 'user' },
    { name: 'bare localparts only for local domains (localDomain false -> @domain)', keys: ['user', '@example.com'], addr: 'user@example.com', local: false, want: '@example.com' },
    { name: 'keys are folded to lower case for hash-like tables', keys: all, addr: 'User+Ext@Example.COM', delim: '+', want: 'user+ext@example.com' },
    { name: 'recipient_delimiter is a set of characters (first one found splits)', keys: ['user@example.com'], addr: 'user-a+b@example.com', delim: '+-', want: 'user@example.com' },
    { name: 'postmaster is never split', keys: ['postmaster@example.com'], addr: 'postmaster@example.com', delim: '+', want: 'postmaster@example.com' },
    { name: 'owner-x is not split with "-" as delimiter (owner_request_special)', keys: ['owner@example.com'], addr: 'owner-list@example.com', delim: '-', want: null },
    { name: 'x-request is not split with "-" as delimiter', keys: ['list@example.com'], addr: 'list-request@example.com', delim: '-', want: null },
    { name: 'a localpart starting with the delimiter is not split', keys: ['@example.com'], addr: '+x@example.com', delim: '+', want: '@example.com' },
    { name: 'an address without domain: user+ext, user', keys: ['user'], addr: 'user+ext', delim: '+', want: 'user' },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const r = await lookupAddress(table(c.keys), c.addr, {
        recipientDelimiter: c.delim ?? '', ...(c.local === false ? { localDomain: () => false } : {}),
      });
      assert.equal(r.found ? r.matchedKey : null, c.want);
      if (r.found) assert.equal(r.value, c.want); // inline values = keys here
    });
  }
  test('the full key list, in order', () => {
    assert.deepEqual(addressKeys('user+ext@example.com', { recipientDelimiter: '+' }), all);
    assert.deepEqual(addressKeys('user@example.com'), ['user@example.com', 'user', '@example.com']);
  });
  test('regexp tables get only the full address, unchanged (access(5): no user@/domain split)', async () => {
    const dir = tempDir();
    const t = openTable(`regexp:${write(dir, 're', '/^user@/ FULL\n/^@/ DOMAIN\n/^USER$/ BARE\n')}`);
    assert.deepEqual(await lookupAddress(t, 'user+x@example.com', { recipientDelimiter: '+' }), { found: false });
    const r = await lookupAddress(t, 'User@Example.com');
    assert.deepEqual(r, { found: true, value: 'FULL', matchedKey: 'User@Example.com' });
  });
  test('static: matches the first (full) key', async () => {
    assert.deepEqual(await lookupAddress(openTable('static:X'), 'a@b'), { found: true, value: 'X', matchedKey: 'a@b' });
  });
});

describe('domain lookups (access(5) check_domain_access)', () => {
  const t = openTable('inline:{ .example.com=DOT, example.org=BARE, Sub.Example.NET=EXACT }');
  test('parent domains as .parent (parent_domain_matches_subdomains without the map)', async () => {
    assert.deepEqual(domainKeys('a.b.example.com', { parentMatch: true }), ['a.b.example.com', '.b.example.com', '.example.com', '.com']);
    assert.deepEqual(await lookupDomain(t, 'A.B.Example.com', { parentMatch: true }), { found: true, value: 'DOT', matchedKey: '.example.com' });
  });
  test('parent domains as bare names (parentStyle bare: smtpd_access_maps default)', async () => {
    assert.deepEqual(await lookupDomain(t, 'x.example.org', { parentMatch: true, parentStyle: 'bare' }), { found: true, value: 'BARE', matchedKey: 'example.org' });
    assert.deepEqual(await lookupDomain(t, 'x.example.org', { parentMatch: true }), { found: false });
  });
  test('without parentMatch only the domain itself (case folded)', async () => {
    assert.deepEqual(await lookupDomain(t, 'a.example.com'), { found: false });
    assert.deepEqual(await lookupDomain(t, 'SUB.example.net'), { found: true, value: 'EXACT', matchedKey: 'sub.example.net' });
  });
});

describe('texthash:', () => {
  const t = openTable(`texthash:${FIX}access.texthash`);
  const cases: [string, string, string | null][] = [
    ['key lookup is case-insensitive (keys folded)', 'USER@EXAMPLE.COM', 'OK'],
    ['values keep their case', 'mixedcase', 'Value Keeps Case'],
    ['a duplicate key keeps the first entry', 'user@example.com', 'OK'],
    ['continuation line joins (newline dropped, blanks kept; comment in between skipped)', 'long', 'first part,    second part'],
    ['multiple blanks inside the value are kept', 'User+tag@example.com', 'REJECT tagged address'],
    ['miss', 'nobody', null],
  ];
  for (const [name, key, want] of cases) test(name, async () => assert.equal(await q(t, key), want));
  test('the duplicate is reported as a warning with file:line', () => {
    assert.match(t.warnings.join('\n'), /access\.texthash:12: duplicate entry: "user@example\.com"/);
  });
  test('a line without a value is a TableError file:line (Postfix: warning, line skipped)', () => {
    const dir = tempDir();
    throwsTable(() => openTable(`texthash:${write(dir, 't', 'a b\nkeyonly\n')}`), /\/t:2: expected format: key whitespace value/);
  });
  test('a missing file is a TableError', () => throwsTable(() => openTable('texthash:/nonexistent/x'), /^\/nonexistent\/x: cannot open table/));
  test('the file is re-read after a change; a broken edit fails lookups until fixed', async () => {
    const dir = tempDir();
    const file = write(dir, 't', 'a 1\n');
    const tab = openTable(`texthash:${file}`);
    assert.equal(await q(tab, 'a'), '1');
    fs.writeFileSync(file, 'a 22\nb 3\n');
    assert.equal(await q(tab, 'a'), '22');
    assert.equal(await q(tab, 'b'), '3');
    fs.writeFileSync(file, 'a 22\nbroken\n');
    throwsTable(() => tab.lookup('a'), /\/t:2: /);
    fs.writeFileSync(file, 'a 4\n');
    assert.equal(await q(tab, 'a'), '4');
  });
});

describe('regexp: (regexp_table(5))', () => {
  const t = openTable(`regexp:${FIX}virtual.regexp`);
  const cases: [string, string, string | null][] = [
    ['$1 substitution; matching is case-insensitive by default', 'Abuse@Example.com', 'OK role Abuse'],
    ['!/pattern/ matches when the pattern does not', 'foo@other.org', 'REJECT foreign'],
    ['if /pattern/ ... endif; ${1} and $2', 'list-dev-request@example.org', 'dev-owner@example.org'],
    ['$(1) form and $$ is a literal $', 'list-dev@example.org', 'LIST dev $cost'],
    ['if !/pattern/ block applies', '123@example.com', 'numeric'],
    ['if !/pattern/ block skipped; POSIX [[:digit:]] class', 'x123@example.com', 'local:x123'],
    ['flag i toggles case-insensitivity OFF', 'Abc@example.com', 'case-sensitive A'],
    ['... so a lower-case key does not match /^A/i', 'abc@example.com', 'local:abc'],
    ['an unmatched group substitutes the empty string', 'xxz@example.com', '[xx|]'],
    ['first matching rule wins', 'xxyz@example.net', '[xx|y]'],
  ];
  for (const [name, key, want] of cases) test(name, async () => assert.equal(await q(t, key), want));

  const bad: [string, string, RegExp][] = [
    ['a line that is not a rule', '/a/ ok\ngarbage\n', /:2: expected "\/pattern\/flags result"/],
    ['a bad regular expression', '/a/ ok\n/(/ X\n', /:2: bad regular expression/],
    ['a missing result (Postfix: warning, empty result)', '/a/\n', /:1: no replacement text/],
    ['$n in a negated rule', '!/(a)/ $1\n', /:1: \$number found in negative match replacement text/],
    ['$n beyond the groups', '/(a)/ $2\n', /:1: out of range replacement index "2"/],
    ['non-numeric $name', '/a/ $x\n', /:1: non-numeric replacement index "x"/],
    ['unknown flag', '/a/q X\n', /:1: unknown regexp option "q"/],
    ['flag x (POSIX basic syntax) is not supported', '/a/x X\n', /:1: regexp option "x"/],
    ['IF without ENDIF', '/a/ X\nif /b/\n/c/ Y\n', /:2: IF has no matching ENDIF/],
    ['ENDIF without IF', 'endif\n', /:1: ENDIF without matching IF/],
    ['extra text after IF', 'if /a/ X\nendif\n', /:1: extra text after IF statement/],
  ];
  for (const [name, text, re] of bad) {
    test(`broken table -> TableError file:line: ${name}`, () => {
      const dir = tempDir();
      throwsTable(() => openTable(`regexp:${write(dir, 'r', text)}`), re);
    });
  }
  test('indented rules inside if/endif are continuation lines (as in Postfix)', async () => {
    const dir = tempDir();
    const tab = openTable(`regexp:${write(dir, 'r', 'if /a/\n/b/ X\n  /c/ Y\nendif\n')}`);
    assert.equal(await q(tab, 'ab'), 'X  /c/ Y');
  });
  test('documented difference: POSIX leftmost-longest vs JS leftmost-first captures', async () => {
    const dir = tempDir();
    const tab = openTable(`regexp:${write(dir, 'r', '/^(a|ab)(c|bcd)(d*)$/ $1-$2-$3\n')}`);
    // POSIX regexec (Postfix) gives "ab-c-d"; JavaScript gives "a-bcd-".
    assert.equal(await q(tab, 'abcd'), 'a-bcd-');
  });
});

describe('pcre: (pcre_table(5), JavaScript RegExp)', () => {
  const t = openTable(`pcre:${FIX}checks.pcre`);
  const cases: [string, string, string | null][] = [
    ['\\w and $1', 'mx.example.com', 'NAME mx'],
    ['x flag: blanks and a #comment in the pattern are ignored', 'xabcx', 'EXTENDED'],
    ['s flag: . matches newline', 'foo\nbar', 'DOTALL'],
    ['A flag anchors at the start', 'anchor', 'ANCHORED'],
    ['A flag: no match later in the key', 'xanch', null],
    ['(?:...) and \\d', 'smtp12.example.org', 'SERVER'],
    ['i toggles case-insensitivity off', 'host.EXAMPLE.NET', 'CASE-SENSITIVE'],
    ['... lower case does not match', 'host.example.net', null],
  ];
  for (const [name, key, want] of cases) test(name, async () => assert.equal(await q(t, key), want));
  test('U (ungreedy) is rejected loudly', () => {
    const dir = tempDir();
    throwsTable(() => openTable(`pcre:${write(dir, 'p', '/a+/U X\n')}`), /:1: pcre option "U"/);
  });
});

describe('cidr: (cidr_table(5))', () => {
  const t = openTable(`cidr:${FIX}clients.cidr`);
  const cases: [string, string, string | null][] = [
    ['first match wins (/24 before /16)', '192.168.1.7', 'NET24'],
    ['the wider network', '192.168.9.9', 'NET16'],
    ['a bare address is a /32', '10.1.2.3', 'HOST'],
    ['IPv6 network, case-insensitive hex', '2001:DB8::1', 'V6'],
    ['IPv6 pattern in brackets', '2001:db9::5', 'V6 bracketed'],
    ['if network ... endif', '172.16.5.1', 'INNER'],
    ['!network inside if', '172.17.0.1', 'NOT16'],
    ['falls out of the if block to the next rule', '172.16.9.9', 'NOT10'],
    ['!network/prefix', '11.0.0.1', 'NOT10'],
    ['a negated rule does not match a non-address key', 'foo', null],
    ['IPv4-mapped IPv6 does not match IPv4 rules', '::ffff:10.1.2.3', null],
    ['a bracketed key is not an address', '[10.1.2.3]', null],
  ];
  for (const [name, key, want] of cases) test(name, async () => assert.equal(await q(t, key), want));
  const bad: [string, string, RegExp][] = [
    ['host bits set (Postfix: warning, rule skipped)', '192.168.1.1/24 X\n', /:1: non-null host address bits in "192\.168\.1\.1\/24", perhaps you should use "192\.168\.1\.0\/24" instead/],
    ['bad prefix length', '1.2.3.0/33 X\n', /:1: bad mask length/],
    ['bad address', '0.0.0.0/0 ok\n1.2.3.999 Y\n', /:2: bad address pattern/],
    ['no result', '1.2.3.4\n', /:1: no lookup result/],
    ['unbalanced if', 'if 10.0.0.0/8\n', /:1: IF has no matching ENDIF/],
  ];
  for (const [name, text, re] of bad) {
    test(`broken table -> TableError file:line: ${name}`, () => {
      const dir = tempDir();
      throwsTable(() => openTable(`cidr:${write(dir, 'c', text)}`), re);
    });
  }
});

describe('lmdb:', () => {
  test('build + query; keys folded at build time; missing table is a TableError', async () => {
    const dir = tempDir();
    writeLmdb(path.join(dir, 'v'), [['a@example.com', 'Alice'], ['b', 'B']]);
    const t = openTable(`lmdb:${path.join(dir, 'v')}`);
    assert.equal(await q(t, 'A@Example.com'), 'Alice');
    assert.equal(await q(t, 'zz'), null);
    assert.equal(await q(t, ''), null);
    t.close?.();
    throwsTable(() => openTable(`lmdb:${path.join(dir, 'missing')}`), /^open database .*missing\.lmdb: No such file or directory$/);
  });
  test('a table rebuilt (in this process) is seen by an already-open table without restart', async () => {
    const dir = tempDir();
    const base = path.join(dir, 't');
    writeLmdb(base, [['k', 'v0']]);
    const t1 = openTable(`lmdb:${base}`);
    const t2 = openTable(`lmdb:${base}`);
    assert.equal(await q(t1, 'k'), 'v0');
    for (let i = 1; i <= 3; i++) {
      writeLmdb(base, [['k', `v${i}`], [`n${i}`, 'x']]);
      assert.equal(await q(t1, 'k'), `v${i}`);
      assert.equal(await q(t2, `n${i}`), 'x');
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), ['t.lmdb', 't.lmdb-lock'], 'no temporary files left behind');
    t1.close?.();
    t2.close?.();
  });
  test('a table rebuilt by bin/postmap (another process) is seen without restart', async () => {
    const dir = tempDir();
    const src = write(dir, 'm', 'k before\n');
    assert.equal(spawnSync(path.join(ROOT, 'bin/postmap'), [src]).status, 0);
    const t = openTable(`lmdb:${src}`);
    assert.equal(await q(t, 'k'), 'before');
    fs.writeFileSync(src, 'k after\nother 1\n');
    const r = spawnSync(path.join(ROOT, 'bin/postmap'), [src], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(await q(t, 'k'), 'after');
    assert.equal(await q(t, 'other'), '1');
    t.close?.();
  });
});

// ---- Comparison with Debian's Postfix -------------------------------------

// Debian's Postfix commands need a main.cf; a fresh "No configuration" install has none, so
// they run on an empty one of their own (-c), which leaves their table code unchanged.
const PF_CONF = fs.mkdtempSync(path.join(os.tmpdir(), 'pa-postfix-conf-'));
fs.writeFileSync(path.join(PF_CONF, 'main.cf'), '');
after(() => fs.rmSync(PF_CONF, { recursive: true, force: true }));

function postfixTypes(): Set<string> {
  const r = spawnSync('/usr/sbin/postconf', ['-c', PF_CONF, '-m'], { encoding: 'utf8' });
  return new Set(r.status === 0 ? r.stdout.split('\n').map((s) => s.trim()) : []);
}
const TYPES = fs.existsSync(POSTFIX_POSTMAP) ? postfixTypes() : new Set<string>();

function queryBoth(spec: string, keys: string[]): { postfix: string; ours: string } {
  const input = `${keys.join('\n')}\n`;
  const pf = spawnSync(POSTFIX_POSTMAP, ['-c', PF_CONF, '-q', '-', spec], { input, encoding: 'utf8' });
  const ours = spawnSync(path.join(ROOT, 'bin/postmap'), ['-q', '-', spec], { input, encoding: 'utf8' });
  assert.equal(ours.status, pf.status, `exit status: ours ${ours.stderr}`);
  return { postfix: pf.stdout, ours: ours.stdout };
}

describe('same answers as Debian /usr/sbin/postmap -q', () => {
  const cases: { type: string; file: string; keys: string[] }[] = [
    {
      type: 'texthash', file: 'access.texthash',
      keys: ['user@example.com', 'USER+TAG@EXAMPLE.COM', 'long', 'mixedcase', 'postmaster', '.sub.example.org', 'nope', '@example.com'],
    },
    {
      type: 'regexp', file: 'virtual.regexp',
      keys: ['Abuse@Example.com', 'foo@other.org', 'list-dev-request@example.org', 'list-dev@example.org', '123@example.com',
        'x123@example.com', 'Abc@example.com', 'abc@example.com', 'xxz@example.com', 'xxyz@example.net', 'Joe@Example.COM', 'nomatch@example.net'],
    },
    {
      type: 'cidr', file: 'clients.cidr',
      keys: ['192.168.1.7', '192.168.9.9', '10.1.2.3', '10.9.9.9', '2001:DB8::1', '2001:db9::5', '172.16.5.1', '172.17.0.1',
        '172.16.9.9', '11.0.0.1', 'foo', '::ffff:10.1.2.3', '[10.1.2.3]'],
    },
    // pcre: needs Debian's postfix-pcre (CI installs it).
    { type: 'pcre', file: 'checks.pcre', keys: ['mx.example.com', 'xabcx', 'anchor', 'xanch', 'smtp12.example.org', 'host.EXAMPLE.NET', 'host.example.net'] },
  ];
  for (const c of cases) {
    test(`${c.type}: ${c.file}`, { skip: TYPES.has(c.type) ? false : needs(c.type === 'pcre' ? '/usr/lib/postfix/postfix-pcre.so' : POSTFIX_POSTMAP, `Postfix's ${c.type}: tables, the comparison peer`) }, () => {
      const { postfix, ours } = queryBoth(`${c.type}:${FIX}${c.file}`, c.keys);
      assert.ok(postfix.length > 0);
      assert.equal(ours, postfix);
    });
  }
  test('inline: and static:', { skip: TYPES.has('inline') ? false : needs(POSTFIX_POSTMAP, "Debian's postmap, the comparison peer") }, () => {
    for (const [spec, keys] of [['inline:{ab=c, {k = v w}, X=Y}', ['AB', 'k', 'x', 'no']], ['static:{ a b }', ['x']]] as const) {
      const { postfix, ours } = queryBoth(spec, [...keys]);
      assert.equal(ours, postfix, spec);
    }
  });
});
