/**
 * A throwaway rsyslog (Debian's rsyslogd) for logging tests: it listens on a UNIX datagram
 * socket in its own temporary directory (never /dev/log), writes the mail facility to
 * DIR/mail.log in the traditional file format (and priority warning and above also to
 * DIR/mail.warn), with rate limiting off, and is killed by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const RSYSLOGD = '/usr/sbin/rsyslogd';

export interface Rsyslog {
  dir: string;
  /** The socket to log to (POSTACTOR_SYSLOG_SOCKET). */
  socket: string;
  /** DIR/mail.log: what arrived with facility mail. */
  file: string;
  /** DIR/mail.warn: facility mail at priority warning or above. */
  warnFile: string;
  lines(): string[];
  /** Resolves once `count` lines match re (polls the file). */
  waitFor(re: RegExp, count: number, timeoutMs: number): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startRsyslog(): Promise<Rsyslog> {
  const dir = mkdtempSync(join(tmpdir(), 'postactor-rsyslog-'));
  const socket = join(dir, 'log');
  const file = join(dir, 'mail.log');
  const warnFile = join(dir, 'mail.warn');
  writeFileSync(join(dir, 'rsyslog.conf'), [
    `global(workDirectory="${dir}")`,
    'module(load="imuxsock" SysSock.Use="off")',
    `input(type="imuxsock" Socket="${socket}" CreatePath="on" RateLimit.Interval="0")`,
    `mail.* action(type="omfile" file="${file}" template="RSYSLOG_TraditionalFileFormat")`,
    `mail.warning action(type="omfile" file="${warnFile}" template="RSYSLOG_TraditionalFileFormat")`,
    '',
  ].join('\n'));
  const child: ChildProcess = spawn(RSYSLOGD, ['-n', '-f', join(dir, 'rsyslog.conf'), '-i', join(dir, 'rsyslog.pid')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  for (let i = 0; i < 100 && !existsSync(socket); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!existsSync(socket)) {
    child.kill('SIGKILL');
    throw new Error(`rsyslogd did not create ${socket}: ${stderr}`);
  }
  const lines = () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : []);
  return {
    dir, socket, file, warnFile, lines,
    async waitFor(re, count, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hits = lines().filter((l) => re.test(l));
        if (hits.length >= count) return hits;
        if (Date.now() > deadline) throw new Error(`${file}: ${hits.length} of ${count} lines match ${re}:\n${lines().join('\n')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
