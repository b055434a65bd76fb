/**
 * End to end, smtpd access policy: a real server (child process) with access maps, an RBL
 * served by a real DNS server on loopback, a real policy server speaking Postfix's policy
 * protocol, data and end-of-data restrictions, and smtpd_delay_reject yes and no. Clients from
 * other 127.x addresses play the untrusted hosts.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { QueueStore } from '../src/queue/store.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { startDnsServer, type TestDnsServer } from './helpers/dns-server.js';
import { rfc822, SmtpDialogue, startServer, type TestServer } from './helpers/server.js';

function message(id: string): string {
  return rfc822({ From: '<s@example.org>', To: '<r@example.com>', Subject: id, 'X-Test-Id': id }, `body of ${id}\n`);
}

/** A tiny Postfix policy server: REJECT / DEFER_IF_PERMIT / DUNNO by recipient prefix; on loopback, or on a UNIX socket at path. */
async function startPolicyServer(path?: string): Promise<{ port: number; requests: Map<string, string>[]; close(): Promise<void> }> {
  const requests: Map<string, string>[] = [];
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      buf += d.toString();
      for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
        const attrs = new Map(buf.slice(0, end).split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
        buf = buf.slice(end + 2);
        requests.push(attrs);
        const rcpt = attrs.get('recipient') ?? '';
        const action = rcpt.startsWith('policy-reject') ? 'REJECT go away' : rcpt.startsWith('policy-dip') ? 'DEFER_IF_PERMIT greylisted'
          : rcpt.startsWith('policy-bcc') ? 'BCC policy-copy@example.com' : 'DUNNO';
        sock.write(`action=${action}\n\n`);
      }
    });
  });
  await new Promise<void>((r) => (path ? server.listen(path, () => r()) : server.listen(0, '127.0.0.1', () => r())));
  return { port: path ? 0 : (server.address() as net.AddressInfo).port, requests, close: () => new Promise((r) => server.close(() => r())) };
}

/** EHLO, MAIL, RCPT… on one session; returns every reply's line. */
async function dialogue(port: number, lines: string[], localAddress?: string): Promise<string[]> {
  const { smtp, greeting } = await SmtpDialogue.connect(port, localAddress ? { localAddress } : {});
  const out = [greeting.line];
  try {
    for (const l of lines) {
      if (l.startsWith('<<')) {
        smtp.write(l.slice(2));
        out.push((await smtp.read()).line);
      } else out.push((await smtp.cmd(l)).line);
    }
    await smtp.cmd('QUIT').catch(() => undefined);
  } finally {
    smtp.close();
  }
  return out;
}

