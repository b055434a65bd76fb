/**
 * Throwaway database and cache servers for the lookup-table tests: PostgreSQL 15, MariaDB and
 * memcached (Debian's packages; `.ci/run` installs them), each started in a fresh directory
 * under os.tmpdir() on a free loopback port, and stopped (directory removed) by stop().
 *
 * PostgreSQL and MariaDB refuse to run as root, and CI runs as root: then the server runs as
 * `nobody`, in a directory it owns inside a reachableDir (the checkout may be 0700). Start-up
 * is made quick (no fsync, small buffers); one instance serves all the tests of a file.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { reachableDir } from './reachable.js';
import { freePort } from './server.js';
import { needs } from './peers.js';

export const PG_BIN = '/usr/lib/postgresql/15/bin';
const ROOT = process.getuid?.() === 0;
const NOBODY = 65534;

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

/** `skip` for a test that needs a server binary: a reason outside CI when it is missing, else false. */
export function needsServer(path: string, pkg: string): string | false {
  return needs(path, `the ${basename(path)} server (${pkg})`);
}

/**
 * argv run as nobody when we are root (the servers refuse root), else as is. setpriv execs the
 * server in place (runuser would stay as its parent and not pass SIGINT on), so the signals
 * the tests send reach the server itself.
 */
function asServerUser(argv: string[]): [string, string[]] {
  return ROOT ? ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', ...argv]] : [argv[0]!, argv.slice(1)];
}

/** A fresh directory the server user owns (inside a directory everyone can enter). */
function serverDir(prefix: string): { top: string; data: string } {
  const top = reachableDir(prefix);
  const data = join(top, 'data');
  mkdirSync(data, { mode: 0o700 });
  if (ROOT) chownSync(data, NOBODY, NOBODY);
  return { top, data };
}

function run(argv: string[], what: string): void {
  const [cmd, args] = asServerUser(argv);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr || r.stdout}`);
}

async function until(ready: () => Promise<boolean>, child: ChildProcess, what: string, log: () => string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}): ${log()}`);
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms: ${log()}`);
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => { clearTimeout(t); live.delete(child); resolve(); });
    child.kill(signal);
  });
}

export interface DbServer {
  port: number;
  /** PostgreSQL: the directory of its UNIX-domain socket. */
  socketDir?: string;
  /** Runs SQL as the superuser (several statements allowed for MariaDB; one at a time for PostgreSQL). */
  sql(text: string, params?: unknown[]): Promise<unknown[]>;
  /** Stops the server (the directory stays until remove()). */
  down(): Promise<void>;
  /** Starts it again on the same directory and port. */
  up(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

/** PostgreSQL 15: trust authentication on 127.0.0.1, superuser "postgres", database "postgres". */
export async function startPostgres(): Promise<DbServer> {
  const { top, data } = serverDir('pg-');
  run([join(PG_BIN, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--no-locale'], 'initdb');
  const port = await freePort();
  let child: ChildProcess;
  let stderr = '';
  const admin = () => new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  const up = async () => {
    const [cmd, args] = asServerUser([join(PG_BIN, 'postgres'), '-D', data, '-k', data, '-h', '127.0.0.1', '-p', String(port),
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=60']);
    child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(child);
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    await until(async () => {
      const c = admin();
      c.on('error', () => undefined);
      try { await c.connect(); await c.end(); return true; } catch { return false; }
    }, child, 'postgres', () => stderr);
  };
  await up();
  const server: DbServer = {
    port,
    socketDir: data,
    async sql(text, params = []) {
      const c = admin();
      await c.connect();
      try { return (await c.query(text, params)).rows; } finally { await c.end(); }
    },
    down: () => stopChild(child, 'SIGINT'),
    up,
    async stop() {
      await stopChild(child, 'SIGINT');
      rmSync(top, { recursive: true, force: true });
    },
  };
  return server;
}

/** MariaDB: root without a password on 127.0.0.1. */
export async function startMariadb(): Promise<DbServer> {
  const { top, data } = serverDir('mariadb-');
  const install = spawnSync('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, ...(ROOT ? ['--user=nobody'] : []),
    '--auth-root-authentication-method=normal', '--skip-test-db'], { encoding: 'utf8', timeout: 120_000 });
  if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr || install.stdout}`);
  const port = await freePort();
  let child: ChildProcess;
  const errLog = join(top, 'error.log');
  const up = async () => {
    child = spawn('mariadbd', ['--no-defaults', `--datadir=${data}`, `--socket=${join(data, 'sock')}`, `--port=${port}`,
      '--bind-address=127.0.0.1', `--pid-file=${join(data, 'pid')}`, `--log-error=${errLog}`, '--skip-name-resolve',
      '--innodb-buffer-pool-size=16M', '--innodb-flush-log-at-trx-commit=0', '--skip-log-bin', '--max-connections=60',
      ...(ROOT ? ['--user=nobody'] : [])], { stdio: 'ignore' });
    live.add(child);
    await until(async () => {
      try { const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root' }); await c.end(); return true; } catch { return false; }
    }, child, 'mariadbd', () => (existsSync(errLog) ? readFileSync(errLog, 'utf8').slice(-2000) : ''));
  };
  if (ROOT) chownSync(top, NOBODY, NOBODY); // the error log
  await up();
  return {
    port,
    async sql(text, params = []) {
      const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', multipleStatements: true });
      try { return (await c.query(text, params))[0] as unknown[]; } finally { await c.end(); }
    },
    down: () => stopChild(child, 'SIGTERM'),
    up,
    async stop() {
      await stopChild(child, 'SIGTERM');
      rmSync(top, { recursive: true, force: true });
    },
  };
}

/** memcached on a free loopback port, with `set` for the tests. */
export async function startMemcached(): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn('memcached', ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '16', ...(ROOT ? ['-u', 'nobody'] : [])], { stdio: 'ignore' });
  live.add(child);
  const net = await import('node:net');
  await until(() => new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }), child, 'memcached', () => '');
  return { port, stop: () => stopChild(child, 'SIGTERM') };
}
