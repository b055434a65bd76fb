// Lookup tables "type:name" (Postfix's DATABASE_README types that Postactor
// supports) and the address/domain query orders of Postfix's maps.
//
//   inline:{ k=v, { k = v w } }   static:value   static:{ v w }
//   texthash:/file   lmdb:/file (/file.lmdb built by postmap)
//   hash:/file btree:/file cdb:/file dbm:/file sdbm:/file (all: the lmdb
//     table /file.lmdb, never Postfix's own index files; see indexed.ts)
//   regexp:/file   pcre:/file (JS RegExp, see regexp.ts)   cidr:/file
//   nis:map (NIS lookups disabled, as Postfix without an NIS domain; nis.ts)
//   pgsql:/file.cf mysql:/file.cf sqlite:/file.cf memcache:/file.cf (sql.ts, memcache.ts)
//   socketmap:inet:host:port:name socketmap:unix:/path:name   tcp:host:port
//   proxy:TYPE:NAME (one shared set of connections in the master; proxy.ts)
//
// The database and server tables answer asynchronously (lookup() returns a Promise); every
// caller awaits lookups. Within one thread each of them is opened once per spec and shared
// (a table named by several parameters uses one connection), as Postfix's dict registry.
//
// TABLE_TYPES is the one list of them (postconf -m prints it). An unknown
// type is a TableError "unsupported dictionary type: X". Errors in a table
// are TableErrors ("file:line: ..."), thrown by
// openTable or, after a table file changed and broke, by lookup(): callers
// must fail temporarily (4xx/defer), never treat them as "not found".

import path from 'node:path';

import { CidrTable } from './cidr.js';
import { InlineTable, StaticTable } from './inline.js';
import { INDEXED_TYPES } from './indexed.js';
import { LmdbTable } from './lmdb.js';
import { NisTable } from './nis.js';
import { RegexpTable } from './regexp.js';
import { TexthashTable } from './texthash.js';
import { MemcacheTable } from './memcache.js';
import { MysqlTable } from './mysql.js';
import { PgsqlTable } from './pgsql.js';
import { ProxyTable, localProxymap, serveProxymap, unproxied, type Proxymap } from './proxy.js';
import { SocketmapTable } from './socketmap.js';
import { SqliteTable } from './sqlite.js';
import { TcpTable } from './tcp.js';
import { TableError, type LookupResult, type LookupTable, type TableInfo } from './types.js';
import { TABLE_TYPES } from './table-types.js';

export { TableError, tableError, NOT_FOUND } from './types.js';
export type { LookupResult, LookupTable, TableInfo, InfoTable } from './types.js';
export { parseKeyValues } from './texthash.js';
export { writeLmdb, readLmdb, lmdbFile } from './lmdb.js';
export { parseAliases } from './aliases.js';
export { INDEXED_TYPES, setTableNotices, type NoticeSink } from './indexed.js';

export { TABLE_TYPES } from './table-types.js';

/** The types whose tables are opened once per thread and shared (connections, a database handle). */
const SHARED_TYPES = new Set(['memcache', 'mysql', 'pgsql', 'socketmap', 'sqlite', 'tcp', 'proxy']);
const shared = new Map<string, LookupTable & TableInfo>();

/** Closes every shared table of this thread (a command-line tool before it exits). */
export function closeSharedTables(): void {
  for (const t of shared.values()) t.close?.();
  shared.clear();
  localProxymap()?.closeAll();
}

/**
 * The main thread's proxymap (master, postmap): proxy: tables opened in this thread look up
 * through it, and serveProxymap() lets the actor threads reach it. configure() it with
 * proxy_read_maps before use.
 */
export function mainProxymap(warn?: (text: string) => void): Proxymap {
  return localProxymap((spec, fold) => openTable(spec, { fold }), warn)!;
}
export { serveProxymap };

/** The same list, under the name the smtpd table check uses. */
export const SUPPORTED_TYPES = TABLE_TYPES;

/** The types postmap/postalias build: lmdb: and the Postfix types that name it. */
export function isIndexedType(type: string): boolean {
  return type === 'lmdb' || INDEXED_TYPES.has(type);
}

export function unsupportedTypeMessage(type: string): string {
  return `unsupported dictionary type: ${type}`;
}

export interface OpenTableOptions {
  /** Relative file names are resolved against this directory (else the working directory). */
  configDirectory?: string;
  /** Fold fixed keys to lower case (default true; postmap -f: false). */
  fold?: boolean;
  /** The command named when an indexed table is not built yet (default postmap; alias_maps: postalias). */
  builder?: 'postmap' | 'postalias';
}

/** Splits "type:name"; throws TableError when there is no type. */
export function splitSpec(spec: string): { type: string; name: string } {
  const i = spec.indexOf(':');
  if (i <= 0) throw new TableError(`${spec}: need dictionary type:name`);
  return { type: spec.slice(0, i), name: spec.slice(i + 1) };
}

