/**
 * local: Postfix's local(8), final delivery to users of this host, a pool.
 *
 * Per recipient (local_destination_recipient_limit = 1 gives one per request, as in Postfix):
 *   1. Delivered-To loop check: a Delivered-To: header naming this recipient already in the
 *      message → bounced, 5.4.6 "mail forwarding loop for user@dom".
 *   2. alias_maps (aliases.ts): the local part, then the user without its recipient_delimiter
 *      extension; targets are local users, :include:/file, |command and /file/name.
 *   3. The user in /etc/passwd (files only, no NSS modules); unknown → bounced, 5.1.1
 *      'unknown user: "user"'.
 *   4. A mailbox: home_mailbox empty → mbox $mail_spool_directory/user; "X/" → Maildir
 *      $home/X/; "X" → mbox $home/X (mailbox.ts: locking, fsync before success).
 *
 * Delivery as the recipient's UID/GID: worker threads share the process's uid, and set*id()
 * would change every thread's. When Postactor runs as root, each mailbox write therefore goes
 * to a long-lived delivery helper process (src/delivery/helper.ts, a few per thread) that
 * switches its effective uid/gid per delivery as Postfix's local does, holds root only to create
 * the lock and the spool file, and writes as the recipient; a helper that dies is replaced and
 * its delivery deferred. When Postactor is not root it cannot switch users:
 * it writes directly, only the mailboxes of its own user are deliverable, and mail for any
 * other user is deferred 4.2.0 with that reason in the log (nothing is lost).
 *
 * .forward (forward_path): the first existing file replaces the mailbox; its entries are expanded
 * like an alias value (class "forward" for allow_mail_to_commands/files), commands and files run
 * as the file's user (as default_privs for root), and the user's own name means the mailbox.
 *
 * mailbox_command replaces the mailbox (run as the recipient, default_privs for root; "delivered
 * to command: …"). luser_relay ($user, $local, $extension, $domain, $recipient expanded) takes
 * mail for unknown users instead of the 5.1.1 bounce.
 *
 * mailbox_transport(_maps) and fallback_transport(_maps) pass the recipient to another master.cf
 * transport (delegate.ts, Postfix's deliver_pass): the mailbox one after aliases and .forward,
 * before mailbox_command; the fallback one for users not in the password file, before
 * luser_relay.
 *
 * mailbox_delivery_lock "fcntl" takes a real fcntl lock and a flock(2) lock (src/delivery/locker.ts);
 * deviation: without /usr/bin/perl only the flock(2) lock (see src/delivery/mailbox.ts).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { queueDirectory } from '../../src/config/index.js';
import { ensureMaildrop, writeSubmission } from '../../src/maildrop/spool.js';
import { splitExtension } from '../../src/maps/index.js';
import type { DeliveryReply, DeliveryRequest, HeldStatusLine, RecipientOutcome } from '../protocol.js';
import { report, type AgentContext } from '../../src/delivery/agent.js';
import { formatDelays, StatusLog } from '../../src/delivery/log.js';
import { bounceOrDefer, softBounceOf } from '../../src/delivery/soft-bounce.js';
import { mailCopy, setEnableOriginalRecipient } from '../../src/delivery/copy.js';
import { commandArgv, runCommand } from '../../src/delivery/command.js';
import type { LockSettings } from '../../src/delivery/mailbox.js';
import { Locker } from '../../src/delivery/locker.js';
import { prestartAgentHelpers, writeMailbox, type WriterJob } from '../../src/delivery/write.js';
import { Delegation } from './delegate.js';
import { AliasExpander, splitTargets, type Target } from './aliases.js';
import { LOCAL_PARAMS } from './params.js';
import { defineService, type Params } from '../../src/runtime/service.js';
import meta from './meta.js';
import { agentContent, corruptReply } from '../../src/delivery/content.js';

export interface Passwd { name: string; uid: number; gid: number; home: string; shell: string }

/** The parsed password file, kept while its identity (inode, size, mtime) stays the same. */
let passwdCache: { file: string; key: string; users: Map<string, Passwd> } | null = null;

