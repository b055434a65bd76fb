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

  constructor(items: string[], private readonly subdomains: boolean) {
    for (const raw of items) {
      const item = raw.toLowerCase().replace(/\.$/, '');
      if (!item) continue;
      if (item.startsWith('.')) this.parents.push(item);
      else {
        this.exact.add(item);
        if (subdomains) this.parents.push('.' + item);
      }
    }
  }

  /** Entries in the list that name lookup tables (type:name or /file), which need issue-3 maps. */
  static unsupported(items: string[]): string[] {
    return items.filter((i) => /^[a-z0-9_]+:/i.test(i) || i.startsWith('/'));
  }

  has(domain: string): boolean {
    const d = domain.toLowerCase().replace(/\.$/, '');
    if (this.exact.has(d)) return true;
    for (const p of this.parents) if (d.endsWith(p)) return true;
    return false;
  }
}
