/**
 * Postfix's queue file record format (global/record.c, rec_type.h), for postcat(1) on Postfix
 * queue files and for rendering a Postactor message in the same shape.
 *
 * A queue file is a sequence of typed records: one type byte, the data length in 7-bit groups
 * (low group first, the high bit set while more follow), then the data. The envelope segment
 * ends at the M record, the message text (N lines, L for a piece of a longer line) at X, the
 * extracted segment at E. p records point elsewhere in the file: cleanup patches edits in place
 * through them, and "0" is a placeholder.
 *
 * `RecordReader` reads a buffered file as Postfix's VSTREAM reads a file descriptor: a file can
 * seek, a pipe cannot (every seek then fails with "Illegal seek", and the offset it reports is
 * -1). The reader's warnings are Postfix's texts; it returns REC_ERROR where rec_get_raw does.
 */

/** Record types (rec_type.h). 'L' is both REC_TYPE_FILT and REC_TYPE_CONT. */
export const REC = {
  SIZE: 'C', TIME: 'T', CTIME: 'c', FULL: 'F', INSP: 'I', FILT: 'L', FROM: 'S', DONE: 'D',
  RCPT: 'R', ORCP: 'O', DRCP: '/', WARN: 'W', ATTR: 'A', KILL: 'K', RDR: '>', FLGS: 'f',
  DELAY: 'd', MESG: 'M', CONT: 'L', NORM: 'N', DTXT: 'w', XTRA: 'X', RRTO: 'r', ERTO: 'e',
  PRIO: 'P', PTR: 'p', VERP: 'V', DSN_RET: '<', DSN_ENVID: 'i', DSN_ORCPT: 'o', DSN_NOTIFY: 'n',
  MILT_COUNT: 'm', END: 'E',
} as const;

export const REC_EOF = -1;
export const REC_ERROR = -2;

/** The record types that may open a queue file (REC_TYPE_ENVELOPE). */
export const REC_TYPE_ENVELOPE = 'MCTcFILSDRO/WVA>K<ion';

/** rec_get_raw() flags. */
export const REC_FLAG_NONE = 0;
export const REC_FLAG_FOLLOW_PTR = 1;
export const REC_FLAG_SKIP_DTXT = 2;
export const REC_FLAG_SEEK_END = 4;
export const REC_FLAG_DEFAULT = REC_FLAG_FOLLOW_PTR | REC_FLAG_SKIP_DTXT | REC_FLAG_SEEK_END;

/** rec_type_name(): the first name listed for a type wins ('L' is "content_filter"). */
const NAMES: [string, string][] = [
  ['C', 'message_size'], ['T', 'message_arrival_time'], ['c', 'queue_file_create_time'],
  ['F', 'sender_fullname'], ['I', 'content_inspector'], ['L', 'content_filter'], ['S', 'sender'],
  ['D', 'done_recipient'], ['/', 'canceled_recipient'], ['R', 'recipient'], ['O', 'original_recipient'],
  ['W', 'warning_message_time'], ['A', 'named_attribute'], ['p', 'pointer_record'], ['K', 'killed_record'],
  ['M', 'message_content'], ['N', 'regular_text'], ['w', 'padding'], ['X', 'extracted_info'],
  ['r', 'return_receipt'], ['e', 'errors_to'], ['P', 'priority'], ['V', 'verp_delimiters'],
  ['E', 'message_end'], ['>', 'redirect_to'], ['f', 'flags'], ['<', 'dsn_return_flags'],
  ['i', 'dsn_envelope_id'], ['o', 'dsn_original_recipient'], ['n', 'dsn_notify_flags'],
];
const NAME_OF = new Map<number, string>();
for (const [t, n] of NAMES) if (!NAME_OF.has(t.charCodeAt(0))) NAME_OF.set(t.charCodeAt(0), n);

export function recTypeName(type: number): string {
  if (type === REC_EOF) return 'end-of-file';
  if (type === REC_ERROR) return 'error';
  return NAME_OF.get(type) ?? 'unknown_record_type';
}

/** One record as rec_put() writes it. */
export function recPut(type: string, data: string | Buffer): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  const len: number[] = [];
  let rest = body.length;
  do {
    let b = rest & 0x7f;
    rest = Math.floor(rest / 128);
    if (rest) b |= 0x80;
    len.push(b);
  } while (rest !== 0);
  return Buffer.concat([Buffer.from([type.charCodeAt(0), ...len]), body]);
}