/**
 * getpwnam() from /etc/passwd (POSTACTOR_PASSWD_FILE names another file: tests use it for users
 * with temporary homes). The file is parsed once and re-read when a stat() shows it changed, so a
 * delivery costs one stat, not a read and a parse; the first entry of a name wins, as in libc.
 */
export function getpwnam(name: string, file = process.env['POSTACTOR_PASSWD_FILE'] || '/etc/passwd'): Passwd | null {
  const st = statSync(file);
  const key = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  if (passwdCache?.file !== file || passwdCache.key !== key) {
    const users = new Map<string, Passwd>();
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 7 && !users.has(f[0]!)) users.set(f[0]!, { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! });
    }
    passwdCache = { file, key, users };
  }
  return passwdCache.users.get(name) ?? null;
}

interface State {
  ctx: AgentContext;
  params: Params<typeof LOCAL_PARAMS>;
  root: boolean;
  spool: string;
  homeMailbox: string;
  locks: LockSettings;
  sizeLimit: number;
  delimiter: string;
  unsupported: string | null;
  mailboxTransport: Delegation;
  fallbackTransport: Delegation;
  myorigin: string;
  forwardPath: string[];
  aliases: AliasExpander;
  mailboxCommand: string;
  luserRelay: string;
}

async function init(ctx: AgentContext & { params: Params<typeof LOCAL_PARAMS> }): Promise<State> {
  const { params: p } = ctx;
  setEnableOriginalRecipient(p.enable_original_recipient);
  // One delivery helper per agent thread from the start (more start when deliveries queue up):
  // the set-up ends when it is ready, and the thread takes deliveries only then.
  const helperReady = prestartAgentHelpers(() => (t: string) => ctx.log.warn(t));
  const lockNames = p.mailbox_delivery_lock.map((s) => s.toLowerCase());
  const bad = lockNames.find((n) => !['fcntl', 'flock', 'dotlock'].includes(n));
  let unsupported: string | null = bad ? `mailbox_delivery_lock: unknown lock method "${bad}"` : null;
  if (lockNames.includes('fcntl') && !Locker.available()) ctx.log.info('mailbox_delivery_lock: fcntl locks need /usr/bin/perl; flock is used in their place');
  if (unsupported) ctx.log.warn(`${ctx.service}: ${unsupported}; local deliveries are deferred`);
  const locks: LockSettings = {
    dotlock: lockNames.includes('dotlock'),
    flock: lockNames.includes('flock') || lockNames.includes('fcntl'),
    fcntl: lockNames.includes('fcntl'),
    attempts: Math.max(1, p.deliver_lock_attempts),
    delayMs: p.deliver_lock_delay * 1000,
    staleMs: p.stale_lock_time * 1000,
  };
  await helperReady;
  return {
    ctx,
    params: p,
    root: process.getuid?.() === 0,
    spool: p.mail_spool_directory,
    homeMailbox: p.home_mailbox,
    locks,
    sizeLimit: p.mailbox_size_limit,
    delimiter: p.recipient_delimiter,
    unsupported,
    mailboxTransport: new Delegation('mailbox_transport', ctx.config, ctx.log, p),
    fallbackTransport: new Delegation('fallback_transport', ctx.config, ctx.log, p),
    myorigin: p.myorigin,
    // forward_path names local(8)'s own attributes ($home, $user, …), not main.cf parameters.
    forwardPath: p.forward_path.split(/[\s,]+/).filter((f) => f !== ''),
    aliases: new AliasExpander(ctx, p),
    // Not expanded as main.cf parameters: "$EXTENSION" is for the command's shell.
    mailboxCommand: p.mailbox_command.trim(),
    // luser_relay names local(8)'s attributes ($user, $local, …), not main.cf parameters.
    luserRelay: p.luser_relay.trim(),
  };
}

