/**
 * smtpd_forbid_bare_newline (Postfix 3.9 semantics; SMTP smuggling defence), with
 * smtpd_forbid_bare_newline_exclusions and smtpd_forbid_bare_newline_reject_code, and
 * line_length_limit for command lines. The line reader (line-reader.ts) does the reading; this
 * file decides per client how it reads, and answers what it found:
 *
 *   normalize, yes  a bare LF counts as CRLF, but "." ends DATA only after CRLF and with CRLF
 *                   (a "." line next to a bare LF is dropped);
 *   note            the same, and the disconnect line gets "notes=bare_lf";
 *   reject          the same, and a command line ending in a bare LF is answered
 *                   "<code> 5.5.2 <myhostname> Error: bare <LF> received" and the session ends;
 *                   message content with a bare LF is read to its end and then refused with
 *                   that reply (the session goes on, unless the code is 421 or 521);
 *   no              lines end at LF, all CRs before it are dropped, "." after a bare LF ends DATA.
 *
 * Clients in the exclusions ($mynetworks by default) are read as with "no". Each refusal is
 * logged as Postfix's log_whatsup: "NOQUEUE: reject: <where> from host[addr]: bare <LF>
 * received; from=<…> to=<…> proto=… helo=<…>".
 */
import type { Config } from '../../src/config/index.js';
import type { Params } from '../../src/config/declared.js';
import { maillog } from '../../src/log/maillog.js';
import { buildNetworks, NetworkList } from '../../src/net/networks.js';
import type { ReaderMode } from './line-reader.js';
import type { Command } from '../../src/smtpd/command.js';

const log = maillog('smtpd');

export interface BareNewline {
  mode: 'normalize' | 'note' | 'reject' | 'no';
  exclusions: NetworkList;
  code: number;
  lineLimit: number;
  hostname: string;
}

const MODES: Record<string, BareNewline['mode']> = { normalize: 'normalize', yes: 'normalize', note: 'note', reject: 'reject', no: 'no' };

/**
 * What the bare-newline modes read (with the rest of smtpd's: index.ts SMTPD_PARAMS). The
 * exclusions are read as written only when set: unset, they are mynetworks (with its style).
 */
export const BARE_NEWLINE_PARAMS = {
  'smtpd_forbid_bare_newline': 'str',
  'smtpd_forbid_bare_newline_exclusions': 'str',
  'mynetworks': 'str',
  'mynetworks_style': 'str',
  'smtpd_forbid_bare_newline_reject_code': 'int',
  'line_length_limit': 'int',
  'myhostname': 'str',
} as const;

/** The settings of this smtpd, from the values it read; throws "name = value: what is wrong" on a bad value. */
export function bareNewlineFrom(config: Config, p: Params<typeof BARE_NEWLINE_PARAMS>): BareNewline {
  const value = p.smtpd_forbid_bare_newline.trim();
  const mode = MODES[value.toLowerCase()];
  if (!mode) throw new Error(`smtpd_forbid_bare_newline = ${value}: unknown value (use normalize, yes, note, reject or no)`);
  const name = 'smtpd_forbid_bare_newline_exclusions';
  let exclusions: NetworkList;
  if (!config.isSet(name)) {
    const nets = buildNetworks(p.mynetworks, p.mynetworks_style);
    if (nets.errors.length) throw new Error(`mynetworks: ${nets.errors.join('; ')}`);
    exclusions = nets.networks;
  } else {
    exclusions = new NetworkList();
    for (const item of p[name].split(/[\s,]+/).filter(Boolean)) {
      const err = exclusions.add(item);
      if (err) throw new Error(`${name} = ${p[name]}: ${err} (Postactor takes addresses and networks only)`);
    }
  }
  return {
    mode,
    exclusions,
    code: p.smtpd_forbid_bare_newline_reject_code,
    lineLimit: Math.max(1, p.line_length_limit),
    hostname: p.myhostname,
  };
}

type Session = Record<string, unknown> & {
  envelope: { mailFrom: { address: string } | false; rcptTo: { address: string }[] };
  hostNameAppearsAs?: string;
  transmissionType?: string;
  paBareLfData?: boolean;
  paBareLfNote?: boolean;
};

type Parser = Record<string, unknown> & { paMode?: () => ReaderMode; paBareLf?: boolean; paConn?: Conn; paOnBareLf?: () => void };

type Conn = {
  _server: { options: Record<string, unknown> & { postactorBareNewline?: BareNewline; postactorLimits?: { namaddr(s: object): string } } };
  _parser: Parser | false;
  _nextHandler?: unknown;
  _paLimits?: { where: string };
  _paReader?: ReaderMode & { note?: boolean };
  remoteAddress: string;
  session: Session;
  send(code: number, data: unknown, context?: unknown): void;
  close(): void;
};