describe('smtpd access policy end to end (smtpd_delay_reject = yes)', () => {
  let server: TestServer;
  let sink: SmtpSink;
  /** The content filter an access FILTER names. */
  let filter: SmtpSink;
  let dns: TestDnsServer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;

  before(async () => {
    sink = new SmtpSink({ keepMessages: true });
    filter = new SmtpSink({ keepMessages: true });
    const filterPort = await filter.listen(0);
    dns = await startDnsServer({ '4.0.0.127.rbl.test': { A: ['127.0.0.2'] } });
    policy = await startPolicyServer();
    server = await startServer({
      sinkPort: await sink.listen(0),
      env: (dir) => {
        writeFileSync(join(dir, 'clients'), '127.0.0.3 REJECT\n');
        writeFileSync(join(dir, 'senders'), 'bad@example.org REJECT\n');
        writeFileSync(join(dir, 'rcpts'), [
          'reject@example.com REJECT', 'defer@example.com DEFER try later', 'code@example.com 550 5.1.1 nope',
          'dip@example.com DEFER_IF_PERMIT', 'warn@example.com WARN watch this', 'discard@example.com DISCARD',
          'prepend@example.com PREPEND X-Policy: tagged', 'broken@example.com brokenclass',
          'hold@example.com HOLD held for review', `filter@example.com FILTER smtp:[127.0.0.1]:${filterPort}`,
          'redirect@example.com REDIRECT redirected@example.net', 'bcc@example.com BCC audit@example.net', '',
        ].join('\n'));
        writeFileSync(join(dir, 'broken'), 'this-line-has-no-value\n');
        writeFileSync(join(dir, 'datasenders'), 'data-reject@example.org REJECT no data for you\n');
        writeFileSync(join(dir, 'eodsenders'), 'eod-reject@example.org REJECT too late\n');
        return { POSTACTOR_DNS_SERVERS: dns.server };
      },
      mainCf: {
        mynetworks: '127.0.0.1/32',
        local_recipient_maps: '',
        smtpd_restriction_classes: 'brokenclass',
        brokenclass: 'check_recipient_access texthash:broken',
        smtpd_client_restrictions: 'check_client_access texthash:clients, reject_rbl_client rbl.test',
        smtpd_sender_restrictions: 'check_sender_access texthash:senders',
        smtpd_recipient_restrictions: `check_recipient_access texthash:rcpts, check_policy_service inet:127.0.0.1:${policy.port}`,
        smtpd_data_restrictions: 'check_sender_access texthash:datasenders',
        smtpd_end_of_data_restrictions: 'check_sender_access texthash:eodsenders',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await sink?.close();
    await filter?.close();
    await dns?.close();
    await policy?.close();
  });

  const rcptRows: [string, string][] = [
    ['reject@example.com', '554 5.7.1 <reject@example.com>: Recipient address rejected: Access denied'],
    ['defer@example.com', '450 4.7.1 <defer@example.com>: Recipient address rejected: try later'],
    ['code@example.com', '550 5.1.1 <code@example.com>: Recipient address rejected: nope'],
    ['dip@example.com', '450 4.7.1 <dip@example.com>: Recipient address rejected: Service unavailable'],
    ['policy-reject@example.com', '554 5.7.1 <policy-reject@example.com>: Recipient address rejected: go away'],
    ['policy-dip@example.com', '450 4.7.1 <policy-dip@example.com>: Recipient address rejected: greylisted'],
    ['broken@example.com', '451 4.3.5 <broken@example.com>: Recipient address rejected: Server configuration error'],
    ['fine@example.com', '250 2.1.5 Ok'],
  ];
  for (const [rcpt, want] of rcptRows) {
    test(`RCPT TO:<${rcpt}> is answered "${want}"`, async () => {
      const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', `RCPT TO:<${rcpt}>`]);
      assert.equal(r[3], want);
    });
  }

  test('a reject is logged "NOQUEUE: reject: RCPT from name[addr]: …; from=<…> to=<…> proto=ESMTP helo=<…>"', async () => {
    const line = await server.waitForLog(/NOQUEUE: reject: RCPT from .*to=<reject@example.com>/, 5000);
    assert.match(line, /NOQUEUE: reject: RCPT from [^[]+\[127\.0\.0\.1\]: 554 5\.7\.1 <reject@example\.com>: Recipient address rejected: Access denied; from=<s@example\.org> to=<reject@example\.com> proto=ESMTP helo=<client\.test>$/);
  });

  test('a broken access table logs its file:line error', async () => {
    await server.waitForLog(/warning: texthash:broken: table lookup problem: .*broken:1: expected format/, 5000);
  });

  test('the policy server gets Postfix attributes', () => {
    const r = policy.requests.find((a) => a.get('recipient') === 'fine@example.com');
    assert.ok(r);
    assert.equal(r.get('request'), 'smtpd_access_policy');
    assert.equal(r.get('protocol_state'), 'RCPT');
    assert.equal(r.get('helo_name'), 'client.test');
    assert.equal(r.get('client_address'), '127.0.0.1');
  });

  test('check_client_access: a listed client (127.0.0.3) is rejected at RCPT with the client text', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<fine@example.com>'], '127.0.0.3');
    assert.equal(r[2], '250 2.1.0 Ok');
    assert.match(r[3]!, /^554 5\.7\.1 <[^>]*\[127\.0\.0\.3\]>: Client host rejected: Access denied$/);
  });

  test('reject_rbl_client: a client listed in the DNS (127.0.0.4) is rejected with the RBL reply', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<fine@example.com>'], '127.0.0.4');
    assert.equal(r[3], '554 5.7.1 Service unavailable; Client host [127.0.0.4] blocked using rbl.test');
  });

  test('check_sender_access with smtpd_delay_reject=yes: MAIL is accepted, RCPT rejected', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<bad@example.org>', 'RCPT TO:<fine@example.com>']);
    assert.equal(r[2], '250 2.1.0 Ok');
    assert.equal(r[3], '554 5.7.1 <bad@example.org>: Sender address rejected: Access denied');
  });

  test('smtpd_data_restrictions answer DATA, and the reject is logged with the queue ID', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<data-reject@example.org>', 'RCPT TO:<fine@example.com>', 'DATA']);
    assert.equal(r[3], '250 2.1.5 Ok');
    assert.equal(r[4], '554 5.7.1 <data-reject@example.org>: Sender address rejected: no data for you');
    const line = await server.waitForLog(/: reject: DATA from /, 5000);
    assert.match(line, /[0-9A-Za-z]+: reject: DATA from [^ ]+\[127\.0\.0\.1\]: 554 5\.7\.1 <data-reject@example\.org>: Sender address rejected: no data for you; from=<data-reject@example\.org> to=<fine@example\.com> proto=ESMTP helo=<client\.test>$/);
  });

  test('smtpd_end_of_data_restrictions answer the final dot, and nothing is queued', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<eod-reject@example.org>', 'RCPT TO:<fine@example.com>', 'DATA', `<<${message('eod-1')}.\r\n`]);
    assert.equal(r[4], '354 End data with <CR><LF>.<CR><LF>');
    assert.equal(r[5], '554 5.7.1 <eod-reject@example.org>: Sender address rejected: too late');
  });

  test('WARN logs and accepts; PREPEND adds the header; DISCARD claims delivery and drops the message', async () => {
    const warn = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<warn@example.com>', 'DATA', `<<${message('warn-1')}.\r\n`]);
    assert.match(warn[5]!, /^250 2\.0\.0 Ok: queued as /);
    await server.waitForLog(/NOQUEUE: warn: RCPT from [^ ]+\[127\.0\.0\.1\]: watch this; from=<s@example\.org> to=<warn@example\.com> proto=ESMTP helo=<client\.test>$/, 5000);

    const discard = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<discard@example.com>', 'RCPT TO:<fine@example.com>', 'DATA', `<<${message('discard-1')}.\r\n`]);
    assert.equal(discard[4], '250 2.1.5 Ok');
    assert.match(discard[6]!, /^250 2\.0\.0 Ok: queued as /);
    await server.waitForLog(/NOQUEUE: discard: RCPT from [^ ]+\[127\.0\.0\.1\]: <discard@example\.com>: Recipient address triggers DISCARD action; from=<s@example\.org> to=<discard@example\.com>/, 5000);

    const prepend = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<prepend@example.com>', 'DATA', `<<${message('prepend-1')}.\r\n`]);
    assert.match(prepend[5]!, /^250 2\.0\.0 Ok: queued as /);

    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('X-Test-Id: prepend-1')) && sink.messages.some((m) => m.data.includes('X-Test-Id: warn-1')), 15_000);
    const tagged = sink.messages.find((m) => m.data.includes('X-Test-Id: prepend-1'))!;
    assert.match(tagged.data.toString('latin1'), /^X-Policy: tagged\r$/m);
    assert.ok(!sink.messages.some((m) => m.data.includes('X-Test-Id: discard-1')), 'the discarded message never reaches the next hop');
    assert.ok(!sink.messages.some((m) => m.data.includes('X-Test-Id: eod-1')), 'the end-of-data reject queued nothing');
  });
  test('HOLD: the message is queued on hold, not delivered, and smtpd logs "hold: RCPT from …"', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<hold@example.com>', 'RCPT TO:<fine@example.com>', 'DATA', `<<${message('hold-1')}.\r\n`]);
    assert.equal(r[3], '250 2.1.5 Ok');
    const queued = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(r[6]!);
    assert.ok(queued, r[6]);
    await server.waitForLog(/NOQUEUE: hold: RCPT from [^ ]+\[127\.0\.0\.1\]: <hold@example\.com>: Recipient address held for review; from=<s@example\.org> to=<hold@example\.com> proto=ESMTP helo=<client\.test>$/, 5000);
    const store = QueueStore.open(server.queueDir, { readOnly: true });
    try {
      assert.equal(store.get(queued[1]!)?.queue, 'hold');
    } finally {
      await store.close();
    }
    await new Promise((res) => setTimeout(res, 500));
    assert.ok(!sink.messages.some((m) => m.data.includes('X-Test-Id: hold-1')), 'a held message is not delivered');
  });

  test('FILTER transport:destination: the message goes to that content filter, not its normal route', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<filter@example.com>', 'DATA', `<<${message('filter-1')}.\r\n`]);
    assert.match(r[5]!, /^250 2\.0\.0 Ok: queued as /);
    await server.waitForLog(/: filter: RCPT from [^ ]+\[127\.0\.0\.1\]: <filter@example\.com>: Recipient address triggers FILTER smtp:\[127\.0\.0\.1\]:\d+; from=<s@example\.org> to=<filter@example\.com>/, 5000);
    await filter.waitFor(() => filter.messages.some((m) => m.data.includes('X-Test-Id: filter-1')), 15_000);
    assert.ok(!sink.messages.some((m) => m.data.includes('X-Test-Id: filter-1')), 'not delivered on its normal route');
  });

  test('REDIRECT replaces the recipients; BCC (from a table and from the policy service) adds one each', async () => {
    const red = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<redirect@example.com>', 'RCPT TO:<fine@example.com>', 'DATA', `<<${message('redirect-1')}.\r\n`]);
    assert.match(red[6]!, /^250 2\.0\.0 Ok: queued as /);
    const bcc = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<bcc@example.com>', 'RCPT TO:<policy-bcc@example.com>', 'DATA', `<<${message('bcc-1')}.\r\n`]);
    assert.match(bcc[6]!, /^250 2\.0\.0 Ok: queued as /);
    await sink.waitFor(() => sink.messages.some((m) => m.data.includes('X-Test-Id: redirect-1')) && sink.messages.some((m) => m.data.includes('X-Test-Id: bcc-1')), 15_000);
    const rcpts = (id: string) => sink.messages.filter((m) => m.data.includes(`X-Test-Id: ${id}`)).flatMap((m) => m.recipients).sort();
    assert.deepEqual(rcpts('redirect-1'), ['redirected@example.net']);
    assert.deepEqual(rcpts('bcc-1'), ['audit@example.net', 'bcc@example.com', 'policy-bcc@example.com', 'policy-copy@example.com']);
    await server.waitForLog(/: redirect: RCPT from [^ ]+\[127\.0\.0\.1\]: <redirect@example\.com>: Recipient address triggers REDIRECT redirected@example\.net;/, 5000);
    await server.waitForLog(/: bcc: RCPT from [^ ]+\[127\.0\.0\.1\]: <bcc@example\.com>: Recipient address triggers BCC audit@example\.net;/, 5000);
  });
});

