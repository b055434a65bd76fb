// smtpd access policy, restriction by restriction: a request and a main.cf in, Postfix's reply
// text (and log line) out. Real parts only: tables on disk, a real DNS server on loopback, a
// real policy server speaking Postfix's policy delegation protocol.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { EMBEDDED_MASTER_CF, loadConfig } from '../src/config/index.js';
import { SmtpdPolicy, type PolicyRequest, type Verdict } from '../src/smtpd/policy.js';
import { startDnsServer, type TestDnsServer, type Zone } from './helpers/dns-server.js';

const dirs: string[] = [];
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const BASE: Record<string, string> = {
  myhostname: 'mx.postactor.test',
  mydestination: 'mx.postactor.test, localhost',
  mynetworks: '127.0.0.0/8',
  local_recipient_maps: '',
};

interface Built { policy: SmtpdPolicy; logs: string[]; dir: string }

function build(main: Record<string, string>, files: Record<string, string> = {}): Built {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-policy-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const settings = { ...BASE, ...main };
  writeFileSync(join(dir, 'main.cf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  writeFileSync(join(dir, 'master.cf'), EMBEDDED_MASTER_CF);
  const logs: string[] = [];
  const policy = new SmtpdPolicy(loadConfig(dir), { info: (t) => logs.push(t), warn: (t) => logs.push(`warning: ${t}`) });
  return { policy, logs, dir };
}

function req(over: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    clientAddr: '192.0.2.1', clientName: 'client.example', helo: 'client.example',
    sender: 's@sender.example', recipient: 'r@mx.postactor.test', recipientCount: 0,
    protocol: 'ESMTP', queueId: null, where: 'RCPT', ...over,
  };
}

/** A real DNS server on loopback for the enclosing describe, named in POSTACTOR_DNS_SERVERS while it runs. */
function withDns(zone: Zone): void {
  let dns: TestDnsServer;
  const saved = process.env['POSTACTOR_DNS_SERVERS'];
  before(async () => {
    dns = await startDnsServer(zone);
    process.env['POSTACTOR_DNS_SERVERS'] = dns.server;
  });
  after(async () => {
    if (saved === undefined) delete process.env['POSTACTOR_DNS_SERVERS'];
    else process.env['POSTACTOR_DNS_SERVERS'] = saved;
    await dns.close();
  });
}

function text(v: Verdict): string {
  return v.ok ? 'ok' : `${v.code} ${v.text}`;
}

const ACCESS = [
  'reject@mx.postactor.test REJECT',
  'text@mx.postactor.test REJECT go away',
  'dsn@mx.postactor.test REJECT 5.7.9 custom status',
  'defer@mx.postactor.test DEFER',
  'code@mx.postactor.test 550 5.1.1 no such user',
  'code4@mx.postactor.test 421 closing',
  'ok@mx.postactor.test OK',
  'dunno@mx.postactor.test DUNNO',
  'dip@mx.postactor.test DEFER_IF_PERMIT',
  'dir@elsewhere.example DEFER_IF_REJECT',
  'num@mx.postactor.test 20261125',
  'sub.example.org REJECT by parent domain',
  'postmaster@ REJECT by local part',
  'class@mx.postactor.test permit_mynetworks, reject',
  'unbuilt@mx.postactor.test reject_unknown_forward_client_hostname',
  'filter@mx.postactor.test FILTER smtp:[127.0.0.1]:10025',
  'hold@mx.postactor.test HOLD',
  'redirect@mx.postactor.test REDIRECT x@y.example',
  'bcc@mx.postactor.test BCC audit@y.example',
  'holdwhy@mx.postactor.test HOLD for review',
  'nofilter@mx.postactor.test FILTER',
  'badfilter@mx.postactor.test FILTER no-colon',
  'badredirect@mx.postactor.test REDIRECT nobody',
  'warn@mx.postactor.test WARN watch out',
  'discard@mx.postactor.test DISCARD',
  'prepend@mx.postactor.test PREPEND X-Tag: yes',
  'table@mx.postactor.test check_sender_access texthash:x',
  'badprepend.example PREPEND not a header',
  '',
].join('\n');

describe('check_recipient_access: access(5) results', () => {
  let b: Built;
  before(() => {
    b = build({ smtpd_relay_restrictions: '', smtpd_recipient_restrictions: 'check_recipient_access texthash:access, permit_mynetworks, reject_unauth_destination' }, { access: ACCESS });
  });
  const rows: [string, string][] = [
    ['reject@mx.postactor.test', '554 5.7.1 <reject@mx.postactor.test>: Recipient address rejected: Access denied'],
    ['text@mx.postactor.test', '554 5.7.1 <text@mx.postactor.test>: Recipient address rejected: go away'],
    ['dsn@mx.postactor.test', '554 5.7.9 <dsn@mx.postactor.test>: Recipient address rejected: custom status'],
    ['defer@mx.postactor.test', '450 4.7.1 <defer@mx.postactor.test>: Recipient address rejected: Access denied'],
    ['code@mx.postactor.test', '550 5.1.1 <code@mx.postactor.test>: Recipient address rejected: no such user'],
    ['code4@mx.postactor.test', '421 4.7.1 <code4@mx.postactor.test>: Recipient address rejected: closing'],
    ['ok@mx.postactor.test', 'ok'],
    ['dunno@mx.postactor.test', 'ok'],
    ['num@mx.postactor.test', 'ok'],
    ['dip@mx.postactor.test', '450 4.7.1 <dip@mx.postactor.test>: Recipient address rejected: Service unavailable'],
    ['dir@elsewhere.example', '450 4.7.1 <dir@elsewhere.example>: Recipient address rejected: Service unavailable'],
    ['other@elsewhere.example', '554 5.7.1 <other@elsewhere.example>: Relay access denied'],
    ['x@a.sub.example.org', '554 5.7.1 <x@a.sub.example.org>: Recipient address rejected: by parent domain'],
    ['postmaster@anything.example', '554 5.7.1 <postmaster@anything.example>: Recipient address rejected: by local part'],
    ['class@mx.postactor.test', '554 5.7.1 <class@mx.postactor.test>: Recipient address rejected: Access denied'],
    ['unbuilt@mx.postactor.test', '451 4.3.5 Server configuration error'],
    ['filter@mx.postactor.test', 'ok'],
    ['hold@mx.postactor.test', 'ok'],
    ['redirect@mx.postactor.test', 'ok'],
    ['bcc@mx.postactor.test', 'ok'],
    ['nofilter@mx.postactor.test', 'ok'],
    ['table@mx.postactor.test', '451 4.3.5 Server configuration error'],
    ['warn@mx.postactor.test', 'ok'],
  ];
  for (const [rcpt, want] of rows) {
    test(`access result for <${rcpt}> gives "${want}"`, async () => {
      assert.equal(text(await b.policy.checkRecipient(req({ recipient: rcpt }))), want);
    });
  }
  test('a restriction named as a table result is evaluated in place (permit_mynetworks for a trusted client)', async () => {
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'class@mx.postactor.test', clientAddr: '127.0.0.1' }))), 'ok');
  });
  test('an unimplemented restriction as a table result is logged as not supported', async () => {
    await b.policy.checkRecipient(req({ recipient: 'unbuilt@mx.postactor.test' }));
    assert.ok(b.logs.some((l) => /^warning: .*not supported: restriction "reject_unknown_forward_client_hostname"/.test(l)), b.logs.join('\n'));
  });
  test('HOLD, FILTER, REDIRECT and BCC are handed to the transaction for cleanup and logged as Postfix does; evaluation goes on', async () => {
    const tail = (rcpt: string) => `; from=<s@sender.example> to=<${rcpt}> proto=ESMTP helo=<client.example>`;
    const cases: [string, object, string][] = [
      ['hold@mx.postactor.test', { hold: true, filter: null, redirect: null, bcc: [] }, 'hold: RCPT from client.example[192.0.2.1]: <hold@mx.postactor.test>: Recipient address triggers HOLD action'],
      ['holdwhy@mx.postactor.test', { hold: true, filter: null, redirect: null, bcc: [] }, 'hold: RCPT from client.example[192.0.2.1]: <holdwhy@mx.postactor.test>: Recipient address for review'],
      ['filter@mx.postactor.test', { hold: false, filter: 'smtp:[127.0.0.1]:10025', redirect: null, bcc: [] }, 'filter: RCPT from client.example[192.0.2.1]: <filter@mx.postactor.test>: Recipient address triggers FILTER smtp:[127.0.0.1]:10025'],
      ['redirect@mx.postactor.test', { hold: false, filter: null, redirect: 'x@y.example', bcc: [] }, 'redirect: RCPT from client.example[192.0.2.1]: <redirect@mx.postactor.test>: Recipient address triggers REDIRECT x@y.example'],
      ['bcc@mx.postactor.test', { hold: false, filter: null, redirect: null, bcc: ['audit@y.example'] }, 'bcc: RCPT from client.example[192.0.2.1]: <bcc@mx.postactor.test>: Recipient address triggers BCC audit@y.example'],
    ];
    for (const [rcpt, delegated, line] of cases) {
      const v = await b.policy.checkRecipient(req({ recipient: rcpt }));
      assert.ok(v.ok, rcpt);
      assert.deepEqual(v.delegated, delegated, rcpt);
      assert.ok(b.logs.includes(`NOQUEUE: ${line}${tail(rcpt)}`), `${line}\n${b.logs.join('\n')}`);
    }
    // A HOLD already matched in this transaction is not logged again (Postfix checks its flag first).
    const before = b.logs.length;
    const again = await b.policy.checkRecipient(req({ recipient: 'hold@mx.postactor.test', held: true }));
    assert.ok(again.ok);
    assert.equal(again.delegated, null);
    assert.equal(b.logs.length, before, b.logs.slice(before).join('\n'));
  });
  test('FILTER without transport:destination and REDIRECT without user@domain are warned about and skipped', async () => {
    for (const rcpt of ['nofilter', 'badfilter', 'badredirect']) {
      const v = await b.policy.checkRecipient(req({ recipient: `${rcpt}@mx.postactor.test` }));
      assert.ok(v.ok && v.delegated === null, rcpt);
    }
    assert.ok(b.logs.includes('warning: access table texthash:access entry "nofilter@mx.postactor.test" has FILTER entry without value'), b.logs.join('\n'));
    assert.ok(b.logs.includes('warning: access table texthash:access entry "badfilter@mx.postactor.test" requires transport:destination'), b.logs.join('\n'));
    assert.ok(b.logs.includes('warning: access table texthash:access entry "badredirect@mx.postactor.test" requires user@domain target'), b.logs.join('\n'));
  });
  test('WARN logs "warn: RCPT from …: text; from=<…> to=<…> proto=ESMTP helo=<…>" and goes on', async () => {
    await b.policy.checkRecipient(req({ recipient: 'warn@mx.postactor.test' }));
    assert.ok(b.logs.includes('NOQUEUE: warn: RCPT from client.example[192.0.2.1]: watch out; from=<s@sender.example> to=<warn@mx.postactor.test> proto=ESMTP helo=<client.example>'), b.logs.join('\n'));
  });
  test('DISCARD permits and marks the transaction, logging "triggers DISCARD action"', async () => {
    const v = await b.policy.checkRecipient(req({ recipient: 'discard@mx.postactor.test' }));
    assert.ok(v.ok);
    assert.equal(v.discard, '<discard@mx.postactor.test>: Recipient address triggers DISCARD action');
    assert.ok(b.logs.includes('NOQUEUE: discard: RCPT from client.example[192.0.2.1]: <discard@mx.postactor.test>: Recipient address triggers DISCARD action; from=<s@sender.example> to=<discard@mx.postactor.test> proto=ESMTP helo=<client.example>'));
  });
  test('PREPEND hands the header to the transaction', async () => {
    const v = await b.policy.checkRecipient(req({ recipient: 'prepend@mx.postactor.test' }));
    assert.ok(v.ok);
    assert.deepEqual(v.prepend, ['X-Tag: yes']);
  });
  test('warnings name the table as the restriction does and the address looked up, not the key that matched (check_table_result)', async () => {
    // Matched by its domain: the warning quotes the whole address, as Postfix's.
    await b.policy.checkRecipient(req({ recipient: 'who@badprepend.example' }));
    assert.ok(b.logs.includes('warning: access table texthash:access entry "who@badprepend.example" requires header: text'), b.logs.join('\n'));
    const v = await b.policy.checkRecipient(req({ recipient: 'table@mx.postactor.test' }));
    assert.equal(v.ok, false);
    assert.equal(v.code, 451);
    const at = b.logs.indexOf('warning: access table texthash:access has entry with lookup table: check_sender_access texthash:x');
    assert.ok(at >= 0, b.logs.join('\n'));
    assert.deepEqual(b.logs.slice(at + 1, at + 3), [
      'warning: do not specify lookup tables inside SMTPD access maps',
      'warning: define a restriction class and specify its name instead.',
    ]);
  });
  test('a reject is logged as Postfix does: NOQUEUE: reject: RCPT from name[addr]: reply; from=<> to=<> proto= helo=<>', async () => {
    await b.policy.checkRecipient(req({ recipient: 'reject@mx.postactor.test' }));
    assert.ok(b.logs.includes('NOQUEUE: reject: RCPT from client.example[192.0.2.1]: 554 5.7.1 <reject@mx.postactor.test>: Recipient address rejected: Access denied; from=<s@sender.example> to=<reject@mx.postactor.test> proto=ESMTP helo=<client.example>'), b.logs.join('\n'));
  });
});

