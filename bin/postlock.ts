/**
 * postlock — Postfix's postlock(1): lock a mailbox file as local(8) locks it, run a command.
 *
 *   postlock [-c config_dir] [-l lock_style] [-v] file command...
 *
 * The file is opened for appending (created 0600 if missing) and locked with
 * mailbox_delivery_lock's methods (or -l's): FILE.lock (dotlock, deliver_lock_attempts tries
 * deliver_lock_delay apart, stale after stale_lock_time) and flock(2) (also for "fcntl", as
 * local(8) does: actors/local/mailbox.ts). The command runs directly (no shell) with the lock
 * held, and the lock is released when it ends. Exit: the command's status; 1 when it was killed
 * by a signal; 75 (EX_TEMPFAIL) when postlock could not do what was asked, usage included, as
 * Postfix's postlock.
 */
import { spawn } from 'node:child_process';
import { constants as C, promises as fsp } from 'node:fs';
import { dotLock, flockFd, LOCK_PARAMS, lockSettings } from '../src/delivery/mailbox.js';
import { ConfigError, loadConfig, type Config } from '../src/config/index.js';
import { readParams } from '../src/config/declared.js';
import { getopt, UsageError } from '../src/queue/admin.js';
import { manual } from '../src/cli/manual.js';

const PROG = 'postlock';
const EX_TEMPFAIL = 75;
const USAGE = 'usage: postlock [-c config_dir] [-l lock_style] [-v] folder command...';

function fatal(text: string): never {
  process.stderr.write(`${PROG}: fatal: ${text}\n`);
  process.exit(EX_TEMPFAIL);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--help') {
    process.stdout.write(manual(PROG, USAGE) ?? `${USAGE}\n`);
    process.exit(0);
  }
  let parsed;
  try {
    parsed = getopt(process.argv.slice(2), 'c:l:v', []);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${PROG}: ${err.message}\n`);
      fatal(USAGE);
    }
    throw err;
  }
  let dir: string | undefined;
  let style: string | undefined;
  for (const [c, v] of parsed.opts) {
    if (c === 'c') dir = v;
    else if (c === 'l') style = v;
  }
  if (parsed.positionals.length < 2) fatal(USAGE);
  const [folder, ...command] = parsed.positionals as [string, ...string[]];
  let config: Config;
  try {
    config = loadConfig(dir);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message);
    throw err;
  }
  // -l overrides mailbox_delivery_lock.
  const methods = style === undefined ? config.getList('mailbox_delivery_lock') : style.split(/[\s,]+/).filter(Boolean);
  const { locks, error } = lockSettings(methods, readParams(config, LOCK_PARAMS, 'postlock'), 'mailbox_delivery_lock');
  if (error) fatal(style === undefined ? error : `unknown mailbox_delivery_lock value "${error.replace(/^.*"(.*)"$/, '$1')}" in "${style}"`);

  let lockFile: string | null = null;
  let fh: fsp.FileHandle | null = null;
  const release = async () => {
    await fh?.close().catch(() => undefined);
    if (lockFile) await fsp.unlink(lockFile).catch(() => undefined);
  };
  try {
    if (locks.dotlock) lockFile = await dotLock(folder, locks);
    fh = await fsp.open(folder, C.O_WRONLY | C.O_APPEND | C.O_CREAT, 0o600);
    if (locks.flock) await flockFd(fh.fd, Math.max(1, Math.round((locks.attempts * locks.delayMs) / 1000)));
  } catch (err) {
    await release();
    fatal(`open file ${folder}: ${lockFailure(err as NodeJS.ErrnoException)}`);
  }
  // A signal to postlock goes to the command too (same process group); the lock goes when it ends.
  const child = spawn(command[0]!, command.slice(1), { stdio: 'inherit' });
  const status = await new Promise<number>((resolve) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      // Postfix's child reports a failed execvp and exits 1.
      process.stderr.write(`${PROG}: fatal: execvp ${command[0]}: ${e.code === 'ENOENT' ? 'No such file or directory' : e.code === 'EACCES' ? 'Permission denied' : e.message}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(signal ? 1 : code ?? 1));
  });
  await release();
  process.exit(status);
}

/** Why the folder could not be locked, in Postfix's words (its mbox_open() and dot_lockfile()). */
function lockFailure(e: NodeJS.ErrnoException): string {
  const dot = /^unable to lock for exclusive access: (.*\.lock): file exists$/.exec(e.message);
  if (dot) return `unable to create lock file ${dot[1]}: File exists`;
  // flock -w gave up: the lock is held (EWOULDBLOCK after the last attempt, in Postfix).
  if (/^unable to lock for exclusive access: flock: exit status 1$/.test(e.message)) return 'unable to lock for exclusive access: Resource temporarily unavailable';
  if (e.code === 'ENOENT') return 'No such file or directory';
  if (e.code === 'EACCES') return 'Permission denied';
  return e.message;
}

void main();