describe('smtpd access policy end to end (smtpd_delay_reject = no)', () => {
  let server: TestServer;

  before(async () => {
    server = await startServer({
      env: (dir) => {
        writeFileSync(join(dir, 'clients'), '127.0.0.3 REJECT\n127.0.0.5 HOLD\n');
        writeFileSync(join(dir, 'helos'), 'bad.helo REJECT\n');
        writeFileSync(join(dir, 'senders'), 'bad@example.org REJECT\n');
        return {};
      },
      mainCf: {
        smtpd_delay_reject: 'no',
        local_recipient_maps: '',
        smtpd_client_restrictions: 'check_client_access texthash:clients',
        smtpd_helo_restrictions: 'check_helo_access texthash:helos',
        smtpd_sender_restrictions: 'check_sender_access texthash:senders',
      },
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('a rejected client gets the reject as its greeting, logged as CONNECT', async () => {
    const { smtp, greeting } = await SmtpDialogue.connect(server.port, { localAddress: '127.0.0.3' });
    smtp.close();
    assert.match(greeting.line, /^554 5\.7\.1 <[^>]*\[127\.0\.0\.3\]>: Client host rejected: Access denied$/);
    await server.waitForLog(/NOQUEUE: reject: CONNECT from [^ ]+\[127\.0\.0\.3\]: 554 5\.7\.1 <[^>]*\[127\.0\.0\.3\]>: Client host rejected: Access denied; proto=SMTP$/, 5000);
  });

  test('a client HOLD outside a transaction is skipped with Postfix\'s warning, and the session goes on', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<good@example.org>', 'RCPT TO:<r@example.com>'], '127.0.0.5');
    assert.match(r[0]!, /^220 /);
    assert.deepEqual(r.slice(2), ['250 2.1.0 Ok', '250 2.1.5 Ok']);
    await server.waitForLog(/warning: access table texthash:clients: with smtpd_delay_reject=no, action HOLD is always skipped in client or helo restrictions$/, 5000);
  });

  test('check_helo_access answers EHLO itself', async () => {
    const r = await dialogue(server.port, ['EHLO bad.helo']);
    assert.equal(r[1], '554 5.7.1 <bad.helo>: Helo command rejected: Access denied');
  });

  test('check_sender_access answers MAIL FROM itself, logged without to=', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<bad@example.org>']);
    assert.equal(r[2], '554 5.7.1 <bad@example.org>: Sender address rejected: Access denied');
    await server.waitForLog(/NOQUEUE: reject: MAIL from [^ ]+\[127\.0\.0\.1\]: 554 5\.7\.1 <bad@example\.org>: Sender address rejected: Access denied; from=<bad@example\.org> proto=ESMTP helo=<client\.test>$/, 5000);
  });

  test('an accepted client, HELO and sender still reach RCPT', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<good@example.org>', 'RCPT TO:<r@example.com>']);
    assert.deepEqual(r.slice(2), ['250 2.1.0 Ok', '250 2.1.5 Ok']);
  });
});

describe('check_policy_service unix:private/NAME is under queue_directory', () => {
  let server: TestServer;
  let policy: Awaited<ReturnType<typeof startPolicyServer>>;
  const queue = mkdtempSync(join(tmpdir(), 'postactor-e2e-policy-queue-'));

  before(async () => {
    // As a master.cf spawn service (policyd-spf) would: its socket in $queue_directory/private.
    mkdirSync(join(queue, 'private'), { mode: 0o700 });
    policy = await startPolicyServer(join(queue, 'private', 'policyd'));
    server = await startServer({
      mainCf: {
        queue_directory: queue,
        mynetworks: '127.0.0.1/32',
        local_recipient_maps: '',
        smtpd_recipient_restrictions: 'check_policy_service unix:private/policyd, permit_mynetworks, reject',
      },
    });
  });
  after(async () => {
    await server?.stop();
    await policy?.close();
    rmSync(queue, { recursive: true, force: true });
  });

  test('the policy server on the UNIX socket answers each RCPT', async () => {
    const r = await dialogue(server.port, ['EHLO client.test', 'MAIL FROM:<s@example.org>', 'RCPT TO:<policy-reject@example.com>', 'RCPT TO:<fine@example.com>']);
    assert.deepEqual(r.slice(3), ['554 5.7.1 <policy-reject@example.com>: Recipient address rejected: go away', '250 2.1.5 Ok']);
    assert.equal(policy.requests.length, 2);
    assert.equal(policy.requests[1]!.get('recipient'), 'fine@example.com');
    assert.equal(server.logLines().filter((l) => /problem talking to server/.test(l)).length, 0);
  });
});