describe('client, helo and sender access maps', () => {
  let b: Built;
  before(() => {
    b = build({
      smtpd_client_restrictions: 'check_client_access texthash:clients',
      smtpd_helo_restrictions: 'check_helo_access texthash:helos',
      smtpd_sender_restrictions: 'check_sender_access texthash:senders',
    }, {
      clients: '198.51.100 REJECT\nbad.example REJECT bad host\n2001:db8:1 REJECT v6 net\n',
      helos: 'helo.bad REJECT no thanks\n',
      senders: 'spammer.example REJECT\n<> DEFER null sender\nuser+ext@x.example OK\nuser@x.example REJECT unextended\n',
    });
  });
  const rows: [string, Partial<PolicyRequest>, string][] = [
    ['client address: parent network 198.51.100', { clientAddr: '198.51.100.7', clientName: 'unknown' }, '554 5.7.1 <unknown[198.51.100.7]>: Client host rejected: Access denied'],
    ['client hostname: parent domain', { clientName: 'mail.bad.example' }, '554 5.7.1 <mail.bad.example[192.0.2.1]>: Client host rejected: bad host'],
    ['client IPv6 address: parent network', { clientAddr: '2001:db8:1:2::5', clientName: 'unknown' }, '554 5.7.1 <unknown[2001:db8:1:2::5]>: Client host rejected: v6 net'],
    ['helo name', { helo: 'helo.bad' }, '554 5.7.1 <helo.bad>: Helo command rejected: no thanks'],
    ['sender domain', { sender: 'a@spammer.example' }, '554 5.7.1 <a@spammer.example>: Sender address rejected: Access denied'],
    ['null sender is looked up as <>', { sender: '' }, '450 4.7.1 <>: Sender address rejected: null sender'],
    ['full address wins over the domain', { sender: 'user+ext@x.example' }, 'ok'],
    ['nothing matches', {}, 'ok'],
  ];
  for (const [name, over, want] of rows) {
    test(`${name} → "${want}"`, async () => {
      assert.equal(text(await b.policy.checkRecipient(req(over))), want);
    });
  }
  test('recipient_delimiter: user+ext@domain falls back to user@domain', async () => {
    const d = build({ recipient_delimiter: '+', smtpd_sender_restrictions: 'check_sender_access texthash:senders' }, { senders: 'user@x.example REJECT unextended\n' });
    assert.equal(text(await d.policy.checkRecipient(req({ sender: 'user+tag@x.example' }))), '554 5.7.1 <user+tag@x.example>: Sender address rejected: unextended');
  });
  test('parent_domain_matches_subdomains without smtpd_access_maps: parents are looked up as .domain', async () => {
    const d = build({ parent_domain_matches_subdomains: 'relay_domains', smtpd_sender_restrictions: 'check_sender_access texthash:senders' },
      { senders: 'example.net REJECT bare\n.example.org REJECT dotted\n' });
    assert.equal(text(await d.policy.checkRecipient(req({ sender: 'a@sub.example.net' }))), 'ok');
    assert.equal(text(await d.policy.checkRecipient(req({ sender: 'a@sub.example.org' }))), '554 5.7.1 <a@sub.example.org>: Sender address rejected: dotted');
  });
  test('a cidr table matches the client address', async () => {
    const d = build({ smtpd_client_restrictions: 'check_client_access cidr:nets' }, { nets: '192.0.2.0/24 REJECT cidr\n' });
    assert.equal(text(await d.policy.checkRecipient(req())), '554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: cidr');
  });
});

