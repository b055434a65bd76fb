/**
 * qmqpd_authorized_clients: the one access policy of the QMQP server (Postfix's namadr_list).
 * The list holds network patterns (192.0.2.1, 192.0.2.0/24, [2001:db8::]/32), host names and
 * domains (with qmqpd_authorized_clients in parent_domain_matches_subdomains, the default,
 * "example.com" also matches its subdomains; ".example.com" matches subdomains only), "!"
 * negations, /file/name (a file of such patterns) and type:table (the client name, then its
 * address, looked up as keys). The first pattern that matches decides; nothing matches by
 * default, so an empty list (the default) authorizes nobody.
 *
 * A pattern or table that cannot be used is a configuration error: qmqpd then answers every
 * client "Z Error: server configuration error", as Postfix does, and never lets one in.
 */
import { readFileSync } from 'node:fs';
import { openTable } from '../../src/maps/index.js';
import type { LookupTable } from '../../src/maps/types.js';
import { NetworkList } from '../../src/net/networks.js';

type Pattern =
  | { kind: 'net'; negate: boolean; list: NetworkList }
  | { kind: 'name'; negate: boolean; name: string }
  | { kind: 'table'; negate: boolean; table: LookupTable };

const TABLE = /^[a-z0-9_]+:/i;
const NETWORK = /^(\[[^\]]+\](\/\d+)?|[0-9.]+(\/\d+)?|[0-9a-f:]*:[0-9a-f:.]*(\/\d+)?)$/i;

export class AuthorizedClients {
  private readonly patterns: Pattern[] = [];
  /** Why the list cannot be used, or null. */
  readonly error: string | null = null;

  constructor(value: string, private readonly parentMatches: boolean) {
    try {
      for (const item of split(value)) this.add(item);
    } catch (err) {
      this.error = (err as Error).message;
    }
  }

  private add(item: string): void {
    let negate = false;
    let p = item;
    while (p.startsWith('!')) { negate = !negate; p = p.slice(1); }
    if (p.startsWith('/')) {
      const text = readFileSync(p, 'utf8');
      for (const inner of split(text.split('\n').map((l) => l.replace(/#.*$/, '')).join(' '))) this.add(negate ? `!${inner}` : inner);
      return;
    }
    if (TABLE.test(p) && !p.startsWith('[')) {
      this.patterns.push({ kind: 'table', negate, table: openTable(p) });
      return;
    }
    if (NETWORK.test(p)) {
      const list = new NetworkList();
      const err = list.add(p);
      if (err) throw new Error(`qmqpd_authorized_clients: ${err}`);
      this.patterns.push({ kind: 'net', negate, list });
      return;
    }
    this.patterns.push({ kind: 'name', negate, name: p.toLowerCase().replace(/\.$/, '') });
  }

  /** Whether the client (its verified name or "unknown", and its address) may use the service. */
  async match(name: string, addr: string): Promise<boolean> {
    const host = name.toLowerCase();
    for (const p of this.patterns) {
      let hit = false;
      switch (p.kind) {
        case 'net': hit = p.list.has(addr); break;
        case 'name': hit = this.nameMatches(p.name, host); break;
        case 'table': hit = (await p.table.lookup(host)).found || (await p.table.lookup(addr)).found; break;
      }
      if (hit) return !p.negate;
    }
    return false;
  }

  private nameMatches(pattern: string, host: string): boolean {
    if (host === 'unknown') return false;
    if (pattern.startsWith('.')) return host.endsWith(pattern);
    return host === pattern || (this.parentMatches && host.endsWith(`.${pattern}`));
  }
}

function split(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}
