/**
 * Makes smtp-server speak like Postfix's smtpd.
 *
 * smtp-server is a good protocol engine but answers in its own words ("250 Accepted") and waits a
 * fixed 100 ms before every greeting (an early-talker test that belongs to postscreen, not to
 * smtpd: it caps a client that opens a connection per message at 10 messages/s per connection).
 * We patch its connection class, pinned to smtp-server 3.x, in these places:
 *   - init(): greet as soon as the connection is set up;
 *   - send(): every reply goes through `postfixReply`, which maps the library's texts to
 *     Postfix's replies with enhanced status codes, and counts commands for the
 *     "disconnect from … ehlo=1 mail=1 …" log line; and is written by `writeReply`, which
 *     does what the library's send() does without its per-reply costs (a regex replace, a log
 *     record object, enhanced-code lookups for replies that already carry theirs), and batches
 *     replies as Postfix's smtpd does: while the client has already sent more commands
 *     (pipelining), replies wait in the socket (cork) and go out in one write when the input
 *     is consumed (the last command of the group) or at the end of this turn of the event
 *     loop; STARTTLS's 220 and the replies that end a session are written at once;
 *   - the VRFY, HELP and joke handlers;
 *   - a check of the command table (commands.ts): the command counters, and unknown commands
 *     to the milters;
 *   - and the server's per-connection set-up (_handleProxy without a PROXY header): a session id
 *     from a counter instead of 10 random bytes through randomFillSync and a BigInt.
 */
import { threadId } from 'node:worker_threads';
import { smtpConnectionPrototype, SMTPServer } from './engine.js';
import type { Command } from '../../src/smtpd/command.js';
import { envidValid } from './syntax.js';

/** What the patched connection needs to know about this smtpd. */
/** smtpd_milters' view of an unknown command: a reply that replaces the 500, or null. */
export type UnknownCommandHook = (session: unknown, line: string) => Promise<{ code: number; text: string } | null>;

export interface Dialect {
  hostname: string;
  banner: string;
  vrfyDisabled: boolean;
  /** smtputf8_enable: VRFY's syntax reply names its SMTPUTF8 option, as Postfix's. */
  smtputf8: boolean;
  /** SMTPUTF8 announced (enabled, not discarded): `VRFY address SMTPUTF8` drops the option word. */
  smtputf8Offered: boolean;
  sizeLimit: number;
  /** Lines after the first of the EHLO reply. */
  ehloKeywords: string[];
}

/** Per-connection command counters, in the order Postfix prints them. */
export const COUNTED = ['helo', 'ehlo', 'xclient', 'xforward', 'starttls', 'auth', 'mail', 'rcpt', 'data', 'bdat', 'rset', 'noop', 'vrfy', 'etrn', 'quit', 'unknown'] as const;
export type Counters = Record<string, [ok: number, total: number]>;

type Conn = {
  _server: { options: Record<string, unknown> & { postactorDialect: Dialect } };
  _socket: { write(s: string): void; cork(): void; uncork(): void; destroyed: boolean; readyState: string };
  _upgrading: boolean;
  _closing?: boolean;
  _parser?: { paPending?: string } | false;
  /** The socket holding corked replies (writeReply), or null. */
  _paCorked?: Conn['_socket'] | null;
  secure: boolean;
  session: Record<string, unknown> & { error?: string; paEhloExtra?: string[] };
  _nextHandler?: unknown;
  _setListeners(cb: () => void): void;
  connectionReady(): void;
  close(): void;
  send(code: number, data: unknown, context?: unknown): void;
  _paEmit(code: number, data: string | string[], command: string | null | undefined): void;
  _paCommand?: string | null;
};

const ENHANCED = /^\d\.\d{1,3}\.\d{1,3}(?: |$)/;

