/**
 * Improper command pipelining, as Postfix's smtpd finds it (smtpd_flag_ill_pipelining):
 *
 *  - before the greeting: a client that sends anything before it got the 220 (Postfix peeks
 *    once before its first read; smtp-server would answer "You talk too soon" instead);
 *  - before a command runs: the client already sent more, and the session is not ESMTP yet (no
 *    EHLO: RFC 2920 pipelining was never offered) or the command must end a pipelined group
 *    (HELO, EHLO, DATA, NOOP, VRFY: SMTPD_CMD_FLAG_LAST).
 *
 * The first time, smtpd logs "improper command pipelining after <CMD> from host[addr]: <the
 * waiting input, escaped, ≤ 100 bytes>" and flags the session, which reject_unauth_pipelining
 * (policy.ts) answers "503 5.5.0 <…>: … rejected: Improper use of SMTP command pipelining";
 * with smtpd_forbid_unauth_pipelining = yes the client instead gets "554 5.5.0 Error: SMTP
 * protocol synchronization" and the session ends. The waiting input is what the line reader
 * (line-reader.ts) holds beyond the current command: the rest of the socket chunk it came in,
 * or a chunk already queued behind it.
 */
import { maillog } from '../../src/log/maillog.js';
import { escapeBytes } from '../../src/log/escape.js';
import type { Command } from '../../src/smtpd/command.js';

const log = maillog('smtpd');

/** Postfix's command names; the ones flagged SMTPD_CMD_FLAG_LAST. */
const KNOWN = new Set(['HELO', 'EHLO', 'XCLIENT', 'XFORWARD', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'VRFY', 'ETRN', 'QUIT']);
const LAST = new Set(['HELO', 'EHLO', 'DATA', 'NOOP', 'VRFY']);

export interface Pipelining { forbid: boolean }

type Conn = {
  _server: { options: Record<string, unknown> & { postactorPipelining?: Pipelining; postactorLimits?: { namaddr(s: object): string } } };
  _parser: ({ paPending?: string } & Record<string, unknown>) | false;
  _nextHandler?: unknown;
  _ready?: boolean;
  _closing?: boolean;
  _closed?: boolean;
  _socket?: { destroyed: boolean };
  _upgrading?: boolean;
  secure?: boolean;
  remoteAddress: string;
  session: Record<string, unknown> & { transmissionType?: string; paIllPipelining?: boolean };
  send(code: number, data: unknown, context?: unknown): void;
  close(): void;
};

/** Whether the session was flagged (reject_unauth_pipelining). */
export function illPipelining(session: object): boolean {
  return (session as { paIllPipelining?: boolean }).paIllPipelining === true;
}

function flag(conn: Conn, where: string, pending: string): void {
  conn.session.paIllPipelining = true;
  const namaddr = conn._server.options.postactorLimits?.namaddr(conn.session) ?? `unknown[${conn.remoteAddress}]`;
  log.info(`improper command pipelining after ${where} from ${namaddr}: ${escapeBytes(pending.slice(0, 100))}`);
}

function synchronization(conn: Conn, cb: () => void): void {
  conn.send(554, '5.5.0 Error: SMTP protocol synchronization', false);
  conn.close();
  cb();
}

/**
 * The command table's check (commands.ts, after bare-newline.ts): a client that spoke before
 * the greeting waits for it here; improper pipelining is flagged, or with
 * smtpd_forbid_unauth_pipelining answered and the session ends.
 */
export function pipeliningCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn;
  const settings = c._server.options.postactorPipelining;
  if (!settings || c._nextHandler || c._upgrading || c._closing) return false;
  if (!c._ready) {
    // Spoke before the greeting: flagged; the command waits for the greeting (bounded by
    // the session's own life: a closed session drops it).
    const pending = cmd.line.toString('latin1') + '\r\n' + ((c._parser && c._parser.paPending) || '');
    if (!c.session.paIllPipelining) flag(c, 'CONNECT', pending);
    const wait = (): void => {
      if (c._closing || c._closed || c._socket?.destroyed) return cmd.done();
      if (!c._ready) return void setTimeout(wait, 10);
      if (settings.forbid) return synchronization(c, cmd.done);
      cmd.resume();
    };
    wait();
    return true;
  }
  if (!c.session.paIllPipelining) {
    const pending = (c._parser && c._parser.paPending) || '';
    if (pending) {
      const name = cmd.latin1Verb();
      const esmtp = c.session.transmissionType?.startsWith('E') ?? false;
      if (KNOWN.has(name) && (!esmtp || LAST.has(name))) {
        flag(c, name, pending);
        if (settings.forbid) {
          synchronization(c, cmd.done);
          return true;
        }
      }
    }
  }
  return false;
}
