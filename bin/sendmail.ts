/**
 * sendmail — the Sendmail-compatible submission command, like Postfix's sendmail(1):
 *   sendmail [option ...] [recipient ...]
 * It reads one message from standard input and leaves it in the maildrop directory
 * (src/maildrop/), where the server's pickup actor finds it; it does not need the server to be
 * running. Other modes hand over to other commands, as Postfix's does (mailq, newaliases,
 * flush). Options are parsed by hand, getopt-style (clustered flags, "-fsender" and
 * "-f sender", stop at the first non-option), because "-q" alone and "-oi" do not fit
 * node:util parseArgs. Exit statuses are sysexits(3) values.
 *
 * bin/sendmail is a Perl front end that writes the common submission itself, without starting
 * Node, and runs this command for everything else (issue 16); both write the same files.
 *
 * Start-up is most of a submission's cost (bench/sendmail), so this file imports only what a
 * submission needs: the configuration is read by src/config/quick.ts (queue_directory and
 * message_size_limit, no parameter registry), and the full loader, the -bs SMTP dialogue and
 * child_process are loaded only when a command line or a configuration needs them.
 */
import { userInfo } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quickConfig } from '../src/config/quick.js';
import { SYSTEM_CONFIG_DIRECTORY } from '../src/config/locate.js';
import { parseAddressList } from '../src/maildrop/address.js';
import type { MaildropEnvelope, NotifyKeyword } from '../src/maildrop/format.js';
import { extractRecipients, readMessageFd } from '../src/maildrop/input.js';
import { ensureMaildrop, writeSubmission } from '../src/maildrop/spool.js';

// Not an ES module import of node:fs: see src/config/locate.ts.
const { existsSync, readFileSync, realpathSync } = process.getBuiltinModule('node:fs');

export const EX_OK = 0;
export const EX_USAGE = 64;
export const EX_DATAERR = 65;
export const EX_NOUSER = 67;
export const EX_UNAVAILABLE = 69;
export const EX_SOFTWARE = 70;
export const EX_OSERR = 71;
export const EX_CANTCREAT = 73;
export const EX_TEMPFAIL = 75;
export const EX_NOPERM = 77;

const BIN_DIR = dirname(fileURLToPath(import.meta.url)); // dist/bin
/** The project's root (this file is dist/bin/sendmail.js there), as config.ts's PROJECT_ROOT. */
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROG = 'sendmail';

function fatal(status: number, text: string): never {
  process.stderr.write(`${PROG}: fatal: ${text}\n`);
  process.exit(status);
}

function warn(text: string): void {
  process.stderr.write(`${PROG}: warning: ${text}\n`);
}

type Mode = 'enqueue' | 'mailq' | 'newaliases' | 'daemon' | 'user' | 'flushq' | 'ignore';

/** The command line; the DSN and rewriting fields are the maildrop envelope's own. */
interface Options extends Pick<MaildropEnvelope, 'fullName' | 'notify' | 'ret' | 'envId' | 'bodyType' | 'rewriteContext'> {
  mode: Mode;
  dotEnds: boolean;
  extract: boolean;
  sender?: string;
  configDir?: string;
  siteToFlush?: string;
  idToFlush?: string;
  qtime?: string;
  verbose: number;
  verify: boolean;
  recipients: string[];
}

/** Postfix's GETOPT_LIST: options followed by ':' take an argument. */
const WITH_ARG = new Set('ABCFLNORVXbefhopqr'.split(''));
const NO_ARG = new Set('GIUcimntvx'.split(''));

/** dsn_notify_mask(): "never" alone, or a list of success, delay, failure. Null when bad. */
export function parseNotify(value: string): NotifyKeyword[] | null {
  const words = value.split(/[\s,]+/).filter(Boolean).map((w) => w.toUpperCase());
  if (!words.length) return null;
  const ok = new Set(['SUCCESS', 'DELAY', 'FAILURE', 'NEVER']);
  if (!words.every((w) => ok.has(w))) return null;
  if (words.includes('NEVER') && words.length > 1) return null;
  return [...new Set(words)] as NotifyKeyword[];
}

