/**
 * smtpd's line reader, as Postfix's smtp_get() and its DATA loop read the client: replaces
 * smtp-server's command splitter and DATA scanner (SMTPStream._write, pinned to smtp-server 3.x).
 *
 * Lines end at LF. With bare-newline detection on (smtpd_forbid_bare_newline = normalize, yes,
 * note or reject, and the client not in smtpd_forbid_bare_newline_exclusions), exactly one CR
 * before the LF is taken off and an LF without CR marks the line "bare LF"; with detection off
 * (no, or an excluded client) all CRs before the LF are taken off. A CR elsewhere stays (cleanup
 * turns it into a space: cleanup_replace_stray_cr_lf).
 *
 * Commands: a line longer than line_length_limit is cut there and the rest up to its LF is
 * skipped (Postfix: SMTP_GET_FLAG_SKIP). The bare-LF flag of each command line is left on the
 * parser for the connection (bare-newline.ts answers it in reject mode).
 *
 * Message content (Postfix's receive loop): every line is passed on with CRLF (a bare LF
 * becomes CRLF: "normalize"); a line starting with "." loses that dot; a "." line ends the
 * message, except that with detection on a "." line that ends in a bare LF, or follows a line
 * that did, is dropped from the content and reading goes on — so "\n.\n", "\r\n.\n" and
 * "\n.\r\n" never end DATA (SMTP smuggling). In reject mode a bare LF in the content marks the
 * transaction; it is refused at its end ("delayed reject"). A line longer than
 * LONG_LINE bytes is passed on in pieces (only its first piece can be a "." line).
 *
 * Unchanged runs of lines go on as slices of the socket's buffer (no copy). The byte count
 * (message_size_limit, the "timeout after DATA (N bytes)" line) is of the bytes received,
 * partial lines included.
 */

/** Bytes of one line kept before it is passed on in pieces (Postfix: line_length_limit records). */
const LONG_LINE = 64 * 1024;
const MAX_SYNC_COMMANDS = 100;
const LF = 0x0a, CR = 0x0d, DOT = 0x2e;
const CRLF = Buffer.from('\r\n');

/** What the line reader needs from the connection. */
export interface ReaderMode {
  /** Bare-newline detection on (not for smtpd_forbid_bare_newline = no, nor excluded clients). */
  detect: boolean;
  /** reject: a bare LF is refused. */
  reject: boolean;
  /** line_length_limit for commands. */
  lineLimit: number;
}

type DataStream = { write(b: Buffer): boolean; writable: boolean; destroyed: boolean; once(e: string, f: () => void): void; removeListener(e: string, f: () => void): void };

interface Parser {
  _dataMode: boolean;
  _dataStream: DataStream | null;
  _remainder: string;
  isClosed: boolean;
  dataBytes: number;
  _maxBytes: number;
  oncommand(line: Buffer, cb: () => void): void;
  _countDataBytes(n: number): void;
  _endDataMode(chunk: Buffer | false, remainder: Buffer, done: (err?: Error) => void): void;
  _commandTooLong(): Error;
  _write(chunk: Buffer, enc: string, done: (err?: Error) => void): void;
  startDataMode(maxBytes: number): unknown;
  /** Set by the connection (bare-newline.ts): how to read this client. */
  paMode?: () => ReaderMode;
  /** Whether the command line handed on last ended in a bare LF. */
  paBareLf?: boolean;
  /** Told of each bare LF in message content (bare-newline.ts). */
  paOnBareLf?: () => void;
  /** Input waiting behind the command line handed on last (pipelining.ts). */
  paPending?: string;
  /** Skipping the rest of an over-long command line. */
  paSkip?: boolean;
  /** DATA: the current line so far (a partial line from the previous chunk). */
  paPartial?: Buffer | null;
  /** DATA: the current line began in an earlier piece (not at a line start). */
  paContinued?: boolean;
  /** DATA: the previous line ended in a bare LF. */
  paPrevBareLf?: boolean;
}

const DEFAULT_MODE: ReaderMode = { detect: true, reject: false, lineLimit: 2048 };

