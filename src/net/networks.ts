/**
 * Client network lists (mynetworks): Postfix's syntax "127.0.0.0/8 [::1]/128 192.0.2.1", and
 * the mynetworks_style default (host | subnet | class) when mynetworks is not set.
 */
import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';

export class NetworkList {
  private readonly list = new BlockList();
  readonly entries: string[] = [];
  /** Answers already given, by address (a BlockList check costs microseconds; smtpd asks per connection and per RCPT). */
  private readonly answers = new Map<string, boolean>();

  /** Adds one Postfix network pattern; returns an error text, or null. */
  add(pattern: string): string | null {
    this.answers.clear();
    let p = pattern.trim();
    if (!p) return null;
    if (p.startsWith('/') || /^[a-z0-9_]+:/i.test(p) && !p.startsWith('[')) return `not supported: network table "${p}" (lookup tables are not built yet)`;
    if (p.startsWith('!')) return `not supported: negated network "${p}"`;
    const m = /^\[([^\]]+)\](\/\d+)?$/.exec(p);
    if (m) p = m[1]! + (m[2] ?? '');
    const [addr, bits] = p.split('/') as [string, string | undefined];
    const family = isIP(addr);
    if (!family) return `bad network address: "${pattern}"`;
    const type = family === 6 ? 'ipv6' : 'ipv4';
    const max = family === 6 ? 128 : 32;
    const prefix = bits === undefined ? max : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) return `bad network mask: "${pattern}"`;
    const parsed = ipaddr.parse(addr);
    const network = ipaddr.parseCIDR(`${parsed.toString()}/${prefix}`);
    // Postfix refuses a pattern with host bits set ("non-null host address bits"); so do we.
    const base = type === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(`${addr}/${prefix}`) : ipaddr.IPv6.networkAddressFromCIDR(`${addr}/${prefix}`);
    if (base.toString() !== network[0].toString()) return `non-null host address bits in "${pattern}", perhaps you should use "${base.toString()}/${prefix}" instead`;
    this.list.addSubnet(addr, prefix, type);
    this.entries.push(family === 6 ? `[${addr}]/${prefix}` : `${addr}/${prefix}`);
    return null;
  }

  /** True if `address` (IPv4, IPv6, or IPv4-mapped IPv6) is in the list. */
  has(address: string): boolean {
    const known = this.answers.get(address);
    if (known !== undefined) return known;
    let a = address;
    if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
    const family = isIP(a);
    const answer = family !== 0 && this.list.check(a, family === 6 ? 'ipv6' : 'ipv4');
    if (this.answers.size >= 4096) this.answers.clear();
    this.answers.set(address, answer);
    return answer;
  }
}

/** The networks mynetworks_style names: this host's addresses (host) or their subnets (subnet, class). */
export function styleNetworks(style: string): string[] {
  const out: string[] = [];
  for (const infos of Object.values(networkInterfaces())) {
    for (const info of infos ?? []) {
      if (style === 'host') {
        out.push(info.family === 'IPv6' ? `[${info.address.split('%')[0]}]/128` : `${info.address}/32`);
      } else {
        const [addr, bits] = info.cidr!.split('/') as [string, string];
        const base = info.family === 'IPv6' ? ipaddr.IPv6.networkAddressFromCIDR(`${addr.split('%')[0]}/${bits}`) : ipaddr.IPv4.networkAddressFromCIDR(`${addr}/${bits}`);
        out.push(info.family === 'IPv6' ? `[${base.toString()}]/${bits}` : `${base.toString()}/${bits}`);
      }
    }
  }
  return out;
}

/** Builds mynetworks from its value, or from mynetworks_style when the value is empty. */
export function buildNetworks(value: string, style: string): { networks: NetworkList; errors: string[] } {
  const networks = new NetworkList();
  const errors: string[] = [];
  const items = value.trim() ? value.split(/[\s,]+/) : styleNetworks(style);
  if (!value.trim() && !['host', 'subnet', 'class'].includes(style)) errors.push(`bad mynetworks_style value: ${style}`);
  for (const item of items) {
    const err = networks.add(item);
    if (err) errors.push(err);
  }
  return { networks, errors };
}
