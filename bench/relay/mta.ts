/**
 * What the relay benchmark needs from an MTA under test, and helpers shared by the launchers.
 */
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { MASTER_NODE_FLAGS, masterEnvironment } from '../../src/runtime/heap-limits.js';

export interface MtaHandle {
  /** "postactor" or "postfix" or "target". */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** Instance directory (config, queue, log), or '' for an external target. */
  readonly dir: string;
  /** Version or build description for the report. */
  readonly version: string;
  stop(): Promise<void>;
}

/** The repository root: this file is dist/bench/relay/mta.js once compiled. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * How a benchmark starts a Postactor server: as `postactor start` and bin/postactor run the
 * master (src/runtime/heap-limits.ts: MASTER_NODE_FLAGS on the command line, masterEnvironment's
 * malloc settings), so the figures are those of the server users run. `entry` is dist/bin/postactor.js or another build's; `env` is added to the
 * environment first (an operator's LD_PRELOAD or MALLOC_CONF there still wins).
 */
export function postactorCommand(entry: string, dir: string, env: NodeJS.ProcessEnv = {}): { args: string[]; env: NodeJS.ProcessEnv } {
  return { args: [...MASTER_NODE_FLAGS, entry, '-c', dir, 'start-fg'], env: masterEnvironment({ ...process.env, ...env }) };
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** One attempt: connect, read the first reply line; true if it starts with 220. */
export function probe220(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = '';
    let settled = false;
    const sock = net.connect({ host, port });
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (ok) sock.end('QUIT\r\n');
      else sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(buf.startsWith('220'));
      else if (buf.length > 1024) finish(false);
    });
    sock.on('error', () => finish(false));
    sock.on('close', () => finish(false));
  });
}

/**
 * Poll until host:port greets with 220, every 100 ms, for at most timeoutMs.
 * `gaveUp()` may end the wait early (e.g. the child died) by returning a reason.
 */
export async function waitFor220(
  host: string,
  port: number,
  timeoutMs: number,
  gaveUp: () => string | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const why = gaveUp();
    if (why) throw new Error(why);
    if (await probe220(host, port, Math.min(2000, Math.max(100, deadline - Date.now())))) return;
    if (Date.now() >= deadline) throw new Error(`no 220 greeting on ${host}:${port} within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Keep the last `max` bytes of a stream's output, for error messages. */
export class Tail {
  private text = '';
  constructor(private readonly max = 16_384) {}
  push(chunk: Buffer | string): void {
    this.text += chunk.toString();
    if (this.text.length > this.max) this.text = this.text.slice(-this.max);
  }
  toString(): string {
    return this.text;
  }
}