/** Library text → Postfix's reply (code, enhanced code and text). */
const TABLE = new Map<string, [number, string]>(Object.entries({
  'OK': [250, '2.0.0 Ok'],
  'Flushed': [250, '2.0.0 Ok'], // RSET
  'Bye': [221, '2.0.0 Bye'],
  'Error: need MAIL command': [503, '5.5.1 Error: need MAIL command'],
  'Error: need RCPT command': [503, '5.5.1 Error: need RCPT command'],
  'Error: nested MAIL command': [503, '5.5.1 Error: nested MAIL command'],
  'Error: Mail transaction in progress': [503, '5.5.1 Error: MAIL transaction in progress'],
  'Error: Bad sender address syntax': [501, '5.1.7 Bad sender address syntax'],
  'Error: Bad recipient address syntax': [501, '5.1.3 Bad recipient address syntax'],
  'Error: command not recognized': [500, '5.5.2 Error: command not recognized'],
  'Error: send HELO/EHLO first': [503, '5.5.1 Error: send HELO/EHLO first'],
  'Error: too many recipients': [452, '4.5.3 Error: too many recipients'],
  'Error: Bad command parameter syntax': [555, '5.5.4 Unsupported option'],
  'Error: Bad message size syntax': [501, '5.5.4 Bad message size syntax'],
  // A DSN parameter given twice is a syntax error of that parameter in Postfix.
  'Error: duplicate RET parameter': [501, '5.5.4 Bad RET parameter syntax'],
  // A DSN or SIZE parameter without its value ("SIZE="): Postfix finds its syntax bad.
  'Error: SIZE parameter requires a value': [501, '5.5.4 Bad message size syntax'],
  'Error: RET parameter requires a value': [501, '5.5.4 Bad RET parameter syntax'],
  'Error: ENVID parameter requires a value': [501, '5.5.4 Bad ENVID parameter syntax'],
  'Error: NOTIFY parameter requires a value': [501, '5.5.4 Error: Bad NOTIFY parameter syntax'],
  'Error: ORCPT parameter requires a value': [501, '5.5.4 Error: Bad ORCPT parameter syntax'],
  'Error: duplicate NOTIFY parameter': [501, '5.5.4 Error: Bad NOTIFY parameter syntax'],
  'Error: duplicate ORCPT parameter': [501, '5.5.4 Error: Bad ORCPT parameter syntax'],
  // (Postfix's HELO and EHLO syntax replies have no enhanced status code.)
  'Error: syntax: EHLO hostname': [501, 'Syntax: EHLO hostname'],
  'Error: Syntax: HELO hostname': [501, 'Syntax: HELO hostname'],
  'Error: Bad hostname syntax': [501, '5.5.4 Syntax: bad hostname'],
  'Error: internal server error': [451, '4.3.0 Error: internal error'],
  'Error: too many unrecognized commands': [421, '4.7.0 Error: too many errors'],
  'Error: authentication Required': [530, '5.7.0 Authentication required'],
  'End data with <CR><LF>.<CR><LF>': [354, 'End data with <CR><LF>.<CR><LF>'],
  // DSN (RFC 3461) parameter errors, in Postfix's words.
  'Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY': [501, '5.5.4 Error: Bad NOTIFY parameter syntax'],
  'Error: NOTIFY=NEVER cannot be combined with other values': [501, '5.5.4 Error: Bad NOTIFY parameter syntax'],
  'Error: Bad ORCPT parameter syntax': [501, '5.5.4 Error: Bad ORCPT parameter syntax'],
  'Invalid RET parameter value. Must be FULL or HDRS': [501, '5.5.4 Bad RET parameter syntax'],
} satisfies Record<string, [number, string]>));

