/**
 * trivial-rewrite's "resolve" operation (Postfix's resolve.c and transport.c), as a pure module:
 * a canonical recipient becomes (address class, transport, nexthop, recipient).
 *
 * Address classes, first match wins:
 *   local            mydestination, or an "[ip]" literal of inet_interfaces / proxy_interfaces
 *   virtual-alias    virtual_alias_domains (mail left there has no alias: 5.1.1 User unknown)
 *   virtual-mailbox  virtual_mailbox_domains → virtual_transport
 *   relay            relay_domains (parent domains match subdomains) → relay_transport
 *   default          everything else → default_transport
 * relayhost is the nexthop of the relay and default classes unless the transport names one.
 *
 * Sender-specified routing: when the domain is ours, the local part is looked at again —
 * "user@other"@us (resolve_dequoted_address), "user%other@us" (allow_percent_hack) and
 * "other!user@us" (swap_bangpath) resolve as user@other, and the result is flagged `routed`:
 * smtpd never counts such an address as an authorized destination (allow_untrusted_routing=no).
 *
 * transport_maps (transport(5)) are queried with the full address, then the domain, then its
 * parent domains as ".parent", then "*". Values: "transport:nexthop"; ":nexthop" keeps the
 * class's transport; "transport:" resets the nexthop to the recipient domain; ":" or "" changes
 * nothing; "error:text" and "retry:text" make the recipient fail (5.0.0 / 4.0.0, or the DSN
 * code the text starts with). relocated_maps: "User has moved to NEW" (5.1.6).
 * A broken table (TableError) is a temporary failure, 4.3.0, never a miss.
 */
import type { Config } from '../../src/config/index.js';
import { DomainList } from '../../src/address/domain.js';
import { literalAddress, ownAddresses } from '../../src/address/interfaces.js';
import { lookupAddress, lookupDomain, openTable, TableError, type InfoTable, type LookupTable } from '../../src/maps/index.js';
import { stripSourceRoute, stripTrailingDot, unquotedAt } from './rewrite.js';
import type { AddressClass, ResolveReply } from '../protocol.js';

export interface ResolveSettings {
  myhostname: string;
  local: DomainList;
  own: Set<string>;
  virtualAlias: DomainList;
  virtualMailbox: DomainList;
  relay: DomainList;
  swapBangpath: boolean;
  allowPercentHack: boolean;
  dequote: boolean;
  showTableName: boolean;
  relayhost: string;
  localTransport: string;
  virtualTransport: string;
  relayTransport: string;
  defaultTransport: string;
  recipientDelimiter: string;
}

/** The address-class domain lists; each may hold names, /file/name and type:table entries. */
const DOMAIN_LISTS = ['mydestination', 'virtual_alias_domains', 'virtual_mailbox_domains', 'relay_domains'] as const;

/** Problems with the address-class lists of `config` (a table or file that cannot be read); empty when usable. */
export function domainListProblems(config: Config): string[] {
  const out: string[] = [];
  for (const name of DOMAIN_LISTS) {
    for (const t of DomainList.unsupported(config.getList(name))) out.push(`${name}: ${t}`);
  }
  return out;
}

export function resolveSettings(config: Config): ResolveSettings {
  return {
    myhostname: config.get('myhostname').toLowerCase(),
    local: new DomainList(config.getList('mydestination'), false),
    own: ownAddresses(config.getList('inet_interfaces'), config.getList('proxy_interfaces')),
    virtualAlias: new DomainList(config.getList('virtual_alias_domains'), false),
    virtualMailbox: new DomainList(config.getList('virtual_mailbox_domains'), false),
    relay: new DomainList(config.getList('relay_domains'), true),
    swapBangpath: config.getBool('swap_bangpath'),
    allowPercentHack: config.getBool('allow_percent_hack'),
    dequote: config.getBool('resolve_dequoted_address'),
    showTableName: config.getBool('show_user_unknown_table_name'),
    relayhost: config.get('relayhost').trim(),
    localTransport: config.get('local_transport').trim(),
    virtualTransport: config.get('virtual_transport').trim(),
    relayTransport: config.get('relay_transport').trim(),
    defaultTransport: config.get('default_transport').trim(),
    recipientDelimiter: config.get('recipient_delimiter'),
  };
}