export function openTable(spec: string, opts: OpenTableOptions = {}): LookupTable & TableInfo {
  const { type, name } = splitSpec(spec);
  if (SHARED_TYPES.has(type)) {
    const fold = opts.fold ?? true;
    const file = /^(pgsql|mysql|sqlite|memcache)$/.test(type) && name !== '' ? path.resolve(opts.configDirectory ?? '.', name) : name;
    const id = `${fold ? 'f' : 'n'}:${type}:${file}`;
    let t = shared.get(id);
    if (!t) {
      t = openNetworked(spec, type, name, file, fold, opts);
      shared.set(id, t);
    }
    return t;
  }
  const file = () => {
    if (name === '') throw new TableError(`${spec}: missing file name`);
    return path.resolve(opts.configDirectory ?? '.', name);
  };
  const fold = opts.fold ?? true;
  switch (type) {
    case 'inline': return new InlineTable(spec, name, fold);
    case 'static': return new StaticTable(spec, name);
    case 'texthash': return new TexthashTable(spec, file(), { fold });
    case 'regexp': return new RegexpTable(spec, file(), false);
    case 'pcre': return new RegexpTable(spec, file(), true);
    case 'cidr': return new CidrTable(spec, file());
    case 'nis': return new NisTable(spec);
    default:
      if (isIndexedType(type)) return new LmdbTable(spec, file(), { fold, ...(opts.builder ? { builder: opts.builder } : {}) });
      throw new TableError(unsupportedTypeMessage(type));
  }
}

function openNetworked(spec: string, type: string, name: string, file: string, fold: boolean, opts: OpenTableOptions): LookupTable & TableInfo {
  if (name === '') throw new TableError(`${spec}: missing ${type === 'proxy' ? 'table name' : type === 'tcp' || type === 'socketmap' ? 'server address' : 'file name'}`);
  const sub = { fold, open: (s: string) => openTable(s, opts) };
  switch (type) {
    case 'pgsql': return new PgsqlTable(spec, file, sub);
    case 'mysql': return new MysqlTable(spec, file, sub);
    case 'sqlite': return new SqliteTable(spec, file, sub);
    case 'memcache': return new MemcacheTable(spec, file, sub);
    case 'socketmap': return new SocketmapTable(spec, name, fold);
    case 'tcp': return new TcpTable(spec, name, fold);
    default: {
      const inner = unproxied(name);
      if (inner.startsWith('proxy:') || !inner.includes(':')) throw new TableError(`${spec}: need proxy:type:name`);
      const innerType = splitSpec(inner).type;
      // The file-based inner tables must name the same absolute file in every thread and in the master.
      const innerName = inner.slice(innerType.length + 1);
      const absolute = /^(pgsql|mysql|sqlite|memcache|texthash|regexp|pcre|cidr|lmdb)$/.test(innerType) || isIndexedType(innerType)
        ? `${innerType}:${path.resolve(opts.configDirectory ?? '.', innerName)}` : inner;
      return new ProxyTable(spec, openFresh(absolute, fold, opts));
    }
  }
}

/** Opens a table without the per-thread sharing (proxy:'s look at its inner table's kind). */
function openFresh(spec: string, fold: boolean, opts: OpenTableOptions): LookupTable & TableInfo {
  const { type, name } = splitSpec(spec);
  if (SHARED_TYPES.has(type)) return openNetworked(spec, type, name, name, fold, opts);
  return openTable(spec, { ...opts, fold });
}

function info(table: LookupTable): Partial<TableInfo> {
  return table as Partial<TableInfo>;
}

export interface AddressLookupOptions {
  /** recipient_delimiter: a set of delimiter characters; '' (default) = off. */
  recipientDelimiter?: string;
  /**
   * Whether the bare localpart forms (user+ext, user) may be queried for this
   * domain. Postfix does this only for local domains ($myorigin,
   * $mydestination, $inet_interfaces, $proxy_interfaces) in virtual(5) /
   * canonical(5) lookups. Default: always. May answer asynchronously (a domain list with a
   * database table); lookupAddress() awaits it, addressKeys() needs a settled answer
   * (settleLocalDomain()).
   */
  localDomain?: (domain: string) => boolean | Promise<boolean>;
  /** owner_request_special (default true): with '-' as a delimiter, owner-x and x-request are not split. */
  ownerRequestSpecial?: boolean;
}

export type AddressLookupResult = LookupResult & { matchedKey?: string };

/**
 * Splits localpart at the first recipient delimiter, like Postfix's
 * split_addr(): postmaster, mailer-daemon and double-bounce are never split,
 * nor owner-x / x-request when '-' is a delimiter, nor a localpart that starts
 * with the delimiter. Returns null when there is no extension.
 */
