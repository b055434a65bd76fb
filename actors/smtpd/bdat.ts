/**
 * CHUNKING (RFC 3030) for smtpd: "BDAT count [LAST]", with Postfix 3.4+'s rules and replies
 * (smtpd.c bdat_cmd, skip_bdat). BINARYMIME is not offered, as in Postfix.
 *
 *   - The first BDAT of a transaction counts as DATA for the policy: smtpd_data_restrictions and
 *     the milters' DATA event (the same hook as DATA: restrictions/hooks.ts).
 *   - Each chunk is read as it arrives (exactly count bytes) into the same end-of-data path as
 *     DATA (index.ts onData: the spool, end-of-data restrictions, milters, cleanup) and answered
 *     "250 2.0.0 Ok: N bytes"; BDAT LAST ends the message, answered "250 2.0.0 Ok: N bytes
 *     queued as ID". A transaction given up (RSET, a later BDAT refused, the client gone) drops
 *     what was spooled.
 *   - Lines end at LF, as Postfix reads BDAT content into records: a bare LF goes on as CRLF, and
 *     smtpd_forbid_bare_newline (bare-newline.ts) notes or refuses it at BDAT LAST as at the end
 *     of DATA.
 *   - A BDAT that fails still reads (and drops) its chunk, to stay in step with the client; the
 *     following BDATs of the transaction are dropped with "551 5.0.0 Discarded N bytes after
 *     earlier error" until BDAT LAST or RSET. A chunk that would take the message over
 *     message_size_limit is refused ("552 5.3.4 Chunk exceeds message size limit"); past 1.5
 *     times the limit the content is no longer read at all and the session ends.
 *   - A malformed BDAT, or BDAT while `smtpd_discard_ehlo_keywords` hides CHUNKING, is answered
 *     with 521 and the connection is closed: what follows would be message content.
 *   - MAIL, RCPT and DATA inside a BDAT transaction: "503 5.5.1 Error: MAIL after BDAT" (…).
 *
 * smtp-server has no BDAT. Its parser (SMTPStream, read by line-reader.ts) has a data mode that
 * looks for the terminating dot; we give that mode a byte-count variant (installChunkReader,
 * wrapping the line reader): while a connection's parser carries a chunk, the bytes it would
 * have scanned for ".\r\n" are counted off instead, and whatever follows the chunk is parsed as
 * commands again once the chunk's reply is out.
 */
import { PassThrough } from 'node:stream';
import { maillog } from '../../src/log/maillog.js';
import type { PolicyHooks } from './restrictions/hooks.js';
import { bdatContent } from './limits.js';

const log = maillog('smtpd');

/** What the BDAT handler needs from smtpd (index.ts). */
export interface BdatSettings {
  /** CHUNKING is announced (not in smtpd_discard_ehlo_keywords). */
  enabled: boolean;
  /** message_size_limit, 0 = none. */
  sizeLimit: number;
  /** "host[addr]" of a session, for the log. */
  namaddr(session: object): string;
  /** The session's queue ID for the log, or null (NOQUEUE). */
  queueId(session: object): string | null;
}

type Reply = { code: number; text: string };
type DataHandler = (stream: PassThrough, session: object, cb: (err: (Error & { responseCode?: number }) | null, message?: unknown) => void) => void;

interface ParserChunk {
  remaining: number;
  /** Takes each piece of the chunk and calls `next` when it may have more; null: dropped. */
  sink: ((piece: Buffer, next: () => void) => void) | null;
  /** Called once the whole chunk is in; `resume` lets the parser read commands again. */
  complete(resume: () => void): void;
}

type Parser = {
  _dataMode: boolean;
  _paChunk?: ParserChunk | null;
  /** bare-newline.ts: told of a bare LF in message content. */
  paOnBareLf?: () => void;
  _write(chunk: Buffer, encoding: string, done: (err?: Error) => void): void;
};

