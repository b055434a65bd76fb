/**
 * Alias expansion of local(8) (aliases(5)): the recipient's local part is looked up in
 * alias_maps, then — when it has a recipient_delimiter extension — the user part alone. A
 * value is a list of targets separated by commas (quotes protect commas):
 *   name            another alias, or a local user (a name that is already being expanded
 *                   — "root: root, /var/log/root.mail" — is the user's mailbox, not a loop)
 *   user@domain     when domain is in mydestination: as "user"; any other domain is
 *                   forwarded: one new message per expanded recipient with all its remote
 *                   addresses, the original envelope sender and a Delivered-To: header added
 *                   (forward.ts). Postfix's local hands it to cleanup directly; Postactor's pool
 *                   workers cannot call cleanup, so it is written to the maildrop (as sendmail
 *                   does) and pickup feeds it to cleanup — which needs a pickup service in
 *                   master.cf: without one the recipient is deferred 4.3.5 "not supported".
 *   :include:/file  the file's lines (commas or newlines, # comments) are more targets
 *   |command        /bin/sh -c command, message on stdin (allow_mail_to_commands)
 *   /file/name      the message appended in mbox form (allow_mail_to_files)
 * Commands and files from aliases run with the privileges of default_privs when Postactor is
 * root (Postfix uses the alias database owner unless that is root, then default_privs; the
 * owner case is not built), else as Postactor's own user.
 * Expansion is bounded: depth 100, 1000 targets. A broken table (TableError) defers 4.3.0.
 * owner-NAME: when NAME is an alias and owner-NAME exists too, the expanded deliveries (mailbox
 * Return-Path and From_ line, forwarded copies) carry owner-NAME@$myorigin as the envelope
 * sender, as in Postfix (expand_owner_alias = no). Deviation: a failed delivery is still
 * reported to the original sender (qmgr bounces per recipient to the message's sender).
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { openTable, splitExtension, TableError, type LookupTable } from '../../src/maps/index.js';
import type { DeliveryRequest, RecipientOutcome } from '../protocol.js';
import type { Params } from '../../src/config/declared.js';
import type { AgentContext } from '../../src/delivery/agent.js';
import type { ALIAS_PARAMS } from './params.js';
import { mailCopy } from '../../src/delivery/copy.js';
import { commandArgv, runCommand } from '../../src/delivery/command.js';
import { appendMbox, MailboxError } from '../../src/delivery/mailbox.js';
import { getpwnam, type Passwd } from './index.js';
import { writeMailbox } from '../../src/delivery/write.js';

export type Target =
  | { kind: 'user'; user: string }
  | { kind: 'command'; command: string }
  | { kind: 'file'; path: string }
  | { kind: 'forward'; address: string };

type Result = Omit<RecipientOutcome, 'index' | 'relay'>;
type Expansion = { targets: Target[]; sender?: string } | { error: string; dsn: string };

const MAX_DEPTH = 100;
const MAX_TARGETS = 1000;

/** Splits an alias value or include file into items (commas and newlines; quotes protect). */
export function splitTargets(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '"') { quoted = !quoted; cur += c; continue; }
    if (!quoted && (c === ',' || c === '\n')) { out.push(cur); cur = ''; continue; }
    cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== '' && !s.startsWith('#')).map((s) => (s.length >= 2 && s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s));
}

export class AliasExpander {
  private tables: LookupTable[] | null = null;
  private readonly localDomains: Set<string>;
  private readonly commandsFrom: Set<string>;
  private readonly filesFrom: Set<string>;

  constructor(private readonly ctx: AgentContext, private readonly p: Params<typeof ALIAS_PARAMS>) {
    this.localDomains = new Set(p.mydestination.map((d) => d.toLowerCase()));
    this.commandsFrom = new Set(p.allow_mail_to_commands.map((d) => d.toLowerCase()));
    this.filesFrom = new Set(p.allow_mail_to_files.map((d) => d.toLowerCase()));
  }

  private open(): LookupTable[] {
    this.tables ??= this.p.alias_maps.map((spec) => openTable(spec, { builder: 'postalias' }));
    return this.tables;
  }

  private async lookup(name: string): Promise<string | null> {
    for (const t of this.open()) {
      const r = await t.lookup(name);
      if (r.found) return r.value;
    }
    return null;
  }

