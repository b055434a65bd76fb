import { readFileSync } from 'node:fs';
import { openTable, type LookupTable } from '../maps/index.js';

/**
 * Small address helpers: split user@domain, and Postfix's domain-list matching
 * (mydestination, relay_domains) with parent_domain_matches_subdomains semantics.
 */

/** The domain part of an address, lower-cased, without a trailing dot; '' if none. */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return '';
  let d = address.slice(at + 1).toLowerCase();
  if (d.endsWith('.')) d = d.slice(0, -1);
  return d;
}

/** The local part of an address. */
export function localPartOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}

/**
 * A list of domains as Postfix reads mydestination or relay_domains. With `subdomains`, an entry
 * "example.com" also matches "x.example.com" (Postfix's parent_domain_matches_subdomains, which
 * includes relay_domains by default); ".example.com" matches subdomains only.
 */
export class DomainList {
  private readonly exact = new Set<string>();
  private readonly parents: string[] = [];
  private readonly tables: LookupTable[] = [];

  /**
   * Items are domain names, ".parent" patterns, /file/name (a file of such items) or type:table
   * (matched when the domain is a key; the value is ignored, as in Postfix). Throws the table's
   * or file's error (file:line: …) when one cannot be read.
   */
  constructor(items: string[], private readonly subdomains: boolean) {
    for (const raw of items) {
      if (raw.startsWith('/')) {
        for (const item of readListFile(raw)) this.addName(item);
      } else if (TABLE.test(raw)) {
        this.tables.push(openTable(raw));
      } else {
        this.addName(raw);
      }
    }
  }

  private addName(raw: string): void {
    const item = raw.toLowerCase().replace(/\.$/, '');
    if (!item) return;
    if (item.startsWith('.')) this.parents.push(item);
    else {
      this.exact.add(item);
      if (this.subdomains) this.parents.push('.' + item);
    }
  }

  /** The entries of `items` that cannot be used, with the reason (a table or file that fails to open). */
  static unsupported(items: string[]): string[] {
    const out: string[] = [];
    for (const item of items) {
      try {
        if (item.startsWith('/')) readListFile(item);
        else if (TABLE.test(item)) openTable(item);
      } catch (err) {
        out.push(`${item}: ${(err as Error).message}`);
      }
    }
    return out;
  }

  /**
   * Whether the domain is listed. Asynchronous because a table entry may be a database
   * (pgsql:, mysql:, proxy: …); a table that fails throws its TableError — callers answer a
   * temporary failure (451 4.3.0, a deferral), never "not listed".
   */
  async has(domain: string): Promise<boolean> {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (this.exact.has(d)) return true;
    for (const p of this.parents) if (d.endsWith(p)) return true;
    if (this.tables.length === 0) return false;
    // Table keys: the domain, then (relay_domains style) each parent domain, and ".parent" keys.
    const keys = [d];
    for (let i = d.indexOf('.'); i >= 0; i = d.indexOf('.', i + 1)) {
      const parent = d.slice(i + 1);
      if (!parent) break;
      if (this.subdomains) keys.push(parent);
      keys.push('.' + parent);
    }
    for (const table of this.tables) {
      for (const key of keys) {
        if ((await table.lookup(key)).found) return true;
      }
    }
    return false;
  }
}

const TABLE = /^[a-z0-9_]+:/i;

/** A /file/name list: items separated by whitespace or commas, # comments. */
function readListFile(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return text.split('\n').map((l) => l.replace(/#.*$/, '')).join(' ').split(/[\s,]+/).filter(Boolean);
}
