/**
 * A throwaway Dovecot (Debian's dovecot-core + dovecot-lmtpd) for the delivery benchmark and
 * tests: `dovecot -F` on a configuration in a temp directory, LMTP on a loopback port and on a
 * UNIX-domain socket, passwd-file users whose Maildirs live under DIR/mail/<user>/Maildir.
 * With `auth: true` it also serves its authentication socket (auth-client, DIR/auth) for SMTP
 * AUTH; with `lmtp: false` it serves only that socket (`protocols =`).
 * As root, Dovecot's processes run as its system users and mail is stored as uid/gid 65534;
 * otherwise everything runs as the calling user.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { DovecotAuth } from '../../src/sasl/dovecot.js';

export const DOVECOT = '/usr/sbin/dovecot';

export interface Dovecot {
  dir: string;
  port: number;
  /** The LMTP UNIX-domain socket. */
  socket: string;
  /** The auth-client socket (with `auth: true`). */
  authSocket: string;
  child: ChildProcess;
  log(): string;
  /** A user's Maildir (DIR/mail/<user>/Maildir). */
  maildir(user: string): string;
  /** The messages in a user's Maildir/new, read from disk. */
  newMessages(user: string): string[];
  stop(): Promise<void>;
}

export interface DovecotOptions {
  /** Login names (as LMTP's RCPT TO names them, e.g. "alice@example.com"). */
  users: string[];
  /** Per-user extra userdb fields, e.g. { "carol@example.com": "userdb_quota_rule=*:storage=10B" }. */
  extra?: Record<string, string>;
  /** Per-user passwords ({PLAIN} scheme); default "x". */
  passwords?: Record<string, string>;
  /** Serve LMTP (default true); false: `protocols =`, the auth socket only. */
  lmtp?: boolean;
  /** Serve the auth-client socket DIR/auth (mode 0666). */
  auth?: boolean;
  /** Dovecot's auth_mechanisms (default "plain login"). */
  mechanisms?: string;
  /**
   * Turn off Dovecot's authentication penalty (with `auth: true`): after a failed login, anvil
   * delays every later AUTH from the same IP by 2, 4, 8… up to 15 s (auth-penalty.h), which
   * slows the successful logins a test makes after one that fails on purpose. Off as Dovecot's
   * documentation says: anvil's anvil-auth-penalty listener at mode 0.
   */
  noAuthPenalty?: boolean;
  /**
   * LMTP's loopback port (default: one the kernel hands out, i.e. from the ephemeral range,
   * where an outgoing connection can take it before Dovecot binds it: the tests pass one from
   * their own freePort, which picks below that range).
   */
  port?: number;
}

function groupName(gid: number): string {
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[2] === String(gid));
  if (!line) throw new Error(`no group ${gid} in /etc/group`);
  return line.split(':')[0]!;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** True once something on port answers with a 220 greeting. */
function greets(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), timeoutMs);
    s.on('error', () => done(false));
    s.once('data', (d) => done(d.toString('latin1').startsWith('220')));
  });
}

/** True once the auth socket completes Dovecot's handshake. */
async function authAnswers(path: string, timeoutMs: number): Promise<boolean> {
  if (!existsSync(path)) return false;
  const client = new DovecotAuth(path, { timeoutMs });
  try {
    return (await client.mechanisms()).length > 0;
  } catch {
    return false;
  } finally {
    client.close();
  }
}

/** Starts Dovecot in the foreground; resolves once LMTP (and the auth socket) answer (at most 10 s). */
export async function startDovecot(opts: DovecotOptions): Promise<Dovecot> {
  if (!existsSync(DOVECOT)) throw new Error(`${DOVECOT} is missing: apt-get install dovecot-core dovecot-lmtpd`);
  const dir = mkdtempSync(join(tmpdir(), 'dovecot-'));
  chmodSync(dir, 0o755);
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  const root = process.getuid?.() === 0;
  const me = userInfo();
  const [uid, gid] = root ? [65534, 65534] : [me.uid, me.gid];
  if (root) chmodSync(join(dir, 'mail'), 0o777);
  const lmtp = opts.lmtp ?? true;
  const authSocket = join(dir, 'auth');
  writeFileSync(join(dir, 'users'), opts.users.map((u) => `${u}:{PLAIN}${opts.passwords?.[u] ?? 'x'}:${uid}:${gid}::${join(dir, 'mail', u)}::${opts.extra?.[u] ?? ''}`).join('\n') + '\n');
  const port = opts.port ?? (await freePort());
  writeFileSync(join(dir, 'dovecot.conf'), `
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
protocols = ${lmtp ? 'lmtp' : ''}
listen = 127.0.0.1
ssl = no
default_internal_user = ${root ? 'dovecot' : me.username}
default_internal_group = ${root ? 'dovecot' : groupName(me.gid)}
default_login_user = ${root ? 'dovenull' : me.username}
first_valid_uid = 1
mail_location = maildir:${dir}/mail/%u/Maildir
mail_plugins = quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
${lmtp ? `service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
  unix_listener lmtp {
    mode = 0666
  }
}` : ''}
${opts.auth ? `auth_mechanisms = ${opts.mechanisms ?? 'plain login'}
disable_plaintext_auth = no
auth_failure_delay = 0
service auth {
  unix_listener ${authSocket} {
    mode = 0666
  }
}` : ''}
${opts.auth && opts.noAuthPenalty ? `service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}` : ''}
`);
  const child = spawn(DOVECOT, ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => { err += d; });
  child.stdout!.resume();
  const log = () => (existsSync(join(dir, 'dovecot.log')) ? readFileSync(join(dir, 'dovecot.log'), 'utf8') : '');
  const deadline = Date.now() + 10_000;
  const ready = async () => (!lmtp || (await greets(port, 500))) && (!opts.auth || (await authAnswers(authSocket, 500)));
  while (!(await ready())) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const text = `dovecot did not start: ${err}\n${log()}`;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(text);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const maildir = (user: string) => join(dir, 'mail', user, 'Maildir');
  const newMessages = (user: string) => {
    const d = join(maildir(user), 'new');
    if (!existsSync(d)) return [];
    return readdirSync(d).sort().map((f) => readFileSync(join(d, f), 'latin1'));
  };
  const stop = async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, port, socket: join(dir, 'run', 'lmtp'), authSocket, child, log, maildir, newMessages, stop };
}