/** A recipient's result; `passed`: another transport delivered it and logged it (relay is its). */
/**
 * A recipient's result. `leaves`: the final deliveries of an alias or .forward expansion, each
 * logged with its own address (Postfix's local rewrites the recipient to each expanded address
 * and logs every delivery: "to=<user@$myorigin>, orig_to=<alias>"); the result itself is then
 * not logged again. `probeLines`: for a verify probe, the status lines of the transports it was
 * passed to (mailbox_transport, fallback_transport), held for qmgr as this agent's are.
 */
type Result = Omit<RecipientOutcome, 'index' | 'relay'> & { relay?: string; passed?: true; leaves?: Leaf[]; probeLines?: HeldStatusLine[] };
interface Leaf { address: string; original: string; result: Result }
const sent = (reason: string): Result => ({ status: 'sent', dsn: '2.0.0', reason });
const fail = (dsn: string, reason: string): Result => ({ status: dsn.startsWith('5') ? 'bounced' : 'deferred', dsn, reason });
/** The result that decides for several targets: a deferral (a retry can still succeed), else a bounce, else the first. */
const worstOf = (results: Result[]): Result | undefined => results.find((r) => r.status === 'deferred') ?? results.find((r) => r.status === 'bounced') ?? results[0];

async function deliver(s: State, req: DeliveryRequest): Promise<DeliveryReply> {
  const started = Date.now();
  const read = agentContent(s.ctx.store, req);
  if ('damaged' in read) return corruptReply(req, read.damaged); // nothing goes out: qmgr sets it aside
  const content = 'content' in read ? read.content : undefined;
  const outcomes: RecipientOutcome[] = [];
  const passedOn: RecipientOutcome[] = [];
  /**
   * The lines of an expansion's deliveries (held for a probe as report()'s are), and for a probe
   * the held lines of the transports recipients were passed to (./delegate.ts).
   */
  const lines = new StatusLog(s.ctx.log, req.queueId, req);
  // soft_bounce: an expansion's bounced address is kept as a deferral, and so is the recipient
  // it came from (the rest goes through report()).
  const soft = softBounceOf(s.ctx.config);
  for (const r of req.recipients) {
    let res: Result;
    if (!content) res = fail('4.3.0', 'queue file vanished');
    else if (s.unsupported) res = fail('4.3.5', 'mail system configuration error');
    else {
      try {
        res = await deliverRecipient(s, { ...req, recipients: [r] }, content, r.address, r.original ?? r.address);
      } catch (e) {
        s.ctx.log.warn(`${req.queueId}: ${String((e as Error).message ?? e)}`);
        res = fail('4.3.0', 'local delivery failed: temporary error');
      }
    }
    const { passed, leaves, probeLines: passedLines, ...o } = res;
    if (passedLines) lines.held.push(...passedLines);
    if (leaves?.length) {
      const now = Date.now();
      const delays = formatDelays(req.arrival, req.activated, started, { connect: 0, transmit: now - started }, now);
      for (const l of leaves) {
        const { passed: _p, leaves: _l, probeLines: _h, ...lo } = l.result;
        lines.line({ address: l.address, original: l.original }, bounceOrDefer({ index: r.index, relay: s.ctx.service, ...lo }, soft, req.verify), delays);
      }
    }
    if (passed || leaves?.length) passedOn.push(bounceOrDefer({ index: r.index, relay: s.ctx.service, ...o }, soft, req.verify));
    else outcomes.push({ index: r.index, relay: s.ctx.service, ...o });
  }
  // A passed-on recipient was logged by the transport that delivered it, an expansion's deliveries above.
  const reply = report(s.ctx, req, outcomes, started);
  const probeLines = [...lines.held, ...(reply.probeLines ?? [])];
  return { ...reply, outcomes: [...reply.outcomes, ...passedOn], ...(probeLines.length > 0 ? { probeLines } : {}) };
}

