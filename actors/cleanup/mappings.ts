/**
 * cleanup's map-driven address work, in Postfix's order (cleanup(8)):
 *   1. canonical mapping: sender_canonical_maps / recipient_canonical_maps, then canonical_maps
 *      (one-to-one, at most 10 rounds, stops when an address maps to itself);
 *   2. masquerade_domains (with "!" exceptions and masquerade_exceptions);
 *   3. automatic BCC: always_bcc, sender_bcc_maps, recipient_bcc_maps (new mail only);
 *   4. virtual_alias_maps: one-to-many, recursive, with Postfix's recursion and expansion
 *      limits; an address that expands to itself is kept; duplicates are removed.
 * Every table is a src/maps table queried in Postfix's address order (lookupAddress). A broken
 * table throws TableError; the caller answers a temporary failure (never a silent miss).
 */
import { lookupAddress, openTable, type AddressLookupOptions, type LookupTable, splitExtension } from '../../src/maps/index.js';
import { DomainList } from '../../src/address/domain.js';
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';

/** A map list ("type:a, type:b"): the first table with an answer wins. */
export class MapList {
  constructor(
    /** The parameter name, as Postfix's warnings name it ("virtual_alias_maps"). */
    readonly title: string,
    readonly tables: readonly LookupTable[],
    private readonly opts: AddressLookupOptions & { propagate?: boolean } = {},
  ) {}

  get empty(): boolean {
    return this.tables.length === 0;
  }

  /**
   * The mapped value of an address, or null. With a recipient delimiter and propagation on
   * (propagate_unmatched_extensions), an extension the matched key lacked is carried over to
   * each result address ("user+ext@a" matched by "user@a" → "other+ext@b").
   */
  async lookup(address: string): Promise<string | null> {
    for (const table of this.tables) {
      const r = await lookupAddress(table, address, this.opts);
      if (!r.found) continue;
      const delim = this.opts.recipientDelimiter ?? '';
      if (!this.opts.propagate || !delim) return r.value;
      const at = address.lastIndexOf('@');
      const split = splitExtension(at < 0 ? address : address.slice(0, at), delim, this.opts.ownerRequestSpecial ?? true);
      if (!split || (r.matchedKey ?? '').toLowerCase().includes(`${split.delimiter}${split.ext}`.toLowerCase())) return r.value;
      return splitResults(r.value).map((a) => addExtension(a, split.delimiter + split.ext, delim)).join(', ');
    }
    return null;
  }
}

function addExtension(address: string, ext: string, delimiters: string): string {
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  if ([...delimiters].some((d) => local.includes(d))) return address;
  return at < 0 ? local + ext : local + ext + address.slice(at);
}

/** A table result as a list of addresses: comma- (and space-) separated, as Postfix splits it. */
export function splitResults(value: string): string[] {
  return value.split(/[\s,]+/).filter((s) => s !== '');
}

export type CanonicalClass = 'envelope_sender' | 'envelope_recipient' | 'header_sender' | 'header_recipient';

export interface Mappings {
  senderCanonical: MapList;
  recipientCanonical: MapList;
  canonical: MapList;
  canonicalClasses: ReadonlySet<string>;
  senderCanonicalClasses: ReadonlySet<string>;
  recipientCanonicalClasses: ReadonlySet<string>;
  masqueradeDomains: readonly string[];
  masqueradeClasses: ReadonlySet<string>;
  masqueradeExceptions: ReadonlySet<string>;
  alwaysBcc: string;
  senderBcc: MapList;
  recipientBcc: MapList;
  virtualAlias: MapList;
  recursionLimit: number;
  expansionLimit: number;
  duplicateFilterLimit: number;
  /** enable_original_recipient: duplicates are told apart by their original recipient and DSN fields too. */
  enableOriginalRecipient: boolean;
}

/** A warning cleanup logs (with the queue ID in front) and, when `defer`, the reply. */
export class MappingFailure extends Error {
  constructor(readonly log: string, readonly code: number, readonly dsn: string, readonly text: string) {
    super(log);
  }
}

/**
 * A table-list parameter ("inline:{ a=b, c=d }, texthash:/f") split as Postfix does: on commas
 * and blanks, except inside {braces} (inline: tables, static:{ … }).
 */