  async expand(localpart: string, delimiter: string): Promise<Expansion> {
    return this.guarded(async () => {
      const targets: Target[] = [];
      const err = await this.walk(localpart, delimiter, [], 'alias', targets, 0);
      if (err) return err;
      // owner-NAME: the expanded deliveries get owner-NAME@$myorigin as their envelope sender.
      if (!(targets.length === 1 && targets[0]!.kind === 'user' && targets[0]!.user === localpart)) {
        const alias = await this.aliasOf(localpart, delimiter);
        if (alias && (await this.lookup(`owner-${alias.name}`)) !== null) return { targets, sender: `owner-${alias.name}@${this.p.myorigin}` };
      }
      return { targets };
    });
  }

  /**
   * The alias_maps value of a local part (or of its user part without the extension), unexpanded;
   * null when it is no alias. A verify probe stops there (Postfix's alias.c: "aliased to VALUE").
   */
  async value(localpart: string, delimiter: string): Promise<{ value: string | null } | { error: string; dsn: string }> {
    return this.guarded(async () => ({ value: (await this.aliasOf(localpart, delimiter))?.value ?? null }));
  }

  /** Expands a list of entries: a .forward file (class "forward") or luser_relay ("alias"). */
  async expandItems(items: string[], delimiter: string, cls: 'alias' | 'forward'): Promise<Expansion> {
    return this.guarded(async () => {
      const targets: Target[] = [];
      const err = await this.items(items, delimiter, [], cls, targets, 0, cls);
      return err ?? { targets };
    });
  }

  /** The alias entry of the full local part, else of its user part without the extension (Postfix's recipient.c order). */
  private async aliasOf(localpart: string, delimiter: string): Promise<{ name: string; value: string } | null> {
    const split = splitExtension(localpart, delimiter);
    for (const name of split ? [localpart, split.user] : [localpart]) {
      const value = await this.lookup(name);
      if (value !== null) return { name, value };
    }
    return null;
  }

  /** A broken table (TableError) is logged and defers 4.3.0 "alias database unavailable". */
  private async guarded<T>(work: () => Promise<T>): Promise<T | { error: string; dsn: string }> {
    try {
      return await work();
    } catch (e) {
      if (!(e instanceof TableError)) throw e;
      this.ctx.log.warn(`alias_maps: ${e.message}`);
      return { error: `alias database unavailable: ${e.message}`, dsn: '4.3.0' };
    }
  }

  /** Expands one name into targets; returns an error to stop, else null. */
  private async walk(name: string, delimiter: string, chain: string[], cls: 'alias' | 'include' | 'forward', out: Target[], depth: number): Promise<{ error: string; dsn: string } | null> {
    if (depth > MAX_DEPTH) return { error: `alias expansion too deep for ${chain[0] ?? name}`, dsn: '5.4.6' };
    let value: string | null = null;
    let key = name;
    if (!chain.includes(name)) {
      value = await this.lookup(name);
      const split = value === null ? splitExtension(name, delimiter) : null;
      if (split && !chain.includes(split.user)) { value = await this.lookup(split.user); key = split.user; }
    }
    if (value === null) {
      if (out.length >= MAX_TARGETS) return { error: 'alias expansion limit exceeded', dsn: '5.3.0' };
      out.push({ kind: 'user', user: name });
      return null;
    }
    return this.items(splitTargets(value), delimiter, [...chain, key], 'alias', out, depth + 1, cls);
  }

  private async items(items: string[], delimiter: string, chain: string[], cls: 'alias' | 'include' | 'forward', out: Target[], depth: number, _from: string): Promise<{ error: string; dsn: string } | null> {
    for (const item of items) {
      if (out.length >= MAX_TARGETS) return { error: 'alias expansion limit exceeded', dsn: '5.3.0' };
      if (item.toLowerCase().startsWith(':include:')) {
        const file = item.slice(9).trim();
        if (!isAbsolute(file)) return { error: `:include: ${file}: not an absolute path name`, dsn: '5.3.5' };
        let text: string;
        try { text = readFileSync(file, 'utf8'); } catch (e) {
          return { error: `cannot open include file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (e as Error).message}`, dsn: '4.3.0' };
        }
        const err = await this.items(splitTargets(text), delimiter, chain, 'include', out, depth + 1, cls);
        if (err) return err;
      } else if (item.startsWith('|')) {
        if (!this.commandsFrom.has(cls)) return { error: 'mail to command is restricted', dsn: '5.7.1' };
        out.push({ kind: 'command', command: item.slice(1).trim() });
      } else if (item.startsWith('/')) {
        if (!this.filesFrom.has(cls)) return { error: 'mail to file is restricted', dsn: '5.7.1' };
        out.push({ kind: 'file', path: item });
      } else {
        let name = item.toLowerCase();
        const at = name.lastIndexOf('@');
        if (at >= 0) {
          const domain = name.slice(at + 1);
          if (!this.localDomains.has(domain)) {
            out.push({ kind: 'forward', address: item });
            continue;
          }
          name = name.slice(0, at);
        }
        const err = await this.walk(name, delimiter, chain, cls, out, depth + 1);
        if (err) return err;
      }
    }
    return null;
  }

