/**
 * postcat(1)'s rendering of a queue file in Postfix's record format (postcat/postcat.c, Postfix
 * 3.7): the same state machine over the envelope, header, body and extracted segments, the same
 * seeks (so a pipe fails where Postfix's fails: pointer records and the seek to the end after
 * the E record), the same output, byte for byte.
 *
 * Postfix writes its output through a VSTREAM that it flushes after each record and never at
 * exit, so text not followed by a flush (the "*** ENVELOPE RECORDS" line of an empty file) is
 * never seen; `PostcatOutput` keeps that rule.
 */
import { asctime } from './listing.js';
import {
  cString, recTypeName, REC, REC_EOF, REC_ERROR, REC_FLAG_DEFAULT, REC_FLAG_NONE, REC_TYPE_ENVELOPE,
  RecordReader, SeekError,
} from './record.js';

export interface PostcatFlags {
  env: boolean;
  header: boolean;
  body: boolean;
  /** -d: decimal record type before each record. */
  dec: boolean;
  /** -o: queue file offset before each record. */
  offset: boolean;
  /** -r: file order, do not follow pointer records (after the E record, read on). */
  raw: boolean;
  /** -v: every record named, pointer and padding records shown. */
  verbose: boolean;
  /** -s: start at this offset. */
  start: number;
}

/** msg_fatal() inside the renderer: the command prints it and exits 1. */
export class PostcatFatal extends Error {}