describe('broken tables fail temporarily', () => {
  test('a broken access table → 451 4.3.5 "<x>: Recipient address rejected: Server configuration error" (as Postfix check_table_result), file:line logged', async () => {
    const b = build({ smtpd_recipient_restrictions: 'check_recipient_access texthash:broken, reject_unauth_destination' }, { broken: 'good OK\nno-value-here\n' });
    assert.equal(text(await b.policy.checkRecipient(req())), '451 4.3.5 <r@mx.postactor.test>: Recipient address rejected: Server configuration error');
    assert.ok(b.logs.some((l) => l.startsWith('warning: ') && l.includes('broken:2: expected format')), b.logs.join('\n'));
  });
  test('a missing local_recipient_maps table → 451 4.3.0 "<x>: Temporary lookup failure"', async () => {
    const b = build({ local_recipient_maps: 'lmdb:missing' });
    assert.equal(text(await b.policy.checkRecipient(req())), '451 4.3.0 <r@mx.postactor.test>: Temporary lookup failure');
  });
});

describe('syntax restrictions', () => {
  const rows: [string, string, Partial<PolicyRequest>, string][] = [
    ['reject_non_fqdn_helo_hostname', 'smtpd_helo_restrictions', { helo: 'localhostname' }, '504 5.5.2 <localhostname>: Helo command rejected: need fully-qualified hostname'],
    ['reject_non_fqdn_helo_hostname', 'smtpd_helo_restrictions', { helo: '[192.0.2.1]' }, 'ok'],
    ['reject_invalid_helo_hostname', 'smtpd_helo_restrictions', { helo: 'bad!name' }, '501 5.5.2 <bad!name>: Helo command rejected: Invalid name'],
    ['reject_invalid_helo_hostname', 'smtpd_helo_restrictions', { helo: 'good-name' }, 'ok'],
    ['reject_non_fqdn_sender', 'smtpd_sender_restrictions', { sender: 'user' }, '504 5.5.2 <user>: Sender address rejected: need fully-qualified address'],
    ['reject_non_fqdn_sender', 'smtpd_sender_restrictions', { sender: '' }, 'ok'],
    ['reject_non_fqdn_recipient', 'smtpd_recipient_restrictions', { recipient: 'user@localhost' }, '504 5.5.2 <user@localhost>: Recipient address rejected: need fully-qualified address'],
  ];
  for (const [r, param, over, want] of rows) {
    test(`${r} ${JSON.stringify(over)} → "${want}"`, async () => {
      const b = build({ [param]: param === 'smtpd_recipient_restrictions' ? `${r}, reject_unauth_destination` : r });
      assert.equal(text(await b.policy.checkRecipient(req(over))), want);
    });
  }
});

