// socketmap:inet:host:port:name and socketmap:unix:/path:name — Sendmail's socketmap protocol
// (socketmap_table(5)): the request is the netstring "NAME KEY", the reply the netstring
// "OK DATA", "NOTFOUND ", or "TEMP reason", "TIMEOUT reason", "PERM reason". Only NOTFOUND
// is "not found"; TEMP, TIMEOUT, PERM, a broken reply or an unreachable server are table
// errors (temporary failures), as in Postfix. One persistent connection per table and
// thread; replies up to 100000 bytes, 100s per request (Postfix's built-in limits).

import { StreamClient, parseEndpoint, type Endpoint } from './stream-client.js';
import { NOT_FOUND, TableError, found, type InfoTable, type LookupResult } from './types.js';

const MAX_REPLY = 100_000;
const TIMEOUT_MS = 100_000;

export function netstring(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(`${b.length}:`), b, Buffer.from(',')]);
}

/** One netstring from b, or null while incomplete; throws on a malformed one. */
export function readNetstring(b: Buffer, max = MAX_REPLY): { value: string; used: number } | null {
  const colon = b.indexOf(0x3a);
  if (colon < 0) {
    if (b.length > 10 || !/^\d*$/.test(b.toString('latin1'))) throw new Error('malformed netstring length');
    return null;
  }
  const len = b.subarray(0, colon).toString('latin1');
  if (!/^\d{1,10}$/.test(len)) throw new Error('malformed netstring length');
  const n = Number(len);
  if (n > max) throw new Error(`reply longer than ${max} bytes`);
  if (b.length < colon + 1 + n + 1) return null;
  if (b[colon + 1 + n] !== 0x2c) throw new Error('netstring not terminated by ","');
  return { value: b.subarray(colon + 1, colon + 1 + n).toString('utf8'), used: colon + 2 + n };
}

export class SocketmapTable implements InfoTable {
  readonly kind = 'fixed';
  readonly warnings: readonly string[] = [];
  private readonly endpoint: Endpoint;
  private readonly mapName: string;
  private client: StreamClient | null = null;

  constructor(readonly spec: string, name: string, readonly foldsCase: boolean) {
    // The map name follows the last ':' (a unix: path or an inet: host:port precede it).
    const at = name.lastIndexOf(':');
    const where = at < 0 ? '' : name.slice(0, at);
    this.mapName = at < 0 ? '' : name.slice(at + 1);
    const e = where.startsWith('inet:') || where.startsWith('unix:') ? parseEndpoint(where) : null;
    if (!e || this.mapName === '') throw new TableError(`${spec}: expected socketmap:inet:host:port:name or socketmap:unix:pathname:name`);
    this.endpoint = e;
  }

  async lookup(rawKey: string): Promise<LookupResult> {
    const key = this.foldsCase ? rawKey.toLowerCase() : rawKey;
    let reply: string;
    try {
      this.client ??= new StreamClient(this.endpoint, TIMEOUT_MS, MAX_REPLY + 16);
      reply = await this.client.request(netstring(`${this.mapName} ${key}`), (b) => readNetstring(b));
    } catch (e) {
      throw new TableError(`${this.spec}: ${(e as Error).message}`);
    }
    const sp = reply.indexOf(' ');
    const status = sp < 0 ? reply : reply.slice(0, sp);
    const rest = sp < 0 ? '' : reply.slice(sp + 1);
    switch (status) {
      case 'OK': return found(rest);
      case 'NOTFOUND': return NOT_FOUND;
      case 'TEMP': case 'TIMEOUT': case 'PERM':
        throw new TableError(`${this.spec}: ${status.toLowerCase()} socketmap error for key "${key}": ${rest}`);
      default:
        this.client?.close();
        throw new TableError(`${this.spec}: malformed reply for key "${key}": ${reply.slice(0, 100)}`);
    }
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }
}