/** Patches smtp-server's SMTPStream prototype (once per thread). */
export function installLineReader(proto: Record<string, unknown>): void {
  const startDataMode = proto.startDataMode as (this: Parser, maxBytes: number) => unknown;
  proto.startDataMode = function (this: Parser, maxBytes: number) {
    this.paPartial = null;
    this.paContinued = false;
    this.paPrevBareLf = false;
    return startDataMode.call(this, maxBytes);
  };

  proto._write = function (this: Parser, chunk: Buffer, _enc: string, next: (err?: Error) => void) {
    if (!chunk || !chunk.length || this.isClosed) return next();
    if (this._dataMode) return feedData(this, chunk, next);
    readCommands(this, chunk, next);
  };
}

/** Command mode: hands each line to oncommand, one at a time (the next after its callback). */
function readCommands(p: Parser, chunk: Buffer, next: (err?: Error) => void): void {
  const mode = p.paMode?.() ?? DEFAULT_MODE;
  let data = chunk.toString('binary');
  if (p.paSkip) {
    // The rest of an over-long line: skipped up to its LF; its head (kept) is the command.
    const lf = data.indexOf('\n');
    if (lf < 0) return next();
    p.paSkip = false;
    data = p._remainder + (lf > 0 && data.charCodeAt(lf - 1) === CR ? '\r\n' : '\n') + data.slice(lf + 1);
  } else {
    data = p._remainder + data;
  }
  p._remainder = '';
  let pos = 0;
  let called = false;
  const done = (err?: Error) => {
    if (called) return;
    called = true;
    next(err);
  };
  let busy = false;
  let again = false;
  let processed = 0;
  const readLine = (): void => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      for (;;) {
        again = false;
        if (p.isClosed) return done();
        if (p._dataMode) {
          const rest = Buffer.from(data.slice(pos), 'binary');
          return rest.length ? p._write(rest, 'buffer', done) : done();
        }
        const lf = data.indexOf('\n', pos);
        if (lf < 0) {
          const rest = data.slice(pos);
          if (rest.length > mode.lineLimit) {
            // An over-long line: keep its head, skip the rest up to its LF.
            p._remainder = rest.slice(0, mode.lineLimit);
            p.paSkip = true;
          } else {
            p._remainder = rest;
          }
          return done();
        }
        let end = lf;
        let bare = true;
        if (end > pos && data.charCodeAt(end - 1) === CR) {
          bare = false;
          end--;
          if (!mode.detect) while (end > pos && data.charCodeAt(end - 1) === CR) end--;
        }
        let line = data.slice(pos, end);
        pos = lf + 1;
        if (line.length > mode.lineLimit) line = line.slice(0, mode.lineLimit);
        p.paBareLf = mode.detect && bare;
        p.paPending = data.length > pos ? data.slice(pos, pos + 100) : queued(p);
        p.oncommand(Buffer.from(line, 'binary'), readLine);
        if (!again) return;
        if (++processed >= MAX_SYNC_COMMANDS) {
          processed = 0;
          setImmediate(readLine);
          return;
        }
      }
    } finally {
      busy = false;
    }
  };
  readLine();
}

/** The first chunk queued behind the one being read (input the client already sent). */
function queued(p: Parser): string {
  const state = (p as unknown as { _writableState?: { buffered?: { chunk?: Buffer }[] } })._writableState;
  const first = state?.buffered?.[0]?.chunk;
  return Buffer.isBuffer(first) ? first.subarray(0, 100).toString('latin1') : '';
}