export function splitTableList(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  let depth = 0;
  for (const c of value) {
    if (c === '{') depth++;
    else if (c === '}' && depth > 0) depth--;
    if (depth === 0 && (c === ',' || c === ' ' || c === '\t' || c === '\n')) {
      if (cur) out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

/** The parameters of the address mappings, read once with cleanup's (settings.ts CLEANUP_PARAMS). */
export const MAPPING_PARAMS = {
  'recipient_delimiter': 'str',
  'mydestination': 'list',
  'myorigin': 'str',
  'propagate_unmatched_extensions': 'list',
  'owner_request_special': 'bool',
  'sender_canonical_maps': 'str',
  'recipient_canonical_maps': 'str',
  'canonical_maps': 'str',
  'canonical_classes': 'list',
  'sender_canonical_classes': 'list',
  'recipient_canonical_classes': 'list',
  'masquerade_domains': 'list',
  'masquerade_classes': 'list',
  'masquerade_exceptions': 'list',
  'always_bcc': 'str',
  'sender_bcc_maps': 'str',
  'recipient_bcc_maps': 'str',
  'virtual_alias_maps': 'str',
  'virtual_alias_recursion_limit': 'int',
  'virtual_alias_expansion_limit': 'int',
  'duplicate_filter_limit': 'int',
  'enable_original_recipient': 'bool',
} as const;

/**
 * Builds the tables of the mapping parameters, from the values cleanup read (or read here from
 * a configuration: tests). Throws TableError for a broken table.
 */
export function loadMappings(from: Config | Params<typeof MAPPING_PARAMS>, configDirectory?: string): Mappings {
  const p = valuesOf(from, MAPPING_PARAMS, 'cleanup');
  const delim = p.recipient_delimiter;
  const local = new DomainList([...p.mydestination, p.myorigin], false);
  const propagate = new Set(p.propagate_unmatched_extensions);
  const base: AddressLookupOptions = { recipientDelimiter: delim, localDomain: (d) => local.has(d), ownerRequestSpecial: p.owner_request_special };
  const maps = (name: keyof typeof MAPPING_PARAMS & `${string}_maps`, propagateClass: string | null) => new MapList(name, splitTableList(p[name]).map((spec) => openTable(spec, configDirectory ? { configDirectory } : {})), { ...base, propagate: propagateClass !== null && propagate.has(propagateClass) });
  return {
    senderCanonical: maps('sender_canonical_maps', 'canonical'),
    recipientCanonical: maps('recipient_canonical_maps', 'canonical'),
    canonical: maps('canonical_maps', 'canonical'),
    canonicalClasses: new Set(p.canonical_classes),
    senderCanonicalClasses: new Set(p.sender_canonical_classes),
    recipientCanonicalClasses: new Set(p.recipient_canonical_classes),
    masqueradeDomains: p.masquerade_domains,
    masqueradeClasses: new Set(p.masquerade_classes),
    masqueradeExceptions: new Set(p.masquerade_exceptions.map((s) => s.toLowerCase())),
    alwaysBcc: p.always_bcc.trim(),
    senderBcc: maps('sender_bcc_maps', null),
    recipientBcc: maps('recipient_bcc_maps', null),
    virtualAlias: maps('virtual_alias_maps', 'virtual'),
    recursionLimit: p.virtual_alias_recursion_limit,
    expansionLimit: p.virtual_alias_expansion_limit,
    duplicateFilterLimit: p.duplicate_filter_limit,
    enableOriginalRecipient: p.enable_original_recipient,
  };
}

/**
 * One-to-one mapping (Postfix's cleanup_map11): at most 10 rounds; stops when the result equals
 * its input (case-insensitively). Only the first address of a multi-valued result is used.
 */
export async function map11(maps: MapList, address: string, warn: (text: string) => void): Promise<string> {
  let addr = address;
  for (let round = 0; round < 10; round++) {
    let value: string | null;
    try {
      value = await maps.lookup(addr);
    } catch (err) {
      throw new MappingFailure(`${maps.title} map lookup problem for ${addr} -- message not accepted, try again later: ${(err as Error).message}`, 451, '4.3.0', 'Error: queue file write error');
    }
    if (value === null) return addr;
    const results = splitResults(value);
    if (results.length > 1) warn(`multi-valued ${maps.title} entry for ${addr}`);
    const next = results[0] ?? '';
    const self = next.toLowerCase() === addr.toLowerCase();
    addr = next;
    if (self) return addr;
  }
  warn(`unreasonable ${maps.title} map nesting for ${address} -- message not accepted, try again later`);
  return addr;
}

/** Canonical mapping of one address of a class: the class-specific map first, then canonical_maps. */
export async function canonicalize(m: Mappings, address: string, cls: CanonicalClass, warn: (text: string) => void): Promise<string> {
  if (address === '') return address;
  let addr = address;
  const sender = cls === 'envelope_sender' || cls === 'header_sender';
  if (sender && !m.senderCanonical.empty && m.senderCanonicalClasses.has(cls)) addr = await map11(m.senderCanonical, addr, warn);
  if (!sender && !m.recipientCanonical.empty && m.recipientCanonicalClasses.has(cls)) addr = await map11(m.recipientCanonical, addr, warn);
  if (!m.canonical.empty && m.canonicalClasses.has(cls)) addr = await map11(m.canonical, addr, warn);
  return addr;
}

/**
 * Address masquerading (Postfix's masquerade.c): the first entry of masquerade_domains that is a
 * parent of the address's domain replaces it; an entry "!sub.example.com" equal to the domain
 * stops the search (no masquerading); a localpart in masquerade_exceptions is never masqueraded.
 */
export function masquerade(domains: readonly string[], exceptions: ReadonlySet<string>, address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0 || domains.length === 0) return address;
  if (exceptions.size > 0 && exceptions.has(address.slice(0, at).toLowerCase())) return address;
  const domain = address.slice(at + 1);
  const lower = domain.toLowerCase();
  for (const entry of domains) {
    const negate = entry.startsWith('!');
    const masq = (negate ? entry.slice(1) : entry).toLowerCase();
    if (!masq) continue;
    if (masq.length === lower.length) {
      if (masq === lower) break;
    } else if (masq.length < lower.length && lower.endsWith(`.${masq}`)) {
      return negate ? address : `${address.slice(0, at)}@${masq}`;
    }
  }
  return address;
}

export function masqueradeClass(m: Mappings, address: string, cls: CanonicalClass): string {
  return m.masqueradeClasses.has(cls) ? masquerade(m.masqueradeDomains, m.masqueradeExceptions, address) : address;
}

/**
 * virtual_alias_maps expansion of one recipient (Postfix's cleanup_map1n): each address is
 * looked up until it no longer maps; the first result replaces it, further results are appended
 * and expanded in turn. An address whose expansion contains itself is kept as is (once). Deeper
 * than virtual_alias_recursion_limit or wider than virtual_alias_expansion_limit: the message is
 * not accepted (451 4.6.0 Alias expansion error), as in Postfix.
 */
export async function expandVirtual(m: Mappings, address: string): Promise<string[]> {
  if (m.virtualAlias.empty) return [address];
  const out = [address];
  const selfExpanded = new Set<string>();
  const title = m.virtualAlias.title;
  const fail = (what: string) => new MappingFailure(`unreasonable ${title} map ${what} for ${address} -- message not accepted, try again later`, 451, '4.6.0', 'Alias expansion error');
  for (let i = 0; i < out.length; i++) {
    if (out.length > m.expansionLimit) throw fail('expansion size');
    for (let count = 0; ; count++) {
      const current = out[i]!;
      if (selfExpanded.has(current.toLowerCase())) break;
      if (count >= m.recursionLimit) throw fail('nesting');
      let value: string | null;
      try {
        value = await m.virtualAlias.lookup(current);
      } catch (err) {
        throw new MappingFailure(`${title} map lookup problem for ${current} -- message not accepted, try again later: ${(err as Error).message}`, 451, '4.3.0', 'Error: queue file write error');
      }
      if (value === null) break;
      const results = splitResults(value);
      if (results.length === 0) break;
      results.forEach((r, k) => {
        if (k === 0) out[i] = r;
        else out.push(r);
        if (r.toLowerCase() === current.toLowerCase()) selfExpanded.add(r.toLowerCase());
      });
    }
  }
  return out;
}

/**
 * Removes duplicate recipients, remembering at most `limit` (duplicate_filter_limit; 0 = no
 * limit): with enable_original_recipient (`byOriginal`), those with the same address, original
 * recipient, DSN ORCPT and NOTIFY; without it, those with the same address.
 */
export function dedupe<T extends { address: string; orcpt?: string; notify?: string[]; original?: string }>(recipients: T[], limit: number, byOriginal = true): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const r of recipients) {
    // cleanup_out_recipient.c's key: DSN ORCPT, NOTIFY, the original recipient and the address
    // (recipients that differ only in what the sender asked to be told are kept apart); without
    // enable_original_recipient, the address alone (been_here_fixed). The first one's fields stay.
    const key = byOriginal ? `${r.orcpt ?? ''}\n${r.notify?.join(',') ?? ''}\n${r.original ?? r.address}\n${r.address}` : r.address;
    if (seen.has(key)) continue;
    if (limit <= 0 || seen.size < limit) seen.add(key);
    out.push(r);
  }
  return out;
}
