/**
 * The XCLIENT/XFORWARD attribute rules without a server: what our smtp client forwards
 * (src/smtp/xforward.ts, after Postfix's smtp_proto.c) and how smtpd reads the attributes
 * (src/smtpd/xattrs.ts, actors/smtpd/xclient.ts, xforward.ts, after smtpd.c).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { xforwardAttrs, xforwardCommands, xforwardKeywords } from '../src/smtp/xforward.js';
import { parseXclient } from '../actors/smtpd/xclient.js';
import { clientLineTail, parseXforward } from '../actors/smtpd/xforward.js';
import { normalizeAddress, validHostname, xtextDecode } from '../src/smtpd/xattrs.js';

const ALL = xforwardKeywords('XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT')!;

describe('smtp client XFORWARD', () => {
  test('two commands in Postfix\'s order, values xtext-encoded', () => {
    const cmds = xforwardCommands(ALL, { name: 'origin.example.org', addr: '192.0.2.7', port: '4711', proto: 'ESMTP', helo: 'we ird=+', ident: '4abc', source: 'REMOTE' });
    assert.deepEqual(cmds, [
      { line: 'XFORWARD NAME=origin.example.org ADDR=192.0.2.7 PORT=4711', what: 'XFORWARD name/address command' },
      { line: 'XFORWARD PROTO=ESMTP HELO=we+20ird+3D+2B IDENT=4abc SOURCE=REMOTE', what: 'XFORWARD helo/protocol command' },
    ]);
  });

  test('only what the server announced, and "unknown" names, addresses and ports are left out', () => {
    const cmds = xforwardCommands(xforwardKeywords('XFORWARD NAME ADDR IDENT')!, { name: 'unknown', addr: '192.0.2.7', port: 'unknown', proto: 'ESMTP', ident: 'Q1', source: 'LOCAL' });
    assert.deepEqual(cmds.map((c) => c.line), ['XFORWARD ADDR=192.0.2.7', 'XFORWARD IDENT=Q1']);
    assert.equal(xforwardKeywords('XCLIENT NAME ADDR'), null);
  });

  test('a local submission forwards its queue ID and SOURCE=LOCAL only', () => {
    const a = xforwardAttrs({ queueId: 'Q2' });
    assert.deepEqual(a, { ident: 'Q2', source: 'LOCAL' });
    assert.deepEqual(xforwardCommands(ALL, a).map((c) => c.line), ['XFORWARD IDENT=Q2 SOURCE=LOCAL']);
  });

  test('smtpd mail forwards its client; mail that came with XFORWARD forwards the original', () => {
    const client = { name: 'mx.example.net', addr: '198.51.100.1', port: 25000, helo: 'mx.example.net', protocol: 'ESMTP' as const };
    assert.deepEqual(xforwardAttrs({ queueId: 'Q3', client }), { name: 'mx.example.net', addr: '198.51.100.1', port: '25000', proto: 'ESMTP', helo: 'mx.example.net', ident: 'Q3', source: 'REMOTE' });
    assert.equal(xforwardAttrs({ queueId: 'Q3', client: { ...client, rewriteLocal: true } }).source, 'LOCAL');
    const forwarded = { name: 'origin.example.org', addr: '192.0.2.7', port: 'unknown', protocol: 'SMTP', ident: 'FIRST', source: 'REMOTE' as const, forwardedClient: true };
    assert.deepEqual(xforwardAttrs({ queueId: 'Q4', client: { ...client, forwarded } }), { name: 'origin.example.org', addr: '192.0.2.7', port: 'unknown', proto: 'SMTP', ident: 'FIRST', source: 'REMOTE' });
  });
});

describe('smtpd XCLIENT / XFORWARD attributes', () => {
  test('XCLIENT: [UNAVAILABLE] and [TEMPUNAVAIL], IPv6 addresses, xtext', () => {
    assert.deepEqual(parseXclient(['NAME=[TEMPUNAVAIL]', 'ADDR=IPv6:2001:DB8::1', 'PORT=[UNAVAILABLE]', 'HELO=a+20b', 'proto=esmtp']),
      { name: 'unknown', nameStatus: 'temp', addr: '2001:db8::1', port: 0, helo: 'a?b', proto: 'ESMTP' });
    // NAME and REVERSE_NAME carry how the name was found (reject_unknown_client_hostname).
    assert.deepEqual(parseXclient(['NAME=[UNAVAILABLE]', 'REVERSE_NAME=ptr.example']), { name: 'unknown', nameStatus: 'perm', reverseName: 'ptr.example', reverseStatus: 'ok' });
    assert.deepEqual(parseXclient(['NAME=host.example']), { name: 'host.example', nameStatus: 'ok' });
    assert.deepEqual(parseXclient(['ADDR=::ffff:192.0.2.1']), { addr: '192.0.2.1' });
    assert.deepEqual(parseXclient(['LOGIN=[UNAVAILABLE]', 'DESTADDR=192.0.2.2', 'DESTPORT=25']), { login: null, destAddr: '192.0.2.2', destPort: 25 });
    assert.deepEqual(parseXclient(['ADDR=IPv6:192.0.2.1']), { code: 501, text: '5.5.4 Bad ADDR syntax: IPv6:192.0.2.1' });
  });

  test('XFORWARD: attributes accumulate over commands; the log tail names what was forwarded', () => {
    const one = parseXforward(['IDENT=ABC'], null);
    assert.ok(!('code' in one));
    assert.equal(clientLineTail(one.attrs), ', orig_queue_id=ABC');
    const two = parseXforward(['NAME=spike.example.org', 'ADDR=192.0.2.9'], one.attrs);
    assert.ok(!('code' in two));
    assert.deepEqual(two.flags, { client: true, namaddr: true });
    assert.equal(clientLineTail({ ...two.attrs, forwardedClient: true }), ', orig_queue_id=ABC, orig_client=spike.example.org[192.0.2.9]');
    const evil = parseXforward(['HELO=<evil>'], null);
    assert.ok(!('code' in evil));
    assert.equal(evil.attrs.helo, '?evil?');
  });

  test('Postfix\'s hostname, address and xtext rules', () => {
    assert.ok(validHostname('mail-1.example_org.test.'));
    assert.ok(!validHostname('-bad.example'));
    assert.ok(!validHostname('192.0.2.1'));
    assert.equal(normalizeAddress('300.1.2.3'), null);
    assert.equal(xtextDecode('a+2'), null);
    assert.equal(xtextDecode('a+2Bb'), 'a+b');
  });
});
