/**
 * postscreen's parts on their own: DNSBL site syntax and scoring, the DNS names asked, the
 * cache record and its cleanup (a real queue store in a temp directory), the PROXY header
 * reader (real sockets on loopback), and Postfix's time and text formats.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import os from 'node:os';
import { after, describe, test } from 'node:test';
import { QueueStore } from '../src/queue/store.js';
import { loadConfig } from '../src/config/index.js';
import { checkConfig } from '../actors/master/index.js';
import { PostscreenCache } from '../src/postscreen/cache.js';
import { dnsblQueryName, dnsblScore, parseDnsblSites, type DnsblAnswer } from '../src/postscreen/dnsbl.js';
import { readProxyHeader, type Endpoints } from '../src/postscreen/haproxy.js';
import { escapeText, formatDelta } from '../src/postscreen/misc.js';
import { postscreenSettings, type PostscreenSettings } from '../src/postscreen/settings.js';
import { newState, parseTests, printTests } from '../src/postscreen/tests.js';
import { tempDirs } from './helpers/temp.js';

const tempDir = tempDirs('postactor-postscreen-');

describe('postscreen_dnsbl_sites', () => {
  test('domain[=filter][*weight], weight 1 by default, negative weights allowed', () => {
    const s = parseDnsblSites('zen.example*2, wl.example=127.0.[0..255].[2;3]*-5 b.example=127.0.0.4');
    assert.deepEqual(s.map((x) => [x.domain, x.filter, x.weight]), [
      ['zen.example', null, 2], ['wl.example', '127.0.[0..255].[2;3]', -5], ['b.example', '127.0.0.4', 1],
    ]);
  });
  test('bad syntax is refused with Postfix\'s texts', () => {
    assert.throws(() => parseDnsblSites('zen.example*x'), /bad DNSBL weight factor "x" in "zen.example\*x"/);
    assert.throws(() => parseDnsblSites('zen.example=127.0.0'), /bad DNSBL filter syntax/);
    assert.throws(() => parseDnsblSites('zen.example=127.0.0.[5..2]'), /bad DNSBL filter syntax/);
    assert.throws(() => parseDnsblSites('bad_name!'), /bad DNSBL domain name/);
  });
  test('scoring: each matching entry adds its weight; the name shown is the heaviest listing; TTL clamped', () => {
    const sites = parseDnsblSites('zen.example*2 zen.example=127.0.0.10*3 wl.example=127.0.[0..255].2*-5');
    const answers = new Map<string, DnsblAnswer>([['zen.example', { addrs: ['127.0.0.10'], ttl: 30 }]]);
    const named = (d: string) => (d === 'zen.example' ? 'hidden.example' : d);
    assert.deepEqual(dnsblScore(sites, answers, named, 60, 3600), { score: 5, name: 'hidden.example', ttl: 60 });
    answers.set('wl.example', { addrs: ['127.0.9.2'], ttl: 7200 });
    assert.deepEqual(dnsblScore(sites, answers, named, 60, 3600).score, 0);
    // A filter that does not match adds nothing.
    const one = new Map<string, DnsblAnswer>([['zen.example', { addrs: ['127.0.0.4'], ttl: 300 }]]);
    assert.deepEqual(dnsblScore(sites, one, named, 60, 3600), { score: 2, name: 'hidden.example', ttl: 300 });
    // Not listed anywhere: the pass TTL, or the minimum when none is known.
    assert.deepEqual(dnsblScore(sites, new Map([['zen.example', { addrs: [], ttl: -1 }]]), named, 60, 3600), { score: 0, name: null, ttl: 60 });
  });
  test('the names asked: reversed octets, and 32 reversed nibbles for IPv6', () => {
    assert.equal(dnsblQueryName('192.0.2.1', 'zen.example'), '1.2.0.192.zen.example');
    assert.equal(dnsblQueryName('2001:db8::1', 'zen.example'), `1.${'0.'.repeat(23)}8.b.d.0.1.0.0.2.zen.example`);
  });
});

const SETTINGS = {
  greetBanner: 'x', dnsblSites: parseDnsblSites('zen.example'),
  pipelining: { enable: false }, nonSmtp: { enable: false }, bareNewline: { enable: false },
  cacheRetention: 7 * 86400, cacheCleanupInterval: 0,
} as unknown as PostscreenSettings;

describe('the postscreen cache', () => {
  test('a record: five expiry times; a disabled test never passed is stored as 1', () => {
    const st = newState();
    st.expire[0] = 1000;
    st.expire[1] = 2000;
    assert.equal(printTests(SETTINGS, st), '1000;2000;1;1;1');
    parseTests(SETTINGS, st, '1000;2000;1;1;1', 1500);
    assert.deepEqual(st.todo, [true, false, false, false, false]);
    assert.equal(st.isNew, false);
    parseTests(SETTINGS, st, 'garbage', 1500);
    assert.equal(st.isNew, true);
  });

  test('cleanup drops entries whose tests all expired longer ago than the retention time', async () => {
    const store = QueueStore.open(tempDir());
    const cache = new PostscreenCache(store, SETTINGS, 'btree:/x/postscreen_cache');
    const now = Math.floor(Date.now() / 1000);
    const old = now - 8 * 86400;
    await store.putPostscreenEntry('192.0.2.1', `${now + 3600};${now + 3600};1;1;1`);
    await store.putPostscreenEntry('192.0.2.2', `${old};${old};1;1;1`);
    await store.putPostscreenEntry('192.0.2.3', `${now - 86400};${now - 86400};1;1;1`);
    const lines: string[] = [];
    assert.deepEqual(await cache.cleanup((l) => lines.push(l)), { retained: 2, dropped: 1 });
    assert.deepEqual(lines, ['cache btree:/x/postscreen_cache full cleanup: retained=2 dropped=1 entries']);
    assert.equal(cache.lookup('192.0.2.2'), undefined);
    assert.ok(cache.lookup('192.0.2.1'));
  });
});

describe('the haproxy PROXY header', () => {
  const servers: net.Server[] = [];
  after(() => { for (const s of servers) s.close(); });

  /** Sends `bytes` to a loopback server that reads the header; resolves with what it found and what followed. */
  async function exchange(bytes: Buffer): Promise<{ ep: Endpoints | null; rest: string; warnings: string[] }> {
    const warnings: string[] = [];
    let done!: (v: { ep: Endpoints | null; rest: string; warnings: string[] }) => void;
    const result = new Promise<{ ep: Endpoints | null; rest: string; warnings: string[] }>((r) => { done = r; });
    const server = net.createServer((socket) => {
      void readProxyHeader(socket, 2, (w) => warnings.push(w)).then((ep) => {
        let rest = '';
        socket.setEncoding('latin1');
        socket.on('data', (d: string) => { rest += d; });
        socket.resume();
        setTimeout(() => { socket.destroy(); done({ ep, rest, warnings }); }, 100);
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1', () => c.write(bytes));
    c.on('error', () => undefined);
    const r = await result;
    c.destroy();
    return r;
  }

  test('v1: the endpoints, and the bytes after the header stay for the session', async () => {
    const r = await exchange(Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n'));
    assert.deepEqual(r.ep, { clientAddr: '192.0.2.7', clientPort: 40000, serverAddr: '198.51.100.1', serverPort: 25 });
    assert.equal(r.rest, 'EHLO x\r\n');
  });
  test('v1 UNKNOWN keeps the socket\'s own endpoints', async () => {
    const r = await exchange(Buffer.from('PROXY UNKNOWN\r\n'));
    assert.equal(r.ep?.clientAddr, '127.0.0.1');
  });
  test('v2 (binary) with IPv6 addresses', async () => {
    const h = Buffer.alloc(16 + 36);
    Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1').copy(h);
    h[12] = 0x21;
    h[13] = 0x21;
    h.writeUInt16BE(36, 14);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(h, 16);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(h, 32);
    h.writeUInt16BE(40001, 48);
    h.writeUInt16BE(25, 50);
    const r = await exchange(Buffer.concat([h, Buffer.from('QUIT\r\n')]));
    assert.deepEqual(r.ep, { clientAddr: '2001:db8::7', clientPort: 40001, serverAddr: '2001:db8::1', serverPort: 25 });
    assert.equal(r.rest, 'QUIT\r\n');
  });
  test('a bad header is logged as Postfix logs it', async () => {
    const r = await exchange(Buffer.from('PROXY TCP4 192.0.2.7 nonsense 1 2\r\n'));
    assert.equal(r.ep, null);
    assert.deepEqual(r.warnings, ['haproxy read: bad or missing server address: PROXY TCP4 192.0.2.7 nonsense 1 2\\r\\n']);
  });
});

describe('formats', () => {
  test('elapsed times as format_tv with 2 significant digits', () => {
    assert.equal(formatDelta(12.3), '0.01');
    assert.equal(formatDelta(6000), '6');
    assert.equal(formatDelta(1234), '1.2');
    assert.equal(formatDelta(0.2), '0');
  });
  test('escape(): C escapes and octal', () => {
    assert.equal(escapeText(Buffer.from('EHLO x\r\n\x01\\é', 'latin1')), 'EHLO x\\r\\n\\001\\\\\\351');
  });
});

describe('postactor check with postscreen lines', () => {
  const backend = 'cleanup unix n - n - 1 cleanup\nqmgr unix n - n 300 1 qmgr\n';
  const check = (main: string, master: string) => checkConfig(loadConfig(tempDir({ 'main.cf': `queue_directory = ${os.tmpdir()}/pa-q\n${main}`, 'master.cf': master + backend })));

  test('Debian\'s shape is accepted; the old parameter names work', () => {
    const master = '127.0.0.1:2598 inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\ndnsblog unix - - y - 0 dnsblog\n';
    assert.deepEqual(check('postscreen_dnsbl_sites = zen.example*2\npostscreen_blacklist_action = drop\npostscreen_dnsbl_ttl = 2h\n', master), []);
  });
  test('the old names set the new parameters (postscreen_blacklist_action, …_whitelist_…, postscreen_dnsbl_ttl)', () => {
    const dir = tempDir({
      'main.cf': 'postscreen_blacklist_action = drop\npostscreen_dnsbl_whitelist_threshold = -2\npostscreen_dnsbl_ttl = 2h\npostscreen_whitelist_interfaces = 192.0.2.1\n',
      'master.cf': '',
    });
    const ps = postscreenSettings(loadConfig(dir));
    assert.equal(ps.denylistAction, 'drop');
    assert.equal(ps.dnsblAllowlistThreshold, -2);
    assert.equal(ps.dnsblMaxTtl, 7200);
    assert.equal(ps.allowlistInterfaces('192.0.2.1'), true);
    assert.equal(ps.allowlistInterfaces('192.0.2.2'), false);
  });

  test('postscreen without its pass service, DNSBL sites without dnsblog, and bad values are refused with where they are', () => {
    const alone = check('', '127.0.0.1:2598 inet n - y - 1 postscreen\n');
    assert.equal(alone.length, 1, alone.join('; '));
    assert.match(alone[0]!, /master\.cf:1: service "127\.0\.0\.1:2598" \(command postscreen\): no "pass" service for smtpd/);
    const noLog = check('postscreen_dnsbl_sites = zen.example\n', '127.0.0.1:2598 inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\n');
    assert.match(noLog.join('\n'), /master\.cf:1: postscreen_dnsbl_sites is set, but master\.cf has no "dnsblog" service/);
    const bad = check('postscreen_greet_action = bounce\n', '127.0.0.1:2598 inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\n');
    assert.match(bad.join('\n'), /master\.cf:1: bad postscreen_greet_action value: bounce/);
    const weight = check('postscreen_dnsbl_sites = zen.example*x\n', '127.0.0.1:2598 inet n - y - 1 postscreen\nsmtpd pass - - y - - smtpd\ndnsblog unix - - y - 0 dnsblog\n');
    assert.match(weight.join('\n'), /bad DNSBL weight factor "x" in "zen\.example\*x"/);
    const passAlone = check('', '127.0.0.1:2598 inet n - n - 1 smtpd\nsmtpd pass - - y - - smtpd\n');
    assert.match(passAlone.join('\n'), /master\.cf:2: service "smtpd" \(command smtpd\): no postscreen service hands clients to it/);
  });
});
