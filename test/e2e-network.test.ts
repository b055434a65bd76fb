/**
 * End to end, where Postactor listens: a master.cf inet service written as a bare port listens
 * on the addresses of inet_interfaces, filtered by inet_protocols (Postfix's master_ent.c);
 * a service name resolves through /etc/services; a second instance with another queue
 * directory refuses an address the first one serves.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NODE, POSTACTOR_JS, defaultMasterCf, freePort, probe220, startServer, type TestServer } from './helpers/server.js';

/** IPv6 loopback here? (A host without it cannot show the IPv6 half; those checks are skipped.) */
const HAS_V6 = Object.values(networkInterfaces()).flat().some((a) => a?.address === '::1');

/** What a TCP connect to host:port meets: a 220 greeting, a refusal, or something else. */
function outcome(host: string, port: number, timeoutMs = 3000): Promise<'220' | 'refused' | string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (r: string) => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done('timeout'), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code ?? e.message));
    s.on('data', (d) => done(d.toString('latin1').startsWith('220') ? '220' : `said ${d.toString('latin1')}`));
  });
}

/** A bare-port smtpd line, plus the services mail needs. */
function bareMasterCf(service = '{{PORT}}'): string {
  return defaultMasterCf(0).replace(/^127\.0\.0\.1:0 inet/m, `${service} inet`);
}

interface Run { code: number | null; signal: NodeJS.Signals | null; stderr: string }

/** Runs postactor start-fg on dir; it must exit by itself within timeoutMs. */
function startFg(dir: string, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(NODE, [POSTACTOR_JS, '-c', dir, 'start-fg'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stdout.on('data', () => undefined);
    p.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stderr });
    });
  });
}

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function configDir(main: string, master: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-e2e-network-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'main.cf'), `queue_directory = ${dir}/spool\nmaillog_file = ${dir}/maillog\nrelayhost = [127.0.0.1]:9\n${main}`);
  writeFileSync(join(dir, 'master.cf'), master);
  return dir;
}

describe('e2e inet_interfaces and inet_protocols', () => {
  /**
   * A server whose master.cf has, besides its 127.0.0.1:PORT smtpd (the harness's readiness
   * probe), a second smtpd written as a bare port: returns that port.
   */
  async function bareServer(mainCf: Record<string, string>): Promise<{ server: TestServer; bare: number }> {
    const bare = await freePort();
    const server = await startServer({ mainCf, masterCfExtra: `${bare} inet n - n - 2 smtpd` });
    return { server, bare };
  }

  test('inet_interfaces = 127.0.0.1 with a bare port: 127.0.0.1 answers, 127.0.0.2 is refused', async () => {
    const { server, bare } = await bareServer({ inet_interfaces: '127.0.0.1' });
    try {
      assert.equal(await outcome('127.0.0.1', bare), '220');
      assert.equal(await outcome('127.0.0.2', bare), 'refused');
      assert.equal(await outcome('::1', bare), 'refused');
    } finally {
      await server.stop();
    }
  });

  test('inet_protocols = ipv4 with inet_interfaces = all: every IPv4 address answers, [::1] is refused', async () => {
    const { server, bare } = await bareServer({ inet_protocols: 'ipv4' });
    try {
      assert.equal(await outcome('127.0.0.1', bare), '220');
      assert.equal(await outcome('127.0.0.2', bare), '220');
      assert.equal(await outcome('::1', bare), 'refused');
    } finally {
      await server.stop();
    }
  });

  test('the defaults (all, all): IPv4 and IPv6 both answer', async () => {
    const { server, bare } = await bareServer({});
    try {
      assert.equal(await outcome('127.0.0.1', bare), '220');
      assert.equal(await outcome('127.0.0.2', bare), '220');
      if (HAS_V6) assert.equal(await outcome('::1', bare), '220');
    } finally {
      await server.stop();
    }
  });

  test('inet_interfaces = loopback-only: 127.0.0.1 and [::1] answer, 127.0.0.2 is refused; an explicit host:port line listens there only', async () => {
    const bare = await freePort();
    const server = await startServer({
      mainCf: { inet_interfaces: 'loopback-only', inet_protocols: 'ipv4, ipv6' },
      masterCfExtra: `${bare} inet n - n - 2 smtpd`,
    });
    try {
      assert.equal(await outcome('127.0.0.1', bare), '220');
      if (HAS_V6) assert.equal(await outcome('::1', bare), '220');
      assert.equal(await outcome('127.0.0.2', bare), 'refused');
      assert.equal(await outcome('::1', server.port), 'refused', 'the explicit 127.0.0.1 line listens there only');
    } finally {
      await server.stop();
    }
  });

  test('a bad inet_protocols value or an inet_interfaces address of no local interface stops start-up, naming main.cf:LINE', async () => {
    const port = await freePort();
    const master = bareMasterCf(String(port));
    let dir = configDir('inet_protocols = ipv5\n', master);
    let r = await startFg(dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^postactor: fatal: ${dir}/main.cf:4: unknown inet_protocols value "ipv5" in "ipv5"$`, 'm'));
    dir = configDir('inet_interfaces = 192.0.2.199\n', master);
    r = await startFg(dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^postactor: fatal: ${dir}/main.cf:4: parameter inet_interfaces: no local interface found for 192.0.2.199$`, 'm'));
    const check = await new Promise<Run>((resolve) => {
      const p = spawn(NODE, [POSTACTOR_JS, '-c', dir, 'check'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d) => { stderr += d; });
      p.on('close', (code, signal) => resolve({ code, signal, stderr }));
    });
    assert.notEqual(check.code, 0, 'check finds it too');
    assert.match(check.stderr, /no local interface found for 192\.0\.2\.199/);
  });

  test('an unknown service name is "master.cf:LINE: unknown service: NAME/tcp"', async () => {
    const dir = configDir('', bareMasterCf('no-such-mail-service'));
    const r = await startFg(dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`^postactor: fatal: ${dir}/master.cf:1: unknown service: no-such-mail-service/tcp$`, 'm'));
  });
});

describe('e2e one address, one instance', () => {
  test('a second instance with another queue directory refuses the first one\'s address; the first still serves', async () => {
    const first = await startServer();
    try {
      const dir = configDir('', defaultMasterCf(first.port));
      const r = await startFg(dir);
      assert.equal(r.signal, null, 'exited by itself');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`^postactor: fatal: 127\\.0\\.0\\.1:${first.port} is already served by another Postactor instance \\(queue_directory ${first.queueDir}, pid \\d+\\)$`, 'm'));
      assert.ok(await probe220(first.port), 'the first instance still answers');
      // A wildcard listener overlaps it too.
      const wild = configDir('inet_protocols = ipv4\n', bareMasterCf(String(first.port)));
      const w = await startFg(wild);
      assert.notEqual(w.code, 0);
      assert.match(w.stderr, /0\.0\.0\.0:\d+ is already served by another Postactor instance/);
      assert.ok(await probe220(first.port), 'the first instance still answers');
    } finally {
      await first.stop();
    }
  });

  test('after the first instance stops, another queue directory may serve the address', async () => {
    const first = await startServer();
    const port = first.port;
    await first.stop();
    const second = await startServer({ port });
    try {
      assert.ok(await probe220(port));
    } finally {
      await second.stop();
    }
  });
});