/** An errno-style failure of a seek, with strerror()'s text. */
export class SeekError extends Error {}

/**
 * A whole input held in memory, read and sought as a VSTREAM. Warnings go to `warn` (the
 * caller prefixes the program name).
 */
export class RecordReader {
  private pos = 0;
  /** rec_goto()'s loop guard (static per path in Postfix). */
  private savedOffset = 0;
  private reverseCount = 0;

  constructor(
    private readonly data: Buffer,
    readonly path: string,
    readonly seekable: boolean,
    private readonly warn: (text: string) => void,
    /** Standard input: postcat -s reads its way to the offset there, seekable or not. */
    readonly isStdin = false,
  ) {}

  /** vstream_ftell(): -1 on a pipe. */
  tell(): number {
    return this.seekable ? this.pos : -1;
  }

  /** vstream_fseek(SEEK_SET, or SEEK_END with `offset` = null); throws SeekError. */
  seek(offset: number | null): void {
    if (!this.seekable) throw new SeekError('Illegal seek');
    if (offset !== null && offset < 0) throw new SeekError('Invalid argument');
    this.pos = offset === null ? this.data.length : offset;
  }

  /** VSTREAM_GETC(): a byte, or -1 at the end. */
  getc(): number {
    return this.pos < this.data.length ? this.data[this.pos++]! : REC_EOF;
  }

  ungetc(): void {
    this.pos--;
  }

  /** rec_get_raw(): the record type (a byte), REC_EOF or REC_ERROR; the data in `out.data`. */
  getRaw(out: { data: Buffer }, flags: number): number {
    for (;;) {
      let type = this.getc();
      if (type === REC_EOF) return REC_EOF;
      let len = 0;
      for (let shift = 0; ; shift += 7) {
        if (shift >= 32) {
          this.warn(`${this.path}: too many length bits, record type ${type}`);
          return REC_ERROR;
        }
        const b = this.getc();
        if (b === REC_EOF) {
          this.warn(`${this.path}: unexpected EOF reading length, record type ${type}`);
          return REC_ERROR;
        }
        len = (len | ((b & 0x7f) << shift)) | 0; // a C int: the top group can make it negative
        if ((b & 0x80) === 0) break;
      }
      if (len < 0) {
        this.warn(`${this.path}: illegal length ${len}, record type ${type}`);
        return REC_ERROR;
      }
      if (this.pos + len > this.data.length) {
        this.pos = this.data.length;
        this.warn(`${this.path}: unexpected EOF in data, record type ${type} length ${len}`);
        return REC_ERROR;
      }
      out.data = this.data.subarray(this.pos, this.pos + len);
      this.pos += len;
      if (flags === 0) return type;
      if (type === REC.PTR.charCodeAt(0) && flags & REC_FLAG_FOLLOW_PTR) {
        type = this.goto(out.data);
        if (type !== REC_ERROR) continue;
      }
      if (type === REC.DTXT.charCodeAt(0) && flags & REC_FLAG_SKIP_DTXT) continue;
      if (type === REC.END.charCodeAt(0) && flags & REC_FLAG_SEEK_END) {
        try {
          this.seek(null);
        } catch (err) {
          this.warn(`${this.path}: seek error after reading END record: ${(err as Error).message}`);
          return REC_ERROR;
        }
      }
      return type;
    }
  }

  /** rec_goto(): follow a pointer record; 0, or REC_ERROR. */
  goto(value: Buffer): number {
    const text = cString(value).replace(/^[ \t\n\v\f\r]+/, '');
    if (!/^\d*$/.test(text) || text.length > 18) {
      this.warn(`${this.path}: malformed pointer record value: ${text}`);
      return REC_ERROR;
    }
    const offset = Number(text);
    if (offset === 0) return 0; // a placeholder
    if (offset <= this.savedOffset && ++this.reverseCount > 10000) {
      this.warn(`${this.path}: too many reverse jump records`);
      return REC_ERROR;
    }
    try {
      this.seek(offset);
    } catch (err) {
      this.warn(`${this.path}: seek error after pointer record: ${(err as Error).message}`);
      return REC_ERROR;
    }
    this.savedOffset = offset;
    return 0;
  }
}

/** The data as C's "%s" sees it: up to the first NUL. */
export function cString(data: Buffer): string {
  const nul = data.indexOf(0);
  return (nul < 0 ? data : data.subarray(0, nul)).toString('latin1');
}
