/**
 * Where an inet service listens, without starting a server: inet_protocols parsing, the
 * addresses of inet_interfaces, a service's own host part, and service names from a
 * services(5) file (the system's /etc/services and a throwaway one).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { configFromJSON } from '../src/config/index.js';
import { parseInetProtocols } from '../src/address/inet-protocols.js';
import { servicePort } from '../src/net/services.js';
import { interfaceListenHosts, serviceListenAddresses } from '../src/net/listen.js';

const dir = mkdtempSync(join(tmpdir(), 'postactor-listen-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = (params: Record<string, string>) => configFromJSON({ configDirectory: null, params, services: [] });
const BOTH = { ipv4: true, ipv6: true };
const V4 = { ipv4: true, ipv6: false };
const V6 = { ipv4: false, ipv6: true };

test('inet_protocols: all, ipv4, ipv6 and lists; an unknown name in Postfix\'s words', () => {
  assert.deepEqual(parseInetProtocols('all'), BOTH);
  assert.deepEqual(parseInetProtocols('ipv4'), V4);
  assert.deepEqual(parseInetProtocols('ipv6'), V6);
  assert.deepEqual(parseInetProtocols('ipv4, ipv6'), BOTH);
  assert.deepEqual(parseInetProtocols('ipv6 ipv4'), BOTH);
  assert.equal(parseInetProtocols('ipv4, IPv6'), 'unknown inet_protocols value "IPv6" in "ipv4, IPv6"');
});

test('inet_interfaces = all listens on the wildcard address of each allowed family', async () => {
  assert.deepEqual(await interfaceListenHosts(config({}), BOTH), [{ host: '0.0.0.0' }, { host: '::', ipv6Only: true }]);
  assert.deepEqual(await interfaceListenHosts(config({}), V4), [{ host: '0.0.0.0' }]);
  assert.deepEqual(await interfaceListenHosts(config({ inet_interfaces: 'ALL' }), V6), [{ host: '::', ipv6Only: true }]);
});

test('inet_interfaces = loopback-only: the loopback interface addresses of the allowed families', async () => {
  assert.deepEqual(await interfaceListenHosts(config({ inet_interfaces: 'loopback-only' }), V4), [{ host: '127.0.0.1' }]);
  assert.deepEqual(await interfaceListenHosts(config({ inet_interfaces: 'loopback-only' }), V6), [{ host: '::1' }]);
});

test('inet_interfaces lists: addresses and host names, filtered by inet_protocols, each a local interface', async () => {
  assert.deepEqual(await interfaceListenHosts(config({ inet_interfaces: '127.0.0.1, [::1]' }), BOTH), [{ host: '127.0.0.1' }, { host: '::1' }]);
  // As in Postfix, an address that inet_protocols excludes is "not found".
  await assert.rejects(interfaceListenHosts(config({ inet_interfaces: '127.0.0.1 ::1' }), V4),
    { message: '(embedded)/main.cf: config variable inet_interfaces: host not found: ::1' });
  const localhost = await interfaceListenHosts(config({ inet_interfaces: 'localhost' }), V4);
  assert.deepEqual(localhost, [{ host: '127.0.0.1' }]);
  await assert.rejects(interfaceListenHosts(config({ inet_interfaces: '127.0.0.1, 192.0.2.199' }), BOTH),
    { message: '(embedded)/main.cf: parameter inet_interfaces: no local interface found for 192.0.2.199' });
  await assert.rejects(interfaceListenHosts(config({ inet_interfaces: 'no-such-host.invalid' }), BOTH),
    { message: '(embedded)/main.cf: config variable inet_interfaces: host not found: no-such-host.invalid' });
});

test('a service\'s host part is used as written, filtered by inet_protocols', async () => {
  const ifs = [{ host: '0.0.0.0' }];
  assert.deepEqual(await serviceListenAddresses({ host: null, port: 25 }, 'master.cf:1', ifs, V4), [{ host: '0.0.0.0', port: 25 }]);
  assert.deepEqual(await serviceListenAddresses({ host: '127.0.0.2', port: 2525 }, 'master.cf:1', ifs, V4), [{ host: '127.0.0.2', port: 2525 }]);
  assert.deepEqual(await serviceListenAddresses({ host: '::1', port: 2525 }, 'master.cf:1', ifs, BOTH), [{ host: '::1', port: 2525 }]);
  await assert.rejects(serviceListenAddresses({ host: '::1', port: 2525 }, 'master.cf:3', ifs, V4),
    { message: 'master.cf:3: bad hostname or network address: ::1' });
  await assert.rejects(serviceListenAddresses({ host: null, port: 25 }, 'master.cf:4', [], V4), /master\.cf:4: no address to listen on/);
});

test('service names: numbers, names and aliases from a services file; unknown names are null', () => {
  const file = join(dir, 'services');
  writeFileSync(file, '# services\nsmtp\t\t2500/tcp\t\tmail\nsubmissions\t465/tcp\t\tssmtp smtps # TLS\nmysvc 2587/tcp\nmysvc 2588/udp\n');
  assert.equal(servicePort('25', 'tcp', file), 25);
  assert.equal(servicePort('smtp', 'tcp', file), 25, 'known_tcp_ports comes first');
  assert.equal(servicePort('mail', 'tcp', file), 2500, 'an alias');
  assert.equal(servicePort('ssmtp', 'tcp', file), 465);
  assert.equal(servicePort('mysvc', 'tcp', file), 2587);
  assert.equal(servicePort('mysvc', 'udp', file), 2588);
  assert.equal(servicePort('submission', 'tcp', file), 587);
  assert.equal(servicePort('http', 'tcp', file), null);
  assert.equal(servicePort('70000', 'tcp', file), null);
  // No file at all (a container without netbase): the mail service names still resolve.
  assert.equal(servicePort('lmtp', 'tcp', join(dir, 'missing')), 24);
  assert.equal(servicePort('mysvc', 'tcp', join(dir, 'missing')), null);
});

test('service names through the system\'s /etc/services, as getservbyname sees them', () => {
  assert.equal(servicePort('smtp'), 25);
  assert.equal(servicePort('submission'), 587);
  assert.equal(servicePort('submissions'), 465);
  assert.equal(servicePort('qmtp'), 209, 'a name only /etc/services knows');
  assert.equal(servicePort('no-such-mail-service'), null);
});
