// The SMTP AUTH client's mechanism choice and exchanges (src/sasl/client.ts), against scripted
// servers and RFC 2195's CRAM-MD5 example.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { authExchange, chooseMechanism, offeredMechanisms, type Talk } from '../src/sasl/client.js';

const creds = { user: 'tim', password: 'tanstaaftanstaaf' };

test('offered mechanisms come from both AUTH forms of EHLO', () => {
  assert.deepEqual(offeredMechanisms(['PIPELINING', 'AUTH PLAIN LOGIN', 'AUTH=LOGIN CRAM-MD5']), ['PLAIN', 'LOGIN', 'CRAM-MD5']);
});

test('the security options and the filter decide, strongest first (CRAM-MD5, PLAIN, LOGIN)', () => {
  const all = ['PLAIN', 'LOGIN', 'CRAM-MD5'];
  assert.equal(chooseMechanism(all, { securityOptions: ['noplaintext', 'noanonymous'], mechanismFilter: [] }), 'CRAM-MD5');
  assert.equal(chooseMechanism(['PLAIN', 'LOGIN'], { securityOptions: ['noplaintext', 'noanonymous'], mechanismFilter: [] }), null);
  assert.equal(chooseMechanism(all, { securityOptions: ['noanonymous'], mechanismFilter: ['plain', 'login'] }), 'PLAIN');
  assert.equal(chooseMechanism(all, { securityOptions: ['noanonymous'], mechanismFilter: ['!cram-md5', '!plain'] }), 'LOGIN');
  assert.equal(chooseMechanism(all, { securityOptions: ['nodictionary'], mechanismFilter: [] }), null);
});

/** A scripted server: each expected client line and the reply to it. */
function script(steps: [RegExp, string][]): Talk {
  let i = 0;
  return async (line) => {
    const [want, reply] = steps[i++]!;
    assert.match(line, want);
    const code = Number(reply.slice(0, 3));
    return { code, text: reply.slice(4), line: reply };
  };
}

test('PLAIN sends its response inline', async () => {
  const inline = Buffer.from('\0tim\0tanstaaftanstaaf').toString('base64');
  const out = await authExchange('PLAIN', creds, script([[new RegExp(`^AUTH PLAIN ${inline}$`), '235 2.7.0 Authentication successful']]));
  assert.equal(out.ok, true);
});

test('LOGIN answers the user and password challenges', async () => {
  const out = await authExchange('LOGIN', creds, script([
    [/^AUTH LOGIN$/, '334 VXNlcm5hbWU6'],
    [new RegExp(`^${Buffer.from('tim').toString('base64')}$`), '334 UGFzc3dvcmQ6'],
    [new RegExp(`^${Buffer.from('tanstaaftanstaaf').toString('base64')}$`), '535 5.7.8 Error: authentication failed'],
  ]));
  assert.equal(out.ok, false);
  assert.equal(out.reply.code, 535);
});

test('CRAM-MD5 answers RFC 2195\'s example challenge with its example response', async () => {
  const challenge = Buffer.from('<1896.697170952@postoffice.reston.mci.net>').toString('base64');
  const response = Buffer.from('tim b913a602c7eda7a495b4e6e7334d3890').toString('base64');
  const out = await authExchange('CRAM-MD5', creds, script([[/^AUTH CRAM-MD5$/, `334 ${challenge}`], [new RegExp(`^${response}$`), '235 2.7.0 ok']]));
  assert.equal(out.ok, true);
});

test('a server that never stops challenging is a protocol loop after 100 rounds', async () => {
  const out = await authExchange('LOGIN', creds, async () => ({ code: 334, text: 'VXNlcm5hbWU6', line: '334 VXNlcm5hbWU6' }));
  assert.equal(out.ok, false);
  assert.equal(out.loop, true);
});
