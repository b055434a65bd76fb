/**
 * permit_mx_backup (Postfix's smtpd_check.c): accept mail for a domain that lists this host as
 * one of its backup MX hosts, and (as permit_auth_destination) for our own destinations.
 *
 *  - The recipient is one of our destinations (mydestination, the virtual domains,
 *    relay_domains, our "[ip]"): OK, unless it carries sender-specified routing.
 *  - Otherwise its domain's MX hosts are looked up. When this host is a primary MX (the lowest
 *    preference), the restriction does not apply (we would be the final hop but are not told so);
 *    when it is among the backups, the mail is accepted. A host is "this host" when its name is
 *    one of our domains or one of its addresses is one of ours (inet_interfaces,
 *    proxy_interfaces).
 *  - permit_mx_backup_networks, when set, also requires every address of every primary MX host
 *    to be inside those networks.
 *  - A temporary DNS failure turns a later reject into 450 4.4.4 (DEFER_IF_REJECT); no MX record
 *    at all leaves the decision to the restrictions that follow.
 */
import { domainToASCII } from 'node:url';

import { canonicalIp, literalAddress } from '../../address/interfaces.js';
import type { NetworkList } from '../../net/networks.js';
import type { PolicyDns } from './dns.js';
import { DUNNO, PERMIT, rejected, type Restriction } from './types.js';

export interface MxBackupContext {
  /** permit_auth_destination's test (smtpd's classify, routing included). */
  authorized(recipient: string): Promise<boolean>;
  /** Whether a host name is one of our domains (mydestination and our literals). */
  isLocal(host: string): Promise<boolean>;
  /** Our addresses: inet_interfaces and proxy_interfaces, canonical. */
  own: ReadonlySet<string>;
  /** permit_mx_backup_networks, or null when empty. */
  networks: NetworkList | null;
  ipv4: boolean;
  ipv6: boolean;
  dns: () => PolicyDns;
}

export function permitMxBackup(c: MxBackupContext): Restriction {
  return async (r, stage) => {
    if (!r.recipient) return DUNNO;
    if (await c.authorized(r.recipient)) return PERMIT;
    const at = r.recipient.lastIndexOf('@');
    if (at < 0) return DUNNO;
    let domain = r.recipient.slice(at + 1).replace(/\.$/, '');
    if (!domain || literalAddress(domain) !== null || domain.startsWith('[')) return DUNNO;
    if (!/^[\x00-\x7f]*$/.test(domain)) domain = domainToASCII(domain) || domain;
    const dns = c.dns();
    const mx = await dns.mxList(domain);
    if ('error' in mx) {
      if (!mx.temporary) return DUNNO;
      return { kind: 'defer_if_reject', reply: rejected(450, '4.4.4', r, stage, `Unable to look up mail exchanger information: ${mx.error}`) };
    }
    if (mx.hosts.length === 0) return DUNNO;
    const best = mx.hosts[0]!.priority;
    const primaries = mx.hosts.filter((h) => h.priority === best).map((h) => h.exchange);
    const backups = mx.hosts.filter((h) => h.priority !== best).map((h) => h.exchange);
    if (await iAmMx(c, dns, primaries)) return DUNNO;
    if (backups.length === 0 || !(await iAmMx(c, dns, backups))) return DUNNO;
    if (c.networks) {
      for (const host of primaries) {
        const got = await dns.addresses(host, c.ipv4, c.ipv6);
        if ('error' in got || !got.addrs.every((a) => c.networks!.has(a))) return DUNNO;
      }
    }
    return PERMIT;
  };
}

/** Names first, then addresses, as Postfix's i_am_mx. */
async function iAmMx(c: MxBackupContext, dns: PolicyDns, hosts: string[]): Promise<boolean> {
  for (const h of hosts) if (await c.isLocal(h.replace(/\.$/, ''))) return true;
  for (const h of hosts) {
    const got = await dns.addresses(h.replace(/\.$/, ''), c.ipv4, c.ipv6);
    if ('error' in got) continue;
    if (got.addrs.some((a) => c.own.has(canonicalIp(a) ?? a))) return true;
  }
  return false;
}