/** The Delivered-To: values in the message's header, lower case. */
export function deliveredTo(content: Uint8Array): Set<string> {
  const buf = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  // The header ends at the first empty line (LF or CRLF): only it becomes a string, not the body.
  let end = buf.length;
  for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, nl + 1)) {
    if (buf[nl + 1] === 10 || (buf[nl + 1] === 13 && buf[nl + 2] === 10)) {
      end = nl > 0 && buf[nl - 1] === 13 ? nl - 1 : nl;
      break;
    }
  }
  const head = buf.toString('latin1', 0, end).replace(/\r?\n[ \t]+/g, ' ');
  const out = new Set<string>();
  for (const l of head.split(/\r?\n/)) if (/^delivered-to:/i.test(l)) out.add(l.slice(13).trim().toLowerCase());
  return out;
}

async function deliverRecipient(s: State, req: DeliveryRequest, content: Uint8Array, address: string, orcpt: string): Promise<Result> {
  if (deliveredTo(content).has(address.toLowerCase())) return fail('5.4.6', `mail forwarding loop for ${address}`);
  const at = address.lastIndexOf('@');
  const localpart = (at < 0 ? address : address.slice(0, at)).toLowerCase();
  if (req.probe) {
    // A verify service probe does not expand an alias (Postfix's alias.c): "aliased to VALUE".
    const alias = await s.aliases.value(localpart, s.delimiter);
    if ('error' in alias) return fail(alias.dsn, alias.error);
    if (alias.value !== null) return sent(`aliased to ${alias.value}`);
  }
  const targets = await s.aliases.expand(localpart, s.delimiter);
  if ('error' in targets) return fail(targets.dsn, targets.error);
  if (req.verify) return verifyTargets(s, req, address, orcpt, targets.targets);
  const r = targets.sender !== undefined ? { ...req, sender: targets.sender } : req;
  return deliverTargets(s, r, content, address, orcpt, targets.targets, null, new Set());
}

/**
 * sendmail -bv and verify probes: what delivery would do with an expansion, without doing it
 * (Postfix's local in address-verification mode): a known user "delivers to mailbox", a command
 * or file target is named, a remote target is "aliased to" it; an unknown user with nowhere to
 * go bounces 5.1.1. A user that mailbox_transport (or, unknown, fallback_transport) takes is
 * passed to that transport with the request's verify flags, as Postfix's local passes it
 * (deliver_pass before the mailbox's trace-only check): that agent answers (lmtp asks the store
 * at RCPT TO) and logs; with other targets beside it, the worst outcome stands.
 */
async function verifyTargets(s: State, req: DeliveryRequest, address: string, orcpt: string, targets: Target[]): Promise<Result> {
  const said: string[] = [];
  const passed: Result[] = [];
  for (const t of targets) {
    if (t.kind === 'command') said.push(`delivers to command: ${t.command}`);
    else if (t.kind === 'file') said.push(`delivers to file: ${t.path}`);
    else if (t.kind === 'forward') said.push(`aliased to ${t.address}`);
    else {
      const user = splitExtension(t.user, s.delimiter)?.user ?? t.user;
      const passAddr = targetAddress(s, address, t.user);
      const viaMailbox = s.mailboxTransport.configured ? await s.mailboxTransport.pass(req, user, passAddr, orcpt) : null;
      if (viaMailbox) { passed.push(viaMailbox); continue; }
      if (getpwnam(user)) { said.push(s.mailboxCommand ? `delivers to command: ${s.mailboxCommand}` : 'delivers to mailbox'); continue; }
      const viaFallback = s.fallbackTransport.configured ? await s.fallbackTransport.pass(req, user, passAddr, orcpt) : null;
      if (viaFallback) passed.push(viaFallback);
      else if (s.luserRelay) said.push(`aliased to ${s.luserRelay}`);
      else return fail('5.1.1', `unknown user: "${user}"`);
    }
  }
  const probeLines = passed.flatMap((r) => r.probeLines ?? []);
  const worst = worstOf(passed);
  const result = worst && (worst.status !== 'sent' || said.length === 0) ? worst : sent(said.join(', ') || 'delivers to mailbox');
  return { ...result, ...(probeLines.length ? { probeLines } : {}) };
}