export interface Classified {
  class: AddressClass;
  /** The recipient after source routes and sender-specified routing in our domains are undone. */
  recipient: string;
  /** The recipient domain ('' for a bare local part, which is local). */
  domain: string;
  /** The local part carries routing (@ % !) in a non-final class: never an authorized destination. */
  routed: boolean;
}

/** Removes RFC 5321 quoting from the local part: "a b"@x → a b@x, "u@v"@x → u@v@x. */
function dequote(address: string): string {
  if (!address.includes('"') && !address.includes('\\')) return address;
  const at = unquotedAt(address);
  const local = at < 0 ? address : address.slice(0, at);
  let out = '';
  for (let i = 0; i < local.length; i++) {
    const c = local[i]!;
    if (c === '\\' && i + 1 < local.length) out += local[++i];
    else if (c !== '"') out += c;
  }
  return at < 0 ? out : out + address.slice(at);
}

/** True when `domain` is one of ours: mydestination or a literal of our own addresses. */
export function isLocalDomain(s: ResolveSettings, domain: string): boolean {
  const lit = literalAddress(domain);
  if (lit !== null) return s.own.has(lit);
  if (domain.startsWith('[')) return false;
  return s.local.has(domain);
}

/** The address class of a recipient (synchronous: domain lists only, no tables). */
export function classify(address: string, s: ResolveSettings): Classified {
  let a = stripSourceRoute(address.trim());
  if (s.dequote) a = dequote(a);
  let routed = false;
  // Each pass removes one "@domain" or one routing operator: bounded by the address length.
  for (let pass = 0; pass <= address.length + 1; pass++) {
    a = stripTrailingDot(a);
    const at = s.dequote ? a.lastIndexOf('@') : unquotedAt(a);
    const domain = at < 0 ? '' : a.slice(at + 1).toLowerCase();
    const local = at < 0 ? a : a.slice(0, at);
    if (at >= 0 && !isLocalDomain(s, domain)) {
      const cls: AddressClass = s.virtualAlias.has(domain) ? 'virtual-alias'
        : s.virtualMailbox.has(domain) ? 'virtual-mailbox'
        : s.relay.has(domain) ? 'relay' : 'default';
      if (cls === 'relay' || cls === 'default') routed ||= /[@%!]/.test(s.dequote ? local : local.replace(/"[^"]*"/g, ''));
      return { class: cls, recipient: a, domain, routed: routed && (cls === 'relay' || cls === 'default') };
    }
    // Our domain (or none): sender-specified routing in the local part is undone and resolved again.
    const inner = s.dequote ? local.lastIndexOf('@') : unquotedAt(local);
    if (inner >= 0) { a = local; routed = true; continue; }
    const pct = s.allowPercentHack ? local.lastIndexOf('%') : -1;
    if (pct > 0 && pct < local.length - 1) { a = `${local.slice(0, pct)}@${local.slice(pct + 1)}`; routed = true; continue; }
    const bang = s.swapBangpath ? local.indexOf('!') : -1;
    if (bang > 0 && bang < local.length - 1) { a = `${local.slice(bang + 1)}@${local.slice(0, bang)}`; routed = true; continue; }
    return { class: 'local', recipient: a, domain, routed: false };
  }
  return { class: 'local', recipient: a, domain: '', routed: false }; // not reached
}

/** "smtp:[host]:25" → ["smtp", "[host]:25"]; "smtp" → ["smtp", ""]. */
export function splitTransport(value: string): [string, string] {
  const i = value.indexOf(':');
  return i < 0 ? [value.trim(), ''] : [value.slice(0, i).trim(), value.slice(i + 1).trim()];
}

/** "5.1.1 text" → {dsn, text}; otherwise the given default DSN. */
function dsnText(text: string, fallback: string): { dsn: string; text: string } {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})\s*(.*)$/s.exec(text.trim());
  if (m) return { dsn: `${m[1]}.${m[2]}.${m[3]}`, text: m[4] || 'delivery failed' };
  return { dsn: fallback, text: text.trim() || (fallback.startsWith('4') ? 'delivery temporarily suspended' : 'delivery failed') };
}

function errorFlags(dsn: string, text: string): ResolveReply['flags'] {
  return { error: { code: dsn.startsWith('4') ? 450 : 550, dsn, text } };
}

