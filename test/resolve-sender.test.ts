/**
 * Sender-dependent routing in trivial-rewrite's resolve (Postfix's resolve.c):
 * sender_dependent_relayhost_maps and sender_dependent_default_transport_maps, looked up by the
 * envelope sender as mail_addr_find does, with DUNNO, the null sender's key, the classes they
 * apply to, and their precedence against relayhost, transport nexthops and transport_maps.
 * Also qmgr's resolver cache: keyed by (sender, recipient) only when such a map is configured.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../src/config/load.js';
import type { Config } from '../src/config/index.js';
import type { Logger } from '../src/log/maillog.js';
import type { Actor } from '../src/runtime/endpoint.js';
import { openTables, resolveAddress, resolveSettings } from '../src/rewrite/resolve.js';
import { Resolver } from '../actors/qmgr/resolve.js';

const BASE: Record<string, string> = {
  myhostname: 'mx.us.test',
  mydestination: '$myhostname, us.test, localhost',
  inet_interfaces: '127.0.0.1',
  relay_domains: 'relay.test',
  virtual_alias_domains: 'valias.test',
  virtual_mailbox_domains: 'vmbox.test',
  recipient_delimiter: '+',
  relayhost: '[10.0.0.1]',
};

function config(dir: string, extra: Record<string, string> = {}): Config {
  const all = { ...BASE, ...extra };
  return buildConfig(dir, Object.entries(all).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n', '');
}

function tables(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'resolve-sender-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'relayhosts'), [
    '@one.example              [10.1.1.1]:587',
    'special@two.example       [10.2.2.2]',
    'Full+Ext@two.example      [10.2.2.3]',
    'dunno@two.example         DUNNO',
    'bob                       [10.4.4.4]', // bare local part: only for senders in our domains
    '<>                        [10.9.9.9]',
    'null-sender               [10.9.9.8]',
    '',
  ].join('\n'));
  // An empty value (a regexp substitution can give one): ignored with a warning, as Postfix.
  writeFileSync(join(dir, 'empty.regexp'), '/^()empty@/ $1\n');
  writeFileSync(join(dir, 'transport'), [
    'tm.example     smtp:[10.5.5.5]',
    'keep.example   :',
    'reset.example  smtp:',
    '',
  ].join('\n'));
  return dir;
}

test('sender_dependent_relayhost_maps: keys as mail_addr_find, DUNNO, the null sender, the classes it applies to, precedence', async (t) => {
  const dir = tables(t);
  const c = config(dir, {
    sender_dependent_relayhost_maps: `regexp:${join(dir, 'empty.regexp')}, texthash:${join(dir, 'relayhosts')}`,
    transport_maps: `texthash:${join(dir, 'transport')}`,
  });
  const s = resolveSettings(c);
  const tbl = openTables(c);
  // [sender, recipient, transport, nexthop, warning?]
  const cases: [string, string, string, string, string?][] = [
    ['a@one.example', 'user@other.example', 'smtp', '[10.1.1.1]:587'],         // @domain
    ['A@ONE.example', 'user@other.example', 'smtp', '[10.1.1.1]:587'],         // keys fold case
    ['a@sub.one.example', 'user@other.example', 'smtp', '[10.0.0.1]'],         // no parent-domain match
    ['special+tag@two.example', 'user@other.example', 'smtp', '[10.2.2.2]'],   // user@domain without the extension
    ['full+ext@two.example', 'user@other.example', 'smtp', '[10.2.2.3]'],      // the full address first
    ['dunno@two.example', 'user@other.example', 'smtp', '[10.0.0.1]'],         // DUNNO: relayhost
    ['empty@two.example', 'user@other.example', 'smtp', '[10.0.0.1]', 'sender_dependent_relayhost_maps: ignoring null lookup result for empty@two.example'],
    ['bob@us.test', 'user@other.example', 'smtp', '[10.4.4.4]'],               // local part, our domain
    ['bob@remote.example', 'user@other.example', 'smtp', '[10.0.0.1]'],        // not for other domains
    ['', 'user@other.example', 'smtp', '[10.9.9.9]'],                          // the null sender: "<>"
    ['other@elsewhere.example', 'user@other.example', 'smtp', '[10.0.0.1]'],   // no entry: relayhost
    ['a@one.example', 'user@relay.test', 'relay', '[10.1.1.1]:587'],           // relay class too
    ['a@one.example', 'user@us.test', 'local', 'mx.us.test'],                  // never local
    ['a@one.example', 'user', 'local', 'mx.us.test'],
    ['a@one.example', 'user@vmbox.test', 'virtual', 'vmbox.test'],             // never virtual
    ['a@one.example', 'user@tm.example', 'smtp', '[10.5.5.5]'],                // transport_maps' nexthop wins
    ['a@one.example', 'user@keep.example', 'smtp', '[10.1.1.1]:587'],          // ":" keeps it
    ['a@one.example', 'user@reset.example', 'smtp', 'reset.example'],          // "smtp:" resets to the domain
  ];
  for (const [sender, rcpt, transport, nexthop, warning] of cases) {
    const r = await resolveAddress(rcpt, s, tbl, sender);
    const label = `<${sender}> → <${rcpt}>`;
    assert.equal(r.transport, transport, label);
    assert.equal(r.nexthop, nexthop, label);
    assert.equal(r.flags.error, undefined, label);
    assert.equal(r.flags.warning, warning, label);
  }
  const va = await resolveAddress('user@valias.test', s, tbl, 'a@one.example');
  assert.equal(`${va.flags.error?.dsn} ${va.flags.error?.text}`, '5.1.1 User unknown in virtual alias table');

  // A nexthop written in the class's transport wins over the sender's relayhost (resolve.c).
  const c2 = config(dir, {
    sender_dependent_relayhost_maps: `texthash:${join(dir, 'relayhosts')}`,
    default_transport: 'smtp:[10.7.7.7]', relay_transport: 'relay:[10.8.8.8]',
  });
  const s2 = resolveSettings(c2);
  assert.equal((await resolveAddress('user@other.example', s2, openTables(c2), 'a@one.example')).nexthop, '[10.7.7.7]');
  assert.equal((await resolveAddress('user@relay.test', s2, openTables(c2), 'a@one.example')).nexthop, '[10.8.8.8]');

  // empty_address_relayhost_maps_lookup_key: the null sender's key is configurable.
  const c3 = config(dir, { sender_dependent_relayhost_maps: `texthash:${join(dir, 'relayhosts')}`, empty_address_relayhost_maps_lookup_key: 'null-sender' });
  assert.equal((await resolveAddress('user@other.example', resolveSettings(c3), openTables(c3), '')).nexthop, '[10.9.9.8]');
});

test('sender_dependent_default_transport_maps: the default class only; DUNNO; its own nexthop; the null sender', async (t) => {
  const dir = tables(t);
  const c = config(dir, {
    sender_dependent_default_transport_maps: 'inline:{ @one.example=custom:, @two.example=DUNNO, @three.example=custom:[10.3.3.3], <>=bounces: }',
    sender_dependent_relayhost_maps: 'inline:{ @one.example=[10.1.1.1] }',
    empty_address_default_transport_maps_lookup_key: '<>',
  });
  const s = resolveSettings(c);
  const tbl = openTables(c);
  const cases: [string, string, string, string][] = [
    ['a@one.example', 'user@other.example', 'custom', '[10.1.1.1]'],  // the sender's relayhost still applies
    ['a@two.example', 'user@other.example', 'smtp', '[10.0.0.1]'],    // DUNNO: default_transport
    ['a@three.example', 'user@other.example', 'custom', '[10.3.3.3]'],// the transport's nexthop wins
    ['', 'user@other.example', 'bounces', '[10.0.0.1]'],
    ['a@one.example', 'user@relay.test', 'relay', '[10.1.1.1]'],      // relay class: relay_transport
    ['a@one.example', 'user@us.test', 'local', 'mx.us.test'],
  ];
  for (const [sender, rcpt, transport, nexthop] of cases) {
    const r = await resolveAddress(rcpt, s, tbl, sender);
    assert.equal(`${r.transport} ${r.nexthop}`, `${transport} ${nexthop}`, `<${sender}> → <${rcpt}>`);
  }
});

test('a broken sender-dependent table is a temporary failure (4.3.0) that names the table, never a miss', async (t) => {
  const dir = tables(t);
  writeFileSync(join(dir, 'broken'), '@one.example [10.1.1.1]\n');
  const c = config(dir, { sender_dependent_relayhost_maps: `texthash:${join(dir, 'broken')}` });
  const s = resolveSettings(c);
  const tbl = openTables(c);
  assert.equal((await resolveAddress('user@other.example', s, tbl, 'a@one.example')).nexthop, '[10.1.1.1]');
  // The table breaks on disk after it was opened: the lookup fails, and says which parameter.
  writeFileSync(join(dir, 'broken'), '@one.example [10.1.1.1]\nno-value-here\n');
  const r = await resolveAddress('user@other.example', s, tbl, 'a@one.example');
  assert.equal(r.flags.error?.dsn, '4.3.0');
  assert.match(r.flags.warning ?? '', /^sender_dependent_relayhost_maps lookup failure: .*broken:2: /);
  // Local recipients never consult it.
  assert.equal((await resolveAddress('user@us.test', s, tbl, 'a@one.example')).flags.error, undefined);
  // A table that cannot be opened at all: every resolve fails temporarily, naming it.
  const bad = config(dir, { sender_dependent_relayhost_maps: `hash:${join(dir, 'missing')}` });
  const r2 = await resolveAddress('user@other.example', resolveSettings(bad), openTables(bad), 'a@one.example');
  assert.equal(r2.flags.error?.dsn, '4.3.0');
  assert.match(r2.flags.warning ?? '', /missing\.lmdb/);
});

test("qmgr's resolver cache keys on the sender only when a sender-dependent map is configured", async (t) => {
  const dir = tables(t);
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (m: string) => warnings.push(m) } as unknown as Logger;
  const actor = {} as Actor; // no rewrite service in master.cf: qmgr resolves in-process

  const plain = new Resolver(config(dir), actor, log);
  const p1 = await plain.route('user@other.example', 'a@one.example');
  const p2 = await plain.route('user@other.example', 'b@two.example');
  assert.equal(p1.nexthop, '[10.0.0.1]');
  assert.equal(p2, p1, 'one cache entry serves every sender');

  const bySender = new Resolver(config(dir, { sender_dependent_relayhost_maps: `texthash:${join(dir, 'relayhosts')}` }), actor, log);
  const r1 = await bySender.route('user@other.example', 'a@one.example');
  const r2 = await bySender.route('user@other.example', 'b@two.example');
  const r3 = await bySender.route('user@other.example', '');
  assert.deepEqual([r1.nexthop, r2.nexthop, r3.nexthop], ['[10.1.1.1]:587', '[10.0.0.1]', '[10.9.9.9]']);
  assert.deepEqual([r1.key, r2.key], ['smtp:[10.1.1.1]:587', 'smtp:[10.0.0.1]'], 'the destination (queue) follows the nexthop');
  assert.equal(await bySender.route('user@other.example', 'a@one.example'), r1, 'cached per (sender, recipient)');

  const empty = new Resolver(config(dir, { sender_dependent_relayhost_maps: `regexp:${join(dir, 'empty.regexp')}` }), actor, log);
  assert.equal((await empty.route('user@other.example', 'empty@x.example')).nexthop, '[10.0.0.1]');
  assert.ok(warnings.includes('sender_dependent_relayhost_maps: ignoring null lookup result for empty@x.example'), warnings.join('\n'));
});