export function parseArgs(argv: string[], progName: string): Options {
  const o: Options = {
    mode: progName === 'mailq' ? 'mailq' : progName === 'newaliases' ? 'newaliases' : 'enqueue',
    dotEnds: true,
    extract: false,
    rewriteContext: 'local',
    verbose: 0,
    verify: false,
    recipients: [],
  };
  let i = 0;
  while (i < argv.length) {
    const a = argv[i]!;
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    if (a === '-q') { // not getopt compatible: -q alone
      o.mode = o.mode === 'daemon' ? (warn('ignoring -q option in daemon mode'), 'daemon') : 'flushq';
      i++;
      continue;
    }
    // The deprecated VERP spellings -V xy / -Vxy (Postfix 2.2) mean -XV.
    if ((a === '-V' && argv[i + 1]?.length === 2) || (a.startsWith('-V') && a.length === 4) || a.startsWith('-XV')) {
      fatal(EX_UNAVAILABLE, `not supported: ${a} (VERP)`);
    }
    i++;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      let arg = '';
      if (WITH_ARG.has(c)) {
        if (j + 1 < a.length) arg = a.slice(j + 1);
        else if (i < argv.length) arg = argv[i++]!;
        else fatal(EX_USAGE, `option requires an argument -- '${c}'\nusage: ${progName} [options]`);
        j = a.length; // the rest of the word was the argument
      } else if (!NO_ARG.has(c)) {
        fatal(EX_USAGE, `invalid option -- '${c}'\nusage: ${progName} [options]`);
      }
      switch (c) {
        case 'n': fatal(EX_USAGE, `-${c} option not supported`);
        case 'B':
          if (arg === '8BITMIME' || arg === '7BIT') o.bodyType = arg;
          else fatal(EX_USAGE, '-B option needs 8BITMIME or 7BIT');
          break;
        case 'C': o.configDir = basename(arg) === 'main.cf' ? dirname(arg) : arg; break;
        case 'F': o.fullName = arg; break;
        case 'G': o.rewriteContext = 'remote'; break;
        case 'I': o.mode = 'newaliases'; break;
        case 'N': {
          const n = parseNotify(arg);
          if (n) o.notify = n;
          else warn('bad -N option value -- ignored');
          break;
        }
        case 'R': { // Postfix ignores -R (return limit); Postactor takes hdrs/full as DSN RET.
          const r = arg.toUpperCase();
          if (r === 'HDRS' || r === 'FULL') o.ret = r;
          break;
        }
        case 'V':
          if (arg.length > 100) warn('too long -V option value -- ignored');
          else if (!/^[\x20-\x7e]*$/.test(arg)) warn('bad syntax in -V option value -- ignored');
          else o.envId = arg;
          break;
        // -X log_file: Sendmail's traffic log. Postfix documents it as ignored (use
        // debug_peer_list); its code refuses it ("unsupported: -X/"). Accepted and ignored here,
        // so that scripts written for Sendmail still submit. -XV (VERP) is not supported.
        case 'X':
          if (arg[0] === 'V') fatal(EX_UNAVAILABLE, `not supported: -X${arg} (VERP)`);
          break;
        case 'b':
          switch (arg[0]) {
            case 'd': if (o.mode === 'flushq') warn('ignoring -q option in daemon mode'); o.mode = 'daemon'; break;
            case 'h': case 'H': o.mode = 'ignore'; break;
            case 'i': o.mode = 'newaliases'; break;
            case 'm': o.mode = 'enqueue'; break;
            case 'p': o.mode = 'mailq'; break;
            case 's': o.mode = 'user'; break;
            case 'v': o.verify = true; break;
            default: fatal(EX_USAGE, `unsupported: -${c}${arg[0] ?? ''}`);
          }
          break;
        case 'f': case 'r': o.sender = arg; break;
        case 'i': o.dotEnds = false; break;
        case 'o':
          if (arg[0] === 'i') o.dotEnds = false;
          else if (arg[0] === 'A' && arg.length === 1) fatal(EX_USAGE, '-oA requires pathname');
          // -o7, -o8, -om, -oA..., -oX value: accepted and ignored, as in Postfix
          break;
        case 'q':
          if (/^\d/.test(arg)) o.qtime = arg;
          else if (arg[0] === 'R') { o.siteToFlush = arg.slice(1); if (!o.siteToFlush) fatal(EX_USAGE, 'specify: -qRsitename'); }
          else if (arg[0] === 'I') { o.idToFlush = arg.slice(1); if (!o.idToFlush) fatal(EX_USAGE, 'specify: -qIqueueid'); }
          else fatal(EX_USAGE, `-q${arg[0] ?? ''} is not implemented`);
          break;
        case 't': o.extract = true; break;
        case 'v': o.verbose++; break;
        default: break; // -A, -L, -O, -e, -h, -p (with argument); -U, -c, -m, -x: ignored
      }
    }
  }
  o.recipients = argv.slice(i);
  if (o.extract && o.mode !== 'enqueue') fatal(EX_USAGE, '-t can be used only in delivery mode');
  if (o.siteToFlush && o.mode !== 'enqueue') fatal(EX_USAGE, '-qR can be used only in delivery mode');
  if (o.idToFlush && o.mode !== 'enqueue') fatal(EX_USAGE, '-qI can be used only in delivery mode');
  return o;
}