function readerMode(conn: Conn): ReaderMode & { note?: boolean } {
  if (conn._paReader) return conn._paReader;
  const s = conn._server.options.postactorBareNewline;
  if (!s) return { detect: true, reject: false, lineLimit: 2048 };
  const excluded = conn.remoteAddress ? s.exclusions.has(conn.remoteAddress) : false;
  const detect = s.mode !== 'no' && !excluded;
  // Cached once the address is known (the first parser is made before it is).
  const mode = { detect, reject: detect && s.mode === 'reject', note: detect && s.mode === 'note', lineLimit: s.lineLimit };
  if (conn.remoteAddress) conn._paReader = mode;
  return mode;
}

/** Postfix's log_whatsup line for a refusal. */
export function whatsup(session: Session, queueId: string | null, where: string, namaddr: string, text: string): string {
  let line = `${queueId ?? 'NOQUEUE'}: reject: ${where} from ${namaddr}: ${text};`;
  if (session.envelope.mailFrom) line += ` from=<${session.envelope.mailFrom.address}>`;
  const rcpts = session.envelope.rcptTo;
  if (rcpts.length) line += ` to=<${rcpts[rcpts.length - 1]!.address}>`;
  line += ` proto=${session.transmissionType?.startsWith('E') ? 'ESMTP' : 'SMTP'}`;
  if (session.hostNameAppearsAs) line += ` helo=<${session.hostNameAppearsAs}>`;
  return line;
}

/** Whether the disconnect line gets "notes=bare_lf" (note mode). */
export function bareLfNoted(session: object): boolean {
  return (session as Session).paBareLfNote === true;
}

/** The refusal of a message whose content had a bare LF (reject mode), or null. */
export function contentRefusal(session: object, settings: BareNewline): { code: number; text: string } | null {
  if (!(session as Session).paBareLfData) return null;
  return { code: settings.code, text: `5.5.2 ${settings.hostname} Error: bare <LF> received` };
}

/**
 * The command table's check (commands.ts, before pipelining): a command line that ended in a
 * bare LF is noted, or in reject mode refused, and the session ends.
 */
export function bareNewlineCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn;
  const parser = c._parser;
  const bare = parser && parser.paBareLf && !c._nextHandler;
  if (!bare) return false;
  const mode = readerMode(c);
  if (mode.note) c.session.paBareLfNote = true;
  const s = c._server.options.postactorBareNewline;
  if (!mode.reject || !s) return false;
  const where = c._paLimits?.where ?? 'CONNECT';
  const namaddr = c._server.options.postactorLimits?.namaddr(c.session) ?? `unknown[${c.remoteAddress}]`;
  log.info(whatsup(c.session, null, where === 'DATA content' ? 'END-OF-MESSAGE' : where, namaddr, 'bare <LF> received'));
  // The session ends after this reply, whatever its code (Postfix breaks out of its loop).
  c.send(s.code, `5.5.2 ${s.hostname} Error: bare <LF> received`, false);
  c.close();
  cmd.done();
  return true;
}

/** Patches smtp-server's connection class: the reader's mode per client, and 521 ends the session. */
export function installBareNewline(proto: Record<string, unknown>, streamProto: Record<string, unknown>): void {
  const createParser = proto._createParser as (this: Conn) => Parser;
  proto._createParser = function (this: Conn) {
    const parser = createParser.call(this);
    // An AUTH response line may be longer than a command (Postfix reads it up to
    // smtpd_sasl_response_limit, 12288).
    parser.paMode = () => {
      const mode = readerMode(this);
      return this._nextHandler ? { ...mode, lineLimit: Math.max(mode.lineLimit, 12288) } : mode;
    };
    parser.paConn = this;
    parser.paOnBareLf = () => {
      const mode = readerMode(this);
      if (mode.reject) this.session.paBareLfData = true;
      if (mode.note) this.session.paBareLfNote = true;
    };
    return parser;
  };

  // Message content with a bare LF (line-reader.ts): noted on the session for its end.
  const startDataMode = streamProto.startDataMode as (this: { paConn?: Conn }, max: number) => unknown;
  streamProto.startDataMode = function (this: { paConn?: Conn }, max: number) {
    if (this.paConn) this.paConn.session.paBareLfData = false;
    return startDataMode.call(this, max);
  };

  // 521 (like 421) always ends the session, as in Postfix.
  const send = proto.send as (this: Conn, code: number, data: unknown, context?: unknown) => void;
  proto.send = function (this: Conn, code: number, data: unknown, context?: unknown) {
    send.call(this, code, data, context);
    if (code === 521) this.close();
  };
}