/** The BDAT state of a transaction (Postfix's bdat_state with its content and act_size). */
interface Transaction {
  envelope: unknown;
  state: 'ok' | 'error';
  /** Bytes announced in this transaction's BDAT commands (Postfix's act_size). */
  size: number;
  /** Bytes of its chunks read so far (limits.ts: "timeout after BDAT (N bytes)"). */
  received: number;
  /** The content on its way to onData (index.ts), from the first accepted chunk on. */
  stream: PassThrough | null;
  /** onData's answer, and who waits for it (BDAT LAST). */
  result: [err: (Error & { responseCode?: number }) | null, message?: unknown] | null;
  onResult: (() => void) | null;
  /** The last byte written was a CR (a CRLF may straddle two chunks). */
  lastCr: boolean;
  bareLf: boolean;
}

type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;
type Conn = {
  _server: { options: { postactorBdat?: BdatSettings; postactorPolicyHooks?: PolicyHooks }; onData: DataHandler };
  _parser: Parser | false;
  _handlerPending: boolean;
  _transactionCounter: number;
  _closing: boolean;
  _socket: { destroyed: boolean; end(): void };
  session: { envelope: { mailFrom: unknown; rcptTo: unknown[] }; paBareLfData?: boolean } & object;
  send(code: number, data: unknown, context?: unknown): void;
  close(): void;
  _resetSession(): void;
  _onClose(): void;
  _paBdat?: Transaction;
};

function newTransaction(conn: Conn, state: Transaction['state'], size: number): Transaction {
  const t: Transaction = { envelope: conn.session.envelope, state, size, received: 0, stream: null, result: null, onResult: null, lastCr: false, bareLf: false };
  conn._paBdat = t;
  return t;
}

/** Gives up the transaction's content (what was spooled is released by onData's error path). */
function abandon(t: Transaction | undefined): void {
  if (!t?.stream || t.result || t.stream.writableEnded) return;
  t.stream.destroy(new Error('BDAT transaction abandoned'));
  t.stream = null;
}

let installed = false;

/** The BDAT transaction of the current envelope, if BDAT has started one. */
function transactionOf(conn: Conn): Transaction | null {
  const t = conn._paBdat;
  return t && t.envelope === conn.session.envelope ? t : null;
}

/** Patches smtp-server's connection class (once per thread); see also installChunkReader. */
export function installBdat(proto: Record<string, unknown>): void {
  if (installed) return;
  installed = true;

  proto.handler_BDAT = function (this: Conn, command: Buffer | string, callback: () => void) {
    const settings = this._server.options.postactorBdat;
    if (!settings?.enabled) return hangUp(this, 521, '5.5.1 Error: command not implemented', callback);
    const line = String(command);
    const args = line.trim().split(/\s+/).slice(1);
    const last = args.length === 2;
    if (args.length < 1 || args.length > 2 || !/^\d+$/.test(args[0]!) || (last && args[1]!.toUpperCase() !== 'LAST') || !Number.isSafeInteger(Number(args[0]))) {
      log.warn(`${settings.queueId(this.session) ?? 'NOQUEUE'}: malformed BDAT command syntax from ${settings.namaddr(this.session)}: ${printable(line).slice(0, 100)}`);
      return hangUp(this, 521, '5.5.4 Syntax: BDAT count [LAST]', callback);
    }
    const size = Number(args[0]);
    const skip = (reply: Reply) => skipChunk(this, settings, size, last, reply, callback);
    if (size === 0 && !last) {
      log.warn(`${settings.queueId(this.session) ?? 'NOQUEUE'}: null BDAT request from ${settings.namaddr(this.session)}`);
      return skip({ code: 551, text: '5.7.1 Null BDAT request' });
    }
    let t = transactionOf(this);
    if (t?.state === 'error') return skip({ code: 551, text: `5.0.0 Discarded ${size} bytes after earlier error` });
    const accept = () => {
      if (settings.sizeLimit > 0 && (t?.size ?? 0) > settings.sizeLimit - size) {
        log.warn(`${settings.queueId(this.session) ?? 'NOQUEUE'}: BDAT request from ${settings.namaddr(this.session)} exceeds message size limit`);
        return skip({ code: 552, text: '5.3.4 Chunk exceeds message size limit' });
      }
      t ??= newTransaction(this, 'ok', 0);
      receiveChunk(this, t, size, last, callback);
    };
    if (t) return accept();
    // The first BDAT of a transaction is the DATA of the policy checks.
    const envelope = this.session.envelope;
    if (envelope.rcptTo.length === 0) {
      return skip(envelope.mailFrom ? { code: 554, text: '5.5.1 Error: no valid recipients' } : { code: 503, text: '5.5.1 Error: need RCPT command' });
    }
    const hook = this._server.options.postactorPolicyHooks?.data;
    if (!hook) return accept();
    hook(this.session).then(
      (reply) => (reply ? skip(reply) : accept()),
      () => skip({ code: 451, text: '4.3.5 Server configuration error' }),
    );
  } satisfies Handler;

  // MAIL, RCPT and DATA have no place between a BDAT and its BDAT LAST (after Postfix's own
  // "nested MAIL command" and "need MAIL command", which come first).
  for (const cmd of ['MAIL', 'RCPT', 'DATA']) {
    const original = proto[`handler_${cmd}`] as Handler;
    proto[`handler_${cmd}`] = function (this: Conn, command: Buffer | string, callback: () => void) {
      const inMail = Boolean(this.session.envelope.mailFrom);
      if (!transactionOf(this) || (cmd === 'MAIL' && inMail) || (cmd === 'RCPT' && !inMail)) return original.call(this, command, callback);
      this.send(503, `5.5.1 Error: ${cmd} after BDAT`);
      callback();
    } satisfies Handler;
  }

  // RSET, HELO/EHLO, XCLIENT and the end of the connection give up an unfinished transaction.
  const reset = proto._resetSession as (this: Conn) => void;
  proto._resetSession = function (this: Conn) {
    abandon(this._paBdat);
    this._paBdat = undefined;
    reset.call(this);
  };
  const onClose = proto._onClose as (this: Conn) => void;
  proto._onClose = function (this: Conn) {
    abandon(this._paBdat);
    onClose.call(this);
  };
}