/** What a submission reads from the configuration. */
interface SubmitConfig {
  configDirectory: string | null;
  /** queue_directory, resolved. */
  queueDir: string;
  /** message_size_limit. */
  sizeLimit: number;
  /** authorized_submit_users. */
  submitAcl: string;
  /** Any other parameter (the full loader only). */
  get?: (name: string) => string;
}

/** The full loader (src/config/load.ts): every parameter, every check, Postfix's error texts. */
async function load(dir: string | undefined): Promise<SubmitConfig> {
  const { ConfigError, loadConfig, queueDirectory } = await import('../src/config/index.js');
  try {
    const config = loadConfig(dir); // -C, else MAIL_CONFIG, POSTACTOR_CONFIG, /etc/postactor (locate.ts)
    return {
      configDirectory: config.configDirectory,
      queueDir: queueDirectory(config),
      sizeLimit: config.getInt('message_size_limit'),
      submitAcl: config.get('authorized_submit_users'),
      get: (name) => config.get(name),
    };
  } catch (err) {
    if (err instanceof ConfigError) fatal(EX_TEMPFAIL, err.message.split('\n').join('; '));
    throw err;
  }
}

/** The quick read (src/config/quick.ts), or null when only the full loader can say. */
function loadQuick(dir: string | undefined): SubmitConfig | null {
  const q = quickConfig(dir, ['queue_directory', 'message_size_limit', 'authorized_submit_users']);
  if (q === null) return null;
  const queue = q.values['queue_directory']!;
  const limit = q.values['message_size_limit']!.trim();
  // What the full loader would refuse or read differently is left to it.
  if (queue === '' || !/^\d{1,15}$/.test(limit)) return null;
  return { configDirectory: q.configDirectory, queueDir: resolve(q.configDirectory ?? PROJECT_ROOT, queue), sizeLimit: Number(limit), submitAcl: q.values['authorized_submit_users']! };
}

/** Runs dist/bin/NAME.js (on this same runtime) with args; exits with its status. */
async function runCommand(name: string, args: string[]): Promise<never> {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [join(BIN_DIR, `${name}.js`), ...args], { stdio: 'inherit' });
  if (r.error) fatal(EX_UNAVAILABLE, `unable to execute ${name}: ${r.error.message}`);
  process.exit(r.status ?? EX_SOFTWARE);
}

/** True when path is the project's root or inside it (symlinks resolved). */
function underProject(path: string): boolean {
  try {
    const root = realpathSync(PROJECT_ROOT).replace(/\/$/, '');
    const p = realpathSync(path);
    return p === root || p.startsWith(root + '/');
  } catch {
    return false;
  }
}

function have(name: string): boolean {
  return existsSync(join(BIN_DIR, `${name}.js`));
}

/** Postfix's fullname(): $NAME, else the GECOS field of the passwd entry (up to the first comma, "&" = login name capitalized). */
function defaultFullName(user: string): string | undefined {
  const env = process.env['NAME'];
  if (env) return env;
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] !== user || f.length < 5) continue;
      const gecos = f[4]!.split(',')[0]!.trim();
      if (!gecos) return undefined;
      return gecos.replace(/&/g, user.charAt(0).toUpperCase() + user.slice(1));
    }
  } catch { /* no passwd file */ }
  return undefined;
}

