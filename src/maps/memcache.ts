// memcache:/file.cf — lookups in a memcached server (memcache_table(5)), read-only, with the
// memcached text protocol written here ("get KEY" → "VALUE KEY FLAGS BYTES" data "END"): it is
// three lines, and a client library would add server hashing and silent-miss-on-error
// behaviour that Postfix does not have.
//
// Parameters: memcache (inet:host:port or unix:/path, default inet:localhost:11211), key_format
// (%s; the query template expansions of db-common.ts), domain, data_size_limit (10240),
// line_size_limit (1024), max_try (2), retry_pause (1s), timeout (2s), backup (a table that
// memcached fronts: on a miss the backup table is asked, and what it finds is stored in
// memcached with flags and ttl (3600s), as Postfix's memcache client does).
//
// A server that cannot be reached or answers an error is a temporary failure (TableError),
// after max_try attempts retry_pause apart; "END" alone is "not found" (then the backup's
// answer, if there is a backup; a failure to store it is only a warning). A key memcached cannot
// carry (empty, spaces, control characters, longer than 250 bytes) is not looked up.

import { CfFile } from './cf-file.js';
import { DomainFilter, expand, newFlags, parseTemplate, type TemplateFlags } from './db-common.js';
import { tableLog } from './indexed.js';
import { StreamClient, endpointName, parseEndpoint, type Endpoint } from './stream-client.js';
import { NOT_FOUND, TableError, found, type InfoTable, type LookupResult, type LookupTable } from './types.js';

const KNOWN = ['memcache', 'backup', 'flags', 'ttl', 'key_format', 'domain', 'data_size_limit', 'line_size_limit', 'max_try', 'retry_pause', 'timeout'];

export class MemcacheTable implements InfoTable {
  readonly kind: 'fixed' | 'pattern';
  readonly foldsCase: boolean;
  readonly warnings: readonly string[];
  private readonly endpoint: Endpoint;
  private readonly keyFormat: string;
  private readonly flags: TemplateFlags = newFlags();
  private readonly domain: DomainFilter | null;
  private readonly dataLimit: number;
  private readonly lineLimit: number;
  private readonly maxTry: number;
  private readonly retryPauseMs: number;
  private readonly timeoutMs: number;
  private client: StreamClient | null = null;

  constructor(readonly spec: string, file: string, opts: { fold: boolean; open: (spec: string) => LookupTable }) {
    const cf = CfFile.read(file, KNOWN);
    this.warnings = cf.warnings;
    const server = cf.str('memcache', 'inet:localhost:11211');
    const e = parseEndpoint(server, 11211);
    if (!e) throw new TableError(`${file}: bad memcache server specification: ${server}`);
    this.endpoint = e;
    this.keyFormat = cf.str('key_format', '%s') || '%s';
    parseTemplate(file, 'key_format', this.keyFormat, this.flags);
    this.domain = cf.str('domain', '') ? new DomainFilter(cf.str('domain', ''), opts.open, () => { throw new TableError(`${file}: domain: file lists are not supported here`); }) : null;
    this.dataLimit = cf.int('data_size_limit', 10240, 1);
    this.lineLimit = cf.int('line_size_limit', 1024, 1);
    this.maxTry = cf.int('max_try', 2, 1);
    this.retryPauseMs = cf.int('retry_pause', 1, 0) * 1000;
    this.timeoutMs = cf.int('timeout', 2, 1) * 1000;
    this.backup = cf.str('backup', '') ? opts.open(cf.str('backup', '')) : null;
    this.ttl = cf.int('ttl', 3600, 0);
    this.storeFlags = cf.int('flags', 0, 0);
    this.kind = this.flags.keyPartial ? 'pattern' : 'fixed';
    this.foldsCase = opts.fold;
  }

  private readonly backup: LookupTable | null;
  private readonly ttl: number;
  private readonly storeFlags: number;

  async lookup(rawKey: string): Promise<LookupResult> {
    const key = this.foldsCase ? rawKey.toLowerCase() : rawKey;
    if (this.domain && !(await this.domain.allows(key))) return NOT_FOUND;
    const mkey = expand(this.keyFormat, key, null, this.flags);
    if (mkey === null) return NOT_FOUND;
    // eslint-disable-next-line no-control-regex
    if (/[\s\x00-\x1f\x7f]/.test(mkey) || Buffer.byteLength(mkey) > 250) {
      tableLog('warning', `${this.spec}: skipping lookup of key "${mkey}": not a valid memcache key`);
      return NOT_FOUND;
    }
    const v = await this.attempt((c) => c.request(`get ${mkey}\r\n`, (b) => this.parse(b)));
    if (v !== null) return found(v);
    if (!this.backup) return NOT_FOUND;
    const r = await this.backup.lookup(key);
    if (r.found && Buffer.byteLength(r.value) <= this.dataLimit) {
      const data = Buffer.from(r.value, 'utf8');
      try {
        await this.attempt((c) => c.request(Buffer.concat([Buffer.from(`set ${mkey} ${this.storeFlags} ${this.ttl} ${data.length}\r\n`), data, Buffer.from('\r\n')]), (b) => {
          const eol = b.indexOf('\r\n');
          if (eol < 0) return null;
          const line = b.subarray(0, eol).toString('latin1');
          if (line !== 'STORED') throw new Error(`cannot store: ${line.slice(0, 100)}`);
          return { value: true, used: eol + 2 };
        }));
      } catch (e) {
        tableLog('warning', (e as Error).message);
      }
    }
    return r;
  }

  /** One request, tried max_try times retry_pause apart; the last failure is a TableError. */
  private async attempt<T>(fn: (c: StreamClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        this.client ??= new StreamClient(this.endpoint, this.timeoutMs, this.dataLimit + this.lineLimit + 16);
        return await fn(this.client);
      } catch (e) {
        const msg = `${this.spec}: memcache server ${endpointName(this.endpoint)}: ${(e as Error).message}`;
        if (attempt >= this.maxTry) throw new TableError(msg);
        tableLog('warning', msg);
        await new Promise((r) => setTimeout(r, this.retryPauseMs));
      }
    }
  }

  /** "END" → null; "VALUE k f n" + n bytes + "END" → the data; any error line throws. */
  private parse(b: Buffer): { value: string | null; used: number } | null {
    const eol = b.indexOf('\r\n');
    if (eol < 0) {
      if (b.length > this.lineLimit) throw new Error('reply line too long');
      return null;
    }
    const line = b.subarray(0, eol).toString('latin1');
    if (line === 'END') return { value: null, used: eol + 2 };
    const m = /^VALUE \S+ \d+ (\d+)/.exec(line);
    if (!m) throw new Error(`unexpected reply: ${line.slice(0, 100)}`);
    const n = Number(m[1]);
    if (n > this.dataLimit) throw new Error(`value longer than data_size_limit (${n} > ${this.dataLimit})`);
    const end = eol + 2 + n;
    if (b.length < end + 7) return null;
    if (b.subarray(end, end + 7).toString('latin1') !== '\r\nEND\r\n') throw new Error('malformed VALUE reply');
    return { value: b.subarray(eol + 2, end).toString('utf8'), used: end + 7 };
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }
}
