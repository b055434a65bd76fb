/**
 * Start Postactor as a child process on a throwaway config directory, as the relay
 * benchmark's MTA under test.
 *
 *   <tmp>/main.cf    queue_directory = <tmp>/spool, relayhost = [127.0.0.1]:SINKPORT, …
 *   <tmp>/master.cf  127.0.0.1:PORT inet … smtpd, cleanup, qmgr, smtp, relay, bounce
 *
 * and runs `node dist/bin/postactor.js -c <tmp> start-fg` with the same Node binary as the
 * bench, with the flags and environment `postactor start` gives the master (mta.ts,
 * postactorCommand). Ready = the port greets with 220 (20 s at most; the error shows the child's stderr).
 * Stop = SIGTERM, then SIGKILL after 10 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, postactorCommand, REPO_ROOT, Tail, waitFor220, type MtaHandle } from './mta.js';
import { QueueStore } from '../../src/queue/store.js';

export interface PostactorOptions {
  sinkPort: number;
  /** Listening port; 0 = pick a free one. */
  port?: number;
  smtpdThreads: number;
  cleanupThreads: number;
  smtpThreads: number;
  /** Keep the temp dir (maillog, postactor.log) after stopping. */
  keep?: boolean;
  /** Log to <tmp>/maillog instead of /dev/null. */
  maillog?: boolean;
  readyTimeoutMs?: number;
  /** The entry point to run (default dist/bin/postactor.js). */
  entry?: string;
  /** main.cf lines appended after the bench's own (and after POSTACTOR_BENCH_MAIN_CF's). */
  extraMainCf?: string;
  /** Runs once the instance directory and its config exist, before the server starts (e.g. to fill the queue). */
  prepare?: (dir: string) => Promise<void> | void;
  /** Reuse this instance directory (a restart on the same queue); its config is rewritten. */
  dir?: string;
  /**
   * postscreen in front of smtpd (Debian's master.cf shape), with no permanent allowlist, so
   * every connection is screened; the generator's address starts in the cache (PASS OLD), as
   * a returning sender's would: the per-connection cost of the screen, not the greet wait.
   */
  postscreen?: boolean;
  /** The queue manager's master.cf command: qmgr (default) or oqmgr (Postfix's old scheduler). */
  queueManager?: 'qmgr' | 'oqmgr';
}

export const POSTACTOR_ENTRY = path.join(REPO_ROOT, 'dist/bin/postactor.js');

export function postactorMainCf(dir: string, sinkPort: number, maillog: boolean): string {
  return [
    '# Written by bench/relay/postactor.ts for one benchmark run',
    `queue_directory = ${dir}/spool`,
    'myhostname = postactor-bench.localdomain',
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'mynetworks = 127.0.0.0/8',
    'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
    `relayhost = [127.0.0.1]:${sinkPort}`,
    `maillog_file = ${maillog ? `${dir}/maillog` : '/dev/null'}`,
    '',
  ].join('\n');
}

export function postactorMasterCf(port: number, o: Pick<PostactorOptions, 'smtpdThreads' | 'cleanupThreads' | 'smtpThreads' | 'postscreen' | 'queueManager'>): string {
  return [
    '# service type  private unpriv  chroot  wakeup  maxproc command',
    ...(o.postscreen
      ? [`127.0.0.1:${port} inet n - n - 1 postscreen`, `smtpd pass - - n - ${o.smtpdThreads} smtpd`]
      : [`127.0.0.1:${port} inet n - n - ${o.smtpdThreads} smtpd`]),
    `cleanup unix n - n - ${o.cleanupThreads} cleanup`,
    `qmgr unix n - n 300 1 ${o.queueManager ?? 'qmgr'}`,
    `smtp unix - - n - ${o.smtpThreads} smtp`,
    `relay unix - - n - ${o.smtpThreads} smtp`,
    'bounce unix - - n - 0 bounce',
    '',
  ].join('\n');
}

export async function startPostactor(o: PostactorOptions): Promise<MtaHandle & { pid: number }> {
  const entry = o.entry ?? POSTACTOR_ENTRY;
  if (!existsSync(entry)) {
    throw new Error(`postactor: ${entry} does not exist (build first: node_modules/.bin/tsc -p tsconfig.json)`);
  }
  const port = o.port || (await freePort());
  const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'postactor-bench-'));
  // POSTACTOR_BENCH_MAIN_CF=FILE: lines appended to main.cf (e.g. tables loaded for a comparison).
  const extra = process.env.POSTACTOR_BENCH_MAIN_CF ? readFileSync(process.env.POSTACTOR_BENCH_MAIN_CF, 'utf8') : '';
  writeFileSync(path.join(dir, 'main.cf'), postactorMainCf(dir, o.sinkPort, o.maillog ?? true) + extra + (o.extraMainCf ?? '')
    + (o.postscreen ? 'postscreen_access_list =\n' : ''));
  writeFileSync(path.join(dir, 'master.cf'), postactorMasterCf(port, o));
  if (o.postscreen) {
    // The generator's address has passed every enabled test recently (a cache entry for a day).
    const store = QueueStore.open(path.join(dir, 'spool'));
    const until = Math.floor(Date.now() / 1000) + 86400;
    await store.putPostscreenEntry('127.0.0.1', `${until};1;1;1;1`);
    await store.close();
  }
  if (o.prepare) await o.prepare(dir);

  const log = createWriteStream(path.join(dir, 'postactor.log'), { flags: 'a' });
  const stderr = new Tail();
  const command = postactorCommand(entry, dir);
  const child: ChildProcess = spawn(process.execPath, command.args, {
    env: command.env,
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exited: string | null = null;
  const exitedP = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `postactor exited (${signal ?? `code ${code}`})`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `postactor could not start: ${err.message}`;
      resolve();
    });
  });
  child.stdout!.on('data', (d: Buffer) => log.write(d));
  child.stderr!.on('data', (d: Buffer) => {
    stderr.push(d);
    log.write(d);
  });

  const stop = async (): Promise<void> => {
    if (exited === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exitedP;
      clearTimeout(killer);
    }
    await new Promise<void>((r) => log.end(r));
    if (!o.keep) rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitFor220('127.0.0.1', port, o.readyTimeoutMs ?? 20_000, () => exited);
  } catch (err) {
    await stop();
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`postactor did not become ready on 127.0.0.1:${port}: ${msg}\n--- postactor stderr ---\n${stderr.toString() || '(empty)'}`);
  }
  return { name: 'postactor', host: '127.0.0.1', port, dir, version: postactorVersion(), stop, pid: child.pid ?? 0 };
}

function postactorVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version?: string };
    return `postactor ${pkg.version ?? '?'}`;
  } catch {
    return 'postactor';
  }
}
