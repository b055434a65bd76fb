/**
 * smtpd's error accounting and request deadlines, as Postfix's smtpd has them:
 *
 *  - Every command that fails (its final reply is 4xx or 5xx: a rejected RCPT, an unknown
 *    command, a failed AUTH …) adds one to the session's error count. From
 *    `smtpd_soft_error_limit` errors on, every reply waits `smtpd_error_sleep_time` first; at
 *    `smtpd_hard_error_limit` errors the session ends with "421 4.7.0 <myhostname> Error: too many
 *    errors" and the log line "too many errors after <COMMAND> from host[addr]".
 *  - A message received forgives the errors and junk commands before it (Postfix resets both).
 *  - HELO, EHLO, RSET, NOOP, VRFY and ETRN are "junk" commands: beyond
 *    `smtpd_junk_command_limit` of them, each also counts as an error (so a NOOP loop ends at the
 *    hard limit as well), as in Postfix.
 *  - `smtpd_per_request_deadline = yes`: `smtpd_timeout` bounds each whole request (a command
 *    line, or the message content), not only each idle wait; during DATA every byte received
 *    buys 1/`smtpd_min_data_rate` s more, never more than `smtpd_timeout` in hand. A client too
 *    slow gets "421 4.4.2 <myhostname> Error: timeout exceeded" (dialect.ts words it) and the log
 *    line "timeout after DATA (N bytes) from host[addr]".
 *
 * Postfix sleeps inside its reply routine; smtp-server is event-driven, so the sleep happens
 * before the next line from the client is processed: the client sees the same delay before
 * each reply. The library's own "10 unrecognized commands" cut-off is disabled: these limits
 * replace it.
 */
import type { Params } from '../../src/config/declared.js';
import { maillog } from '../../src/log/maillog.js';
import type { Command } from '../../src/smtpd/command.js';

const log = maillog('smtpd');

/** The limits of one smtpd, from main.cf / master.cf -o. */
export interface Limits {
  hostname: string;
  softErrorLimit: number;
  hardErrorLimit: number;
  junkCommandLimit: number;
  /** smtpd_recipient_overshoot_limit: "too many recipients" replies forgiven per transaction. */
  recipientOvershootLimit: number;
  errorSleepMs: number;
  perRequestDeadline: boolean;
  timeoutMs: number;
  /** Bytes per second that buy one more second during DATA (with the deadline). */
  minDataRate: number;
  /** "host[addr]" of a session, for the log. */
  namaddr(session: object): string;
}

/** What the limits read (with the rest of smtpd's: index.ts SMTPD_PARAMS). */
export const LIMIT_PARAMS = {
  'myhostname': 'str',
  'smtpd_soft_error_limit': 'int',
  'smtpd_hard_error_limit': 'int',
  'smtpd_junk_command_limit': 'int',
  'smtpd_recipient_overshoot_limit': 'int',
  'smtpd_error_sleep_time': 'time',
  'smtpd_per_request_deadline': 'bool',
  'smtpd_timeout': 'time',
  'smtpd_min_data_rate': 'int',
} as const;

/** The limits from the values smtpd read. */
export function limitsFrom(p: Params<typeof LIMIT_PARAMS>, namaddr: (session: object) => string): Limits {
  return {
    hostname: p.myhostname,
    softErrorLimit: p.smtpd_soft_error_limit,
    hardErrorLimit: p.smtpd_hard_error_limit,
    junkCommandLimit: p.smtpd_junk_command_limit,
    recipientOvershootLimit: p.smtpd_recipient_overshoot_limit,
    errorSleepMs: p.smtpd_error_sleep_time * 1000,
    perRequestDeadline: p.smtpd_per_request_deadline,
    timeoutMs: p.smtpd_timeout * 1000,
    minDataRate: p.smtpd_min_data_rate,
    namaddr,
  };
}

/** Postfix's command names (state->where); anything else is UNKNOWN. */
const KNOWN = new Set(['HELO', 'EHLO', 'XCLIENT', 'XFORWARD', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'VRFY', 'ETRN', 'QUIT']);
/** Commands that count against smtpd_junk_command_limit (Postfix: SMTPD_CMD_FLAG_LIMIT). */
const JUNK = new Set(['HELO', 'EHLO', 'RSET', 'NOOP', 'VRFY', 'ETRN']);
/** Postfix's state->where while message content is read. */
const AFTER_DATA = 'DATA content';
/** …and while a BDAT chunk is read (bdat.ts). */
const AFTER_BDAT = 'BDAT content';

