/**
 * End to end, sender-dependent relayhost: a running server (child process, trivial-rewrite as
 * its own service) relays mail from @one.example and from the null sender to one next hop
 * (sender_dependent_relayhost_maps, `<>` for the null sender) and everything else, DUNNO
 * included, to relayhost; the same recipient from two senders goes two ways (qmgr's resolve
 * cache keys on the sender). Local recipients keep their own transport and nexthop. The next
 * hops are the project's SmtpSink on two ports.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpSink } from '../src/smtp/sink.js';
import { rfc822, sendRaw, startServer, type TestServer } from './helpers/server.js';

describe('e2e sender_dependent_relayhost_maps', () => {
  let byOne: SmtpSink; // next hop for @one.example and <>
  let byDefault: SmtpSink; // relayhost
  let server: TestServer;
  let onePort = 0;

  before(async () => {
    byOne = new SmtpSink({ keepMessages: true });
    byDefault = new SmtpSink({ keepMessages: true });
    onePort = await byOne.listen(0);
    const sinkPort = await byDefault.listen(0);
    server = await startServer({
      sinkPort,
      mainCf: {
        sender_dependent_relayhost_maps: `inline:{ @one.example=[127.0.0.1]:${onePort}, a@two.example=DUNNO, <>=[127.0.0.1]:${onePort} }`,
        mydestination: 'localhost, local.test',
        local_recipient_maps: '',
        // Local mail goes to discard(8), whose status=sent text is the nexthop it was given.
        local_transport: 'discard',
      },
      masterCfExtra: ['rewrite unix - - n - 1 trivial-rewrite', 'discard unix - - n - - discard'].join('\n'),
    });
  });
  after(async () => {
    await server?.stop();
    await byOne?.close();
    await byDefault?.close();
  });

  async function send(from: string, to: string[], subject: string): Promise<void> {
    const r = await sendRaw(server.port, from, to, rfc822({ From: `<${from || 'MAILER-DAEMON@example.org'}>`, Subject: subject }, 'hello\r\n'));
    assert.equal(r.code, 250, r.line);
  }

  const arrived = (sink: SmtpSink, rcpt: string, sender: string) => sink.messages.some((m) => m.recipients.includes(rcpt) && m.sender === sender);

  test('the sender picks the next hop; DUNNO and other senders use relayhost; the null sender is looked up as <>', async () => {
    await send('a@one.example', ['x@remote.example'], 'one');
    await send('b@other.example', ['y@remote.example'], 'other');
    await send('a@two.example', ['w@remote.example'], 'dunno');
    await send('', ['z@remote.example'], 'null sender');
    // The same recipient from two senders: two routes, not one cached answer.
    await send('c@one.example', ['same@remote.example'], 'same from one');
    await send('d@other.example', ['same@remote.example'], 'same from other');
    await byOne.waitFor(() => arrived(byOne, 'x@remote.example', 'a@one.example') && arrived(byOne, 'z@remote.example', '') && arrived(byOne, 'same@remote.example', 'c@one.example'), 30_000);
    await byDefault.waitFor(() => arrived(byDefault, 'y@remote.example', 'b@other.example') && arrived(byDefault, 'w@remote.example', 'a@two.example') && arrived(byDefault, 'same@remote.example', 'd@other.example'), 30_000);
    await server.waitForLogCount(/: removed$/, 6, 20_000);
    // Nothing went both ways.
    assert.deepEqual(byOne.messages.map((m) => `${m.sender} ${m.recipients.join(',')}`).sort(), [' z@remote.example', 'a@one.example x@remote.example', 'c@one.example same@remote.example']);
    assert.deepEqual(byDefault.messages.map((m) => `${m.sender} ${m.recipients.join(',')}`).sort(), ['a@two.example w@remote.example', 'b@other.example y@remote.example', 'd@other.example same@remote.example']);
    const log = server.logLines().join('\n');
    assert.match(log, new RegExp(`to=<x@remote\\.example>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${onePort}, .*status=sent`));
    assert.match(log, new RegExp(`to=<y@remote\\.example>, relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${server.sinkPort}, .*status=sent`));
  });

  test('a local recipient of the same message keeps its class transport and nexthop', async () => {
    await send('a@one.example', ['v@remote.example', 'u@local.test'], 'mixed');
    await byOne.waitFor(() => arrived(byOne, 'v@remote.example', 'a@one.example'), 30_000);
    const line = await server.waitForLog(/to=<u@local\.test>, .*status=sent/, 20_000);
    assert.match(line, /relay=none, .*status=sent \(mx\.postactor\.test\)$/);
    assert.ok(!byOne.messages.some((m) => m.recipients.includes('u@local.test')));
    assert.ok(!byDefault.messages.some((m) => m.recipients.includes('u@local.test')));
  });
});
