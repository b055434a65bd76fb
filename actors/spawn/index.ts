/**
 * spawn: Postfix's spawn(8), the mail system's inetd. A master.cf line such as
 *
 *   policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf
 *
 * listens on queue_directory/private/policyd-spf (a unix service; public/ when the private
 * column is n) or on its inet address, and for each connection runs the command as `user` with
 * the connection as its standard input, output and error (the socket itself is handed to the
 * child: this thread never reads or writes the client's data). At most maxproc commands run at
 * once (0: no limit); further connections wait, as they would in Postfix's listen queue.
 * `<service>_time_limit` (default $command_time_limit) kills a command and its process group.
 * Abnormal exits are logged as Postfix's spawn logs them.
 *
 * One supervised thread per service line (the commands are processes of their own).
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, unlinkSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { queueDirectory, type Config } from '../../src/config/index.js';
import { parseTime } from '../../src/config/params/registry.js';
import { parseSpawnAttributes, type SpawnAttributes } from '../../src/config/spawn-attributes.js';
import { maillog } from '../../src/log/maillog.js';
import { defineService, type ServiceContext } from '../../src/runtime/service.js';
import meta from './meta.js';

const log = maillog('spawn');

/** Signal numbers for the log line (Linux). */
const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15 };

interface ListenAddress { host: string; port: number; ipv6Only?: boolean }

class Spawner {
  private readonly servers: net.Server[] = [];
  private readonly waiting: net.Socket[] = [];
  private readonly running = new Set<ChildProcess>();
  private stopped = false;

  constructor(
    private readonly attrs: SpawnAttributes,
    private readonly limit: number,
    private readonly timeLimitMs: number,
    private readonly env: Record<string, string>,
    private readonly cwd: string,
    private readonly switchUser: boolean,
  ) {}

  async listen(endpoints: ({ path: string } | ListenAddress)[]): Promise<void> {
    for (const e of endpoints) {
      const server = net.createServer({ pauseOnConnect: true }, (sock) => this.accept(sock));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        if ('path' in e) server.listen(e.path, () => resolve());
        else server.listen({ host: e.host, port: e.port, ...(e.ipv6Only ? { ipv6Only: true } : {}) }, () => resolve());
      });
      server.on('error', (err) => log.warn(`accept: ${err.message}`));
      this.servers.push(server);
    }
  }

  private accept(sock: net.Socket): void {
    if (this.stopped) return void sock.destroy();
    if (this.limit > 0 && this.running.size >= this.limit) {
      this.waiting.push(sock);
      sock.once('close', () => { const i = this.waiting.indexOf(sock); if (i >= 0) this.waiting.splice(i, 1); });
      return;
    }
    this.run(sock);
  }

  private run(sock: net.Socket): void {
    const cmd = this.attrs.argv[0]!;
    let child: ChildProcess;
    try {
      child = spawnChild(cmd, this.attrs.argv.slice(1), {
        stdio: [sock, sock, sock],
        env: this.env,
        cwd: this.cwd,
        detached: true, // its own process group: the time limit kills its offspring too
        ...(this.switchUser ? { uid: this.attrs.uid, gid: this.attrs.gid } : {}),
      });
    } catch (err) {
      log.warn(`spawn ${cmd}: ${(err as Error).message}`);
      sock.destroy();
      return this.next();
    }
    // The child has its own copy of the connection; ours is closed (Postfix's spawn does not talk to it).
    sock.destroy();
    this.running.add(child);
    const timer = setTimeout(() => {
      log.warn(`${cmd}: process id ${child.pid}: command time limit exceeded`);
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); }
    }, this.timeLimitMs);
    child.on('error', (err: NodeJS.ErrnoException) => {
      // Postfix's child reports a failed execvp and exits 1.
      log.warn(`spawn_command: execvp ${cmd}: ${err.code === 'ENOENT' ? 'No such file or directory' : err.message}`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      this.running.delete(child);
      if (signal) log.warn(`command ${cmd} killed by signal ${SIGNALS[signal] ?? signal}`);
      else if (code !== 0 && code !== null) log.warn(`command ${cmd} exit status ${code}`);
      this.next();
    });
  }

  private next(): void {
    while (!this.stopped && this.waiting.length > 0 && (this.limit === 0 || this.running.size < this.limit)) this.run(this.waiting.shift()!);
  }

  /** Stops listening; the commands still running finish on their own (their connections are theirs). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const s of this.waiting.splice(0)) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/**
 * What spawn reads, once per thread with the registry's types (src/runtime/service.ts).
 * <service>_time_limit is read by its computed name (the service is master.cf's), below.
 */
const PARAMS = {
  'mail_owner': 'str',
  'export_environment': 'list',
  'default_process_limit': 'int',
  'command_time_limit': 'time',
} as const;

/** <service>_time_limit (declared for spawn services from master.cf), else $command_time_limit. */
function timeLimitSeconds(config: Config, service: string, commandTimeLimit: number): number {
  let value: string | null = null;
  try { value = config.get(`${service}_time_limit`); } catch { /* not declared: the default */ }
  const own = value === null ? null : parseTime(value, 's');
  if (value !== null && own === null) log.warn(`${service}_time_limit: bad time value "${value}"; using $command_time_limit`);
  return own ?? commandTimeLimit;
}

async function start(ctx: ServiceContext<typeof PARAMS>): Promise<Spawner> {
  const { actor, config, params: p } = ctx;
  const service = actor.data.service;
  const line = config.services.find((s) => s.name === service && s.command === 'spawn');
  if (!line) throw new Error(`no master.cf spawn service named ${service}`);
  const attrs = parseSpawnAttributes(line.args, p.mail_owner);
  if (typeof attrs === 'string') throw new Error(`${line.file}:${line.line}: ${attrs}`);
  const switchUser = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!switchUser) log.warn(`${service}: not running as root: user=${attrs.user} is not applied, the command runs as uid ${process.getuid?.()}`);
  const env: Record<string, string> = { PATH: '/usr/bin:/bin' };
  for (const name of p.export_environment) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  const queue = queueDirectory(config);
  const spawner = new Spawner(attrs, line.maxproc ?? p.default_process_limit, timeLimitSeconds(config, service, p.command_time_limit) * 1000, env, queue, switchUser);
  if (line.type === 'unix') {
    const dir = join(queue, line.private ? 'private' : 'public');
    mkdirSync(dir, { recursive: true, mode: line.private ? 0o700 : 0o755 });
    const path = join(dir, service);
    try { unlinkSync(path); } catch { /* none yet, or a reload's new thread: the old one keeps its open socket */ }
    await spawner.listen([{ path }]);
    chmodSync(path, 0o666);
  } else if (line.type === 'inet') {
    const { addresses } = (actor.data.extra ?? {}) as { addresses?: ListenAddress[] };
    await spawner.listen(addresses ?? []);
  } else {
    throw new Error(`${line.file}:${line.line}: spawn service type ${line.type} is not supported (unix or inet)`);
  }
  return spawner;
}

export default defineService({
  ...meta,
  fatalStack: false,
  params: PARAMS,
  setup: start,
  control: { status: (spawner) => ({ running: spawner !== null }) },
  stop: (spawner) => spawner.stop(),
});