describe('restrictions that ask DNS (a real DNS server on loopback)', () => {
  withDns({
    'sender.example': { MX: [{ exchange: 'mx.sender.example', priority: 10 }] },
    'aonly.example': { A: ['192.0.2.9'] },
    'broken.example': { servfail: true },
    'client.example': { A: ['192.0.2.1'] },
    '1.2.0.192.rbl.test': { A: ['127.0.0.2'] },
    '1.2.0.192.dnswl.test': { A: ['127.0.10.1'] },
    'sender.example.rhsbl.test': { A: ['127.0.0.2'] },
    'client.example.rhsbl.test': { A: ['127.0.0.2'] },
  });
  const rows: [string, Record<string, string>, Partial<PolicyRequest>, string][] = [
    ['reject_unknown_sender_domain: MX found', { smtpd_sender_restrictions: 'reject_unknown_sender_domain' }, {}, 'ok'],
    ['reject_unknown_sender_domain: A only', { smtpd_sender_restrictions: 'reject_unknown_sender_domain' }, { sender: 'a@aonly.example' }, 'ok'],
    ['reject_unknown_sender_domain: NXDOMAIN', { smtpd_sender_restrictions: 'reject_unknown_sender_domain' }, { sender: 'a@nowhere.example' }, '450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found'],
    ['reject_unknown_sender_domain: NXDOMAIN, unknown_address_reject_code=550', { smtpd_sender_restrictions: 'reject_unknown_sender_domain', unknown_address_reject_code: '550' }, { sender: 'a@nowhere.example' }, '550 5.1.8 <a@nowhere.example>: Sender address rejected: Domain not found'],
    ['reject_unknown_sender_domain: SERVFAIL is defer_if_permit', { smtpd_sender_restrictions: 'reject_unknown_sender_domain', unknown_address_reject_code: '550' }, { sender: 'a@broken.example' }, '450 4.1.8 <a@broken.example>: Sender address rejected: Domain not found'],
    ['reject_unknown_sender_domain: null sender', { smtpd_sender_restrictions: 'reject_unknown_sender_domain' }, { sender: '' }, 'ok'],
    ['reject_unknown_recipient_domain: NXDOMAIN', { smtpd_recipient_restrictions: 'reject_unknown_recipient_domain, permit' }, { recipient: 'r@nowhere.example', clientAddr: '127.0.0.1' }, '450 4.1.2 <r@nowhere.example>: Recipient address rejected: Domain not found'],
    ['reject_unknown_helo_hostname: not found', { smtpd_helo_restrictions: 'reject_unknown_helo_hostname' }, { helo: 'nohost.example' }, '450 4.7.1 <nohost.example>: Helo command rejected: Host not found'],
    ['reject_unknown_helo_hostname: found', { smtpd_helo_restrictions: 'reject_unknown_helo_hostname' }, {}, 'ok'],
    ['reject_rbl_client: listed', { smtpd_client_restrictions: 'reject_rbl_client rbl.test' }, {}, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using rbl.test'],
    ['reject_rbl_client: other reply address', { smtpd_client_restrictions: 'reject_rbl_client rbl.test=127.0.0.3' }, {}, 'ok'],
    ['reject_rbl_client: matching reply address', { smtpd_client_restrictions: 'reject_rbl_client rbl.test=127.0.0.2' }, {}, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using rbl.test'],
    ['reject_rbl_client: not listed', { smtpd_client_restrictions: 'reject_rbl_client rbl.test' }, { clientAddr: '192.0.2.2' }, 'ok'],
    ['reject_rhsbl_sender', { smtpd_sender_restrictions: 'reject_rhsbl_sender rhsbl.test' }, {}, '554 5.7.1 Service unavailable; Sender address [sender.example] blocked using rhsbl.test'],
    ['reject_rhsbl_client', { smtpd_client_restrictions: 'reject_rhsbl_client rhsbl.test' }, {}, '554 5.7.1 Service unavailable; Client host [client.example] blocked using rhsbl.test'],
    ['permit_dnswl_client ends the list before the RBL', { smtpd_client_restrictions: 'permit_dnswl_client dnswl.test, reject_rbl_client rbl.test' }, {}, 'ok'],
    ['reject_maps_rbl: maps_rbl_domains, in order', { smtpd_client_restrictions: 'reject_maps_rbl', maps_rbl_domains: 'dnswl.test, rbl.test' }, { clientAddr: '192.0.2.1' }, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using dnswl.test'],
    ['reject_maps_rbl: not listed', { smtpd_client_restrictions: 'reject_maps_rbl', maps_rbl_domains: 'rbl.test' }, { clientAddr: '192.0.2.2' }, 'ok'],
    ['reject_rbl (old name of reject_rbl_client)', { smtpd_client_restrictions: 'reject_rbl rbl.test' }, {}, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using rbl.test'],
    ['reject_rhsbl_reverse_client: the PTR name, confirmed or not', { smtpd_client_restrictions: 'reject_rhsbl_reverse_client rhsbl.test' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example' }, '554 5.7.1 Service unavailable; Unverified Client host [client.example] blocked using rhsbl.test'],
    ['reject_rhsbl_client: not the unconfirmed name', { smtpd_client_restrictions: 'reject_rhsbl_client rhsbl.test' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example' }, 'ok'],
    ['permit_rhswl_client ends the list before the RBL', { smtpd_client_restrictions: 'permit_rhswl_client rhsbl.test, reject_rbl_client rbl.test' }, {}, 'ok'],
    ['permit_rhswl_client: not listed', { smtpd_client_restrictions: 'permit_rhswl_client rhsbl.test, reject_rbl_client rbl.test' }, { clientName: 'other.example' }, '554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using rbl.test'],
    ['maps_rbl_reject_code', { smtpd_client_restrictions: 'reject_rbl_client rbl.test', maps_rbl_reject_code: '450' }, {}, '450 4.7.1 Service unavailable; Client host [192.0.2.1] blocked using rbl.test'],
  ];
  for (const [name, main, over, want] of rows) {
    test(`${name} → "${want}"`, async () => {
      const b = build(main);
      assert.equal(text(await b.policy.checkRecipient(req(over))), want);
    });
  }
});

describe('check_*_{a,mx,ns}_access, check_reverse_client_hostname_access, check_sasl_access (a real DNS server on loopback)', () => {
  const SERVERS = [
    '192.0.2.66 REJECT bad server',
    'bogus.example REJECT bogus name',
    '192.0.2.77 OK',
    '198.51.100 REJECT by network',
    'client.example REJECT unverified',
    'bob REJECT no bob',
    '',
  ].join('\n');
  withDns({
    'badmx.example': { MX: [{ exchange: 'mx.badmx.example', priority: 10 }] },
    'mx.badmx.example': { A: ['192.0.2.66'] },
    'namedmx.example': { MX: [{ exchange: 'mx1.bogus.example', priority: 10 }] },
    'nomx.example': { A: ['192.0.2.66'] },
    'goodmx.example': { MX: [{ exchange: 'mx.goodmx.example', priority: 10 }] },
    'mx.goodmx.example': { A: ['192.0.2.10'] },
    'netmx.example': { MX: [{ exchange: 'mx.netmx.example', priority: 10 }] },
    'mx.netmx.example': { A: ['198.51.100.7'] },
    'okmx.example': { MX: [{ exchange: 'mx.okmx.example', priority: 10 }] },
    'mx.okmx.example': { A: ['192.0.2.77'] },
    // The first MX host does not resolve: warned about, and the next one is still checked.
    'deadmx.example': { MX: [{ exchange: 'gone.example', priority: 10 }, { exchange: 'mx.badmx.example', priority: 20 }] },
    'broken.example': { servfail: true },
    'nsparent.example': { NS: ['ns1.badns.example'] },
    'sub.nsparent.example': { A: ['192.0.2.10'] },
    'ns1.badns.example': { A: ['192.0.2.66'] },
    'client.example': { A: ['192.0.2.66'] },
  });
  const rows: [string, Record<string, string>, Partial<PolicyRequest>, string][] = [
    ['MX host address listed', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@badmx.example' }, '554 5.7.1 <s@badmx.example>: Sender address rejected: bad server'],
    ['MX host name by parent domain', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@namedmx.example' }, '554 5.7.1 <s@namedmx.example>: Sender address rejected: bogus name'],
    ['no MX: the domain is its own MX host', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@nomx.example' }, '554 5.7.1 <s@nomx.example>: Sender address rejected: bad server'],
    ['MX host address by parent network', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@netmx.example' }, '554 5.7.1 <s@netmx.example>: Sender address rejected: by network'],
    ['MX host not listed', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@goodmx.example' }, 'ok'],
    ['an address literal is its own MX host', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@[192.0.2.66]' }, '554 5.7.1 <s@[192.0.2.66]>: Sender address rejected: bad server'],
    ['null sender: nothing to check', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: '' }, 'ok'],
    ['an unresolvable MX host is skipped, the next one checked', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@deadmx.example' }, '554 5.7.1 <s@deadmx.example>: Sender address rejected: bad server'],
    ['a DNS failure skips the check', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@broken.example' }, 'ok'],
    ['NS of the parent domain', { smtpd_recipient_restrictions: 'check_recipient_ns_access texthash:servers, permit' }, { recipient: 'r@sub.nsparent.example', clientAddr: '127.0.0.1' }, '554 5.7.1 <r@sub.nsparent.example>: Recipient address rejected: bad server'],
    ['A of the HELO name', { smtpd_helo_restrictions: 'check_helo_a_access texthash:servers' }, { helo: 'client.example' }, '554 5.7.1 <client.example>: Helo command rejected: bad server'],
    ['A of the client name', { smtpd_client_restrictions: 'check_client_a_access texthash:servers' }, {}, '554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: bad server'],
    ['an unknown client name is not checked', { smtpd_client_restrictions: 'check_client_a_access texthash:servers' }, { clientName: 'unknown' }, 'ok'],
    ['the unverified client name', { smtpd_client_restrictions: 'check_reverse_client_hostname_access texthash:servers' }, {}, '554 5.7.1 <client.example>: Unverified Client host rejected: unverified'],
    ['OK from a server check is a configuration error', { smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers' }, { sender: 's@okmx.example' }, '451 4.3.5 Server configuration error'],
    ['check_sasl_access: the login name', { smtpd_sasl_auth_enable: 'yes', smtpd_sasl_type: 'dovecot', smtpd_sender_restrictions: 'check_sasl_access texthash:servers' }, { saslMethod: 'PLAIN', saslUsername: 'bob' }, '554 5.7.1 <bob>: SASL login name rejected: no bob'],
    ['check_sasl_access: no login', { smtpd_sasl_auth_enable: 'yes', smtpd_sasl_type: 'dovecot', smtpd_sender_restrictions: 'check_sasl_access texthash:servers' }, {}, 'ok'],
  ];
  for (const [name, main, over, want] of rows) {
    test(`${name} → "${want}"`, async () => {
      const b = build(main, { servers: SERVERS });
      assert.equal(text(await b.policy.checkRecipient(req(over))), want, b.logs.join('\n'));
    });
  }
  test('warnings: an OK refused, a server that does not resolve, a failed lookup, SASL not enabled (Postfix\'s texts)', async () => {
    const b = build({ smtpd_sender_restrictions: 'check_sender_mx_access texthash:servers, check_sasl_access texthash:servers' }, { servers: SERVERS });
    await b.policy.checkRecipient(req({ sender: 's@okmx.example' }));
    await b.policy.checkRecipient(req({ sender: 's@deadmx.example' }));
    await b.policy.checkRecipient(req({ sender: 's@broken.example', saslMethod: 'PLAIN', saslUsername: 'bob' }));
    assert.deepEqual(b.logs.filter((l) => l.startsWith('warning: ')), [
      'warning: restriction check_sender_mx_access returns OK for s@okmx.example',
      'warning: this is not allowed for security reasons',
      'warning: use DUNNO instead of OK if you want to make an exception',
      'warning: Unable to look up MX host gone.example for Sender address s@deadmx.example: Name or service not known',
      'warning: Unable to look up MX host for broken.example: Host not found, try again',
      "warning: restriction `check_sasl_access' ignored: no SASL support",
    ]);
  });
});

describe('the client\'s two names: verified (forward-confirmed) and reverse (PTR)', () => {
  const ACCESS_BY_NAME = 'client.example REJECT by name\n';
  const rows: [string, Record<string, string>, Partial<PolicyRequest>, string][] = [
    ['reject_unknown_client_hostname: confirmed', { smtpd_client_restrictions: 'reject_unknown_client_hostname' }, { clientNameStatus: 'ok' }, 'ok'],
    ['reject_unknown_client_hostname: PTR does not resolve back', { smtpd_client_restrictions: 'reject_unknown_client_hostname' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example', reverseClientNameStatus: 'ok' }, '450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]'],
    ['reject_unknown_client_hostname: no PTR, unknown_client_reject_code=550', { smtpd_client_restrictions: 'reject_unknown_client_hostname', unknown_client_reject_code: '550' }, { clientName: 'unknown', clientNameStatus: 'perm' }, '550 5.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]'],
    ['reject_unknown_client_hostname: a temporary failure is 450 whatever the code', { smtpd_client_restrictions: 'reject_unknown_client_hostname', unknown_client_reject_code: '550' }, { clientName: 'unknown', clientNameStatus: 'temp' }, '450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]'],
    ['reject_unknown_client (old name)', { smtpd_client_restrictions: 'reject_unknown_client' }, { clientName: 'unknown', clientNameStatus: 'forged' }, '450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.1]'],
    ['reject_unknown_reverse_client_hostname: a PTR that does not resolve back is enough', { smtpd_client_restrictions: 'reject_unknown_reverse_client_hostname' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example', reverseClientNameStatus: 'ok' }, 'ok'],
    ['reject_unknown_reverse_client_hostname: no PTR', { smtpd_client_restrictions: 'reject_unknown_reverse_client_hostname', unknown_client_reject_code: '550' }, { clientName: 'unknown', clientNameStatus: 'perm', reverseClientName: 'unknown', reverseClientNameStatus: 'perm' }, '550 5.7.1 Client host rejected: cannot find your reverse hostname, [192.0.2.1]'],
    ['check_client_access sees only the verified name', { smtpd_client_restrictions: 'check_client_access texthash:names' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example' }, 'ok'],
    ['check_reverse_client_hostname_access sees the PTR name', { smtpd_client_restrictions: 'check_reverse_client_hostname_access texthash:names' }, { clientName: 'unknown', clientNameStatus: 'forged', reverseClientName: 'client.example' }, '554 5.7.1 <client.example>: Unverified Client host rejected: by name'],
  ];
  for (const [name, main, over, want] of rows) {
    test(`${name} → "${want}"`, async () => {
      const b = build(main, { names: ACCESS_BY_NAME });
      assert.equal(text(await b.policy.checkRecipient(req(over))), want, b.logs.join('\n'));
    });
  }
});

describe('reject_multi_recipient_bounce, sleep', () => {
  test('a bounce (null sender) to a second recipient is refused at RCPT, and at DATA when it has several', async () => {
    const b = build({ smtpd_recipient_restrictions: 'reject_multi_recipient_bounce, permit_mynetworks, reject_unauth_destination', smtpd_data_restrictions: 'reject_multi_recipient_bounce' });
    const at = (o: Partial<PolicyRequest>) => req({ sender: '', clientAddr: '127.0.0.1', ...o });
    assert.equal(text(await b.policy.checkRecipient(at({ recipientCount: 0 }))), 'ok');
    assert.equal(text(await b.policy.checkRecipient(at({ recipientCount: 1 }))), '550 5.5.3 <r@mx.postactor.test>: Recipient address rejected: Multi-recipient bounce');
    assert.equal(text(await b.policy.checkRecipient(at({ sender: 's@sender.example', recipientCount: 1 }))), 'ok');
    assert.equal(text(await b.policy.checkData(at({ where: 'DATA', recipient: 'r@mx.postactor.test', recipientCount: 1 }))), 'ok');
    assert.equal(text(await b.policy.checkData(at({ where: 'DATA', recipient: null, recipientCount: 2 }))), '550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce');
    const c = build({ smtpd_recipient_restrictions: 'reject_multi_recipient_bounce, permit_mynetworks, reject_unauth_destination', multi_recipient_bounce_reject_code: '450' });
    assert.equal(text(await c.policy.checkRecipient(at({ recipientCount: 1 }))), '450 4.5.3 <r@mx.postactor.test>: Recipient address rejected: Multi-recipient bounce');
  });
  test('sleep N pauses the evaluation and goes on; a missing or bad number is refused at start-up', async () => {
    const b = build({ smtpd_client_restrictions: 'sleep 0, reject' });
    assert.equal(text(await b.policy.checkRecipient(req())), '554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied');
    assert.throws(() => build({ smtpd_client_restrictions: 'sleep soon' }), /smtpd_client_restrictions: restriction sleep must be followed by number/);
    assert.throws(() => build({ smtpd_client_restrictions: 'sleep' }), /sleep needs an argument/);
  });
  test('permit_naked_ip_address (deprecated, warned each time): a bare address as HELO', async () => {
    const b = build({ smtpd_helo_restrictions: 'permit_naked_ip_address, reject' });
    assert.equal(text(await b.policy.checkRecipient(req({ helo: '192.0.2.1' }))), 'ok');
    assert.equal(text(await b.policy.checkRecipient(req({ helo: '[192.0.2.1]' }))), '554 5.7.1 <[192.0.2.1]>: Helo command rejected: Access denied');
    assert.equal(text(await b.policy.checkRecipient(req({ helo: '1.2.3.4.5' }))), '501 5.5.2 <1.2.3.4.5>: Helo command rejected: invalid ip address');
    assert.equal(b.logs.filter((l) => l === 'warning: restriction permit_naked_ip_address is deprecated. Use permit_mynetworks or permit_sasl_authenticated instead').length, 3);
  });
  test('old names: check_recipient_maps is reject_unlisted_recipient, reject_unknown_address is reject_unknown_sender_domain', async () => {
    const b = build({ local_recipient_maps: 'texthash:users', smtpd_recipient_restrictions: 'check_recipient_maps, permit_mynetworks, reject_unauth_destination' }, { users: 'known x\n' });
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'unknown@mx.postactor.test', clientAddr: '127.0.0.1' }))), '550 5.1.1 <unknown@mx.postactor.test>: Recipient address rejected: User unknown in local recipient table');
    assert.doesNotThrow(() => build({ smtpd_sender_restrictions: 'reject_unknown_address' }));
  });
});

describe('permit_mx_backup, permit_inet_interfaces (a real DNS server on loopback)', () => {
  withDns({
    'backup.example': { MX: [{ exchange: 'primary.other.example', priority: 10 }, { exchange: 'mx.postactor.test', priority: 20 }] },
    'backupbyaddr.example': { MX: [{ exchange: 'primary.other.example', priority: 10 }, { exchange: 'me.example', priority: 20 }] },
    'primary.example': { MX: [{ exchange: 'mx.postactor.test', priority: 10 }, { exchange: 'other.example', priority: 20 }] },
    'notme.example': { MX: [{ exchange: 'primary.other.example', priority: 10 }, { exchange: 'other.example', priority: 20 }] },
    'primary.other.example': { A: ['192.0.2.50'] },
    'me.example': { A: ['127.0.0.1'] },
    'other.example': { A: ['192.0.2.51'] },
    'nomx.example': { A: ['192.0.2.52'] },
    'broken.example': { servfail: true },
  });
  const relay = { smtpd_relay_restrictions: 'permit_mx_backup, reject_unauth_destination' };
  const rows: [string, Record<string, string>, Partial<PolicyRequest>, string][] = [
    ['a backup MX by name', relay, { recipient: 'r@backup.example' }, 'ok'],
    ['a backup MX by address', relay, { recipient: 'r@backupbyaddr.example' }, 'ok'],
    ['a primary MX: not this restriction\'s business', relay, { recipient: 'r@primary.example' }, '554 5.7.1 <r@primary.example>: Relay access denied'],
    ['not an MX of the domain', relay, { recipient: 'r@notme.example' }, '554 5.7.1 <r@notme.example>: Relay access denied'],
    ['no MX record', relay, { recipient: 'r@nomx.example' }, '554 5.7.1 <r@nomx.example>: Relay access denied'],
    ['our own domain, as permit_auth_destination', relay, { recipient: 'r@mx.postactor.test' }, 'ok'],
    ['a DNS failure defers the reject that follows', relay, { recipient: 'r@broken.example' }, '450 4.4.4 <r@broken.example>: Recipient address rejected: Unable to look up mail exchanger information: Host not found, try again'],
    ['permit_mx_backup_networks holds the primary', { ...relay, permit_mx_backup_networks: '192.0.2.0/24' }, { recipient: 'r@backup.example' }, 'ok'],
    ['permit_mx_backup_networks without the primary', { ...relay, permit_mx_backup_networks: '198.51.100.0/24' }, { recipient: 'r@backup.example' }, '554 5.7.1 <r@backup.example>: Relay access denied'],
    ['permit_inet_interfaces: one of our addresses', { smtpd_relay_restrictions: 'permit_inet_interfaces, reject_unauth_destination' }, { recipient: 'r@elsewhere.example', clientAddr: '127.0.0.1' }, 'ok'],
    ['permit_inet_interfaces: another address', { smtpd_relay_restrictions: 'permit_inet_interfaces, reject_unauth_destination' }, { recipient: 'r@elsewhere.example' }, '554 5.7.1 <r@elsewhere.example>: Relay access denied'],
  ];
  for (const [name, main, over, want] of rows) {
    test(`${name} → "${want}"`, async () => {
      const b = build(main);
      assert.equal(text(await b.policy.checkRecipient(req(over))), want, b.logs.join('\n'));
    });
  }
});

describe('reject_unlisted_recipient and smtpd_reject_unlisted_recipient', () => {
  const files = { users: 'known x\n', relayusers: 'a@relay.example x\n', vmail: 'v@vmail.example x\n' };
  const main = { local_recipient_maps: 'texthash:users', relay_domains: 'relay.example', relay_recipient_maps: 'texthash:relayusers', virtual_mailbox_domains: 'vmail.example', virtual_mailbox_maps: 'texthash:vmail', virtual_alias_domains: 'valias.example' };
  const rows: [string, string][] = [
    ['known@mx.postactor.test', 'ok'],
    ['Known@MX.postactor.test', 'ok'],
    ['unknown@mx.postactor.test', '550 5.1.1 <unknown@mx.postactor.test>: Recipient address rejected: User unknown in local recipient table'],
    // smtpd_check.c: postmaster, MAILER-DAEMON and double-bounce need no entry in a local domain;
    // a bare "postmaster" is always accepted (RFC 5321 4.5.1).
    ['postmaster@mx.postactor.test', 'ok'],
    ['PostMaster@mx.postactor.test', 'ok'],
    ['MAILER-DAEMON@mx.postactor.test', 'ok'],
    ['double-bounce@mx.postactor.test', 'ok'],
    ['postmaster', 'ok'],
    ['postmaster@relay.example', '550 5.1.1 <postmaster@relay.example>: Recipient address rejected: User unknown in relay recipient table'],
    ['a@relay.example', 'ok'],
    ['b@relay.example', '550 5.1.1 <b@relay.example>: Recipient address rejected: User unknown in relay recipient table'],
    ['v@vmail.example', 'ok'],
    ['w@vmail.example', '550 5.1.1 <w@vmail.example>: Recipient address rejected: User unknown in virtual mailbox table'],
    ['x@valias.example', '550 5.1.1 <x@valias.example>: Recipient address rejected: User unknown in virtual alias table'],
    ['x@remote.example', 'ok'],
  ];
  for (const [rcpt, want] of rows) {
    test(`implicit (smtpd_reject_unlisted_recipient=yes), trusted client: <${rcpt}> → "${want}"`, async () => {
      const b = build(main, files);
      assert.equal(text(await b.policy.checkRecipient(req({ recipient: rcpt, clientAddr: '127.0.0.1' }))), want);
    });
  }
  test('smtpd_reject_unlisted_recipient=no accepts unknown local users', async () => {
    const b = build({ ...main, smtpd_reject_unlisted_recipient: 'no' }, files);
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'unknown@mx.postactor.test' }))), 'ok');
  });
  test('smtpd_reject_unlisted_sender = yes: an unknown sender in our domains is refused after the sender list, at RCPT or (delay_reject = no) at MAIL', async () => {
    const b = build({ ...main, smtpd_reject_unlisted_sender: 'yes' }, files);
    const want = '550 5.1.0 <nobody@mx.postactor.test>: Sender address rejected: User unknown in local recipient table';
    assert.equal(text(await b.policy.checkRecipient(req({ sender: 'nobody@mx.postactor.test', recipient: 'known@mx.postactor.test' }))), want);
    assert.equal(text(await b.policy.checkRecipient(req({ sender: 'known@mx.postactor.test', recipient: 'known@mx.postactor.test' }))), 'ok');
    assert.equal(text(await b.policy.checkRecipient(req({ sender: 'someone@remote.example', recipient: 'known@mx.postactor.test' }))), 'ok', 'not our domain');
    assert.equal(text(await b.policy.checkRecipient(req({ sender: '', recipient: 'known@mx.postactor.test' }))), 'ok', 'the null sender');
    const early = build({ ...main, smtpd_reject_unlisted_sender: 'yes', smtpd_delay_reject: 'no' }, files);
    assert.equal(text(await early.policy.checkSender(req({ sender: 'nobody@mx.postactor.test', recipient: null, where: 'MAIL' }))), want);
    const off = build(main, files);
    assert.equal(text(await off.policy.checkRecipient(req({ sender: 'nobody@mx.postactor.test', recipient: 'known@mx.postactor.test' }))), 'ok', 'off by default');
  });
  test('explicit reject_unlisted_recipient in smtpd_recipient_restrictions', async () => {
    const b = build({ ...main, smtpd_reject_unlisted_recipient: 'no', smtpd_recipient_restrictions: 'reject_unlisted_recipient, reject_unauth_destination' }, files);
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'unknown@mx.postactor.test' }))), '550 5.1.1 <unknown@mx.postactor.test>: Recipient address rejected: User unknown in local recipient table');
  });
  test('proxy:unix:passwd.byname knows the users of /etc/passwd (root)', async () => {
    const b = build({ local_recipient_maps: 'proxy:unix:passwd.byname' });
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'root@mx.postactor.test' }))), 'ok');
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'no-such-user-xyz@mx.postactor.test' }))), '550 5.1.1 <no-such-user-xyz@mx.postactor.test>: Recipient address rejected: User unknown in local recipient table');
  });
});

