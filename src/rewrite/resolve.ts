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
 * Sender-dependent routing (resolve.c): for the relay and default classes only, the envelope
 * sender is looked up in sender_dependent_relayhost_maps as Postfix's mail_addr_find does
 * (user+ext@domain, user@domain, user+ext and user when the domain is ours, @domain; the null
 * sender as $empty_address_relayhost_maps_lookup_key, "<>"). A hit overrides relayhost; "DUNNO"
 * (or an empty value, with a warning) means "use relayhost". For the default class only,
 * sender_dependent_default_transport_maps overrides default_transport the same way
 * ($empty_address_default_transport_maps_lookup_key). A nexthop written in the transport itself
 * still wins over both, and transport_maps still override everything.
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
import type { Config } from '../config/index.js';
import { valuesOf, type ParamSpec, type Params } from '../config/declared.js';
import { DomainList } from '../address/domain.js';
import { literalAddress, ownAddresses } from '../address/interfaces.js';
import { addressKeys, settleLocalDomain, lookupAddress, lookupDomain, openTable, TableError, type InfoTable, type LookupTable } from '../maps/index.js';
import { stripSourceRoute, stripTrailingDot, unquotedAt } from './rewrite.js';
import type { AddressClass, ResolveReply } from './protocol.js';

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
  /** The sender-dependent maps' key for the null sender (empty_address_*_maps_lookup_key). */
  nullRelayKey: string;
  nullTransportKey: string;
}

/** The address-class domain lists; each may hold names, /file/name and type:table entries. */
export const DOMAIN_LIST_PARAMS = {
  'mydestination': 'list', 'virtual_alias_domains': 'list', 'virtual_mailbox_domains': 'list', 'relay_domains': 'list',
} as const satisfies ParamSpec;
const DOMAIN_LISTS = Object.keys(DOMAIN_LIST_PARAMS) as (keyof typeof DOMAIN_LIST_PARAMS)[];

/**
 * What resolving reads, declared (src/config/declared.ts): trivial-rewrite spreads these into
 * its own declaration; smtpd and the tests pass a configuration and they are read here.
 */
export const RESOLVE_PARAMS = {
  ...DOMAIN_LIST_PARAMS,
  'myhostname': 'str', 'inet_interfaces': 'list', 'proxy_interfaces': 'list',
  'swap_bangpath': 'bool', 'allow_percent_hack': 'bool', 'resolve_dequoted_address': 'bool',
  'show_user_unknown_table_name': 'bool', 'relayhost': 'str', 'local_transport': 'str',
  'virtual_transport': 'str', 'relay_transport': 'str', 'default_transport': 'str',
  'recipient_delimiter': 'str', 'empty_address_relayhost_maps_lookup_key': 'str',
  'empty_address_default_transport_maps_lookup_key': 'str',
} as const satisfies ParamSpec;

/** The tables resolving queries (openTables). */
export const RESOLVE_TABLE_PARAMS = {
  'transport_maps': 'list', 'relocated_maps': 'list', 'sender_dependent_relayhost_maps': 'list',
  'sender_dependent_default_transport_maps': 'list',
} as const satisfies ParamSpec;

/** Problems with the address-class lists (a table or file that cannot be read); empty when usable. */
export function domainListProblems(from: Config | Params<typeof DOMAIN_LIST_PARAMS>): string[] {
  const v = valuesOf(from, DOMAIN_LIST_PARAMS, 'resolve');
  const out: string[] = [];
  for (const name of DOMAIN_LISTS) {
    for (const t of DomainList.unsupported(v[name])) out.push(`${name}: ${t}`);
  }
  return out;
}

