/**
 * The smtp and lmtp clients' source address: smtp_bind_address(6), the inet_interfaces rule
 * (one non-loopback address of a family: bind to it), smtp_bind_address_enforce; a real sink
 * on 127.0.0.1 sees where the connection came from (Linux's loopback takes any 127/8 address),
 * and end to end through a running server with `smtp_bind_address = 127.0.0.2`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { configFromJSON } from '../src/config/index.js';
import { readParams } from '../src/config/declared.js';
import { LMTP_BIND_PARAMS, SMTP_BIND_PARAMS, sourceAddresses } from '../src/smtp/bind-address.js';
import { SmtpClient, type SmtpClientOptions } from '../src/smtp/client.js';
import { SmtpSink } from '../src/smtp/sink.js';
import { rfc822, sendRaw, startServer } from './helpers/server.js';

const TIMEOUTS: SmtpClientOptions = {
  heloName: 'client.test', connectTimeout: 2000, heloTimeout: 2000, mailTimeout: 2000, rcptTimeout: 2000,
  dataInitTimeout: 2000, dataXferTimeout: 2000, dataDoneTimeout: 2000, quitTimeout: 500,
};
const body = Buffer.from('Subject: hi\r\n\r\nhello\r\n');
const config = (params: Record<string, string>) => configFromJSON({ configDirectory: null, params, services: [] });
/** The source addresses of the client with these main.cf settings, its parameters read as the agent declares them. */
const bindOf = (params: Record<string, string>, client: 'smtp' | 'lmtp') => client === 'smtp'
  ? sourceAddresses({ prefix: 'smtp', params: readParams(config(params), SMTP_BIND_PARAMS, 'smtp') })
  : sourceAddresses({ prefix: 'lmtp', params: readParams(config(params), LMTP_BIND_PARAMS, 'lmtp') });

const sinks: SmtpSink[] = [];
after(async () => {
  for (const s of sinks) await s.close();
});
async function sink(): Promise<{ sink: SmtpSink; port: number }> {
  const s = new SmtpSink({ keepMessages: true });
  sinks.push(s);
  return { sink: s, port: await s.listen(0) };
}

test('smtp_bind_address(6): IP addresses, "[…]" allowed, each of its own family; bad values name the parameter', () => {
  assert.deepEqual(bindOf({}, 'smtp'), { enforce: false });
  assert.deepEqual(bindOf({ smtp_bind_address: '127.0.0.2', smtp_bind_address6: '[::1]', smtp_bind_address_enforce: 'yes' }, 'smtp'),
    { v4: '127.0.0.2', v4From: 'smtp_bind_address', v6: '::1', v6From: 'smtp_bind_address6', enforce: true });
  assert.deepEqual(bindOf({ lmtp_bind_address: '127.0.0.3' }, 'lmtp'), { v4: '127.0.0.3', v4From: 'lmtp_bind_address', enforce: false });
  assert.equal(bindOf({ smtp_bind_address: '::1' }, 'smtp'), 'bad smtp_bind_address parameter: ::1: not an IPv4 address');
  assert.equal(bindOf({ smtp_bind_address6: 'mail.example' }, 'smtp'), 'bad smtp_bind_address6 parameter: mail.example: not an IPv6 address');
  assert.equal(bindOf({ smtp_bind_address: '[127.0.0.2' }, 'smtp'), 'malformed smtp_bind_address parameter: [127.0.0.2');
});

test('inet_interfaces with one non-loopback address of a family: connections of that family come from it', (t) => {
  const own = Object.values(networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
  assert.deepEqual(bindOf({ inet_interfaces: '127.0.0.1' }, 'smtp'), { enforce: false }, 'a loopback address is not bound to');
  if (!own) return t.skip('no non-loopback IPv4 interface on this host');
  assert.deepEqual(bindOf({ inet_interfaces: own.address }, 'smtp'), { v4: own.address, v4From: 'inet_interfaces', enforce: false });
  assert.deepEqual(bindOf({ inet_interfaces: `127.0.0.1, ${own.address}` }, 'smtp'), { enforce: false }, 'two addresses: the kernel chooses');
  assert.deepEqual(bindOf({ inet_interfaces: own.address, inet_protocols: 'ipv6' }, 'smtp'), { enforce: false });
  assert.deepEqual(bindOf({ inet_interfaces: own.address, smtp_bind_address: '127.0.0.5' }, 'smtp'), { v4: '127.0.0.5', v4From: 'smtp_bind_address', enforce: false });
});

test('the sink sees the source address 127.0.0.2', async () => {
  const { sink: s, port } = await sink();
  const client = new SmtpClient({ ...TIMEOUTS, bind: { v4: '127.0.0.2', enforce: false } });
  const res = await client.deliver([{ host: 'sink.test', addr: '127.0.0.1', port }], { sender: 's@x.test', recipients: ['r@y.test'] }, body);
  await client.close();
  assert.equal(res.kind, 'sent');
  assert.equal(s.messages[0]!.remoteAddress, '127.0.0.2');
});

test('a source address that cannot be bound: a warning and the kernel\'s choice, or with enforce "4.4.0 server configuration error"', async () => {
  const { sink: s, port } = await sink();
  const warnings: string[] = [];
  const lax = new SmtpClient({ ...TIMEOUTS, bind: { v4: '192.0.2.199', enforce: false }, onWarning: (w) => warnings.push(w) });
  const res = await lax.deliver([{ host: 'sink.test', addr: '127.0.0.1', port }], { sender: 's@x.test', recipients: ['r@y.test'] }, body);
  await lax.close();
  assert.equal(res.kind, 'sent');
  assert.equal(s.messages[0]!.remoteAddress, '127.0.0.1');
  assert.deepEqual(warnings, ['smtp_connect_addr: bind 192.0.2.199: Cannot assign requested address']);
  const strict = new SmtpClient({ ...TIMEOUTS, bind: { v4: '192.0.2.199', enforce: true } });
  const r2 = await strict.deliver([{ host: 'sink.test', addr: '127.0.0.1', port }], { sender: 's@x.test', recipients: ['r@y.test'] }, body);
  await strict.close();
  assert.equal(r2.kind, 'site-failure');
  assert.deepEqual([r2.recipients[0]!.reply.code, r2.recipients[0]!.reply.enhanced, r2.recipients[0]!.reply.text], [421, '4.4.0', 'server configuration error']);
  assert.equal(s.messages.length, 1, 'nothing sent from the wrong address');
});

test('end to end: smtp_bind_address = 127.0.0.2 in main.cf, the relayed mail comes from 127.0.0.2', async () => {
  const { sink: s, port } = await sink();
  const server = await startServer({ sinkPort: port, mainCf: { smtp_bind_address: '127.0.0.2' } });
  try {
    const r = await sendRaw(server.port, 'a@example.org', ['b@example.com'], rfc822({ From: '<a@example.org>', To: '<b@example.com>', Subject: 'bind' }, 'hi\n'));
    assert.equal(r.code, 250, r.line);
    await s.waitFor((st) => st.messages >= 1, 20_000);
    assert.equal(s.messages[0]!.remoteAddress, '127.0.0.2');
  } finally {
    await server.stop();
  }
});
