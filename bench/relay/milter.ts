/**
 * --milter opendkim: one OpenDKIM (Debian's opendkim, signing mode) on a loopback port for the
 * whole benchmark, used by Postactor and Postfix alike through smtpd_milters, so both MTAs pay
 * for the same filter. Its key is made by opendkim-genkey in a temp dir. The tests start it the
 * same way (test/helpers/milter.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const OPENDKIM = '/usr/sbin/opendkim';
const GENKEY = '/usr/sbin/opendkim-genkey';

export interface OpenDkim { port: number; dir: string; child: ChildProcess; stop(): void }

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitListening(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * Starts OpenDKIM signing mail From: `domain` (selector "test") for clients in 127.0.0.0/8.
 * `dir`: where the key and configuration go (a new temp dir when not given; removed by stop()).
 */
export async function startOpenDkim(domain: string, dir?: string): Promise<OpenDkim> {
  if (!existsSync(OPENDKIM) || !existsSync(GENKEY)) throw new Error('opendkim and opendkim-tools are not installed (apt-get install opendkim opendkim-tools)');
  const own = dir === undefined;
  const d = dir ?? mkdtempSync(join(tmpdir(), 'pa-opendkim-'));
  const gen = spawnSync(GENKEY, ['-D', d, '-d', domain, '-s', 'test'], { encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`opendkim-genkey: ${gen.stderr}`);
  const port = await freePort();
  writeFileSync(join(d, 'opendkim.conf'), [
    'Mode sv', `Domain ${domain}`, 'Selector test', `KeyFile ${d}/test.private`,
    `Socket inet:${port}@127.0.0.1`, 'InternalHosts 127.0.0.0/8', 'Syslog no', 'RequireSafeKeys false',
    `PidFile ${d}/opendkim.pid`, 'Canonicalization relaxed/simple', '',
  ].join('\n'));
  const child = spawn(OPENDKIM, ['-f', '-x', join(d, 'opendkim.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => { err += b.toString(); });
  if (!(await waitListening(port, 10_000))) {
    child.kill('SIGKILL');
    throw new Error(`opendkim did not listen on ${port} within 10 s: ${err}`);
  }
  return {
    port, dir: d, child,
    stop: () => {
      child.kill('SIGKILL');
      if (own) rmSync(d, { recursive: true, force: true });
    },
  };
}
