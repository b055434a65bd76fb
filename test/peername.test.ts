// The client's names as smtpd and qmqpd find them (src/net/peername.ts), with the system's own
// resolver: 127.0.0.1's PTR name (from /etc/hosts) resolves back to it, so it is confirmed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { peerIdentity, peerName } from '../src/net/peername.js';

test('127.0.0.1: its reverse name resolves back to it, so the client name is that name', async () => {
  const id = await peerIdentity('127.0.0.1', true);
  assert.equal(id.reverseStatus, 'ok', JSON.stringify(id));
  assert.equal(id.nameStatus, 'ok', JSON.stringify(id));
  assert.equal(id.name, id.reverseName);
  assert.equal(id.warning, null);
  assert.equal(await peerName('::ffff:127.0.0.1', true), id.name, 'an IPv4-mapped address is the IPv4 address');
});

test('smtpd_peername_lookup = no: both names unknown, as a permanent failure (reject_unknown_client_hostname rejects)', async () => {
  assert.deepEqual(await peerIdentity('127.0.0.1', false), { name: 'unknown', nameStatus: 'perm', reverseName: 'unknown', reverseStatus: 'perm', warning: null });
});