/** Per-connection state, kept on the connection object. */
interface State {
  errors: number;
  junk: number;
  /** RCPTs refused as "too many recipients" in this transaction (Postfix's rcpt_overshoot). */
  overshoot: number;
  /** The command whose final reply is still due (null when none). */
  pending: string | null;
  where: string;
  /** The request deadline: time left when `since` was taken, and the timer. */
  budget: number;
  since: number;
  rate: number;
  timer: NodeJS.Timeout | null;
  /** The socket whose bytes are counted against the deadline. */
  watched: object | null;
  hangup: boolean;
}

type Conn = {
  _server: { options: Record<string, unknown> & { postactorLimits?: Limits } };
  _socket: { destroyed: boolean; on(e: 'data', cb: (b: Buffer) => void): void; once(e: 'close', cb: () => void): void };
  _parser?: { dataBytes?: number; _dataMode?: boolean } | false;
  _dataStream?: unknown;
  _nextHandler?: unknown;
  _handlerPending?: boolean;
  _closing?: boolean;
  _upgrading?: boolean;
  _unrecognizedCommands: number;
  session: object;
  send(code: number, data: unknown, context?: unknown): void;
  close(): void;
  _onTimeout(): void;
  _paLimits?: State;
  /** bdat.ts: the BDAT transaction, with the bytes of its chunks read so far. */
  _paBdat?: { received: number };
};

/**
 * A BDAT chunk is being read (bdat.ts): "timeout after BDAT (N bytes)", and with the
 * per-request deadline the chunk earns time at smtpd_min_data_rate, as DATA content does.
 */
export function bdatContent(conn: object): void {
  const c = conn as Conn;
  const limits = c._server.options.postactorLimits;
  if (!limits) return;
  stateOf(c).where = AFTER_BDAT;
  if (limits.perRequestDeadline) recharge(c, limits, limits.minDataRate);
}

function stateOf(conn: Conn): State {
  return (conn._paLimits ??= { errors: 0, junk: 0, overshoot: 0, pending: null, where: 'CONNECT', budget: 0, since: 0, rate: 0, timer: null, watched: null, hangup: false });
}

/** Is the client waiting for us (a handler runs, or the message is in and being decided on)? */
function serverBusy(conn: Conn): boolean {
  return Boolean(conn._handlerPending || (conn._dataStream && conn._parser && !conn._parser._dataMode));
}

/** Patches smtp-server's connection class (after dialect.ts): the error count of each reply, the timeout line. */
export function installLimits(proto: Record<string, unknown>): void {
  const send = proto.send as Send;
  dialectSend = send;
  const onTimeout = proto._onTimeout as (this: Conn) => void;

  proto.send = function (this: Conn, code: number, data: unknown, context?: unknown) {
    const limits = this._server.options.postactorLimits;
    if (!limits) return send.call(this, code, data, context);
    const st = stateOf(this);
    // The first final reply to a command (not 354, not an AUTH challenge) says how it went.
    if (st.pending !== null && code !== 354 && code !== 334) {
      const cmd = st.pending;
      st.pending = null;
      // Past smtpd_recipient_limit the first smtpd_recipient_overshoot_limit refusals are not errors.
      const overshoot = cmd === 'RCPT' && code === 452 && String(data).includes('too many recipients');
      if (code >= 400 && !(overshoot && st.overshoot++ < limits.recipientOvershootLimit)) st.errors++;
      if (JUNK.has(cmd) && st.junk++ > limits.junkCommandLimit) st.errors++;
      // A new transaction starts the count again (Postfix's mail_reset).
      if (cmd === 'MAIL' || cmd === 'RSET' || cmd === 'HELO' || cmd === 'EHLO') st.overshoot = 0;
      // (BDAT: only the reply to BDAT LAST says "queued as", bdat.ts.)
      if ((cmd === 'DATA' || (cmd === 'BDAT' && String(data).includes(' queued as '))) && code < 400) {
        // A message received: Postfix forgives the client's earlier errors and junk.
        st.where = 'END-OF-MESSAGE';
        st.errors = 0;
        st.junk = 0;
        st.overshoot = 0;
      }
    }
    if (code === 354) st.where = AFTER_DATA;
    send.call(this, code, data, context);
    // The next request starts now: a command line, or the message content after 354.
    if (limits.perRequestDeadline) recharge(this, limits, code === 354 ? limits.minDataRate : 0);
  };

  proto._onTimeout = function (this: Conn) {
    const limits = this._server.options.postactorLimits;
    if (limits && !this._closing && !serverBusy(this)) timedOut(this, limits);
    return onTimeout.call(this);
  };
}

/**
 * The command table's check (commands.ts, after syntax.ts): the hard error limit before a
 * command is read, the sleep after too many errors, and what the command is (for "too many
 * errors after …", "timeout after …" and the error count of its reply).
 */
