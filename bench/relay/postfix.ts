/**
 * Start Debian's Postfix as a throwaway relay-only peer through bench/postfix-peer.sh
 * (which holds the configuration and the reasons for it).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, REPO_ROOT, type MtaHandle } from './mta.js';

const run = promisify(execFile);
export const PEER_SCRIPT = path.join(REPO_ROOT, 'bench/postfix-peer.sh');

export class PostfixNotInstalled extends Error {
  constructor() {
    super('postfix not installed');
  }
}

/** The installed Postfix version, or null when Postfix is not installed. */
export async function postfixVersion(): Promise<string | null> {
  try {
    await run('sh', [PEER_SCRIPT, 'check']);
  } catch {
    return null;
  }
  try {
    const { stdout } = await run('/usr/sbin/postconf', ['-d', '-h', 'mail_version']);
    return `postfix ${stdout.trim()}`;
  } catch {
    return 'postfix';
  }
}

export interface PostfixOptions {
  sinkPort: number;
  /**
   * Where the peer listens. Tests pass test/helpers/server.ts's freePort (below the kernel's
   * ephemeral range, reserved across test processes): without it a port from the ephemeral
   * range is picked here, and an outgoing connection of another test can take it in the seconds
   * before Postfix's master binds it ("bind 127.0.0.1 port N: Address already in use").
   */
  port?: number;
  keep?: boolean;
  /** main.cf lines added after the peer's own (POSTFIX_PEER_EXTRA). */
  extraMainCf?: string;
}

export async function startPostfix(o: PostfixOptions): Promise<MtaHandle> {
  const version = await postfixVersion();
  if (version === null) throw new PostfixNotInstalled();
  const port = o.port || (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'postfix-bench-'));
  const stop = async (): Promise<void> => {
    await run('sh', [PEER_SCRIPT, 'stop', dir], { timeout: 30_000 }).catch((err: Error) => {
      console.error(`postfix-peer stop: ${err.message}`);
    });
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await run('sh', [PEER_SCRIPT, 'start', dir, String(port), String(o.sinkPort)], {
      timeout: 120_000,
      env: { ...process.env, POSTFIX_PEER_EXTRA: o.extraMainCf ?? '' },
    });
  } catch (err) {
    const e = err as { code?: number; signal?: string; stderr?: string; stdout?: string; message: string };
    await stop();
    if (e.code === 3) throw new PostfixNotInstalled();
    throw new Error(`postfix peer did not start: ${e.message}${e.signal ? ` (killed by ${e.signal})` : ''}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  return { name: 'postfix', host: '127.0.0.1', port, dir, version, stop };
}
