// tcp:host:port — Postfix's simple client-server lookup protocol (tcp_table(5)): the request
// "get KEY\n", the reply "200 VALUE\n" (found), "500 text\n" (not found) or "400 text\n"
// (temporary failure). Keys and values are %XX-encoded where they hold whitespace, control
// characters, '%' or bytes above 126. Anything but 200 and 500 — a 400, a malformed reply, a
// server that cannot be reached — is a table error, never "not found". One persistent
// connection per table and thread; 100s per request, replies up to 100000 bytes.

import { StreamClient, parseEndpoint, type Endpoint } from './stream-client.js';
import { NOT_FOUND, TableError, found, type InfoTable, type LookupResult } from './types.js';

const MAX_REPLY = 100_000;
const TIMEOUT_MS = 100_000;

function encode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    out += byte <= 32 || byte > 126 || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}

function decode(s: string): string {
  return Buffer.from(s.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
}

export class TcpTable implements InfoTable {
  readonly kind = 'fixed';
  readonly warnings: readonly string[] = [];
  private readonly endpoint: Endpoint;
  private client: StreamClient | null = null;

  constructor(readonly spec: string, name: string, readonly foldsCase: boolean) {
    const e = parseEndpoint(name);
    if (!e || 'path' in e) throw new TableError(`${spec}: expected tcp:host:port`);
    this.endpoint = e;
  }

  async lookup(rawKey: string): Promise<LookupResult> {
    const key = this.foldsCase ? rawKey.toLowerCase() : rawKey;
    let line: string;
    try {
      this.client ??= new StreamClient(this.endpoint, TIMEOUT_MS, MAX_REPLY);
      line = await this.client.request(`get ${encode(key)}\n`, (b) => {
        const nl = b.indexOf(0x0a);
        return nl < 0 ? null : { value: b.subarray(0, nl).toString('latin1').replace(/\r$/, ''), used: nl + 1 };
      });
    } catch (e) {
      throw new TableError(`${this.spec}: ${(e as Error).message}`);
    }
    const m = /^(\d{3})[ -]?(.*)$/.exec(line);
    const code = m?.[1];
    if (code === '200') return found(decode(m![2]!));
    if (code === '500') return NOT_FOUND;
    if (code === '400') throw new TableError(`${this.spec}: ${decode(m![2]!)}`);
    this.client?.close();
    throw new TableError(`${this.spec}: malformed reply: ${line.slice(0, 100)}`);
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }
}
