/**
 * smtpd's side of the conversation, after Postfix's smtpd_chat.c. Every reply leaves through the
 * dialect.ts's _paEmit, wrapped here (so it sees the final text), which makes this the place
 *   - for the reject footer: smtpd_reject_footer (or the smtpd_reject_footer_maps entry for the
 *     reply text) appended to every 4xx/5xx reply, its "\n" starting a new reply line with the
 *     reply's code and enhanced status code, a leading "\c" continuing the last line, and
 *     $client_address, $helo_name … expanded as smtpd_expand.c does (values limited to
 *     smtpd_expansion_filter's characters);
 *   - for the session transcript ("In:  command", "Out: reply") that goes to the postmaster when
 *     the session had an error of a notify_classes class (policy, protocol, resource, software,
 *     bounce): "Postfix SMTP server: errors from host[addr]", "Transcript of session follows.",
 *     at the end of the session or when the transcript grows past
 *     smtpd_history_flush_threshold lines. A message received without error forgives the errors
 *     before it, as in Postfix;
 *   - for soft_bounce: every 5xx reply goes out as 4xx, and each of its lines whose text starts
 *     with "5" (the enhanced status code) as "4" — restriction rejects, syntax errors, milter
 *     replies alike (smtpd_chat.c); the reject log line agrees (src/smtpd/policy.ts).
 * The error class of a reply is read from the reply itself (its enhanced status code), where
 * Postfix's smtpd sets it at each place that answers; the mapping is errorClass() below.
 */
import { openTable, type LookupResult, type LookupTable } from '../../src/maps/index.js';
import { expandValue } from '../../src/config/expand.js';
import type { Params } from '../../src/config/declared.js';
import { newQueueId } from '../../src/queue/qid.js';
import { localZone } from '../../src/time/zone.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';
import type { Command } from '../../src/smtpd/command.js';
import { SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';

/** Postfix's mail_error classes that smtpd's transcripts are sent for. */
export type ErrorClass = 'policy' | 'protocol' | 'resource' | 'software' | 'bounce' | 'data';
export const SMTPD_NOTIFY_CLASSES: readonly ErrorClass[] = ['policy', 'protocol', 'resource', 'software', 'bounce', 'data'];

/** What a session's expansion and notice need to know about it (from index.ts). */
export interface ChatSession {
  /** "name[addr]". */
  namaddr: string;
  macros: Record<string, string>;
}

export interface ChatSettings {
  /** smtpd_reject_footer, unexpanded. */
  footer: string;
  /** smtpd_reject_footer_maps. */
  footerMaps: LookupTable[];
  /** smtpd_expansion_filter: the characters a macro value may keep (others become '_'). */
  filter: Set<string>;
  /** notify_classes ∩ smtpd's classes; empty: no transcript is kept. */
  notify: Set<ErrorClass>;
  /** smtpd_history_flush_threshold. */
  threshold: number;
  /** soft_bounce: 5xx replies go out as 4xx. */
  softBounce: boolean;
  session(session: object): ChatSession;
  /** Sends the transcript; `bounce`: the errors include a 'bounce' class one. */
  post(subjectHost: string, body: string, bounce: boolean): void;
  warn(text: string): void;
}

type Conn = {
  _server: { options: Record<string, unknown> & { postactorChat?: ChatSettings } };
  _nextHandler?: unknown;
  session: object;
  _paChat?: History;
};

interface History {
  lines: string[];
  errors: Set<ErrorClass>;
  reason: string | null;
  quit: boolean;
  done: boolean;
}

/** The transcript's wrapping width and indent (Postfix's LENGTH and INDENT). */
const WIDTH = 78;
const INDENT = 4;

const DSN = /^[245]\.\d{1,3}\.\d{1,3}(?= |$)/;

/**
 * The class of an error reply (Postfix's smtpd sets MAIL_ERROR_* where it answers). Protocol:
 * the 5.5.x syntax and sequence errors, "too many errors"; resource: the queue file and queue
 * space errors; software: configuration and internal errors; bounce: size and hop limits;
 * everything else a restriction, a check or a milter refused: policy. A timeout and a
 * shutdown are not errors of a class.
 */
export function errorClass(code: number, text: string): ErrorClass | null {
  if (code < 400) return null;
  if (/^4\.4\.2 .*timeout exceeded$/.test(text) || /^4\.3\.2 .*shutting down/.test(text)) return null;
  if (/^[45]\.5\.\d/.test(text) && !text.startsWith('4.5.3')) return 'protocol';
  if (/Error: too many errors$/.test(text)) return 'protocol';
  if (text.startsWith('4.3.5') || /Error: internal error/.test(text)) return 'software';
  // A table that failed (Postfix's reject_dict_retry) or local data that could not be read.
  if (/: Temporary lookup failure$/.test(text) || /Server local data error$/.test(text)) return 'data';
  if (text.startsWith('4.3.0') || text.startsWith('4.3.1')) return 'resource';
  if (text.startsWith('5.3.4') || text.startsWith('5.4.0') || text.startsWith('4.3.4')) return 'bounce';
  return 'policy';
}

/** Postfix's C-style escapes of smtpd_expansion_filter (\t, \40, \\) to its set of characters. */
export function expansionFilter(raw: string): Set<string> {
  const out = new Set<string>();
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== '\\' || i + 1 >= raw.length) { out.add(c); continue; }
    const n = raw[++i]!;
    const oct = /^[0-7]{1,3}/.exec(raw.slice(i));
    if (oct) { out.add(String.fromCharCode(parseInt(oct[0], 8))); i += oct[0].length - 1; continue; }
    out.add(({ t: '\t', n: '\n', r: '\r', f: '\f', b: '\b', v: '\v', a: '\x07' } as Record<string, string>)[n] ?? n);
  }
  return out;
}

