/**
 * Netstrings (D. J. Bernstein's "len:data,") read from a socket, as Postfix's netstring.c reads
 * them for qmqpd: a length of decimal digits, ':', that many bytes, ','. Each read waits at most
 * `timeout` ms for data (qmqpd_timeout). A failure is a NetstringError whose `kind` is one of
 * Postfix's four exceptions; qmqpd turns it into its reply and log line.
 */
import type * as net from 'node:net';

export type NetstringFailure = 'eof' | 'time' | 'format' | 'size';

export class NetstringError extends Error {
  constructor(readonly kind: NetstringFailure) {
    super(kind);
    this.name = 'NetstringError';
  }
}

/** Postfix's texts for the four exceptions ("… while receiving sender address"). */
export const FAILURE_TEXT: Record<NetstringFailure, string> = {
  eof: 'lost connection',
  time: 'read/write timeout',
  format: 'netstring format error',
  size: 'netstring length exceeds storage limit',
};

/** Encodes one netstring. */
export function netstring(data: string | Buffer): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([Buffer.from(`${body.length}:`, 'latin1'), body, Buffer.from(',', 'latin1')]);
}

const DIGIT_0 = 0x30;
const COLON = 0x3a;
const COMMA = 0x2c;

export class NetstringReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private timedOut = false;
  private wake: (() => void) | null = null;

  constructor(private readonly socket: net.Socket, timeout: number) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.notify();
    });
    socket.on('end', () => { this.ended = true; this.notify(); });
    socket.on('close', () => { this.ended = true; this.notify(); });
    socket.on('error', () => { this.ended = true; this.notify(); });
    socket.setTimeout(timeout, () => { this.timedOut = true; this.notify(); });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits until `n` bytes are buffered, or throws eof / time. */
  private async fill(n: number): Promise<void> {
    while (this.buffered < n) {
      if (this.timedOut) throw new NetstringError('time');
      if (this.ended) throw new NetstringError('eof');
      await new Promise<void>((resolve) => { this.wake = resolve; });
    }
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** The next byte, consumed. */
  async byte(): Promise<number> {
    await this.fill(1);
    return this.take(1)[0]!;
  }

  /** The next byte, left in place. */
  async peek(): Promise<number> {
    await this.fill(1);
    return this.chunks[0]![0]!;
  }

  /** A netstring's length and its ':' (Postfix's netstring_get_length). */
  async length(): Promise<number> {
    let len = 0;
    for (;;) {
      const ch = await this.byte();
      if (ch === COLON) return len;
      if (ch < DIGIT_0 || ch > DIGIT_0 + 9) throw new NetstringError('format');
      len = len * 10 + (ch - DIGIT_0);
      if (len > Number.MAX_SAFE_INTEGER / 10) throw new NetstringError('size');
    }
  }

  /** One whole netstring; longer than `limit` bytes (0: no limit) is a size error. */
  async get(limit: number): Promise<Buffer> {
    const len = await this.length();
    if (limit > 0 && len > limit) throw new NetstringError('size');
    await this.fill(len);
    const data = Buffer.from(this.take(len));
    if ((await this.byte()) !== COMMA) throw new NetstringError('format');
    return data;
  }
}