/** Maps one reply of the library to Postfix's wording; returns [code, text-with-enhanced-code]. */
export function postfixReply(code: number, text: string, context: unknown, d: Dialect): [number, string] {
  // Replies Postfix sends without an enhanced status code (ETRN's: etrn.ts).
  if (context === 'POSTFIX_VERBATIM') return [code, text];
  if (context === 'MAIL_FROM_OK') return [250, '2.1.0 Ok'];
  if (context === 'RCPT_TO_OK') return [250, '2.1.5 Ok'];
  if (context === 'MESSAGE_TOO_BIG' || text.startsWith('Error: message exceeds fixed maximum message size')) return [552, '5.3.4 Message size exceeds fixed limit'];
  if (text === 'Timeout - closing connection') return [421, `4.4.2 ${d.hostname} Error: timeout exceeded`];
  if (text === 'Server shutting down') return [421, `4.3.2 ${d.hostname} Service shutting down, closing transmission channel`];
  if (text.endsWith('Too many connected clients, try again in a moment')) return [421, `4.7.0 ${d.hostname} Error: too many connections`];
  // A milter's CONNECT reject answers the greeting with Postfix's own text, no enhanced code.
  if (text.startsWith(d.hostname) && (text === `${d.hostname} ESMTP not accepting connections` || text === `${d.hostname} Service unavailable - try again later`)) return [code, text];
  const mapped = TABLE.get(text);
  if (mapped) return mapped;
  if (code < 300 && context === false) return [code, text];
  if (ENHANCED.test(text) || (code >= 300 && code < 400)) return [code, text];
  const cls = Math.floor(code / 100);
  const enhanced = cls === 2 ? '2.0.0' : cls === 4 ? '4.0.0' : code <= 502 ? '5.5.2' : '5.0.0';
  return [code, `${enhanced} ${text}`];
}

/** EHLO replies already made, per smtpd: by TLS state and the session's own keywords. */
const ehloReplies = new WeakMap<Dialect, Map<string, readonly string[]>>();

/**
 * The EHLO reply: our own keyword list, as Postfix orders it (no STARTTLS inside TLS), with this
 * session's own keywords (AUTH: sasl.ts; XCLIENT, XFORWARD: xclient.ts) before
 * ENHANCEDSTATUSCODES. Made once per combination, not per EHLO.
 */
function ehloReply(d: Dialect, secure: boolean, own: string[] | undefined): string[] {
  let cache = ehloReplies.get(d);
  if (!cache) ehloReplies.set(d, (cache = new Map()));
  const key = own?.length ? `${secure ? 1 : 0}\n${own.join('\n')}` : secure ? '1' : '0';
  let reply = cache.get(key);
  if (!reply) {
    const base = secure ? d.ehloKeywords.filter((k) => k !== 'STARTTLS') : d.ehloKeywords;
    // AUTH before XCLIENT and XFORWARD (xclient.ts), as Postfix orders them.
    const extra = [...(own ?? [])].sort((a, b) => Number(!/^AUTH[ =]/.test(a)) - Number(!/^AUTH[ =]/.test(b)));
    const at = base.findIndex((k) => ['ENHANCEDSTATUSCODES', '8BITMIME', 'DSN', 'SMTPUTF8', 'CHUNKING'].includes(k));
    const keywords = at < 0 ? [...base, ...extra] : [...base.slice(0, at), ...extra, ...base.slice(at)];
    reply = Object.freeze([d.hostname, ...keywords]);
    // A few combinations in practice (SASL mechanisms, XCLIENT/XFORWARD): bounded all the same.
    if (cache.size >= 64) cache.clear();
    cache.set(key, reply);
  }
  return reply as string[];
}

/** A control character would split a reply (smtp-server's send() scrubs them the same way). */
const CONTROL = /[\x00-\x1f\x7f]/;
const CONTROL_ALL = /[\x00-\x1f\x7f]/g;
const clean = (line: string): string => (CONTROL.test(line) ? line.replace(CONTROL_ALL, ' ') : line);

/** Sends the replies a pipelining client's earlier commands got and are waiting in the socket. */
function flush(conn: Conn): void {
  const sock = conn._paCorked;
  if (!sock) return;
  conn._paCorked = null;
  sock.uncork();
}

/**
 * Writes one reply, already in Postfix's words (no enhanced-code lookup: context false), as
 * smtp-server's send() does, and batches it with the replies to the client's other pipelined
 * commands (Postfix's smtpd flushes its output only when it has read all the client sent).
 * `command` is the command being answered ('starttls', 'quit', …) or null.
 */
