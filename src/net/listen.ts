/**
 * Where an inet service listens, as Postfix's master_ent.c decides it:
 *
 *   host:port     every address of host (an IP address or a name), filtered by inet_protocols;
 *   port, name    (no host, or "*") every address of inet_interfaces:
 *                 "all"            the wildcard addresses 0.0.0.0 and [::] (IPv6-only), one per
 *                                  family of inet_protocols;
 *                 "loopback-only"  the loopback addresses of this host's interfaces;
 *                 a list           each IP address or host name (all its addresses), each of
 *                                  which must belong to a local interface.
 *
 * One master.cf line may therefore need several listening sockets; each smtpd thread of the
 * line opens all of them (with SO_REUSEPORT, so the kernel spreads connections over threads).
 *
 * Errors are Postfix's texts, prefixed with where the setting is: `master.cf:LINE: …` for the
 * service's own host part, `main.cf:LINE: …` for inet_interfaces and inet_protocols.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/index.js';
import { canonicalIp } from '../address/interfaces.js';
import { familyAllowed, ipv6Usable, parseInetProtocols, type InetProtocols } from '../address/inet-protocols.js';

/** One listening socket: an IP address (never a name) and a port. */
export interface ListenAddress {
  host: string;
  port: number;
  /** For the IPv6 wildcard: do not take IPv4 connections too (Postfix sets IPV6_V6ONLY). */
  ipv6Only?: boolean;
}

/** An inet service's endpoint as master.cf writes it (host null: none, or "*"). */
export interface InetEndpoint {
  host: string | null;
  port: number;
}

/** A configuration problem, worded for `postactor: fatal: …`. */
export class ListenError extends Error {}

function whereSet(config: Config, name: string): string {
  const o = config.originOf(name);
  const mainCf = join(config.configDirectory ?? '(embedded)', 'main.cf');
  if (o && config.isSet(name)) return o.line !== null ? `${o.file}:${o.line}` : o.file;
  return mainCf;
}

/** This host's interface addresses of the allowed families, canonical. */
function interfaceAddresses(p: InetProtocols): { address: string; family: number }[] {
  const out: { address: string; family: number }[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const family = a.family === 'IPv6' ? 6 : 4;
      // Link-local IPv6 addresses need a zone to be bound; Postfix's interface list skips them too.
      if (family === 6 && a.address.toLowerCase().startsWith('fe80:')) continue;
      if (familyAllowed(p, family)) out.push({ address: canonicalIp(a.address) ?? a.address, family });
    }
  }
  return out;
}

function isLoopback(address: string): boolean {
  return address === '::1' || /^127\./.test(address);
}

/** All addresses of a name or IP literal ("[…]" allowed), filtered by inet_protocols. */
async function hostAddresses(host: string, p: InetProtocols): Promise<string[]> {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const literal = canonicalIp(h);
  const found = literal !== null
    ? [{ address: literal, family: isIP(literal) }]
    : await lookup(h, { all: true }).catch(() => []);
  const out: string[] = [];
  for (const a of found) {
    const c = canonicalIp(a.address) ?? a.address;
    if (familyAllowed(p, a.family) && !out.includes(c)) out.push(c);
  }
  return out;
}

/**
 * inet_protocols as the mail system will use it: parsed, with IPv6 dropped (and a warning)
 * when "all" asks for it and this kernel has none, as Postfix does.
 */
export async function effectiveProtocols(config: Config, warn: (text: string) => void): Promise<InetProtocols> {
  const value = config.get('inet_protocols');
  const p = parseInetProtocols(value);
  if (typeof p === 'string') throw new ListenError(`${whereSet(config, 'inet_protocols')}: ${p}`);
  if (p.ipv6) {
    const probe = await ipv6Usable();
    if (!probe.ok) {
      if (!p.ipv4) throw new ListenError(`${whereSet(config, 'inet_protocols')}: inet_protocols = ${value}: IPv6 is not usable on this host: ${probe.error}`);
      warn(`inet_protocols: disabling IPv6 name/address support: ${probe.error}`);
      p.ipv6 = false;
    }
  }
  return p;
}

/** The addresses of inet_interfaces for services without a host part (Postfix: own_inet_addr_list or the wildcard list). */
export async function interfaceListenHosts(config: Config, p: InetProtocols): Promise<{ host: string; ipv6Only?: boolean }[]> {
  const value = config.get('inet_interfaces').trim();
  const where = whereSet(config, 'inet_interfaces');
  if (value.toLowerCase() === 'all') {
    return [...(p.ipv4 ? [{ host: '0.0.0.0' }] : []), ...(p.ipv6 ? [{ host: '::', ipv6Only: true }] : [])];
  }
  const local = interfaceAddresses(p);
  if (value === 'loopback-only') {
    const out = [...new Set(local.filter((a) => isLoopback(a.address)).map((a) => a.address))];
    if (out.length === 0) throw new ListenError(`${where}: inet_interfaces = loopback-only: no loopback interface found`);
    return out.map((host) => ({ host }));
  }
  const out: string[] = [];
  for (const item of value.split(/[\s,]+/).filter(Boolean)) {
    const addrs = await hostAddresses(item, p);
    if (addrs.length === 0) throw new ListenError(`${where}: config variable inet_interfaces: host not found: ${item}`);
    for (const a of addrs) if (!out.includes(a)) out.push(a);
  }
  for (const a of out) {
    if (!local.some((l) => l.address === a)) throw new ListenError(`${where}: parameter inet_interfaces: no local interface found for ${a}`);
  }
  return out.map((host) => ({ host }));
}

/**
 * The listening sockets of one inet service. `interfaces` is interfaceListenHosts() (computed
 * once for all services); `where` is the service's master.cf file:line.
 */
export async function serviceListenAddresses(ep: InetEndpoint, where: string, interfaces: { host: string; ipv6Only?: boolean }[], p: InetProtocols): Promise<ListenAddress[]> {
  if (ep.host === null) {
    if (interfaces.length === 0) throw new ListenError(`${where}: no address to listen on: inet_interfaces and inet_protocols leave none`);
    return interfaces.map((i) => ({ ...i, port: ep.port }));
  }
  const addrs = await hostAddresses(ep.host, p);
  if (addrs.length === 0) throw new ListenError(`${where}: bad hostname or network address: ${ep.host}`);
  return addrs.map((host) => ({ host, port: ep.port }));
}

/** "127.0.0.1:25", "[::1]:25": an address as logs and errors show it. */
export function formatListenAddress(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
