/**
 * trivial-rewrite, table-driven: input address + configuration → rewritten address, address
 * class, transport, nexthop, or the error reply. The pure modules (actors/trivial-rewrite/
 * rewrite.ts, resolve.ts) are run without threads; one test runs the pool handler on a thread.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../src/config/load.js';
import type { Config } from '../src/config/index.js';
import { rewriteAddress } from '../src/rewrite/rewrite.js';
import { classify, domainListProblems, openTables, resolveAddress, resolveSettings } from '../src/rewrite/resolve.js';
import { rewriteSettings, TrivialRewrite } from '../src/rewrite/settings.js';
import { ResolveCache, tableFiles } from '../src/rewrite/cache.js';
import { SmtpdPolicy } from '../src/smtpd/policy.js';

const BASE: Record<string, string> = {
  myhostname: 'mx.us.test',
  mydestination: '$myhostname, us.test, localhost',
  inet_interfaces: '127.0.0.1',
  relay_domains: 'relay.test',
  virtual_alias_domains: 'valias.test',
  virtual_mailbox_domains: 'vmbox.test',
};

function config(extra: Record<string, string> = {}, dir: string | null = null): Config {
  const all = { ...BASE, ...extra };
  return buildConfig(dir, Object.entries(all).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n', '');
}

test('rewrite (Postfix rewrite.c): source routes, bang paths, percent hack, append_at_myorigin, append_dot_mydomain, trailing dot', () => {
  const cases: [string, 'local' | 'remote', Record<string, string>, string][] = [
    ['@a.example,@b.example:user@c.example', 'local', {}, 'user@c.example'],
    ['@a.example:user@c.example', 'remote', {}, 'user@c.example'],
    ['site.example!user', 'local', {}, 'user@site.example'],
    ['a.example!b.example!user', 'local', {}, 'b.example!user@a.example'],
    ['site.example!user', 'local', { swap_bangpath: 'no' }, 'site.example!user@mx.us.test'],
    ['user%dom.example', 'local', {}, 'user@dom.example'],
    ['user%dom.example', 'local', { allow_percent_hack: 'no' }, 'user%dom.example@mx.us.test'],
    ['user%dom.example@other.example', 'local', {}, 'user%dom.example@other.example'],
    ['user', 'local', {}, 'user@mx.us.test'],
    ['user', 'local', { myorigin: 'us.test' }, 'user@us.test'],
    ['user', 'local', { append_at_myorigin: 'no' }, 'user'],
    ['user', 'remote', {}, 'user'],
    ['user@host', 'local', {}, 'user@host'],
    ['user@host', 'local', { append_dot_mydomain: 'yes' }, 'user@host.us.test'],
    ['user@host', 'remote', { append_dot_mydomain: 'yes' }, 'user@host'],
    ['user@[127.0.0.1]', 'local', { append_dot_mydomain: 'yes' }, 'user@[127.0.0.1]'],
    ['user@example.com.', 'local', {}, 'user@example.com'],
    ['user@example.com..', 'local', {}, 'user@example.com..'],
    ['"a!b"@example.com', 'local', {}, '"a!b"@example.com'],
    ['', 'local', {}, ''],
  ];
  for (const [input, context, extra, want] of cases) {
    assert.equal(rewriteAddress(input, context, rewriteSettings(config(extra))), want, `${input} (${context}, ${JSON.stringify(extra)})`);
  }
});

test('resolve: the five address classes, their default transports, relayhost and the routed flag', async () => {
  type Want = { class: string; transport: string; nexthop: string; recipient?: string; routed?: boolean; error?: string };
  const cases: [string, Record<string, string>, Want][] = [
    ['user@us.test', {}, { class: 'local', transport: 'local', nexthop: 'mx.us.test' }],
    ['user@MX.US.TEST', {}, { class: 'local', transport: 'local', nexthop: 'mx.us.test' }],
    ['user', {}, { class: 'local', transport: 'local', nexthop: 'mx.us.test', recipient: 'user@mx.us.test' }],
    ['user@[127.0.0.1]', {}, { class: 'local', transport: 'local', nexthop: 'mx.us.test' }],
    ['user@[192.0.2.1]', {}, { class: 'default', transport: 'smtp', nexthop: '[192.0.2.1]' }],
    ['user@[192.0.2.1]', { proxy_interfaces: '192.0.2.1' }, { class: 'local', transport: 'local', nexthop: 'mx.us.test' }],
    ['user@[IPv6:::1]', { inet_interfaces: 'loopback-only' }, { class: 'local', transport: 'local', nexthop: 'mx.us.test' }],
    ['user@us.test', { local_transport: 'lmtp:unix:private/dovecot' }, { class: 'local', transport: 'lmtp', nexthop: 'unix:private/dovecot' }],
    ['user@valias.test', {}, { class: 'virtual-alias', transport: 'error', nexthop: '', error: '5.1.1 User unknown in virtual alias table' }],
    ['user@valias.test', { show_user_unknown_table_name: 'no' }, { class: 'virtual-alias', transport: 'error', nexthop: '', error: '5.1.1 User unknown' }],
    ['user@vmbox.test', {}, { class: 'virtual-mailbox', transport: 'virtual', nexthop: 'vmbox.test' }],
    ['user@relay.test', {}, { class: 'relay', transport: 'relay', nexthop: 'relay.test' }],
    ['user@sub.relay.test', {}, { class: 'relay', transport: 'relay', nexthop: 'sub.relay.test' }],
    ['user@relay.test', { relayhost: '[10.0.0.1]:587' }, { class: 'relay', transport: 'relay', nexthop: '[10.0.0.1]:587' }],
    ['user@other.example', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example' }],
    ['user@other.example', { relayhost: '[10.0.0.1]' }, { class: 'default', transport: 'smtp', nexthop: '[10.0.0.1]' }],
    ['user@other.example', { default_transport: 'smtp:[10.0.0.2]', relayhost: '[10.0.0.1]' }, { class: 'default', transport: 'smtp', nexthop: '[10.0.0.2]' }],
    ['user@other.example.', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example' }],
    ['@us.test:user@other.example', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example' }],
    // Sender-specified routing in our domains (allow_percent_hack, swap_bangpath, quoting, a second @).
    ['user%other.example@us.test', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example', routed: true }],
    ['user%other.example@us.test', { allow_percent_hack: 'no' }, { class: 'local', transport: 'local', nexthop: 'mx.us.test', recipient: 'user%other.example@us.test' }],
    ['user%us.test@us.test', {}, { class: 'local', transport: 'local', nexthop: 'mx.us.test', recipient: 'user@us.test' }],
    ['user%x.example@other.example', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', routed: true }],
    ['other.example!user@us.test', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example', routed: true }],
    ['"user@other.example"@us.test', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example', routed: true }],
    ['user@other.example@us.test', {}, { class: 'default', transport: 'smtp', nexthop: 'other.example', recipient: 'user@other.example', routed: true }],
    ['user%relay.test@us.test', {}, { class: 'relay', transport: 'relay', nexthop: 'relay.test', routed: true }],
  ];
  for (const [address, extra, want] of cases) {
    const c = config(extra);
    const r = await resolveAddress(address, resolveSettings(c), openTables(c));
    const label = `${address} ${JSON.stringify(extra)}`;
    assert.equal(r.class, want.class, label);
    assert.equal(r.transport, want.transport, label);
    assert.equal(r.nexthop, want.nexthop, label);
    if (want.recipient) assert.equal(r.recipient, want.recipient, label);
    assert.equal(r.flags.routed ?? false, want.routed ?? false, label);
    if (want.error) assert.equal(`${r.flags.error?.dsn} ${r.flags.error?.text}`, want.error, label);
    else assert.equal(r.flags.error, undefined, label);
  }
});

test('transport_maps (transport(5)): address, domain, .parent, * — and the transport:nexthop forms; relocated_maps; a broken table is 4.3.0', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rewrite-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'transport'), [
    'special@other.example  smtp:[10.9.9.9]:2525',
    'other.example          relay:[10.1.1.1]',
    '.sub.example           :[10.2.2.2]',
    'keepnexthop.example    custom:',
    'nochange.example       :',
    'dead.example           error:mail for dead.example is not accepted',
    'coded.example          error:5.7.1 go away',
    'later.example          retry:try again later',
    'us.test                lmtp:[127.0.0.1]:24',
    '*                      smtp:[10.3.3.3]',
    '',
  ].join('\n'));
  writeFileSync(join(dir, 'relocated'), 'gone@us.test  new@elsewhere.example\n');
  const c = config({ transport_maps: `texthash:${join(dir, 'transport')}`, relocated_maps: `texthash:${join(dir, 'relocated')}`, relayhost: '[10.0.0.1]' }, dir);
  const s = resolveSettings(c);
  const tables = openTables(c);
  const cases: [string, string, string, string?][] = [
    ['special@other.example', 'smtp', '[10.9.9.9]:2525'],
    ['user@other.example', 'relay', '[10.1.1.1]'],
    ['user@a.sub.example', 'smtp', '[10.2.2.2]'],
    ['user@sub.example', 'smtp', '[10.3.3.3]'], // ".sub.example" matches subdomains only; then "*"
    ['user@keepnexthop.example', 'custom', 'keepnexthop.example'], // "transport:" resets the nexthop to the domain
    ['user@nochange.example', 'smtp', '[10.0.0.1]'], // ":" changes nothing (relayhost stays)
    ['user@dead.example', 'error', 'mail for dead.example is not accepted', '5.0.0 mail for dead.example is not accepted'],
    ['user@coded.example', 'error', '5.7.1 go away', '5.7.1 go away'],
    ['user@later.example', 'retry', 'try again later', '4.0.0 try again later'],
    ['user@us.test', 'lmtp', '[127.0.0.1]:24'],
    ['gone@us.test', 'error', '', '5.1.6 User has moved to new@elsewhere.example'],
    ['user@anything.example', 'smtp', '[10.3.3.3]'],
  ];
  for (const [address, transport, nexthop, error] of cases) {
    const r = await resolveAddress(address, s, tables);
    assert.equal(r.transport, transport, address);
    assert.equal(r.nexthop, nexthop, address);
    assert.equal(r.flags.error ? `${r.flags.error.dsn} ${r.flags.error.text}` : undefined, error, address);
    if (error?.startsWith('5')) assert.equal(r.flags.error?.code, 550, address);
  }

  // The table breaks on disk: a temporary failure naming file:line, never a silent miss.
  writeFileSync(join(dir, 'transport'), 'other.example relay:[10.1.1.1]\nbroken-line-without-value\n');
  const r = await resolveAddress('user@other.example', s, tables);
  assert.equal(r.flags.error?.dsn, '4.3.0');
  assert.equal(r.flags.error?.code, 450);
  assert.match(r.flags.warning ?? '', /transport:2: /);

  // A table that cannot be opened at all: every resolve fails temporarily.
  const bad = config({ transport_maps: `hash:${join(dir, 'missing')}` }, dir);
  const r2 = await resolveAddress('user@other.example', resolveSettings(bad), openTables(bad));
  assert.equal(r2.flags.error?.dsn, '4.3.0');
  assert.match(r2.flags.warning ?? '', /open database .*missing\.lmdb: No such file or directory/);
});

test('the callers\' resolve cache: LRU with TTL, emptied when a table file changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rewrite-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'transport'), 'a.example smtp:[10.0.0.1]\n');
  const c = config({ transport_maps: 'texthash:transport' }, dir);
  assert.deepEqual(tableFiles(c, ['transport_maps']), [join(dir, 'transport')]);
  const cache = new ResolveCache<string>(tableFiles(c, ['transport_maps']), 2, 1000);
  cache.set('a', 'A', 0);
  cache.set('b', 'B', 0);
  assert.equal(cache.get('a', 10), 'A'); // a is now the most recently used
  cache.set('c', 'C', 10); // b, the least recently used, goes
  assert.equal(cache.get('b', 20), undefined);
  assert.equal(cache.get('c', 20), 'C');
  assert.equal(cache.get('c', 2000), undefined); // TTL
  cache.set('d', 'D', 3000);
  writeFileSync(join(dir, 'transport'), 'a.example smtp:[10.0.0.2]\n# changed\n');
  assert.equal(cache.get('d', 5000), undefined, 'a changed table empties the cache');
});

test('smtpd authorizedDestination: our domains and literals of our interfaces are authorized; sender-specified routing never is', async () => {
  const policy = new SmtpdPolicy(config({ mynetworks: '127.0.0.1/32' }));
  const yes = ['user@us.test', 'USER@US.TEST', 'user@us.test.', 'user', 'user@[127.0.0.1]', 'user@relay.test', 'user@x.relay.test', 'user@vmbox.test', 'user@valias.test'];
  const no = [
    'user%other.example@us.test', '@us.test:user@other.example', '"user@other.example"@us.test', 'user@other.example@us.test',
    'other.example!user@us.test', 'user@other.example.', 'USER@OTHER.EXAMPLE', 'user@[192.0.2.1]', 'user@[IPv6:2001:db8::1]',
    'user%other.example@relay.test',
  ];
  for (const a of yes) assert.equal(await policy.authorizedDestination(a), true, a);
  for (const a of no) assert.equal(await policy.authorizedDestination(a), false, a);
  const lax = new SmtpdPolicy(config({ mynetworks: '127.0.0.1/32', allow_untrusted_routing: 'yes' }));
  assert.equal(await lax.authorizedDestination('user%x.relay.test@us.test'), true, 'allow_untrusted_routing = yes: routed to a relay domain');
  assert.equal(await lax.authorizedDestination('user%other.example@us.test'), false, 'still not to a foreign domain');
});

test('domain lists take type:table and /file/name entries, as Postfix; an unreadable one is refused with its error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pa-domlist-'));
  try {
    writeFileSync(join(dir, 'relay'), 'relayed.test OK\n');
    writeFileSync(join(dir, 'locals'), '# local domains\nfile-local.test, other-local.test\n');
    const c = config({ relay_domains: `texthash:${join(dir, 'relay')}`, mydestination: `localhost, ${join(dir, 'locals')}`, virtual_alias_domains: 'inline:{ alias.test=x }' });
    assert.deepEqual(domainListProblems(c), []);
    const s = resolveSettings(c);
    assert.equal(await s.relay.has('relayed.test'), true, 'a table key matches');
    assert.equal(await s.relay.has('sub.relayed.test'), true, 'relay_domains: parent_domain_matches_subdomains');
    assert.equal(await s.relay.has('other.test'), false);
    assert.equal(await s.local.has('other-local.test'), true, '/file/name items');
    assert.equal(await s.local.has('sub.other-local.test'), false, 'mydestination matches exactly');
    assert.equal(await s.virtualAlias.has('alias.test'), true);
    const problems = domainListProblems(config({ relay_domains: `texthash:${join(dir, 'missing')}` }));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^relay_domains: texthash:.*missing: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a domain list whose table cannot be opened: every resolve is a temporary failure (4.3.0) that names it', async () => {
  const tr = new TrivialRewrite(config({ virtual_alias_domains: 'lmdb:/etc/postfix/virtual' }));
  const r = await tr.handle({ op: 'resolve', sender: '', address: 'user@other.example' });
  assert.equal((r as { flags: { error?: { dsn: string } } }).flags.error?.dsn, '4.3.0');
  assert.match((r as { flags: { warning?: string } }).flags.warning ?? '', /virtual_alias_domains: lmdb:\/etc\/postfix\/virtual: .*open database \/etc\/postfix\/virtual\.lmdb: /);
});

test('classify: a long chain of routing operators terminates', async () => {
  const s = resolveSettings(config());
  const addr = 'u' + '%us.test'.repeat(200) + '@us.test';
  assert.equal((await classify(addr, s)).class, 'local');
});

test('TrivialRewrite.handle answers both operations', async () => {
  const tr = new TrivialRewrite(config());
  assert.deepEqual(tr.handle({ op: 'rewrite', context: 'local', address: 'user' }), { address: 'user@mx.us.test' });
  const r = await tr.handle({ op: 'resolve', sender: '', address: 'user@other.example' });
  assert.equal((r as { transport: string }).transport, 'smtp');
});
