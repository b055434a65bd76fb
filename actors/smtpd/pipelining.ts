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

/** Patches smtp-server's connection class (before bare-newline.ts, which answers first). */
export function installPipelining(proto: Record<string, unknown>): void {
  const onCommand = proto._onCommand as (this: Conn, command: Buffer, cb: () => void) => void;
  proto._onCommand = function (this: Conn, command: Buffer, cb: () => void) {
    const settings = this._server.options.postactorPipelining;
    if (!settings || this._nextHandler || this._upgrading || this._closing) return onCommand.call(this, command, cb);
    if (!this._ready) {
      // Spoke before the greeting: flagged; the command waits for the greeting (bounded by
      // the session's own life: a closed session drops it).
      const pending = command.toString('latin1') + '\r\n' + ((this._parser && this._parser.paPending) || '');
      if (!this.session.paIllPipelining) flag(this, 'CONNECT', pending);
      const wait = (): void => {
        if (this._closing || this._closed || this._socket?.destroyed) return cb();
        if (!this._ready) return void setTimeout(wait, 10);
        if (settings.forbid) return synchronization(this, cb);
        onCommand.call(this, command, cb);
      };
      return wait();
    }
    if (!this.session.paIllPipelining) {
      const name = command.toString('latin1').split(' ', 1)[0]!.toUpperCase();
      const pending = (this._parser && this._parser.paPending) || '';
      const esmtp = this.session.transmissionType?.startsWith('E') ?? false;
      if (pending && KNOWN.has(name) && (!esmtp || LAST.has(name))) {
        flag(this, name, pending);
        if (settings.forbid) return synchronization(this, cb);
      }
    }
    return onCommand.call(this, command, cb);
  };
}