export function resolveSettings(from: Config | Params<typeof RESOLVE_PARAMS>): ResolveSettings {
  const p = valuesOf(from, RESOLVE_PARAMS, 'resolve');
  return {
    myhostname: p.myhostname.toLowerCase(),
    local: new DomainList(p.mydestination, false),
    own: ownAddresses(p.inet_interfaces, p.proxy_interfaces),
    virtualAlias: new DomainList(p.virtual_alias_domains, false),
    virtualMailbox: new DomainList(p.virtual_mailbox_domains, false),
    relay: new DomainList(p.relay_domains, true),
    swapBangpath: p.swap_bangpath,
    allowPercentHack: p.allow_percent_hack,
    dequote: p.resolve_dequoted_address,
    showTableName: p.show_user_unknown_table_name,
    relayhost: p.relayhost.trim(),
    localTransport: p.local_transport.trim(),
    virtualTransport: p.virtual_transport.trim(),
    relayTransport: p.relay_transport.trim(),
    defaultTransport: p.default_transport.trim(),
    recipientDelimiter: p.recipient_delimiter,
    nullRelayKey: p.empty_address_relayhost_maps_lookup_key,
    nullTransportKey: p.empty_address_default_transport_maps_lookup_key,
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

/**
 * True when `domain` is one of ours: mydestination or a literal of our own addresses.
 * Asynchronous (mydestination may name a database table); a table error is thrown.
 */
export async function isLocalDomain(s: ResolveSettings, domain: string): Promise<boolean> {
  const lit = literalAddress(domain);
  if (lit !== null) return s.own.has(lit);
  if (domain.startsWith('[')) return false;
  return s.local.has(domain);
}

/**
 * The address class of a recipient (domain lists only, no address tables). Asynchronous: a
 * domain list may name a database table; its TableError is thrown (a temporary failure).
 */
export async function classify(address: string, s: ResolveSettings): Promise<Classified> {
  let a = stripSourceRoute(address.trim());
  if (s.dequote) a = dequote(a);
  let routed = false;
  // Each pass removes one "@domain" or one routing operator: bounded by the address length.
  for (let pass = 0; pass <= address.length + 1; pass++) {
    a = stripTrailingDot(a);
    const at = s.dequote ? a.lastIndexOf('@') : unquotedAt(a);
    const domain = at < 0 ? '' : a.slice(at + 1).toLowerCase();
    const local = at < 0 ? a : a.slice(0, at);
    if (at >= 0 && !(await isLocalDomain(s, domain))) {
      const cls: AddressClass = (await s.virtualAlias.has(domain)) ? 'virtual-alias'
        : (await s.virtualMailbox.has(domain)) ? 'virtual-mailbox'
        : (await s.relay.has(domain)) ? 'relay' : 'default';
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
  /** sender_dependent_relayhost_maps, sender_dependent_default_transport_maps (empty: not configured). */
  senderRelay: InfoTable[];
  senderTransport: InfoTable[];
  /** Why the tables could not be opened (a TableError message): every resolve fails temporarily. */
  broken: string | null;
}

/** Opens transport_maps and relocated_maps (errors are kept, answered as temporary failures). */
export function openTables(config: Config, tables: Params<typeof RESOLVE_TABLE_PARAMS> = valuesOf(config, RESOLVE_TABLE_PARAMS, 'resolve')): TableSet {
  const opts = config.configDirectory ? { configDirectory: config.configDirectory } : {};
  try {
    return {
      transport: tables.transport_maps.map((t) => openTable(t, opts)),
      relocated: tables.relocated_maps.map((t) => openTable(t, opts)),
      senderRelay: tables.sender_dependent_relayhost_maps.map((t) => openTable(t, opts)),
      senderTransport: tables.sender_dependent_default_transport_maps.map((t) => openTable(t, opts)),
      broken: null,
    };
  } catch (e) {
    return { transport: [], relocated: [], senderRelay: [], senderTransport: [], broken: (e as Error).message };
  }
}

async function firstAddress(tables: LookupTable[], address: string, s: ResolveSettings): Promise<string | null> {
  for (const t of tables) {
    const r = await lookupAddress(t, address, { recipientDelimiter: s.recipientDelimiter, localDomain: (d) => isLocalDomain(s, d) });
    if (r.found) return r.value;
  }
  return null;
}

/**
 * Postfix's mail_addr_find() over a list of tables: each key (user+ext@domain, user@domain,
 * user+ext and user when the domain is ours, @domain) is tried in every table before the next
 * key; pattern tables (regexp, pcre, cidr) are asked the full address only.
 */
async function mailAddrFind(tables: InfoTable[], address: string, s: ResolveSettings): Promise<string | null> {
  const opts = await settleLocalDomain(address, { recipientDelimiter: s.recipientDelimiter, localDomain: (d: string) => isLocalDomain(s, d) });
  // The same keys, lower-cased for tables that fold case (postmap's default) and as written for -f ones.
  const folded = addressKeys(address.toLowerCase(), opts);
  const asIs = addressKeys(address, opts);
  for (let i = 0; i < folded.length; i++) {
    for (const t of tables) {
      if (t.kind === 'pattern' && i > 0) continue;
      const key = t.kind === 'pattern' ? address : (t.foldsCase ? folded : asIs)[i]!;
      const r = await t.lookup(key);
      if (r.found) return r.value;
    }
  }
  return null;
}

/**
 * One sender-dependent lookup (resolve.c): the value, or null for "no entry", "DUNNO", or an
 * empty value (that one with a warning, as Postfix). A broken table is a TableError that names
 * the parameter.
 */
async function senderLookup(name: string, tables: InfoTable[], sender: string, nullKey: string, s: ResolveSettings, warnings: string[]): Promise<string | null> {
  if (tables.length === 0) return null;
  const key = sender === '' ? nullKey : sender;
  let value: string | null;
  try {
    value = await mailAddrFind(tables, key, s);
  } catch (e) {
    if (e instanceof TableError) throw new TableError(`${name} lookup failure: ${e.message}`);
    throw e;
  }
  if (value === null) return null;
  value = value.trim();
  if (value === '') {
    warnings.push(`${name}: ignoring null lookup result for ${key}`);
    return null;
  }
  return value.toLowerCase() === 'dunno' ? null : value;
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

/** The sender-dependent overrides of one resolve: the transport and relayhost, null where none applies. */
async function senderRoute(cls: AddressClass, sender: string, s: ResolveSettings, tables: TableSet, warnings: string[]): Promise<{ transport: string | null; relayhost: string | null }> {
  if (cls !== 'relay' && cls !== 'default') return { transport: null, relayhost: null };
  const transport = cls === 'default'
    ? await senderLookup('sender_dependent_default_transport_maps', tables.senderTransport, sender, s.nullTransportKey, s, warnings)
    : null;
  const relayhost = await senderLookup('sender_dependent_relayhost_maps', tables.senderRelay, sender, s.nullRelayKey, s, warnings);
  return { transport, relayhost };
}

/**
 * The full resolve: class, default transport and nexthop (sender-dependent ones first), then
 * relocated_maps and transport_maps. `sender` is the envelope sender, '' for the null sender.
 */
export async function resolveAddress(address: string, s: ResolveSettings, tables: TableSet, sender = ''): Promise<ResolveReply> {
  let c: Classified;
  try {
    c = await classify(address, s);
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    // A domain list's table failed: the class is unknown, so the address is a temporary failure.
    return { class: 'default', transport: 'error', nexthop: '', recipient: address, flags: { ...errorFlags('4.3.0', 'Temporary lookup failure'), warning: e.message } };
  }
  const recipient = c.domain === '' ? `${c.recipient}@${s.myhostname}` : c.recipient;
  const domain = c.domain || s.myhostname;
  const warnings: string[] = [];
  const reply = (transport: string, nexthop: string, flags: ResolveReply['flags'] = {}): ResolveReply => {
    const f = c.routed ? { ...flags, routed: true } : { ...flags };
    if (warnings.length > 0 && !f.warning) f.warning = warnings.join('; ');
    return { class: c.class, transport, nexthop, recipient, flags: f };
  };
  if (tables.broken) return reply('error', '', { ...errorFlags('4.3.0', 'Temporary lookup failure'), warning: tables.broken });

  let transport: string;
  let nexthop: string;
  try {
    const bySender = await senderRoute(c.class, sender, s, tables, warnings);
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
        [transport, nexthop] = splitTransport(bySender.transport ?? (c.class === 'relay' ? s.relayTransport : s.defaultTransport));
        // Precedence (resolve.c): a nexthop in the transport, the sender's relayhost, relayhost, the domain.
        nexthop ||= bySender.relayhost || s.relayhost || domain;
    }
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