/** Reads one chunk into the transaction's content and answers it (BDAT LAST: the message's reply). */
function receiveChunk(conn: Conn, t: Transaction, size: number, last: boolean, callback: () => void): void {
  t.size += size;
  const stream = t.stream ?? startContent(conn, t);
  const sink = (piece: Buffer, next: () => void) => {
    if (stream.destroyed) return next();
    if (stream.write(normalize(piece, t))) return next();
    stream.once('drain', next);
  };
  readChunk(conn, t, size, sink, (resume) => {
    if (!last) {
      conn.send(250, `2.0.0 Ok: ${size} bytes`);
      return resume();
    }
    // BDAT LAST: the message ends; onData's verdict is the reply.
    if (t.bareLf) {
      const parser = conn._parser;
      if (parser) parser.paOnBareLf?.();
    }
    conn._handlerPending = true;
    t.onResult = () => {
      const [err, message] = t.result!;
      conn._handlerPending = false;
      if (err) conn.send(err.responseCode || 450, err.message);
      // Postfix names the size after BDAT: "250 2.0.0 Ok: 48 bytes queued as ID".
      else conn.send(250, typeof message === 'string' ? message.replace(/^2\.0\.0 Ok: queued as /, `2.0.0 Ok: ${t.size} bytes queued as `) : '2.0.0 Ok', 'DATA_OK');
      conn._transactionCounter++;
      conn._resetSession();
      resume();
    };
    if (t.result) t.onResult();
    stream.end();
  }, callback);
}

/** The content stream of a transaction, handed to onData (index.ts) as DATA's would be. */
function startContent(conn: Conn, t: Transaction): PassThrough {
  const stream = new PassThrough();
  t.stream = stream;
  conn.session.paBareLfData = false;
  conn._server.onData(stream, conn.session, (err, message) => {
    if (t.result) return;
    t.result = [err, message];
    stream.resume();
    t.onResult?.();
  });
  return stream;
}

const CRLF = Buffer.from('\r\n');