function writeReply(conn: Conn, code: number, data: string | string[], command: string | null | undefined): void {
  let payload: string;
  if (Array.isArray(data)) {
    const last = data.length - 1;
    payload = data.map((line, i) => `${code}${i < last ? '-' : ' '}${clean(line)}`).join('\r\n');
  } else {
    payload = data ? `${code} ${clean(data)}` : String(code);
  }
  if (code >= 400) conn.session.error = payload;
  // RFC 4954 4: an empty challenge is "334 " (as smtp-server sends it).
  if (code === 334 && payload === '334') payload += ' ';
  const sock = conn._socket;
  // While a TLS handshake is in flight the socket is still the raw one: nothing may be
  // written to it (smtp-server suppresses the reply, and so do we).
  if (!conn._upgrading && sock && !sock.destroyed && sock.readyState === 'open') {
    const pending = conn._parser ? conn._parser.paPending : '';
    // Hold the reply while the client's next commands are already here; STARTTLS's 220 and
    // the replies that end the session go out at once (with the held ones before them).
    const hold = !!pending && code !== 421 && code !== 221 && command !== 'starttls' && !conn._closing;
    if (hold && !conn._paCorked) {
      sock.cork();
      conn._paCorked = sock;
      setImmediate(() => flush(conn));
    }
    sock.write(`${payload}\r\n`);
    if (!hold) flush(conn);
  }
  // The connection has to go away even if the reply was suppressed (as smtp-server does).
  if (code === 421) conn.close();
}

let installed = false;