/** DATA: one chunk of message content. */
function feedData(p: Parser, chunk: Buffer, done: (err?: Error) => void): void {
  const mode = p.paMode?.() ?? DEFAULT_MODE;
  const out: Buffer[] = [];
  let runStart = 0;
  let pos = 0;
  const emit = (b: Buffer) => {
    if (b.length) out.push(b);
  };
  // A line that began in an earlier chunk: complete it first.
  if (p.paPartial) {
    const lf = chunk.indexOf(LF);
    if (lf < 0) {
      const partial = Buffer.concat([p.paPartial, chunk]);
      p.paPartial = null;
      p._countDataBytes(chunk.length);
      return flushLong(p, partial, done);
    }
    const line = Buffer.concat([p.paPartial, chunk.subarray(0, lf)]);
    p.paPartial = null;
    pos = runStart = lf + 1;
    const r = oneLine(p, mode, line, emit);
    if (r === 'end') {
      p._countDataBytes(pos);
      return finish(p, out, chunk.subarray(pos), done, true);
    }
  }
  for (;;) {
    const lf = chunk.indexOf(LF, pos);
    if (lf < 0) break;
    const line = chunk.subarray(pos, lf);
    // The common case: "text\r\n" not starting with a dot, at a line start: goes on as it is.
    const plain = line.length > 0 && line[line.length - 1] === CR && (line[0] !== DOT || p.paContinued)
      && (mode.detect || line.length < 2 || line[line.length - 2] !== CR);
    if (plain) {
      p.paPrevBareLf = false;
      p.paContinued = false;
      pos = lf + 1;
      continue;
    }
    emit(chunk.subarray(runStart, pos));
    pos = lf + 1;
    runStart = pos;
    if (oneLine(p, mode, line, emit) === 'end') {
      p._countDataBytes(pos);
      return finish(p, out, chunk.subarray(pos), done, true);
    }
  }
  emit(chunk.subarray(runStart, pos));
  const rest = chunk.subarray(pos);
  if (rest.length > LONG_LINE) {
    // A long line: pass its head on now (keeping trailing CRs, which may precede its LF).
    let keep = rest.length;
    while (keep > 0 && rest[keep - 1] === CR) keep--;
    pushLongHead(p, rest.subarray(0, keep), emit);
    p.paPartial = keep < rest.length ? Buffer.from(rest.subarray(keep)) : null;
  } else if (rest.length) {
    p.paPartial = Buffer.from(rest);
  }
  p._countDataBytes(chunk.length);
  finish(p, out, null, done, false);
}

/** A piece of a long line without its LF yet: its head is dot-unstuffed if it starts a line. */
function pushLongHead(p: Parser, piece: Buffer, emit: (b: Buffer) => void): void {
  if (!p.paContinued && piece[0] === DOT) piece = piece.subarray(1);
  emit(piece);
  p.paContinued = true;
  p.paPrevBareLf = false;
}

function flushLong(p: Parser, partial: Buffer, done: (err?: Error) => void): void {
  if (partial.length <= LONG_LINE) {
    p.paPartial = partial;
    return done();
  }
  const out: Buffer[] = [];
  let keep = partial.length;
  while (keep > 0 && partial[keep - 1] === CR) keep--;
  pushLongHead(p, partial.subarray(0, keep), (b) => out.push(b));
  p.paPartial = keep < partial.length ? partial.subarray(keep) : null;
  finish(p, out, null, done, false);
}

/** One complete line (without its LF): emits it, or says it ended the message. */
function oneLine(p: Parser, mode: ReaderMode, line: Buffer, emit: (b: Buffer) => void): 'line' | 'end' {
  let end = line.length;
  let bare = true;
  if (end > 0 && line[end - 1] === CR) {
    bare = false;
    end--;
    if (!mode.detect) while (end > 0 && line[end - 1] === CR) end--;
  }
  if (!mode.detect) bare = false;
  if (bare) p.paOnBareLf?.();
  const prevBare = p.paPrevBareLf;
  const atStart = !p.paContinued;
  p.paPrevBareLf = bare;
  p.paContinued = false;
  let start = 0;
  if (atStart && line[0] === DOT) {
    if (end === 1) {
      // "." next to a bare LF: not the end, and not content either.
      if (mode.detect && (bare || prevBare)) return 'line';
      return 'end';
    }
    start = 1;
  }
  emit(line.subarray(start, end));
  emit(CRLF);
  return 'line';
}

/** Writes what this chunk gave, counts it, and ends DATA or asks for more. */
function finish(p: Parser, out: Buffer[], remainder: Buffer | null, done: (err?: Error) => void, ended: boolean): void {
  const stream = p._dataStream!;
  if (ended) {
    p.paPartial = null;
    for (const b of out) if (stream.writable) stream.write(b);
    return p._endDataMode(false, remainder ?? Buffer.alloc(0), done);
  }
  let ok = true;
  for (const b of out) if (stream.writable) ok = stream.write(b);
  if (ok || stream.destroyed) return done();
  const onDrain = () => {
    stream.removeListener('drain', onDrain);
    stream.removeListener('close', onDrain);
    done();
  };
  stream.once('drain', onDrain);
  stream.once('close', onDrain);
}
