/**
 * How sendmail(1) reads a message from standard input, as Postfix's does:
 * - input ends at EOF, or (unless -i / -oi) at a line holding only "." ("archaic EOF");
 * - leading "From " lines (also ">From ") are dropped (UNIX mailbox envelope lines);
 * - line ends become LF: trailing CRs are removed from every line (sendmail_fix_line_endings =
 *   always); a last line without a newline gets one;
 * - with -t the recipients are taken from the primary To:, Cc: and Bcc: headers, or, when
 *   Resent-To/Cc/Bcc headers are present, from those only (Bcc headers stay in the message;
 *   cleanup removes them, as Postfix's cleanup does).
 */
import type { Readable } from 'node:stream';
import { parseAddressList } from './address.js';

export interface ReadOptions {
  /** True unless -i/-oi: a line with a single "." ends the message. */
  dotEnds: boolean;
}

export interface ReadMessage {
  /** The message, LF line ends, as chunks (no copy into one buffer). */
  parts: Buffer[];
  size: number;
  /** Why reading stopped. */
  end: 'eof' | 'dot';
}

const LF = 0x0a;
const CR = 0x0d;

/** Line processor shared by stdin reading and tests. */
export class MessageCollector {
  readonly parts: Buffer[] = [];
  size = 0;
  private carry: Buffer | null = null;
  private skippingFrom = true;
  done = false;

  constructor(private readonly opts: ReadOptions) {}

  /** Feeds bytes; returns the number of bytes consumed (less than chunk.length once done). */
  feed(chunk: Buffer): number {
    if (this.done) return 0;
    let data = chunk;
    let carried = 0;
    if (this.carry) {
      carried = this.carry.length;
      data = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let pos = 0;
    let runStart = 0; // start of a run of lines copied unchanged
    const flushRun = (end: number) => {
      if (end > runStart) this.push(data.subarray(runStart, end));
    };
    while (pos < data.length) {
      const nl = data.indexOf(LF, pos);
      if (nl < 0) break;
      let end = nl;
      while (end > pos && data[end - 1] === CR) end--;
      const isDot = end - pos === 1 && data[pos] === 0x2e;
      if (this.skippingFrom) {
        let p = pos;
        while (p < end && data[p] === 0x3e) p++;
        if (end - p >= 5 && data.toString('latin1', p, p + 5) === 'From ') {
          flushRun(pos);
          pos = nl + 1;
          runStart = pos;
          continue;
        }
        this.skippingFrom = false;
      }
      if (this.opts.dotEnds && isDot) {
        flushRun(pos);
        this.done = true;
        return Math.max(0, nl + 1 - carried);
      }
      if (end !== nl) {
        // CRs before the LF: copy the line without them.
        flushRun(pos);
        this.push(data.subarray(pos, end));
        this.push(Buffer.from([LF]));
        runStart = nl + 1;
      }
      pos = nl + 1;
    }
    flushRun(pos);
    if (pos < data.length) this.carry = Buffer.from(data.subarray(pos));
    return chunk.length;
  }

  /** End of input: a partial last line is completed with LF. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    if (this.carry) {
      let end = this.carry.length;
      while (end > 0 && this.carry[end - 1] === CR) end--;
      const line = this.carry.subarray(0, end);
      this.carry = null;
      const isDot = line.length === 1 && line[0] === 0x2e;
      if (this.opts.dotEnds && isDot) return;
      if (this.skippingFrom && /^>*From /.test(line.toString('latin1'))) return;
      this.push(line);
      this.push(Buffer.from([LF]));
    }
  }

  private push(b: Buffer): void {
    if (b.length === 0) return;
    this.parts.push(b);
    this.size += b.length;
  }
}

/** Reads a message from a stream (stdin), stopping at EOF or the "." line. */
export async function readMessage(input: Readable, opts: ReadOptions): Promise<ReadMessage> {
  const c = new MessageCollector(opts);
  let end: 'eof' | 'dot' = 'eof';
  for await (const chunk of input) {
    c.feed(chunk as Buffer);
    if (c.done) {
      end = 'dot';
      break;
    }
  }
  c.finish();
  return { parts: c.parts, size: c.size, end };
}

/**
 * Reads a message from a file descriptor (sendmail: 0) with blocking reads, stopping at EOF or
 * the "." line: no stream is built, which for a short-lived command costs more than the read.
 * A descriptor that is non-blocking (EAGAIN) is read on from `stream()` instead.
 */
export async function readMessageFd(fd: number, opts: ReadOptions, stream: () => Readable): Promise<ReadMessage> {
  const { readSync } = process.getBuiltinModule('node:fs'); // not an ES import: see src/config/locate.ts
  const c = new MessageCollector(opts);
  const buf = Buffer.allocUnsafe(65536);
  for (;;) {
    let n: number;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') break;
      if (code === 'EINTR') continue;
      throw err;
    }
    if (n === 0) {
      c.finish();
      return { parts: c.parts, size: c.size, end: 'eof' };
    }
    c.feed(Buffer.from(buf.subarray(0, n)));
    if (c.done) return { parts: c.parts, size: c.size, end: 'dot' };
  }
  for await (const chunk of stream()) {
    c.feed(chunk as Buffer);
    if (c.done) return { parts: c.parts, size: c.size, end: 'dot' };
  }
  c.finish();
  return { parts: c.parts, size: c.size, end: 'eof' };
}

/** The primary header section of an LF message, unfolded: [name, value] pairs. */
export function primaryHeaders(message: Buffer): [string, string][] {
  const out: [string, string][] = [];
  let pos = 0;
  while (pos < message.length) {
    let nl = message.indexOf(LF, pos);
    if (nl < 0) nl = message.length;
    const line = message.toString('utf8', pos, nl);
    if (line === '') break;
    if ((line[0] === ' ' || line[0] === '\t') && out.length) {
      out[out.length - 1]![1] += ' ' + line.trim();
    } else {
      const m = /^([\x21-\x39\x3b-\x7e]+):(.*)$/.exec(line);
      if (!m) break;
      out.push([m[1]!, m[2]!.trim()]);
    }
    pos = nl + 1;
  }
  return out;
}

/** sendmail -t: recipients from To/Cc/Bcc, or from Resent-To/Cc/Bcc when any is present. */
export function extractRecipients(message: Buffer): string[] {
  const regular: string[] = [];
  const resent: string[] = [];
  let sawResent = false;
  for (const [name, value] of primaryHeaders(message)) {
    const n = name.toLowerCase();
    if (n === 'resent-to' || n === 'resent-cc' || n === 'resent-bcc') {
      sawResent = true;
      resent.push(...parseAddressList(value));
    } else if (n === 'to' || n === 'cc' || n === 'bcc') {
      regular.push(...parseAddressList(value));
    }
  }
  return sawResent ? resent : regular;
}
