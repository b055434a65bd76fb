// What pgsql:, mysql: and sqlite: tables share: the parameter file (hosts, user, password,
// dbname, query, result_format, domain, expansion_limit), the lookup (fold the key, domain
// filter, query template, result rows → one value) and the host list of the networked ones.
//
// Failure semantics are Postfix's: a server that cannot be reached, a query the server
// refuses, too many results — each is a TableError (the caller's temporary failure: 451 4.3.0
// at RCPT, a deferral in delivery), never "not found". A host that fails is skipped for
// retry_interval (60s) while another host of the list is tried, as Postfix's dict_pgsql and
// dict_mysql do; the hosts are tried in random order.
//
// Connections are opened on the first lookup, not when the table is opened (postactor check
// and the daemons' start-up parse the file only), and close after idle_interval (60s).

import fs from 'node:fs';

import { CfFile } from './cf-file.js';
import { DomainFilter, assembleResult, expand, newFlags, parseTemplate, type TemplateFlags } from './db-common.js';
import { tableLog } from './indexed.js';
import { NOT_FOUND, TableError, found, type InfoTable, type LookupResult, type LookupTable } from './types.js';

/** The legacy query parameters Postfix still reads; Postactor asks for "query" instead. */
export const LEGACY_REFUSED: Readonly<Record<string, string>> = Object.fromEntries(
  ['select_field', 'table', 'where_field', 'additional_conditions', 'select_function'].map((n) => [n, 'legacy parameter not supported by Postactor; write the whole SELECT statement as "query"']),
);

export const COMMON_PARAMS = ['query', 'result_format', 'domain', 'expansion_limit'] as const;

/** One backend: runs an SQL text (already expanded with its quoting) and returns the cells, row-major. */
export interface SqlBackend {
  quote(s: string): string;
  run(sql: string): Promise<(string | null)[]>;
  close(): void;
}

export interface SqlTableOptions {
  fold: boolean;
  open: (spec: string) => LookupTable;
}

export abstract class SqlTable implements InfoTable {
  readonly kind: 'fixed' | 'pattern';
  readonly foldsCase: boolean;
  readonly warnings: readonly string[];
  protected readonly cf: CfFile;
  private readonly query: string;
  private readonly resultFormat: string;
  private readonly flags: TemplateFlags = newFlags();
  private readonly expansionLimit: number;
  private readonly domain: DomainFilter | null;
  private backendInstance: SqlBackend | null = null;

  constructor(readonly spec: string, file: string, known: readonly string[], opts: SqlTableOptions) {
    this.cf = CfFile.read(file, [...COMMON_PARAMS, ...known], LEGACY_REFUSED);
    this.warnings = this.cf.warnings;
    this.query = this.cf.required('query');
    this.resultFormat = this.cf.str('result_format', '%s') || '%s';
    parseTemplate(file, 'query', this.query, this.flags);
    parseTemplate(file, 'result', this.resultFormat, this.flags);
    this.expansionLimit = this.cf.int('expansion_limit', 0);
    this.domain = this.cf.has('domain') && this.cf.str('domain', '') !== ''
      ? new DomainFilter(this.cf.str('domain', ''), opts.open, readList) : null;
    this.kind = this.flags.keyPartial ? 'pattern' : 'fixed';
    this.foldsCase = opts.fold;
  }

  protected abstract backend(): SqlBackend;

  async lookup(rawKey: string): Promise<LookupResult> {
    const key = this.foldsCase ? rawKey.toLowerCase() : rawKey;
    if (this.domain && !(await this.domain.allows(key))) return NOT_FOUND;
    if (expand(this.query, key, null, this.flags) === null) return NOT_FOUND;
    this.backendInstance ??= this.backend();
    const b = this.backendInstance;
    const sql = expand(this.query, key, null, this.flags, (s) => b.quote(s))!;
    const cells = await b.run(sql);
    const value = assembleResult(cells, key, {
      resultFormat: this.resultFormat, flags: this.flags, expansionLimit: this.expansionLimit, spec: this.spec,
      warn: (t) => tableLog('warning', t),
    });
    return value === null ? NOT_FOUND : found(value);
  }

  close(): void {
    this.backendInstance?.close();
    this.backendInstance = null;
  }
}

function readList(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').map((l) => l.replace(/#.*$/, '')).join(' ').split(/[\s,]+/).filter(Boolean);
  } catch (e) {
    throw new TableError(`${file}: cannot open: ${(e as Error).message}`);
  }
}

/** A database server named in "hosts": inet:host:port, host:port, host, unix:/path, or a URI. */
export interface DbHost {
  /** As written, for the log. */
  readonly name: string;
  readonly host?: string;
  readonly port?: number;
  readonly socket?: string;
  readonly uri?: string;
}

export function parseHosts(value: string, defaultPort: number, uriScheme: RegExp | null): DbHost[] {
  const out: DbHost[] = [];
  for (const item of value.split(/[\s,]+/).filter(Boolean)) {
    if (uriScheme?.test(item)) { out.push({ name: item.replace(/:[^:@/]*@/, ':*@'), uri: item }); continue; }
    if (item.startsWith('unix:')) { out.push({ name: item, socket: item.slice(5) }); continue; }
    if (item.startsWith('/')) { out.push({ name: item, socket: item }); continue; }
    const rest = item.startsWith('inet:') ? item.slice(5) : item;
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(rest) ?? /^([^:]+)(?::(\d+))?$/.exec(rest);
    if (!m) throw new TableError(`bad host specification: ${item}`);
    out.push({ name: item, host: m[1]!, port: m[2] ? Number(m[2]) : defaultPort });
  }
  return out.length ? out : [{ name: 'localhost', host: 'localhost', port: defaultPort }];
}

/** Raised by a backend when a host cannot be used (connect failed, connection lost): try the next. */
export class HostDown extends Error {}

/**
 * Tries the hosts in random order, skipping those that failed within retryMs, until one
 * answers. A HostDown marks that host and moves on; any other error is the answer.
 */
export class HostRotation<H extends DbHost> {
  private readonly downUntil = new Map<H, number>();

  constructor(private readonly hosts: readonly H[], private readonly retryMs: number, private readonly spec: string, private readonly kind: string) {}

  async run<T>(fn: (host: H) => Promise<T>): Promise<T> {
    const now = Date.now();
    const order = [...this.hosts].sort(() => Math.random() - 0.5).filter((h) => (this.downUntil.get(h) ?? 0) <= now);
    for (const h of order) {
      try {
        const r = await fn(h);
        this.downUntil.delete(h);
        return r;
      } catch (e) {
        if (!(e instanceof HostDown)) throw e;
        tableLog('warning', `connect to ${this.kind} server ${h.name}: ${e.message}`);
        this.downUntil.set(h, Date.now() + this.retryMs);
      }
    }
    throw new TableError(`${this.spec}: no ${this.kind} server available (${this.hosts.map((h) => h.name).join(', ')})`);
  }
}