describe('evaluation order and stages', () => {
  test('smtpd_delay_reject=yes: a client reject is answered at RCPT', async () => {
    const b = build({ smtpd_client_restrictions: 'reject' });
    assert.equal(text(await b.policy.checkRecipient(req())), '554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied');
  });
  test('smtpd_delay_reject=no: the client list runs at CONNECT only', async () => {
    const b = build({ smtpd_client_restrictions: 'reject', smtpd_delay_reject: 'no' });
    assert.equal(text(await b.policy.checkRecipient(req())), 'ok');
    assert.equal(text(await b.policy.checkClient(req({ where: 'CONNECT', sender: null, recipient: null, helo: '', protocol: 'SMTP' }))), '554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied');
    assert.ok(b.logs.includes('NOQUEUE: reject: CONNECT from client.example[192.0.2.1]: 554 5.7.1 <client.example[192.0.2.1]>: Client host rejected: Access denied; proto=SMTP'), b.logs.join('\n'));
  });
  test('smtpd_delay_reject=no: the sender list answers MAIL, logged without to=', async () => {
    const b = build({ smtpd_sender_restrictions: 'reject', smtpd_delay_reject: 'no' });
    assert.equal(text(await b.policy.checkSender(req({ where: 'MAIL', recipient: null }))), '554 5.7.1 <s@sender.example>: Sender address rejected: Access denied');
    assert.ok(b.logs.includes('NOQUEUE: reject: MAIL from client.example[192.0.2.1]: 554 5.7.1 <s@sender.example>: Sender address rejected: Access denied; from=<s@sender.example> proto=ESMTP helo=<client.example>'), b.logs.join('\n'));
  });
  test('PERMIT ends only its own list: a later list still rejects', async () => {
    const b = build({ smtpd_client_restrictions: 'permit', smtpd_sender_restrictions: 'reject' });
    assert.equal(text(await b.policy.checkRecipient(req())), '554 5.7.1 <s@sender.example>: Sender address rejected: Access denied');
  });
  test('smtpd_data_restrictions reply at DATA with "<DATA>: Data command rejected"', async () => {
    const b = build({ smtpd_data_restrictions: 'reject' });
    assert.equal(text(await b.policy.checkData(req({ where: 'DATA', recipient: null, queueId: 'ABC123' }))), '554 5.7.1 <DATA>: Data command rejected: Access denied');
    assert.ok(b.logs.includes('ABC123: reject: DATA from client.example[192.0.2.1]: 554 5.7.1 <DATA>: Data command rejected: Access denied; from=<s@sender.example> proto=ESMTP helo=<client.example>'), b.logs.join('\n'));
  });
  test('smtpd_end_of_data_restrictions reply after the dot with "<END-OF-MESSAGE>: End-of-data rejected"', async () => {
    const b = build({ smtpd_end_of_data_restrictions: 'defer' });
    assert.equal(text(await b.policy.checkEndOfData(req({ where: 'END-OF-MESSAGE', recipient: null }))), '450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access denied');
  });
  test('warn_if_reject logs reject_warning and goes on', async () => {
    const b = build({ smtpd_recipient_restrictions: 'warn_if_reject, reject, permit_mynetworks, reject_unauth_destination' });
    assert.equal(text(await b.policy.checkRecipient(req())), 'ok');
    assert.ok(b.logs.includes('NOQUEUE: reject_warning: RCPT from client.example[192.0.2.1]: 554 5.7.1 <r@mx.postactor.test>: Recipient address rejected: Access denied; from=<s@sender.example> to=<r@mx.postactor.test> proto=ESMTP helo=<client.example>'), b.logs.join('\n'));
  });
  test('smtpd_restriction_classes: a class named in an access table', async () => {
    const b = build({ smtpd_restriction_classes: 'strict', strict: 'reject_non_fqdn_sender, reject', smtpd_recipient_restrictions: 'check_recipient_access texthash:a, reject_unauth_destination' }, { a: 'r@mx.postactor.test strict\n' });
    assert.equal(text(await b.policy.checkRecipient(req())), '554 5.7.1 <r@mx.postactor.test>: Recipient address rejected: Access denied');
  });
  test("a bare type:table is the list's own access check (Postfix's short-hand), in a class the calling list's", async () => {
    const files = { a: 's@sender.example REJECT no senders like you\nr@mx.postactor.test REJECT not this one\n' };
    const sender = build({ smtpd_sender_restrictions: 'texthash:a' }, files);
    assert.equal(text(await sender.policy.checkRecipient(req())), '554 5.7.1 <s@sender.example>: Sender address rejected: no senders like you');
    const rcpt = build({ smtpd_recipient_restrictions: 'texthash:a, permit_mynetworks, reject_unauth_destination' }, files);
    assert.equal(text(await rcpt.policy.checkRecipient(req())), '554 5.7.1 <r@mx.postactor.test>: Recipient address rejected: not this one');
    const cls = build({ smtpd_restriction_classes: 'tables', tables: 'texthash:a', smtpd_sender_restrictions: 'tables' }, files);
    assert.equal(text(await cls.policy.checkRecipient(req())), '554 5.7.1 <s@sender.example>: Sender address rejected: no senders like you');
    const data = build({ smtpd_restriction_classes: 'tables', tables: 'texthash:a', smtpd_data_restrictions: 'tables' }, files);
    assert.equal(text(await data.policy.checkData(req({ where: 'DATA' }))), '451 4.3.5 Server configuration error');
    assert.ok(data.logs.some((l) => /^warning: .*specify one of \(check_client_access, .*\) before data restriction "texthash:a"/.test(l)), data.logs.join('\n'));
  });
});