function submitOrDie(dir: string, who: string, envelope: Omit<MaildropEnvelope, 'size'>, parts: Buffer[]): string {
  try {
    return writeSubmission(dir, envelope, parts);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const status = e.code === 'EACCES' || e.code === 'EPERM' || e.code === 'ENOENT' || e.code === 'EROFS' ? EX_CANTCREAT : EX_TEMPFAIL;
    fatal(status, `${who}: unable to create maildrop file in ${dir}: ${e.message}`);
  }
}

async function main(): Promise<void> {
  const progName = basename(process.argv[1] ?? PROG).replace(/\.js$/, '');
  // --help (not a Sendmail option: getopt would refuse it) prints the manual page.
  if (process.argv[2] === '--help') {
    const { manual } = await import('../src/cli/manual.js'); // only here: sendmail's start-up is its cost
    process.stdout.write(manual(progName, `usage: ${progName} [options]`) ?? manual(PROG, `usage: ${PROG} [options]`)!);
    process.exit(EX_OK);
  }
  const o = parseArgs(process.argv.slice(2), progName);
  if (o.qtime && o.mode !== 'daemon') process.exit(EX_OK); // -q<interval>: ignored, as in Postfix

  // The other commands locate the configuration as sendmail does (same environment).
  const configArgs = (dir: string | undefined) => (dir ? ['-c', dir] : []);
  const noRecipients = (what: string) => { if (o.recipients.length) fatal(EX_USAGE, `${what} requires no recipient`); };

  switch (o.mode) {
    case 'mailq':
      noRecipients('display queue mode');
      if (have('postqueue')) await runCommand('postqueue', [...configArgs(o.configDir), '-p']);
      if (have('mailq')) await runCommand('mailq', configArgs(o.configDir));
      fatal(EX_UNAVAILABLE, 'not supported: -bp (mailq): no postqueue or mailq command is installed');
    case 'newaliases':
      noRecipients('alias initialization mode');
      if (have('newaliases')) await runCommand('newaliases', configArgs(o.configDir));
      if (have('postalias')) await runCommand('postalias', configArgs(o.configDir));
      fatal(EX_UNAVAILABLE, 'not supported: -bi (newaliases): no newaliases or postalias command is installed');
    case 'flushq':
      noRecipients('flush queue mode');
      if (have('postqueue')) await runCommand('postqueue', [...configArgs(o.configDir), '-f']);
      return runCommand('postactor', [...configArgs(o.configDir), 'flush']);
    case 'daemon':
      noRecipients('daemon mode');
      return runCommand('postactor', [...configArgs(o.configDir), 'start']);
    case 'ignore':
      process.exit(EX_OK);
    case 'user':
    case 'enqueue':
      break;
  }
  if (o.siteToFlush || o.idToFlush) {
    noRecipients(o.siteToFlush ? 'flush site' : 'flush queue_id');
    const args = o.siteToFlush ? ['-s', o.siteToFlush] : ['-i', o.idToFlush!];
    if (have('postqueue')) await runCommand('postqueue', [...configArgs(o.configDir), ...args]);
    fatal(EX_UNAVAILABLE, `not supported: ${o.siteToFlush ? '-qR' : '-qI'}: no postqueue command is installed`);
  }

  // -bs needs myhostname and mail_name: the full loader.
  const config = (o.mode === 'user' ? null : loadQuick(o.configDir)) ?? await load(o.configDir);
  const me = userInfo();
  const uid = process.getuid?.() ?? me.uid;
  const user = me.username;
  if (!user) fatal(EX_OSERR, `no login name found for user ID ${uid}`);
  // authorized_submit_users (Postfix checks it in sendmail and again in postdrop; root too).
  if (!config.submitAcl.trim().toLowerCase().startsWith('static:')) {
    const { ACL_REFUSALS, userAclDenied } = await import('../src/system/user-acl.js');
    const denied = await userAclDenied(config.submitAcl).catch((e: Error) => fatal(EX_TEMPFAIL, `authorized_submit_users: ${e.message}`));
    if (denied !== null) fatal(EX_NOPERM, `User ${denied}(${uid}) ${ACL_REFUSALS.submit}`);
  }
  let dir: string;
  try {
    dir = ensureMaildrop(config.queueDir);
  } catch (err) {
    fatal(EX_CANTCREAT, `${user}(${uid}): maildrop directory: ${(err as Error).message}`);
  }
  // Installed as /usr/sbin/sendmail and called by cron or PHP with no configuration found, the
  // shim queues into the project's own var/spool: say so, rather than queue somewhere unseen.
  const embeddedNotice = config.configDirectory === null && !underProject(process.cwd())
    ? () => warn(`no configuration directory (-C, MAIL_CONFIG, POSTACTOR_CONFIG, ${SYSTEM_CONFIG_DIRECTORY}/main.cf): queued in ${dir} by the embedded default configuration`)
    : () => undefined;

  if (o.mode === 'user') {
    noRecipients('stand-alone mode');
    const { runStandaloneSmtp } = await import('../src/maildrop/smtp-standalone.js');
    await runStandaloneSmtp(process.stdin, process.stdout, {
      myhostname: config.get!('myhostname'),
      mailName: config.get!('mail_name'),
      sizeLimit: config.sizeLimit,
      submit: (env, parts) => writeSubmission(dir, { ...env, rewriteContext: 'local', arrival: Date.now(), uid, user }, parts),
    });
    embeddedNotice();
    process.exit(EX_OK);
  }

  // The sender: -f/-r parsed as an address list (first address; "<>" is the null sender), else the login name.
  let sender: string;
  if (o.sender !== undefined) {
    const list = parseAddressList(o.sender);
    if (list.length > 1) warn(`-f option specified malformed sender: ${o.sender.replace(/[\x00-\x1f\x7f]/g, '?')}`);
    sender = list[0] ?? '';
  } else {
    sender = user;
  }
  const who = `${sender}(${uid})`;

  // Command-line recipients: each argument is an address list ("a, b", "Name <a>"); an
  // argument without any address stands for the empty address, as in Postfix.
  const recipients: string[] = [];
  for (const arg of o.recipients) {
    const list = parseAddressList(arg);
    recipients.push(...(list.length ? list : ['']));
  }

  // -bv: no message is collected (Postfix: "do not collect or deliver a message"); the probe
  // carries only the headers cleanup adds, and the report goes to the sender.
  let msg;
  try {
    msg = o.verify ? { parts: [] as Buffer[], size: 0 } : await readMessageFd(0, { dotEnds: o.dotEnds }, () => process.stdin);
  } catch (err) {
    fatal(EX_DATAERR, `${who}: error reading input: ${(err as Error).message}`);
  }
  const limit = config.sizeLimit;
  if (limit > 0 && msg.size > limit) fatal(EX_DATAERR, `${who}: message file too big`);
  if (o.extract) recipients.push(...extractRecipients(Buffer.concat(msg.parts)));
  if (!recipients.length) {
    fatal(EX_USAGE, o.extract
      ? `${who}: No recipient addresses found in message header`
      : `${who}: Recipient addresses must be specified on the command line or via the -t option`);
  }

  const fullName = o.fullName ?? defaultFullName(user);
  submitOrDie(dir, who, {
    sender,
    recipients,
    ...(fullName ? { fullName } : {}),
    ...(o.notify ? { notify: o.notify } : {}),
    ...(o.ret ? { ret: o.ret } : {}),
    ...(o.envId ? { envId: o.envId } : {}),
    ...(o.bodyType ? { bodyType: o.bodyType } : {}),
    ...(o.verify ? { trace: 'verify' as const } : o.verbose > 0 ? { trace: 'record' as const } : {}),
    rewriteContext: o.rewriteContext,
    arrival: Date.now(),
    uid,
    user,
  }, msg.parts);
  embeddedNotice();
  // A "." line may leave unread input behind (Postfix leaves it too); exit without waiting for EOF.
  process.exit(EX_OK);
}

main().catch((err: Error) => fatal(EX_TEMPFAIL, err.stack ?? err.message));
