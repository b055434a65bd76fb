// One persistent connection to a lookup server (memcache:, socketmap:, tcp:): connected on
// the first request, requests sent one at a time (each server protocol here answers in
// order, one reply per request), every request bounded by a timeout. Any I/O error, timeout
// or unparsable reply closes the connection (the next request connects again) and rejects
// with an Error the table turns into a TableError. The socket does not keep a command-line
// process alive while idle.

import net from 'node:net';

export type Endpoint = { host: string; port: number } | { path: string };

/** "inet:host:port", "host:port", "[v6]:port", "unix:/path" (or "/path" when allowed). */
export function parseEndpoint(text: string, defaultPort?: number): Endpoint | null {
  if (text.startsWith('unix:')) return text.length > 5 ? { path: text.slice(5) } : null;
  if (text.startsWith('/')) return { path: text };
  const rest = text.startsWith('inet:') ? text.slice(5) : text;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(rest);
  if (!m) return null;
  const port = m[2] !== undefined ? Number(m[2]) : defaultPort;
  if (port === undefined || port < 1 || port > 65535) return null;
  return { host: m[1]!, port };
}

export function endpointName(e: Endpoint): string {
  return 'path' in e ? `unix:${e.path}` : `inet:${e.host}:${e.port}`;
}

/** Returns the reply and the bytes it used, or null while more bytes are needed; throws on garbage. */
export type ReplyParser<T> = (buf: Buffer) => { value: T; used: number } | null;

export class StreamClient {
  private socket: net.Socket | null = null;
  private buffer = Buffer.alloc(0);
  private chain: Promise<unknown> = Promise.resolve();
  private onData: (() => void) | null = null;
  private onFail: ((e: Error) => void) | null = null;

  constructor(private readonly endpoint: Endpoint, private readonly timeoutMs: number, private readonly maxReply: number) {}

  request<T>(payload: string | Buffer, parse: ReplyParser<T>): Promise<T> {
    const run = this.chain.then(() => this.once(payload, parse));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    return new Promise((resolve, reject) => {
      const s = net.connect('path' in this.endpoint ? { path: this.endpoint.path } : { host: this.endpoint.host, port: this.endpoint.port });
      const fail = (e: Error) => { s.destroy(); reject(e); };
      const timer = setTimeout(() => fail(new Error('connect timeout')), this.timeoutMs);
      s.once('error', (e) => { clearTimeout(timer); fail(e); });
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        s.on('error', (e) => { if (this.socket === s) this.fail(e); });
        s.on('close', () => { if (this.socket === s) this.fail(new Error('connection closed by server')); });
        s.on('data', (d: Buffer) => {
          this.buffer = Buffer.concat([this.buffer, d]);
          this.onData?.();
        });
        this.socket = s;
        this.buffer = Buffer.alloc(0);
        resolve(s);
      });
    });
  }

  private fail(e: Error): void {
    this.socket?.destroy();
    this.socket = null;
    const f = this.onFail;
    this.onFail = null;
    this.onData = null;
    f?.(e);
  }

  private async once<T>(payload: string | Buffer, parse: ReplyParser<T>): Promise<T> {
    const s = await this.connect();
    s.ref();
    try {
      return await new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => this.fail(new Error('timeout')), this.timeoutMs);
        const done = (fn: () => void) => { clearTimeout(timer); this.onData = null; this.onFail = null; fn(); };
        this.onFail = (e) => done(() => reject(e));
        this.onData = () => {
          let r: { value: T; used: number } | null;
          try {
            r = parse(this.buffer);
          } catch (e) {
            const err = e as Error;
            done(() => reject(err));
            this.fail(err);
            return;
          }
          if (r) {
            this.buffer = this.buffer.subarray(r.used);
            const v = r.value;
            done(() => resolve(v));
          } else if (this.buffer.length > this.maxReply) {
            const err = new Error(`reply too long (more than ${this.maxReply} bytes)`);
            done(() => reject(err));
            this.fail(err);
          }
        };
        s.write(payload);
        if (this.buffer.length > 0) this.onData();
      });
    } finally {
      this.socket?.unref();
    }
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
  }
}