  /** Delivers to a |command or /file target. */
  async deliverSpecial(t: Target, req: DeliveryRequest, content: Uint8Array, address: string, orcpt: string, owner: Passwd | null = null): Promise<Result> {
    const root = process.getuid?.() === 0;
    const privsName = this.p.default_privs;
    // A .forward's owner, except root (Postfix runs root's commands and files as default_privs).
    const pw = !root ? null : owner && owner.uid !== 0 ? owner : getpwnam(privsName);
    if (root && !pw) return { status: 'deferred', dsn: '4.3.5', reason: `mail system configuration error: default_privs: unknown user ${privsName}` };
    if (t.kind === 'command') {
      const input = mailCopy(content, { flags: new Set(['F', 'R', 'O', 'D']), eol: '\n', sender: req.sender, originalRecipient: orcpt, deliveredTo: address, now: new Date() });
      const at = address.lastIndexOf('@');
      const r = await runCommand({
        argv: commandArgv(t.command, this.p.local_command_shell), input, timeLimitMs: this.p.command_time_limit * 1000, cwd: '/',
        env: { PATH: '/usr/bin:/bin', SENDER: req.sender, RECIPIENT: address, LOCAL: at < 0 ? address : address.slice(0, at), DOMAIN: at < 0 ? '' : address.slice(at + 1), ...(pw ? { USER: pw.name, LOGNAME: pw.name, HOME: pw.home, SHELL: pw.shell } : {}) },
        ...(pw ? { uid: pw.uid, gid: pw.gid } : {}),
      });
      return r.ok ? { status: 'sent', dsn: '2.0.0', reason: `delivered to command: ${t.command}` } : { status: r.dsn.startsWith('4') ? 'deferred' : 'bounced', dsn: r.dsn, reason: r.text };
    }
    if (t.kind === 'file') {
      const data = mailCopy(content, { flags: new Set(['F', 'R', 'O', 'D', '>', 'B']), eol: '\n', sender: req.sender, originalRecipient: orcpt, deliveredTo: address, now: new Date() });
      // Files named in aliases are locked with flock only (a dot-lock beside an arbitrary file may not be creatable).
      const locks = { dotlock: false, flock: true, attempts: 20, delayMs: 1000, staleMs: 500_000 };
      const fail = (dsn: string, why: string): Result => {
        const reason = `cannot append message to file ${t.path}: ${why}`;
        this.ctx.log.warn(`${req.queueId}: ${reason}`);
        return { status: dsn.startsWith('5') ? 'bounced' : 'deferred', dsn, reason };
      };
      if (pw) {
        const r = await writeMailbox({ kind: 'mbox', path: t.path, uid: pw.uid, gid: pw.gid, inSpool: false, locks, sizeLimit: 0, anyOwner: true }, data, pw.name, (w) => this.ctx.log.warn(w));
        return r.ok ? { status: 'sent', dsn: '2.0.0', reason: `delivered to file: ${t.path}` } : fail(r.dsn, r.reason);
      }
      try {
        await appendMbox(t.path, data, { asUser: (fn) => fn(), asSpool: (fn) => fn(), uid: -1, gid: -1 }, locks, false);
        return { status: 'sent', dsn: '2.0.0', reason: `delivered to file: ${t.path}` };
      } catch (e) {
        if (e instanceof MailboxError) return fail(e.dsn, e.message);
        throw e;
      }
    }
    return { status: 'deferred', dsn: '4.3.0', reason: 'internal error: unexpected alias target' };
  }
}