/** A bare LF becomes CRLF (and is remembered for smtpd_forbid_bare_newline). */
function normalize(piece: Buffer, t: Transaction): Buffer {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = piece.indexOf(0x0a); i >= 0; i = piece.indexOf(0x0a, i + 1)) {
    const cr = i > 0 ? piece[i - 1] === 0x0d : t.lastCr;
    if (cr) continue;
    t.bareLf = true;
    parts.push(piece.subarray(start, i), CRLF);
    start = i + 1;
  }
  if (piece.length > 0) t.lastCr = piece[piece.length - 1] === 0x0d;
  if (start === 0) return piece;
  parts.push(piece.subarray(start));
  return Buffer.concat(parts);
}

/**
 * Postfix's skip_bdat(): read and drop the chunk, answer `reply`; then BDAT LAST ends the
 * transaction, any other BDAT leaves it dropping chunks until LAST or RSET. A chunk past 1.5
 * times message_size_limit is not read: the reply goes out and the session ends.
 */
function skipChunk(conn: Conn, settings: BdatSettings, size: number, last: boolean, reply: Reply, callback: () => void): void {
  let t = transactionOf(conn);
  const before = t?.size ?? 0;
  const finish = () => {
    if (last) return conn._resetSession();
    t ??= newTransaction(conn, 'error', 0);
    t.state = 'error';
    abandon(t);
  };
  if (settings.sizeLimit > 0 && before / 1.5 > settings.sizeLimit - size / 1.5) {
    conn.send(reply.code, reply.text);
    log.warn(`${settings.queueId(conn.session) ?? 'NOQUEUE'}: too much BDAT content -- disabling further input from ${settings.namaddr(conn.session)}`);
    finish();
    conn.close();
    return callback();
  }
  if (t) t.size += size;
  else if (!last) t = newTransaction(conn, 'error', size);
  readChunk(conn, t, size, null, (resume) => {
    conn.send(reply.code, reply.text);
    finish();
    resume();
  }, callback);
}

/**
 * Switches the connection's parser to counting off `size` bytes (each piece to `sink`, or
 * dropped), then calls `done(resume)`; `resume` lets the parser go on with the commands after it.
 */
function readChunk(conn: Conn, t: Transaction | null | undefined, size: number, sink: ParserChunk['sink'], done: (resume: () => void) => void, callback: () => void): void {
  const parser = conn._parser;
  if (!parser) return callback();
  if (size === 0) return done(callback); // "BDAT 0 LAST": nothing to read
  const counted = (piece: Buffer, next: () => void) => {
    if (t) t.received += piece.length;
    if (sink) sink(piece, next);
    else next();
  };
  parser._paChunk = { remaining: size, sink: counted, complete: done };
  parser._dataMode = true;
  bdatContent(conn);
  // The parser reads on now; with its data mode on, the next bytes go to the chunk reader below.
  callback();
}

/**
 * The parser's byte-count mode: while a chunk is due, input goes to it, not to the line reader
 * (line-reader.ts, installed before this: we wrap its _write). Once per thread.
 */
export function installChunkReader(streamProto: Record<string, unknown>): void {
  if (streamProto.paChunkReader) return;
  streamProto.paChunkReader = true;
  const write = streamProto._write as (this: Parser, chunk: Buffer, enc: string, done: (err?: Error) => void) => void;
  streamProto._write = function (this: Parser, data: Buffer, enc: string, done: (err?: Error) => void) {
    const c = this._paChunk;
    if (!c || !this._dataMode) return write.call(this, data, enc, done);
    if (!data || data.length === 0) return done();
    const take = Math.min(c.remaining, data.length);
    c.remaining -= take;
    const after = () => {
      if (c.remaining > 0) return done();
      this._paChunk = null;
      this._dataMode = false;
      const rest = data.subarray(take);
      c.complete(() => (rest.length ? this._write(rest, 'buffer', done) : done()));
    };
    if (c.sink && take > 0) c.sink(data.subarray(0, take), after);
    else after();
  };
}

/** 521 (or 421) and an orderly close, as Postfix hangs up after either. */
function hangUp(conn: Conn, code: number, text: string, callback: () => void): void {
  conn.send(code, text);
  conn.close();
  callback();
}

/** Postfix's printable(): control and non-ASCII characters become '?'. */
function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}