export interface TableSet {
  transport: InfoTable[];
  relocated: InfoTable[];
  /** Why the tables could not be opened (a TableError message): every resolve fails temporarily. */
  broken: string | null;
}

/** Opens transport_maps and relocated_maps (errors are kept, answered as temporary failures). */
export function openTables(config: Config): TableSet {
  const opts = config.configDirectory ? { configDirectory: config.configDirectory } : {};
  try {
    return {
      transport: config.getList('transport_maps').map((t) => openTable(t, opts)),
      relocated: config.getList('relocated_maps').map((t) => openTable(t, opts)),
      broken: null,
    };
  } catch (e) {
    return { transport: [], relocated: [], broken: (e as Error).message };
  }
}

async function firstAddress(tables: LookupTable[], address: string, s: ResolveSettings): Promise<string | null> {
  for (const t of tables) {
    const r = await lookupAddress(t, address, { recipientDelimiter: s.recipientDelimiter, localDomain: (d) => isLocalDomain(s, d) });
    if (r.found) return r.value;
  }
  return null;
}

/** transport(5): full address, domain, ".parent" domains, then "*". */
async function transportLookup(tables: LookupTable[], address: string, domain: string, s: ResolveSettings): Promise<string | null> {
  for (const t of tables) {
    // Full address (user+ext@domain, user@domain); never the bare local part.
    const full = await lookupAddress(t, address, { recipientDelimiter: s.recipientDelimiter, localDomain: () => false });
    if (full.found && full.matchedKey !== `@${domain}`) return full.value;
  }
  if (domain) {
    for (const t of tables) {
      const r = await lookupDomain(t, domain, { parentMatch: true, parentStyle: 'dot' });
      if (r.found) return r.value;
    }
  }
  for (const t of tables) {
    const r = await t.lookup('*');
    if (r.found) return r.value;
  }
  return null;
}

/** The full resolve: class, default transport and nexthop, then relocated_maps and transport_maps. */
export async function resolveAddress(address: string, s: ResolveSettings, tables: TableSet): Promise<ResolveReply> {
  const c = classify(address, s);
  const recipient = c.domain === '' ? `${c.recipient}@${s.myhostname}` : c.recipient;
  const domain = c.domain || s.myhostname;
  const reply = (transport: string, nexthop: string, flags: ResolveReply['flags'] = {}): ResolveReply => ({
    class: c.class, transport, nexthop, recipient, flags: c.routed ? { ...flags, routed: true } : flags,
  });
  if (tables.broken) return reply('error', '', { ...errorFlags('4.3.0', 'Temporary lookup failure'), warning: tables.broken });

  let transport: string;
  let nexthop: string;
  switch (c.class) {
    case 'local':
      [transport, nexthop] = splitTransport(s.localTransport);
      nexthop ||= s.myhostname;
      break;
    case 'virtual-alias':
      return reply('error', '', errorFlags('5.1.1', `User unknown${s.showTableName ? ' in virtual alias table' : ''}`));
    case 'virtual-mailbox':
      [transport, nexthop] = splitTransport(s.virtualTransport);
      nexthop ||= domain;
      break;
    default:
      [transport, nexthop] = splitTransport(c.class === 'relay' ? s.relayTransport : s.defaultTransport);
      nexthop ||= s.relayhost || domain;
  }
  try {
    const moved = await firstAddress(tables.relocated, recipient, s);
    if (moved !== null) return reply('error', '', errorFlags('5.1.6', `User has moved to ${moved.trim()}`));
    const hit = await transportLookup(tables.transport, recipient, domain, s);
    if (hit !== null) {
      const [t, n] = splitTransport(hit);
      if (t === 'error' || t === 'retry') {
        const { dsn, text } = dsnText(n, t === 'error' ? '5.0.0' : '4.0.0');
        const d = t === 'retry' && dsn.startsWith('5') ? '4' + dsn.slice(1) : dsn;
        return reply(t, n, errorFlags(d, text));
      }
      if (t) { transport = t; nexthop = n || domain; }
      else if (n) nexthop = n;
    }
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    return reply('error', '', { ...errorFlags('4.3.0', 'Temporary lookup failure'), warning: e.message });
  }
  return reply(transport, nexthop);
}