/** Patches smtp-server's connection class (once per thread). */
export async function installDialect(): Promise<void> {
  if (installed) return;
  installed = true;
  const proto = smtpConnectionPrototype() as Record<string, unknown> & ThisType<Conn>;
  const originalSend = proto.send as (this: Conn, code: number, data: unknown, context?: unknown) => void;
  installSessionIds();

  proto.init = function (this: Conn) {
    this._setListeners(() => {
      const opts = this._server.options as { maxClients?: number };
      const server = this._server as unknown as { connections: Set<unknown> };
      if (opts.maxClients && server.connections.size > opts.maxClients) {
        return originalSend.call(this, 421, `${this._server.options.postactorDialect.hostname} Too many connected clients, try again in a moment`, false);
      }
      this.connectionReady();
    });
  };

  proto.send = function (this: Conn, code: number, data: unknown, context?: unknown) {
    const d = this._server.options.postactorDialect;
    const command = this._paCommand;
    count(this, code);
    if (Array.isArray(data)) return this._paEmit(code, ehloReply(d, this.secure, this.session.paEhloExtra), command);
    const text = data === undefined || data === null ? '' : String(data);
    if (code === 220 && context === false) return this._paEmit(220, d.banner, command);
    const [c, t] = postfixReply(code, text, context, d);
    return this._paEmit(c, t, command);
  };

  // Every reply in its final words leaves through _paEmit: chat.ts wraps it (reject footer,
  // session transcript) after this is installed.
  proto._paEmit = function (this: Conn, code: number, data: string | string[], command: string | null | undefined) {
    writeReply(this, code, data, command);
  };

  proto.handler_VRFY = function (this: Conn, command: Buffer | string, callback: () => void) {
    const d = this._server.options.postactorDialect;
    const words = String(command).trim().split(/\s+/).slice(1);
    if (d.smtputf8Offered && words.length > 0 && words[words.length - 1]!.toUpperCase() === 'SMTPUTF8') words.pop(); // RFC 6531
    const arg = words.join(' ');
    // Through this.send(), so the reply is counted (disconnect line, error limits: limits.ts).
    if (d.vrfyDisabled) this.send(502, '5.5.1 VRFY command is disabled', false);
    else if (!arg) this.send(501, `5.5.4 Syntax: VRFY address${d.smtputf8 ? ' [SMTPUTF8]' : ''}`, false);
    // The argument is echoed as the client wrote it (brackets too), its words joined by one
    // space (Postfix's collapse_args), control characters made '?' (printable()).
    else this.send(252, `2.0.0 ${arg.replace(/[\x00-\x1f\x7f]/g, '?')}`, false);
    callback();
  };
  // MAIL and RCPT as Postfix's mail_cmd and rcpt_cmd take them, before the address is parsed:
  // a nested MAIL, or RCPT without MAIL, first; then the FROM: / TO: keyword and something after
  // it (smtpd_token.c splits the word at the colon), else Postfix's syntax reply.
  for (const [verb, keyword, syntax] of [['MAIL', /^MAIL[ \t]+FROM:[ \t]*\S/i, '5.5.4 Syntax: MAIL FROM:<address>'], ['RCPT', /^RCPT[ \t]+TO:[ \t]*\S/i, '5.5.4 Syntax: RCPT TO:<address>']] as const) {
    const original = proto[`handler_${verb}`] as (this: Conn, command: Buffer | string, callback: () => void) => void;
    proto[`handler_${verb}`] = function (this: Conn, command: Buffer | string, callback: () => void) {
      const inMail = Boolean((this.session.envelope as { mailFrom?: unknown }).mailFrom);
      const line = String(command);
      if (verb === 'MAIL' && inMail) this.send(503, 'Error: nested MAIL command');
      else if (verb === 'RCPT' && !inMail) this.send(503, 'Error: need MAIL command');
      else if (!keyword.test(line)) this.send(501, syntax, false);
      // ENVID: one, valid xtext, printable (or tab) once decoded; smtp-server decodes it leniently.
      else if (verb === 'MAIL' && !this._server.options.hideDSN && /[ \t]ENVID=/i.test(line) && !envidValid(line)) this.send(501, '5.5.4 Bad ENVID parameter syntax', false);
      // (smtp-server's parser wants one space between the verb and its keyword. The line as
      // written is kept for the "Unsupported option" reply: parameters.ts asWritten.)
      else {
        this.session.paCommandLine = line;
        return original.call(this, line.replace(/^(MAIL|RCPT)[ \t]+/i, '$1 '), callback);
      }
      return callback();
    };
  }
  // RSET and DATA take no argument (Postfix's rset_cmd, data_cmd); NOOP and QUIT ignore theirs.
  const rset = proto.handler_RSET as (this: Conn, command: Buffer | string, callback: () => void) => void;
  proto.handler_RSET = function (this: Conn, command: Buffer | string, callback: () => void) {
    if (/^RSET[ \t]*\S/i.test(String(command))) {
      this.send(501, '5.5.4 Syntax: RSET', false);
      return callback();
    }
    return rset.call(this, command, callback);
  };
  // DATA without an accepted recipient: Postfix's smtpd says "need RCPT command" only outside a
  // transaction; after MAIL (every RCPT refused, or none sent) it is "no valid recipients".
  const data = proto.handler_DATA as (this: Conn, command: Buffer | string, callback: () => void) => void;
  proto.handler_DATA = function (this: Conn, command: Buffer | string, callback: () => void) {
    const envelope = this.session.envelope as { mailFrom?: unknown; rcptTo: unknown[] };
    if (envelope.rcptTo.length === 0 && envelope.mailFrom) {
      this.send(554, '5.5.1 Error: no valid recipients', false);
      return callback();
    }
    if (envelope.rcptTo.length > 0 && /^DATA[ \t]*\S/i.test(String(command))) {
      this.send(501, '5.5.4 Syntax: DATA', false);
      return callback();
    }
    return data.call(this, command, callback);
  };
  const notRecognized = function (this: Conn, _command: unknown, callback: () => void) {
    this.send(500, '5.5.2 Error: command not recognized', false);
    callback();
  };
  for (const name of ['handler_HELP', 'handler_WIZ', 'handler_SHELL', 'handler_KILL']) proto[name] = notRecognized;
}

const COUNTED_NAMES: ReadonlySet<string> = new Set(COUNTED.filter((k) => k !== 'unknown'));
/** An ASCII verb's counter name: the table's own strings, so the counters are found by an internalized key. */
const COUNTED_KEYS: ReadonlyMap<string, string> = new Map(COUNTED.filter((k) => k !== 'unknown').map((k) => [k.toUpperCase(), k]));

type Self = Conn & { _ready?: boolean; _isSupported(n: string): boolean; _getHandler(n: string): unknown; _whenWritable(cb: () => void): void };