/**
 * The lines of a reply with the footer (Postfix's smtp_reply_footer()): `text` is the reply
 * after its code; the result is the reply's lines after their code (the first is `text`, maybe
 * continued by "\c"). A template that does not parse leaves the reply as it was.
 */
export function withFooter(text: string, template: string, lookup: (name: string) => string | undefined, warn: (t: string) => void): string[] {
  const dsn = DSN.exec(text)?.[0] ?? '';
  const lines = [text];
  const pieces = template.split('\\n');
  try {
    pieces.forEach((piece, i) => {
      let p = piece;
      if (i === 0 && p.startsWith('\\c')) p = p.slice(2);
      else lines.push(dsn ? `${dsn} ` : '');
      const expanded = expandValue(p, {
        lookup,
        onUndefined: () => undefined,
        fail: (t) => { throw new Error(t); },
      });
      lines[lines.length - 1] += expanded;
    });
  } catch (err) {
    warn(`smtpd_reject_footer: ${(err as Error).message}`);
    return [text];
  }
  return lines;
}

/** Postfix's line_wrap(): at most `width` columns, continuation lines indented by `indent`. */
export function lineWrap(str: string, width: number, indent: number): { indent: number; text: string }[] {
  const out: { indent: number; text: string }[] = [];
  let currIndent = 0;
  let currLen = width;
  let start = 0;
  let word = 0;
  for (;;) {
    let nextSpace = word;
    while (nextSpace < str.length && str[nextSpace] !== ' ' && str[nextSpace] !== '\t') nextSpace++;
    if (word > start && nextSpace - start > currLen) {
      out.push({ indent: currIndent, text: str.slice(start, word).trimEnd() });
      while (word < str.length && /\s/.test(str[word]!)) word++;
      if (start === 0) {
        currIndent += indent;
        currLen -= indent;
      }
      start = word;
    }
    if (nextSpace >= str.length) break;
    word = nextSpace + 1;
  }
  out.push({ indent: currIndent, text: str.slice(start).trimEnd() });
  return out;
}

/** Postfix's printable(s, '?'). */
const printable = (s: string) => s.replace(/[^\x20-\x7e]/g, '?');

/** The body of the postmaster's notice (after its headers), as smtpd_chat_notify() writes it. */
export function transcriptBody(lines: readonly string[], reason: string | null): string {
  const out = ['Transcript of session follows.', ''];
  for (const l of lines) for (const w of lineWrap(printable(l), WIDTH, INDENT)) out.push(` ${' '.repeat(w.indent)}${w.text}`);
  out.push('');
  if (reason) out.push(`Session aborted, reason: ${reason}`);
  out.push('', 'For other details, see the local mail logfile');
  return out.join('\n') + '\n';
}

/** A session's macro values for $name in the footer (smtpd_expand_lookup()), or undefined. */
function macroLookup(s: ChatSettings, session: object): (name: string) => string | undefined {
  const m = s.session(session).macros;
  return (name) => {
    const v = Object.hasOwn(m, name) ? m[name] : undefined;
    if (v === undefined) {
      s.warn(`unknown macro name "${name}" in expansion request`);
      return undefined;
    }
    let out = '';
    for (const c of v) out += s.filter.has(c) ? c : '_';
    return out;
  };
}

/** The footer template for one reply: the maps' entry for its text, else smtpd_reject_footer. */
function templateFor(s: ChatSettings, reply: string): string {
  for (const t of s.footerMaps) {
    if (slow.has(t)) continue;
    let r: LookupResult | Promise<LookupResult>;
    try {
      r = t.lookup(reply);
    } catch (err) {
      s.warn(`smtpd_reject_footer_maps: ${t.spec}: ${(err as Error).message}`);
      continue;
    }
    if (r instanceof Promise) {
      // A reply cannot wait for a lookup: only tables that answer at once (regexp, pcre, cidr,
      // texthash, inline …) serve here.
      r.catch(() => undefined);
      slow.add(t);
      s.warn(`smtpd_reject_footer_maps: ${t.spec}: table lookups over the network or a socket cannot be used for reply footers; ignored`);
      continue;
    }
    if (r.found) return r.value;
  }
  return s.footer;
}