/** VSTREAM_OUT: buffered text reaches `sink` only at flush(). */
export class PostcatOutput {
  private pending: Buffer[] = [];
  constructor(private readonly sink: (bytes: Buffer) => void) {}
  write(text: string | Buffer): void {
    this.pending.push(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
  }
  flush(): void {
    if (this.pending.length) this.sink(Buffer.concat(this.pending));
    this.pending = [];
  }
}

const C = (t: string) => t.charCodeAt(0);
const T_CONT = C(REC.CONT), T_NORM = C(REC.NORM), T_MESG = C(REC.MESG), T_XTRA = C(REC.XTRA), T_END = C(REC.END);
const T_PTR = C(REC.PTR), T_SIZE = C(REC.SIZE), T_TIME = C(REC.TIME), T_WARN = C(REC.WARN);
const T_DTXT = C(REC.DTXT), T_ATTR = C(REC.ATTR);

const enum State { Env, Header, Body }

/** C's atol(): leading white space, a sign, digits; 0 when there are none. */
function atol(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  return m ? parseInt(m[1]!, 10) : 0;
}

/** is_header(): "name:" with printable ASCII before the colon (white space only before it). */
function isHeader(s: string): boolean {
  const m = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/.exec(s);
  return m !== null;
}

/** split_nameval(): name = value, white space trimmed; an error text when malformed. */
function splitNameval(s: string): { name: string; value: string } | string {
  const t = s.replace(/^[ \t\n\v\f\r]+/, '');
  if (t === '' || t[0] === '=') return 'missing attribute name';
  const m = /^([^ \t\n\v\f\r=]+)[ \t\n\v\f\r]*(=?)/.exec(t)!;
  if (m[2] !== '=') return "missing '=' after attribute name";
  const value = t.slice(m[0].length).replace(/^[ \t\n\v\f\r]+/, '').replace(/[ \t\n\v\f\r]+$/, '');
  return { name: m[1]!, value };
}

const offsetField = (n: number) => (n < 0 ? (2n ** 64n + BigInt(n)).toString() : String(n)).padStart(9, ' ');

/** postcat() of one input; `warn` receives Postfix's warning texts. */
export function postcat(fp: RecordReader, f: PostcatFlags, out: PostcatOutput, warn: (text: string) => void): void {
  const printText = f.header || f.body;
  const recFlags = f.verbose ? REC_FLAG_NONE : REC_FLAG_DEFAULT;
  const seekOrDie = (offset: number) => {
    try {
      fp.seek(offset);
    } catch (err) {
      if (err instanceof SeekError) throw new PostcatFatal(`seek error: ${err.message}`);
      throw err;
    }
  };

  if (f.start > 0) {
    if (fp.isStdin) {
      for (let offset = 0; offset < f.start; offset++) {
        if (fp.getc() === REC_EOF) throw new PostcatFatal(`${fp.path}: skip ${f.start} bytes failed after ${offset}`);
      }
    } else {
      seekOrDie(f.start);
    }
  }
  // A plausible queue file starts with an envelope record.
  if (f.start === 0) {
    const ch = fp.getc();
    if (ch !== REC_EOF) {
      if (!REC_TYPE_ENVELOPE.includes(String.fromCharCode(ch))) {
        warn(`${fp.path}: input is not a valid queue file`);
        throw new NotAQueueFile();
      }
      fp.ungetc();
    }
  }
  if (f.start === 0 && f.env) out.write(`*** ENVELOPE RECORDS ${fp.path} ***\n`);
  let state = State.Env;
  let doPrint = f.env;
  let dataOffset = -1;
  let dataSize = -1;
  let prevType = 0;
  const rec = { data: Buffer.alloc(0) };
  const prefix = (offset: number, type: number) => {
    if (f.offset) out.write(`${offsetField(offset)} `);
    if (f.dec) out.write(`${String(type).padStart(3, ' ')} `);
  };
  const marker = (offset: number, type: number, text: string) => {
    prefix(offset, type);
    out.write(`*** ${text} ${fp.path} ***\n`);
    out.flush();
  };

  for (;;) {
    const offset = f.offset ? fp.tell() : 0;
    let type = fp.getRaw(rec, recFlags);
    if (type === REC_ERROR) throw new PostcatFatal('record read error');
    if (type === REC_EOF) break;
    const text = cString(rec.data);

    if (type === T_CONT || type === T_NORM) {
      // (Wrong when the message starts with white space, as in Postfix.)
      if (state === State.Header && printText && prevType !== T_CONT && !(isHeader(text) || text[0] === ' ' || text[0] === '\t')) {
        state = State.Body;
        doPrint = f.body;
        if (!doPrint && !f.env) break;
        if (!doPrint && f.env && dataOffset >= 0 && dataSize >= 0) seekOrDie(dataOffset + dataSize);
      }
    } else if (type === T_MESG) {
      if (state !== State.Env) warn(`${fp.path}: out-of-order message content marker`);
      if (f.env) marker(offset, type, 'MESSAGE CONTENTS');
      if (!printText && dataOffset >= 0 && dataSize >= 0) seekOrDie(dataOffset + dataSize);
      state = State.Header;
      doPrint = f.header;
      continue;
    } else if (type === T_XTRA) {
      if (state !== State.Header && state !== State.Body) warn(`${fp.path}: out-of-order extracted segment marker`);
      if (doPrint && prevType === T_CONT) out.write('\n');
      if (f.env) marker(offset, type, 'HEADER EXTRACTED');
      state = State.Env;
      doPrint = f.env;
      if (!doPrint) break;
      continue;
    } else if (type === T_END) {
      if (state !== State.Env) warn(`${fp.path}: out-of-order message end marker`);
      if (f.env) marker(offset, type, 'MESSAGE FILE END');
      if (f.raw) continue;
      break;
    } else if (type === T_PTR) {
      // Seen only with -v: otherwise the reader follows pointers itself.
      if (doPrint) {
        prefix(offset, type);
        out.write(`${recTypeName(type)}: ${text}\n`);
        out.flush();
      }
      if (!f.raw && fp.goto(rec.data) === REC_ERROR) throw new PostcatFatal('bad pointer record, or input is not seekable');
      continue;
    } else if (type === T_SIZE) {
      if (doPrint) {
        prefix(offset, type);
        out.write(`${recTypeName(type)}: ${text}\n`);
        out.flush();
      }
      if (dataSize >= 0 || dataOffset >= 0) {
        warn('file contains multiple size records');
      } else {
        // sscanf("%ld %ld"): what it could read stays, the rest keeps -1.
        const m = /^\s*([+-]?\d+)(?:\s+([+-]?\d+))?/.exec(text);
        if (m) dataSize = parseInt(m[1]!, 10);
        if (m?.[2] !== undefined) dataOffset = parseInt(m[2], 10);
        if (m?.[2] === undefined || dataOffset <= 0 || dataSize <= 0) warn(`invalid size record: ${text.slice(0, 100)}`);
        if (!f.env) {
          seekOrDie(dataOffset);
          state = State.Header;
          doPrint = f.header;
        }
      }
      continue;
    }

    if (!doPrint) continue;
    prefix(offset, type);
    switch (type) {
      case T_TIME:
        out.write(`${recTypeName(type)}: ${asctime(atol(text))}\n`);
        break;
      case T_WARN:
        out.write(`${recTypeName(type)}: ${asctime(atol(text))}\n`);
        break;
      case T_CONT:
        if (state === State.Env) out.write(`${recTypeName(type)}: `);
        else if (f.verbose) out.write('unterminated_text: ');
        out.write(rec.data);
        if (state === State.Env || f.verbose || f.offset) {
          type = 0;
          out.write('\n');
        }
        break;
      case T_NORM:
        if (f.verbose) out.write(`${recTypeName(type)}: `);
        out.write(rec.data);
        out.write('\n');
        break;
      case T_DTXT:
        out.write(`${recTypeName(type)}: `);
        out.write(rec.data);
        out.write('\n');
        break;
      case T_ATTR: {
        const nv = splitNameval(text);
        if (typeof nv === 'string') {
          warn(`${fp.path}: malformed attribute: ${nv}: ${text.slice(0, 100)}`);
          break;
        }
        if (nv.name === 'create_time') out.write(`create_time: ${asctime(atol(nv.value))}\n`);
        else out.write(`${recTypeName(type)}: ${nv.name}=${nv.value}\n`);
        break;
      }
      default:
        out.write(`${recTypeName(type)}: ${text}\n`);
    }
    prevType = type;
    out.flush();
  }
}

/** The input did not start with an envelope record (warned; the next file is read). */
export class NotAQueueFile extends Error {}