/**
 * The command table's check (commands.ts, after limits.ts): counts every command for the
 * disconnect line (the command's first final reply, not 354, says whether it succeeded), and
 * hands an unknown command to the milters first (Postfix's milter_unknown_event): a reply of
 * theirs answers it instead of "500 5.5.2 Error: command not recognized".
 */
export function dialectCommand(conn: object, cmd: Command): boolean {
  const self = conn as Self;
  // A line of an AUTH exchange is not a command.
  if (self._nextHandler) return false;
  // (The lower-case verb's upper case is the verb, unless it is not ASCII.)
  let key: string;
  if (cmd.ascii) key = COUNTED_KEYS.get(cmd.verb) ?? 'unknown';
  else {
    const lower = cmd.text.split(' ', 1)[0]!.toLowerCase();
    key = COUNTED_NAMES.has(lower) ? lower : 'unknown';
  }
  const counters = ((self.session as { paCounters?: Counters }).paCounters ??= {});
  const c = (counters[key] ??= [0, 0]);
  c[1]++;
  self._paCommand = key;
  const unknownHook = (self._server.options as { postactorUnknownCommand?: UnknownCommandHook }).postactorUnknownCommand;
  if (!unknownHook || !self._ready || self._upgrading) return false;
  const upper = cmd.ascii ? cmd.verb : cmd.text.split(' ', 1)[0]!.toLowerCase().toUpperCase();
  if (self._isSupported(upper) && self._getHandler(upper)) return false;
  void unknownHook(self.session, cmd.text).then((reply) => {
    if (!reply) return cmd.resume();
    self.send(reply.code, reply.text, false);
    setImmediate(() => self._whenWritable(cmd.done));
  });
  return true;
}

/**
 * smtp-server gives every connection a random id (10 bytes through randomFillSync, then a
 * BigInt in base 32) that only its own debug log uses; a per-thread counter serves as well.
 * Only the path without a PROXY header is replaced; with one, the library's own code runs.
 */
function installSessionIds(): void {
  const server = SMTPServer.prototype as unknown as Record<string, unknown>;
  const original = server._handleProxy as (this: unknown, socket: unknown, cb: (err: Error | null, o: object) => void) => void;
  let next = 0;
  const prefix = threadId.toString(32);
  server._handleProxy = function (this: { options: { ignoredHosts?: string[] }; _expectsProxyHeader(s: unknown): boolean }, socket: { remoteAddress?: string }, cb: (err: Error | null, o: object) => void) {
    if (this._expectsProxyHeader(socket)) return original.call(this, socket, cb);
    const id = `${prefix}.${(next++).toString(32)}`;
    const ignore = this.options.ignoredHosts !== undefined && this.options.ignoredHosts.includes(socket.remoteAddress ?? '');
    setImmediate(() => cb(null, { id, ignore }));
  };
}

function count(conn: Conn, code: number): void {
  const key = conn._paCommand;
  // 354 (DATA) and 334 (an AUTH challenge) are not the command's final reply.
  if (!key || code === 354 || code === 334) return;
  conn._paCommand = null;
  if (code < 400) (conn.session as { paCounters?: Counters }).paCounters![key]![0]++;
}

/** "ehlo=1 mail=1 rcpt=0/1 data=1 quit=1 commands=3/4", as Postfix's disconnect line has it. */
export function formatCounters(counters: Counters | undefined): string {
  if (!counters) return 'commands=0';
  const parts: string[] = [];
  let ok = 0;
  let total = 0;
  for (const key of COUNTED) {
    const c = counters[key];
    if (!c) continue;
    ok += c[0];
    total += c[1];
    parts.push(c[0] === c[1] ? `${key}=${c[0]}` : `${key}=${c[0]}/${c[1]}`);
  }
  parts.push(ok === total ? `commands=${ok}` : `commands=${ok}/${total}`);
  return parts.join(' ');
}

/** The command counters of a session. */
export function countersOf(session: object): Counters | undefined {
  return (session as { paCounters?: Counters }).paCounters;
}