/** Footer tables whose lookups are not immediate (warned once, then skipped). */
const slow = new WeakSet<LookupTable>();

/** Wraps dialect.ts's reply writer (_paEmit: installed after dialect.ts) and close. */
export function installChat(proto: Record<string, unknown>): void {
  type Emit = (this: Conn, code: number, data: string | string[], command: string | null | undefined) => void;
  const emit = proto._paEmit as Emit | undefined;
  if (!emit) throw new Error('installChat: dialect.ts must be installed first');
  const onClose = proto._onClose as (this: Conn) => void;
  proto._paEmit = function (this: Conn, code: number, data: string | string[], command: string | null | undefined) {
    const s = this._server.options.postactorChat;
    // (Most replies: no footer to add, no transcript kept.)
    if (!s || (code < 400 && typeof data === 'string' && s.notify.size === 0)) return emit.call(this, code, data, command);
    const soft = s.softBounce && code >= 500 && code <= 599;
    let lines: string[];
    if (Array.isArray(data)) lines = data;
    else {
      const text = data;
      lines = [text];
      if (code >= 400 && code < 600) {
        const template = templateFor(s, `${code} ${text}`);
        if (template) lines = withFooter(text, template, macroLookup(s, this.session), s.warn);
      }
      const h = s.notify.size > 0 ? historyOf(this) : null;
      if (h) {
        const cls = errorClass(code, text);
        if (cls) h.errors.add(cls);
        // A message received: the errors before it are forgiven (Postfix's error_mask = 0).
        if (code === 250 && /^2\.0\.0 Ok: (?:\d+ bytes )?queued as /.test(text)) h.errors.clear();
        if (code === 421 && /^4\.4\.2 .*timeout exceeded$/.test(text)) h.reason = 'timeout';
        if (code === 421 && /Error: too many errors$/.test(text)) h.reason = 'too many errors';
      }
    }
    // soft_bounce, after the footer as in Postfix: the code and each line's leading "5".
    if (soft) {
      code -= 100;
      lines = lines.map((l) => (l.startsWith('5') ? `4${l.slice(1)}` : l));
    }
    // (The "Out:" lines only when a transcript is kept: not a string per reply for nothing.)
    if (s.notify.size > 0) record(this, lines.map((l, i) => `Out: ${code}${i < lines.length - 1 ? '-' : ' '}${l}`));
    return emit.call(this, code, lines.length > 1 ? lines : lines[0]!, command);
  };
  proto._onClose = function (this: Conn) {
    const h = this._paChat;
    if (h && !h.done) {
      h.done = true;
      if (!h.quit && h.reason === null) h.reason = 'lost connection';
      flush(this, 0);
    }
    return onClose.call(this);
  };
}

/** The command table's first check (commands.ts): every command line is heard ("In:" lines). */
export function chatCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn;
  const s = c._server.options.postactorChat;
  if (s && s.notify.size > 0) {
    // Postfix flushes a long history before it reads the next command.
    flush(c, s.threshold);
    let line = cmd.text;
    // Credentials stay out of the postmaster's mailbox: an AUTH command keeps its mechanism,
    // an AUTH exchange line is starred.
    if (c._nextHandler) line = '*';
    else if (/^auth\s/i.test(line)) line = line.split(/\s+/).slice(0, 2).join(' ') + (line.trim().split(/\s+/).length > 2 ? ' *' : '');
    else if (/^quit\b/i.test(line.trim())) historyOf(c).quit = true;
    record(c, [`In:  ${line}`]);
  }
  return false;
}

function historyOf(conn: Conn): History {
  return (conn._paChat ??= { lines: [], errors: new Set(), reason: null, quit: false, done: false });
}

function record(conn: Conn, lines: string[]): void {
  const s = conn._server.options.postactorChat;
  if (!s || s.notify.size === 0) return;
  historyOf(conn).lines.push(...lines);
}

/** Postfix's chat_reset(): past `threshold` lines, notify the postmaster if due, and start over. */
function flush(conn: Conn, threshold: number): void {
  const s = conn._server.options.postactorChat;
  const h = conn._paChat;
  if (!s || !h || h.lines.length <= threshold) return;
  if ([...h.errors].some((c) => s.notify.has(c))) {
    s.post(s.session(conn.session).namaddr, transcriptBody(h.lines, h.reason), h.errors.has('bounce'));
  }
  h.errors.clear();
  h.lines = [];
}

