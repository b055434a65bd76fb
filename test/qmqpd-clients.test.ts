// qmqpd_authorized_clients (actors/qmqpd/clients.ts): Postfix's host-or-address list as qmqpd
// matches it — empty authorizes nobody, networks, names with parent-domain matching, "!"
// negation (the first match decides), /file lists and type:table lookups by name then address.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { AuthorizedClients } from '../actors/qmqpd/clients.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('pa-qmqpd-clients-');

test('the default (empty) authorizes nobody', async () => {
  const c = new AuthorizedClients('', true);
  assert.equal(c.error, null);
  assert.equal(await c.match('localhost', '127.0.0.1'), false);
});

test('addresses and networks, IPv4 and IPv6', async () => {
  const c = new AuthorizedClients('192.0.2.1, 198.51.100.0/24 [2001:db8::]/32', true);
  assert.equal(await c.match('unknown', '192.0.2.1'), true);
  assert.equal(await c.match('unknown', '198.51.100.77'), true);
  assert.equal(await c.match('unknown', '2001:db8::5'), true);
  assert.equal(await c.match('unknown', '192.0.2.2'), false);
});

test('host names: exact, parent domains (qmqpd_authorized_clients in parent_domain_matches_subdomains), .domain', async () => {
  const parent = new AuthorizedClients('lists.example.org', true);
  assert.equal(await parent.match('lists.example.org', '192.0.2.9'), true);
  assert.equal(await parent.match('a.lists.example.org', '192.0.2.9'), true);
  assert.equal(await parent.match('unknown', '192.0.2.9'), false);
  const strict = new AuthorizedClients('lists.example.org', false);
  assert.equal(await strict.match('a.lists.example.org', '192.0.2.9'), false);
  const dot = new AuthorizedClients('.example.org', false);
  assert.equal(await dot.match('a.example.org', '192.0.2.9'), true);
  assert.equal(await dot.match('example.org', '192.0.2.9'), false);
});

test('"!" excludes: the first matching pattern decides', async () => {
  const c = new AuthorizedClients('!192.0.2.66 192.0.2.0/24', true);
  assert.equal(await c.match('unknown', '192.0.2.66'), false);
  assert.equal(await c.match('unknown', '192.0.2.67'), true);
});

test('/file lists and type:table (name, then address, as keys)', async () => {
  const dir = tempDir({ list: '# mailing list hosts\n192.0.2.5\nlists.example.net\n', table: '192.0.2.7 OK\nmx.example.com OK\n' });
  const f = new AuthorizedClients(join(dir, 'list'), true);
  assert.equal(await f.match('unknown', '192.0.2.5'), true);
  assert.equal(await f.match('lists.example.net', '203.0.113.1'), true);
  const t = new AuthorizedClients(`texthash:${join(dir, 'table')}`, true);
  assert.equal(await t.match('unknown', '192.0.2.7'), true);
  assert.equal(await t.match('mx.example.com', '203.0.113.1'), true);
  assert.equal(await t.match('unknown', '203.0.113.1'), false);
});

test('a pattern that cannot be used makes the list an error (qmqpd then answers Z), never a match', async () => {
  const c = new AuthorizedClients('192.0.2.1/33', true);
  assert.match(c.error ?? '', /bad network mask/);
  const missing = new AuthorizedClients('/nonexistent/list', true);
  assert.match(missing.error ?? '', /ENOENT|no such file/i);
});