describe('start-up refuses what is not implemented', () => {
  const rows: [Record<string, string>, RegExp][] = [
    [{ smtpd_client_restrictions: 'reject_unknown_forward_client_hostname' }, /smtpd_client_restrictions: not supported: restriction "reject_unknown_forward_client_hostname"/],
    [{ smtpd_client_restrictions: 'check_client_mx_access' }, /check_client_mx_access needs an argument/],
    [{ smtpd_recipient_restrictions: 'permit_mynetworks, reject_unauth_destinaton' }, /smtpd_recipient_restrictions: unknown smtpd restriction: "reject_unauth_destinaton"/],
    [{ smtpd_data_restrictions: 'texthash:/nonexistent' }, /smtpd_data_restrictions: specify one of \(check_client_access, .*\) before data restriction "texthash:\/nonexistent"/],
    [{ smtpd_recipient_restrictions: 'reject_unverified_recipient, reject_unauth_destination' }, /smtpd_recipient_restrictions: reject_unverified_recipient: master.cf has no "verify" service/],
    [{ smtpd_client_restrictions: 'check_client_access ldap:/etc/postfix/access' }, /unsupported dictionary type: ldap/],
    [{ smtpd_client_restrictions: 'check_client_access' }, /check_client_access needs an argument/],
    [{ smtpd_client_restrictions: 'check_policy_service nowhere' }, /bad policy service "nowhere"/],
    [{ smtpd_client_restrictions: 'reject_rbl_client rbl.test=127.0.0.[2..4]' }, /not supported: DNS list reply filter/],
    [{ default_rbl_reply: '$rbl_code go away' }, /default_rbl_reply: not supported/],
  ];
  for (const [main, re] of rows) {
    test(`${JSON.stringify(main)} → ${re}`, () => {
      assert.throws(() => build(main), re);
    });
  }
});