/** What chatSettings() needs from smtpd. */
export interface ChatDeps {
  session(session: object): ChatSession;
  /** Hands a message to cleanup; `contentOf` makes its content again for a retry (the first is transferred). */
  submit(request: CleanupRequest, contentOf: () => Uint8Array): Promise<CleanupReply>;
  warn(text: string): void;
}

/**
 * The settings from main.cf: smtpd_reject_footer (raw: its $names are the session's, expanded
 * per reply), smtpd_reject_footer_maps, smtpd_expansion_filter, notify_classes,
 * smtpd_history_flush_threshold; the notice goes from double_bounce_sender to
 * error_notice_recipient (bounce_notice_recipient when the errors include a bounce class one).
 */
export const CHAT_PARAMS = {
  'config_directory': 'str',
  'myorigin': 'str',
  'notify_classes': 'list',
  'mail_name': 'str',
  'double_bounce_sender': 'str',
  'smtpd_reject_footer': 'raw',
  'smtpd_reject_footer_maps': 'list',
  'smtpd_expansion_filter': 'raw',
  'smtpd_history_flush_threshold': 'int',
  'bounce_notice_recipient': 'str',
  'error_notice_recipient': 'str',
  ...SOFT_BOUNCE_PARAMS,
} as const;

/** The settings from the values smtpd read (CHAT_PARAMS, with the rest of smtpd's: index.ts SMTPD_PARAMS). */
export function chatSettings(p: Params<typeof CHAT_PARAMS>, deps: ChatDeps): ChatSettings {
  const dir = p.config_directory || undefined;
  const myorigin = p.myorigin;
  const qualify = (a: string) => (a.includes('@') ? a : `${a}@${myorigin}`);
  const classes = new Set(p.notify_classes.map((c) => c.toLowerCase()));
  const mailName = p.mail_name;
  // As qmgr's notices (actors/qmgr/notices.ts), so that a failed notice is not bounced again.
  const from = qualify(p.double_bounce_sender);
  return {
    footer: p.smtpd_reject_footer,
    footerMaps: p.smtpd_reject_footer_maps.map((spec) => openTable(spec, dir ? { configDirectory: dir } : {})),
    filter: expansionFilter(p.smtpd_expansion_filter),
    notify: new Set(SMTPD_NOTIFY_CLASSES.filter((c) => classes.has(c))),
    threshold: p.smtpd_history_flush_threshold,
    softBounce: p.soft_bounce,
    session: deps.session,
    warn: deps.warn,
    post(namaddr, body, bounce) {
      const to = qualify(bounce ? p.bounce_notice_recipient : p.error_notice_recipient);
      const head = [
        `From: Mail Delivery System <MAILER-DAEMON@${myorigin}>`,
        `To: Postmaster <${to}>`,
        `Subject: ${mailName} SMTP server: errors from ${namaddr}`,
        '', '',
      ].join('\r\n');
      // An ArrayBuffer of its own (not Buffer's shared pool): it is transferred to cleanup.
      const contentOf = () => new Uint8Array(Buffer.from(head + body.replace(/\n/g, '\r\n'), 'utf8'));
      const queueId = newQueueId();
      // Junk mail about junk mail: sent only if cleanup takes it now (post_mail_fopen_nowait).
      deps.submit({ queueId, sender: from, recipients: [{ address: to }], content: contentOf(), arrival: Date.now(), origin: 'bounce' }, contentOf).then(
        (r) => (r.ok ? undefined : deps.warn(`postmaster notify: ${r.code} ${r.dsn} ${r.text}`)),
        (err: Error) => deps.warn(`postmaster notify: ${err.message}`),
      );
    },
  };
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** "%b %d %H:%M:%S" in local time ($localtime). */
export function localtime(ms: number): string {
  const d = new Date(ms + localZone(ms).offset * 60_000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${MONTHS[d.getUTCMonth()]} ${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

/** The macros of smtpd_expand_lookup(): sender/recipient with _name and _domain forms. */
export function sessionMacros(m: { hostname: string; name: string; addr: string; port: number | string; helo: string; sender: string | null; recipient: string | null }): Record<string, string> {
  const out: Record<string, string> = {
    server_name: m.hostname,
    client: `${m.name}[${m.addr}]`,
    client_port: String(m.port),
    client_address: m.addr,
    client_name: m.name,
    reverse_client_name: m.name,
    helo_name: m.helo,
    localtime: localtime(Date.now()),
  };
  for (const [key, addr] of [['sender', m.sender], ['recipient', m.recipient]] as const) {
    const at = addr ? addr.lastIndexOf('@') : -1;
    out[key] = addr === null ? '' : addr || '<>';
    out[`${key}_name`] = addr === null ? '' : !addr ? '<>' : at >= 0 ? addr.slice(0, at) : addr;
    out[`${key}_domain`] = addr && at >= 0 ? addr.slice(at + 1) : '';
  }
  return out;
}