export function limitsCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn;
  const limits = c._server.options.postactorLimits;
  if (!limits) return false;
  const st = stateOf(c);
  // Our error limits replace smtp-server's cut-off after 10 unrecognized commands.
  c._unrecognizedCommands = 0;
  stopDeadline(st);
  // Postfix checks the limit before it reads the next command.
  if (st.errors >= limits.hardErrorLimit) {
    tooManyErrors(c, limits, st);
    return true;
  }
  if (!c._nextHandler) {
    const name = cmd.verb;
    st.where = KNOWN.has(name) ? name : 'UNKNOWN';
    st.pending = st.where;
  }
  const done = cmd.done;
  cmd.done = () => {
    if (st.errors >= limits.hardErrorLimit && !c._closing) return tooManyErrors(c, limits, st);
    done();
  };
  if (st.errors < limits.softErrorLimit || limits.errorSleepMs <= 0) return false;
  // Slow down a client that makes errors (the idle timeout does not count while we sleep).
  c._handlerPending = true;
  setTimeout(() => {
    c._handlerPending = false;
    if (c._closing) return;
    cmd.resume();
  }, limits.errorSleepMs);
  return true;
}

/** "421 4.7.0 … Error: too many errors", after the sleep every reply gets by now. */
function tooManyErrors(conn: Conn, limits: Limits, st: State): void {
  if (st.hangup) return;
  st.hangup = true;
  conn._handlerPending = true;
  const delay = st.errors >= limits.softErrorLimit ? limits.errorSleepMs : 0;
  setTimeout(() => {
    conn._handlerPending = false;
    if (conn._closing) return;
    log.info(`too many errors after ${st.where} from ${limits.namaddr(conn.session)}`);
    stopDeadline(st);
    // Not through our send(): the 421 is not a command's reply and recharges nothing.
    send421(conn, `4.7.0 ${limits.hostname} Error: too many errors`);
  }, delay);
}

type Send = (this: Conn, code: number, data: unknown, context?: unknown) => void;
/** dialect.ts's send(), which keeps texts with an enhanced status code as they are. */
let dialectSend: Send | null = null;
function send421(conn: Conn, text: string): void {
  // smtp-server closes the connection after a 421.
  dialectSend!.call(conn, 421, text, false);
}

/** Logs "timeout after CMD from …" ("DATA (N bytes)" while content was read). */
function timedOut(conn: Conn, limits: Limits): void {
  const st = stateOf(conn);
  if (st.hangup) return;
  st.hangup = true;
  stopDeadline(st);
  const where = st.where === AFTER_DATA ? `DATA (${(conn._parser && conn._parser.dataBytes) || 0} bytes)`
    : st.where === AFTER_BDAT ? `BDAT (${conn._paBdat?.received ?? 0} bytes)` : st.where;
  log.info(`timeout after ${where} from ${limits.namaddr(conn.session)}`);
}

/** A new request: `smtpd_timeout` in hand, more per byte at `rate` bytes/s (0: none). */
function recharge(conn: Conn, limits: Limits, rate: number): void {
  const st = stateOf(conn);
  if (st.hangup || conn._closing) return;
  st.budget = limits.timeoutMs;
  st.since = Date.now();
  st.rate = rate;
  watch(conn, limits, st);
  arm(conn, limits, st);
}

/** Counts the bytes read from the connection's current socket (a new one after STARTTLS). */
function watch(conn: Conn, limits: Limits, st: State): void {
  const socket = conn._socket;
  if (st.watched === socket) return;
  st.watched = socket;
  socket.on('data', (chunk: Buffer) => {
    if (st.watched !== socket || st.timer === null) return;
    const now = Date.now();
    st.budget -= now - st.since;
    st.since = now;
    if (st.rate > 0) st.budget = Math.min(limits.timeoutMs, st.budget + (chunk.length * 1000) / st.rate);
    arm(conn, limits, st);
  });
}

function arm(conn: Conn, limits: Limits, st: State): void {
  if (st.timer) clearTimeout(st.timer);
  st.timer = setTimeout(() => {
    st.timer = null;
    if (conn._closing || conn._socket.destroyed) return;
    // Waiting for us is not the client's time: the reply will start a new request. A STARTTLS
    // handshake has its own limit (smtpd_starttls_timeout, tls.ts).
    if (serverBusy(conn) || conn._upgrading) return;
    conn._onTimeout();
  }, Math.max(0, st.budget));
  st.timer.unref();
}

function stopDeadline(st: State): void {
  if (st.timer) clearTimeout(st.timer);
  st.timer = null;
}