/**
 * Delivers an expansion (from aliases or a .forward file): each user, file and command once
 * (Postfix's duplicate filter, shared by the whole expansion), remote addresses in one forwarded
 * message. One failed target decides the recipient's result; a deferral wins over a bounce, so
 * a retry can still succeed. `owner`: whose .forward this came from (commands and files run as
 * that user), null for aliases.
 */
async function deliverTargets(s: State, req: DeliveryRequest, content: Uint8Array, address: string, orcpt: string, targets: Target[], owner: Passwd | null, seen: Set<string>): Promise<Result> {
  const results: Result[] = [];
  const unique = targets.filter((t) => {
    const key = t.kind === 'user' ? `user:${splitExtension(t.user, s.delimiter)?.user ?? t.user}` : t.kind === 'file' ? `file:${t.path}` : t.kind === 'forward' ? `forward:${t.address.toLowerCase()}` : `command:${t.command}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const forward = unique.filter((t): t is Extract<Target, { kind: 'forward' }> => t.kind === 'forward').map((t) => t.address);
  const leaves: Leaf[] = [];
  for (const t of unique) {
    if (t.kind === 'forward') continue;
    const r = await deliverTarget(s, req, content, address, orcpt, t, owner, seen);
    results.push(r);
    if (r.leaves) leaves.push(...r.leaves);
    else if (!r.passed) leaves.push({ address: t.kind === 'user' ? targetAddress(s, address, t.user) : address, original: orcpt, result: r });
  }
  if (forward.length > 0) {
    const r = forwardMessage(s, req, content, address, forward);
    results.push(r);
    leaves.push({ address, original: orcpt, result: r });
  }
  const { probeLines: _own, ...result } = worstOf(results) ?? sent('delivered');
  const probeLines = results.flatMap((r) => r.probeLines ?? []);
  return { ...result, ...(leaves.length ? { leaves } : {}), ...(probeLines.length ? { probeLines } : {}) };
}

/**
 * The address a user target of an expansion is delivered as: the recipient itself when the
 * target is its own local part, else user@$myorigin (an alias target, resolved as Postfix's local
 * resolves it before delivering).
 */
function targetAddress(s: State, address: string, user: string): string {
  return localOf(address).toLowerCase() === user.toLowerCase() ? address : `${user}@${s.myorigin}`;
}

async function deliverTarget(s: State, req: DeliveryRequest, content: Uint8Array, address: string, orcpt: string, t: Target, owner: Passwd | null, seen: Set<string>): Promise<Result> {
  if (t.kind !== 'user') return s.aliases.deliverSpecial(t, req, content, address, orcpt, owner);
  const split = splitExtension(t.user, s.delimiter);
  const user = split ? split.user : t.user;
  const pw = getpwnam(user);
  if (pw && s.forwardPath.length > 0) {
    const attrs: Record<string, string> = { home: pw.home, user: pw.name, shell: pw.shell, local: t.user, extension: split?.ext ?? '', recipient_delimiter: split ? s.delimiter : '', recipient: address, domain: address.slice(address.lastIndexOf('@') + 1) };
    // Without an extension the default forward_path names $home/.forward twice: looked at once.
    const tried = new Set<string>();
    for (const f of s.forwardPath) {
      const path = expandAttrs(f, attrs);
      if (tried.has(path)) continue;
      tried.add(path);
      if (/\$/.test(path) || !existsSync(path)) continue;
      // The first .forward file that exists replaces the mailbox; its own user ("\\user" or
      // "user") is the mailbox, once (the key below ends the recursion).
      const key = `dotforward:${pw.name}`;
      if (seen.has(key)) break;
      seen.add(key);
      seen.delete(`user:${pw.name}`); // the user named inside the file is the mailbox
      let text: string;
      try { text = readFileSync(path, 'utf8'); } catch (e) {
        s.ctx.log.warn(`${req.queueId}: cannot open ${path}: ${(e as Error).message}`);
        return fail('4.3.0', `cannot open forward file ${path}`);
      }
      const items = splitTargets(text).map((i) => (i.startsWith('\\') ? i.slice(1) : i));
      const expanded = await s.aliases.expandItems(items, s.delimiter, 'forward');
      if ('error' in expanded) return fail(expanded.dsn, expanded.error);
      return deliverTargets(s, req, content, address, orcpt, expanded.targets, pw, seen);
    }
  }
  // Postfix passes the recipient as it stands after alias expansion: an alias target is user@$myorigin.
  const passAddr = targetAddress(s, address, t.user);
  // mailbox_transport(_maps): every recipient that gets this far, known to the password file or not.
  if (s.mailboxTransport.configured) {
    const r = await s.mailboxTransport.pass(req, user, passAddr, orcpt);
    if (r) return r;
  }
  if (!pw) {
    // fallback_transport(_maps), then luser_relay, for users not in the password file.
    if (s.fallbackTransport.configured) {
      const r = await s.fallbackTransport.pass(req, user, passAddr, orcpt);
      if (r) return r;
    }
    // luser_relay: unknown users go to this address instead (once: not for the relay itself).
    if (s.luserRelay && !seen.has('luser_relay')) {
      seen.add('luser_relay');
      const at = address.lastIndexOf('@');
      const attrs: Record<string, string> = { user, local: t.user, extension: split?.ext ?? '', recipient_delimiter: split ? s.delimiter : '', recipient: address, domain: at < 0 ? '' : address.slice(at + 1) };
      const relay = expandAttrs(s.luserRelay, attrs);
      const expanded = await s.aliases.expandItems(splitTargets(relay), s.delimiter, 'alias');
      if ('error' in expanded) return fail(expanded.dsn, expanded.error);
      return deliverTargets(s, req, content, address, orcpt, expanded.targets, owner, seen);
    }
    return fail('5.1.1', `unknown user: "${user}"`);
  }
  if (s.mailboxCommand) {
    // mailbox_command: as the recipient (default_privs for root), message with From_ line first.
    const root = process.getuid?.() === 0;
    const as = !root ? null : pw.uid !== 0 ? pw : getpwnam(s.params.default_privs);
    if (root && !as) return fail('4.3.5', 'mail system configuration error: default_privs: unknown user');
    const at = address.lastIndexOf('@');
    const input = mailCopy(content, { flags: new Set(['F', 'R', 'O', 'D']), eol: '\n', sender: req.sender, originalRecipient: orcpt, deliveredTo: address, now: new Date() });
    const attrs: Record<string, string> = { home: pw.home, user: pw.name, shell: pw.shell, local: t.user, extension: split?.ext ?? '', recipient_delimiter: split ? s.delimiter : '', recipient: address, domain: at < 0 ? '' : address.slice(at + 1), sender: req.sender };
    const r = await runCommand({
      argv: commandArgv(expandAttrs(s.mailboxCommand, attrs), s.params.local_command_shell), input, timeLimitMs: s.params.command_time_limit * 1000, cwd: existsSync(pw.home) ? pw.home : '/',
      env: { PATH: '/usr/bin:/bin', HOME: pw.home, USER: pw.name, LOGNAME: pw.name, SHELL: pw.shell, SENDER: req.sender, RECIPIENT: address, ORIGINAL_RECIPIENT: orcpt, LOCAL: t.user, EXTENSION: split?.ext ?? '', DOMAIN: at < 0 ? '' : address.slice(at + 1) },
      ...(as ? { uid: as.uid, gid: as.gid } : {}),
    });
    return r.ok ? sent(`delivered to command: ${s.mailboxCommand}`) : fail(r.dsn, r.text);
  }
  const maildir = s.homeMailbox.endsWith('/');
  const path = s.homeMailbox === '' ? join(s.spool, pw.name) : join(pw.home, s.homeMailbox) + (maildir ? '/' : '');
  const data = mailCopy(content, {
    flags: new Set(maildir ? ['R', 'O', 'D'] : ['F', 'R', 'O', 'D', '>', 'B']),
    eol: '\n', sender: req.sender, originalRecipient: orcpt, deliveredTo: address, now: new Date(),
  });
  const where = maildir ? 'maildir' : 'mailbox';
  const failed = (e: { dsn: string; reason: string }) => {
    const text = maildir ? `maildir delivery failed: ${e.reason}` : `cannot update mailbox ${path} for user ${pw.name}. ${e.reason}`;
    s.ctx.log.warn(`${req.queueId}: ${text}`);
    return fail(e.dsn, text);
  };
  const job: WriterJob = { kind: maildir ? 'maildir' : 'mbox', path, uid: pw.uid, gid: pw.gid, inSpool: s.homeMailbox === '' && !worldWritable(s.spool), locks: s.locks, sizeLimit: s.sizeLimit };
  const r = await writeMailbox(job, data, pw.name, (t) => s.ctx.log.warn(t));
  if (!r.ok && r.died) return fail(r.dsn, r.reason);
  return r.ok ? sent(`delivered to ${where}`) : failed(r);
}

/**
 * Postfix's mailbox.c: into a world-writable mail_spool_directory (mode 1777) the lock and the
 * mbox are made with the recipient's own rights, as in a home directory (and when the directory
 * cannot be looked at); otherwise with root's, and a new mbox is given to the recipient.
 * (A group-writable spool, where Postfix uses the recipient's uid with the spool's gid, is
 * written with root's rights here.)
 */
function worldWritable(spool: string): boolean {
  try {
    return (statSync(spool).mode & 0o002) !== 0;
  } catch {
    return true;
  }
}

/** Expands local(8)'s attributes in a value: $name, ${name}, ${name?text}, ${name:text}; other names stay. */
function expandAttrs(value: string, attrs: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?:([?:])([^}]*))?\}|\$(\w+)/g, (m, a?: string, op?: string, alt?: string, b?: string) => {
    if (!Object.hasOwn(attrs, (a ?? b)!)) return m; // not ours: e.g. "$EXTENSION" for the shell
    const v = attrs[(a ?? b)!]!;
    return op === '?' ? (v ? alt! : '') : op === ':' ? (v ? '' : alt!) : v;
  });
}

/**
 * Forwards to remote alias targets: one new message to all of them, with the original envelope
 * sender and "Delivered-To: <recipient>" prepended (what lets a loop come back as 5.4.6),
 * written to the maildrop for pickup (see aliases.ts). Logged "forwarded as ID" as Postfix does.
 */
function forwardMessage(s: State, req: DeliveryRequest, content: Uint8Array, address: string, to: string[]): Result {
  if (!s.ctx.config.services.some((x) => x.command === 'pickup')) {
    s.ctx.log.warn(`${req.queueId}: not supported: forwarding to ${to.join(', ')} without a pickup service in master.cf`);
    return fail('4.3.5', `not supported: forwarding to ${to.join(', ')} without a pickup service`);
  }
  try {
    const dir = ensureMaildrop(queueDirectory(s.ctx.config));
    const head = Buffer.from(`Delivered-To: ${address}\r\n`, 'utf8');
    // As Postfix's forward.c: each new recipient keeps the original recipient and DSN ORCPT of the one it was for.
    const r = req.recipients[0];
    const orig = r ? { original: r.original ?? r.address, ...(r.orcpt ? { orcpt: r.orcpt } : {}) } : {};
    const id = writeSubmission(dir, { sender: req.sender, recipients: to, ...orig, rewriteContext: 'remote', arrival: Date.now(), uid: process.getuid?.() ?? 0, user: s.params.mail_owner }, [head, content]);
    return sent(`forwarded as ${id}`);
  } catch (e) {
    const why = `cannot forward to ${to.join(', ')}: ${(e as Error).message}`;
    s.ctx.log.warn(`${req.queueId}: ${why}`);
    return fail('4.3.0', why);
  }
}

function localOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}

export default defineService({
  ...meta,
  params: LOCAL_PARAMS,
  setup: init,
  handle: deliver,
});