describe('check_policy_service (a real policy server on loopback)', () => {
  let server: net.Server;
  let port: number;
  const requests: Map<string, string>[] = [];
  before(async () => {
    server = net.createServer((sock) => {
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString();
        const end = buf.indexOf('\n\n');
        if (end < 0) return;
        const attrs = new Map(buf.slice(0, end).split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
        requests.push(attrs);
        const rcpt = attrs.get('recipient') ?? '';
        if (rcpt.startsWith('silent')) return; // never answers: the timeout test
        const action = rcpt.startsWith('reject') ? 'REJECT go away' : rcpt.startsWith('dip') ? 'DEFER_IF_PERMIT not now' : 'DUNNO';
        sock.end(`action=${action}\n\n`);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));
  const rows: [string, string][] = [
    ['reject@mx.postactor.test', '554 5.7.1 <reject@mx.postactor.test>: Recipient address rejected: go away'],
    ['dunno@mx.postactor.test', 'ok'],
    ['dip@mx.postactor.test', '450 4.7.1 <dip@mx.postactor.test>: Recipient address rejected: not now'],
  ];
  for (const [rcpt, want] of rows) {
    test(`policy answer for <${rcpt}> → "${want}"`, async () => {
      const b = build({ smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${port}, reject_unauth_destination` });
      assert.equal(text(await b.policy.checkRecipient(req({ recipient: rcpt }))), want);
    });
  }
  test('the request carries Postfix attributes (request=smtpd_access_policy, protocol_state=RCPT, …)', () => {
    const r = requests.find((a) => a.get('recipient') === 'dunno@mx.postactor.test')!;
    assert.equal(r.get('request'), 'smtpd_access_policy');
    assert.equal(r.get('protocol_state'), 'RCPT');
    assert.equal(r.get('protocol_name'), 'ESMTP');
    assert.equal(r.get('client_address'), '192.0.2.1');
    assert.equal(r.get('client_name'), 'client.example');
    assert.equal(r.get('helo_name'), 'client.example');
    assert.equal(r.get('sender'), 's@sender.example');
  });
  test('an unreachable policy server → default_action "451 4.3.5 … Server configuration problem"', async () => {
    const closed = await new Promise<number>((res) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => res(p)); }); });
    const b = build({ smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${closed}, reject_unauth_destination`, smtpd_policy_service_retry_delay: '1s' }); // Postfix's minimum
    assert.equal(text(await b.policy.checkRecipient(req())), '451 4.3.5 <r@mx.postactor.test>: Recipient address rejected: Server configuration problem');
    assert.ok(b.logs.some((l) => l.startsWith(`warning: problem talking to server inet:127.0.0.1:${closed}`)), b.logs.join('\n'));
  });
  test('a silent policy server times out after smtpd_policy_service_timeout', async () => {
    const b = build({ smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:${port}, reject_unauth_destination`, smtpd_policy_service_timeout: '1s', smtpd_policy_service_try_limit: '1' });
    const t0 = Date.now();
    assert.equal(text(await b.policy.checkRecipient(req({ recipient: 'silent@mx.postactor.test' }))), '451 4.3.5 <silent@mx.postactor.test>: Recipient address rejected: Server configuration problem');
    assert.ok(Date.now() - t0 < 5000);
  });
  test('smtpd_policy_service_default_action = DUNNO lets mail through when the server is down', async () => {
    const b = build({ smtpd_recipient_restrictions: `check_policy_service inet:127.0.0.1:1, reject_unauth_destination`, smtpd_policy_service_default_action: 'DUNNO', smtpd_policy_service_try_limit: '1' });
    assert.equal(text(await b.policy.checkRecipient(req())), 'ok');
  });
});

test('reject_plaintext_session: "$plaintext_reject_code 4.7.1 Session encryption is required" without TLS, DUNNO with it', async () => {
  const b = build({ smtpd_recipient_restrictions: 'reject_plaintext_session, permit' });
  assert.equal(text(await b.policy.checkRecipient(req())), '450 4.7.1 Session encryption is required');
  assert.equal(text(await b.policy.checkRecipient(req({ tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', usebits: 256 } }))), 'ok');
  const five = build({ smtpd_recipient_restrictions: 'reject_plaintext_session, permit', plaintext_reject_code: '554' });
  assert.equal(text(await five.policy.checkRecipient(req())), '554 5.7.1 Session encryption is required');
});