export function splitExtension(localpart: string, delimiters: string, ownerRequestSpecial = true): { user: string; ext: string; delimiter: string } | null {
  if (delimiters === '') return null;
  const lower = localpart.toLowerCase();
  if (lower === 'postmaster' || lower === 'mailer-daemon' || lower === 'double-bounce') return null;
  if (delimiters.includes('-') && ownerRequestSpecial && (lower.startsWith('owner-') || (lower.length > 8 && lower.endsWith('-request')))) return null;
  let at = -1;
  for (let i = 0; i < localpart.length; i++) {
    if (delimiters.includes(localpart[i]!)) { at = i; break; }
  }
  if (at <= 0) return null;
  return { user: localpart.slice(0, at), ext: localpart.slice(at + 1), delimiter: localpart[at]! };
}

/** The keys lookupAddress() tries for a fixed-key table, in order. */
export function addressKeys(address: string, opts: AddressLookupOptions = {}): string[] {
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  const domain = at < 0 ? null : address.slice(at + 1);
  const split = splitExtension(local, opts.recipientDelimiter ?? '', opts.ownerRequestSpecial ?? true);
  const keys: string[] = [address];
  if (split !== null && domain !== null) keys.push(`${split.user}@${domain}`);
  const ours: boolean | Promise<boolean> = domain === null ? true : (opts.localDomain?.(domain) ?? true);
  if (typeof ours !== 'boolean') throw new Error('addressKeys: localDomain must be settled first (settleLocalDomain)');
  if (ours) {
    if (domain !== null) keys.push(local);
    if (split !== null) keys.push(split.user);
  }
  if (domain !== null) keys.push(`@${domain}`);
  return [...new Set(keys)].filter((k) => k !== '');
}

/** The same options with localDomain answered for this address's domain (awaited once). */
export async function settleLocalDomain(address: string, opts: AddressLookupOptions): Promise<AddressLookupOptions> {
  if (!opts.localDomain) return opts;
  const at = address.lastIndexOf('@');
  if (at < 0) return opts;
  const answer = await opts.localDomain(address.slice(at + 1));
  return { ...opts, localDomain: () => answer };
}

/**
 * Postfix's address query order for fixed-key tables (virtual(5),
 * canonical(5)): user+ext@domain, user@domain, user+ext, user, @domain
 * (unextended forms only with a recipient delimiter; bare localparts subject
 * to opts.localDomain). Keys are lower-cased for tables that fold case.
 * Pattern tables (regexp, pcre, cidr) get only the full address, unchanged.
 * matchedKey is the key that matched.
 */
export async function lookupAddress(table: LookupTable, address: string, opts: AddressLookupOptions = {}): Promise<AddressLookupResult> {
  const i = info(table);
  if (i.kind === 'pattern') {
    const r = await table.lookup(address);
    return r.found ? { ...r, matchedKey: address } : r;
  }
  const fold = i.foldsCase ?? true;
  const settled = await settleLocalDomain(address, opts);
  for (const key of addressKeys(fold ? address.toLowerCase() : address, settled)) {
    const r = await table.lookup(key);
    if (r.found) return { ...r, matchedKey: key };
  }
  return { found: false };
}

export interface DomainLookupOptions {
  /** Also query parent domains (default false). */
  parentMatch?: boolean;
  /**
   * 'dot' (default): parents as ".example.com" (Postfix when the map is NOT
   * listed in parent_domain_matches_subdomains); 'bare': "example.com"
   * (Postfix when it is listed, e.g. smtpd_access_maps by default).
   */
  parentStyle?: 'dot' | 'bare';
}

/** The keys lookupDomain() tries, in order. */
export function domainKeys(domain: string, opts: DomainLookupOptions = {}): string[] {
  const d = domain.replace(/\.$/, '');
  const keys = [d];
  if (opts.parentMatch) {
    let rest = d;
    for (let dot = rest.indexOf('.', 1); dot > 0; dot = rest.indexOf('.', 1)) {
      rest = rest.slice(dot + 1);
      if (rest === '') break;
      keys.push((opts.parentStyle ?? 'dot') === 'dot' ? `.${rest}` : rest);
    }
  }
  return keys;
}

/**
 * Looks up a domain, then (parentMatch) its parent domains, as Postfix's
 * check_domain_access does: a.b.example.com, .b.example.com, .example.com,
 * .com. Pattern tables get only the domain itself (access(5): no parent
 * search for regexp/pcre tables). Fixed keys are lower-cased when the table
 * folds case.
 */
export async function lookupDomain(table: LookupTable, domain: string, opts: DomainLookupOptions = {}): Promise<AddressLookupResult> {
  const i = info(table);
  if (i.kind === 'pattern') {
    const r = await table.lookup(domain);
    return r.found ? { ...r, matchedKey: domain } : r;
  }
  const fold = i.foldsCase ?? true;
  for (const key of domainKeys(fold ? domain.toLowerCase() : domain, opts)) {
    const r = await table.lookup(key);
    if (r.found) return { ...r, matchedKey: key };
  }
  return { found: false };
}
