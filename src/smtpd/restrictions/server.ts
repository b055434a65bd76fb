/**
 * check_{client,reverse_client_hostname,helo,sender,recipient}_{a,mx,ns}_access: an access table
 * applied to the servers of a name rather than to the name (Postfix's check_server_access).
 *
 *   mx: the domain's MX hosts (the domain itself when it has no MX record; nothing for a null MX)
 *   ns: the domain's name servers (a parent domain's when the domain has none)
 *   a:  the domain itself
 *
 * Each server is looked up by its name (mx, ns: the name, then its parent domains) and then by
 * each of its addresses (inet_protocols' families; the address, then its parent networks), the
 * first table entry found deciding. An address literal ("[192.0.2.1]") is its own server for mx
 * and a. At most 100 addresses (Postfix's var_dns_rr_list_limit) are looked at. A DNS failure skips the check with
 * Postfix's warning. An OK from any of these is refused (forbidOk): the servers are named by
 * whoever controls the DNS of the name being checked.
 */
import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';

import { TableError } from '../../maps/index.js';
import { addrLookup, domainLookup, forbidOk, tableResult, unmapped, type AccessSettings } from './access.js';
import type { PolicyDns } from './dns.js';
import type { PolicyTable } from './tables.js';
import { DUNNO, rejected, REPLY_CLASS, replyName, type Action, type PolicyRequest, type Restriction, type Stage } from './types.js';

export type ServerType = 'a' | 'mx' | 'ns';
/** Whose name is checked; also the reply's class ("Sender address rejected: …"). */
export type ServerSubject = 'client' | 'reverse_client' | 'helo' | 'sender' | 'recipient';

export interface ServerSettings extends AccessSettings {
  /** Postfix's var_dns_rr_list_limit (100, built in). */
  addressLimit: number;
  ipv4: boolean;
  ipv6: boolean;
}

/** The name a restriction checks, or null when it has none to check (Postfix skips the restriction). */
function subjectName(subject: ServerSubject, r: PolicyRequest): string | null {
  switch (subject) {
    case 'client': return r.clientName.toLowerCase() === 'unknown' ? null : r.clientName;
    case 'reverse_client': {
      const name = r.reverseClientName ?? r.clientName;
      return name.toLowerCase() === 'unknown' ? null : name;
    }
    case 'helo': return r.helo || null;
    case 'sender': return r.sender || null;
    case 'recipient': return r.recipient || null;
  }
}

/** `warn` logs Postfix's warnings as they come (a server that does not resolve is skipped, the check goes on). */
export function serverAccess(subject: ServerSubject, type: ServerType, table: PolicyTable, dns: () => PolicyDns, s: ServerSettings, warn: (w: string) => void): Restriction {
  const restriction = `check_${subject === 'reverse_client' ? 'reverse_client_hostname' : subject}_${type}_access`;
  const stage: Stage = subject;
  return async (r) => {
    const name = subjectName(subject, r);
    if (name === null) return DUNNO;
    const target = subject === 'client' ? replyName(r, 'client') : name;
    try {
      return forbidOk(await check(name, type, table, dns(), s, r, stage, warn), restriction, name);
    } catch (e) {
      if (!(e instanceof TableError)) throw e;
      return {
        kind: 'error',
        reply: rejected(451, '4.3.5', r, stage, 'Server configuration error'),
        warning: `${table.spec}: table lookup problem: ${e.message} (${restriction} for ${target})`,
      };
    }
  };
}

async function check(name: string, type: ServerType, table: PolicyTable, dns: PolicyDns, s: ServerSettings, r: PolicyRequest, stage: Stage, warn: (w: string) => void): Promise<Action> {
  const at = name.lastIndexOf('@');
  let domain = at < 0 ? name : name.slice(at + 1);
  const found = (value: string, datum: string) => tableResult(value, table.spec, datum, r, stage, s);

  // An address literal is its own MX host (and its own address); it has no name servers.
  if (domain.startsWith('[')) {
    if (type === 'ns' || !domain.endsWith(']')) return DUNNO;
    const addr = unmapped(domain.slice(1, -1).replace(/^ipv6:/i, ''));
    if (!isIP(addr)) return DUNNO;
    const hit = await addrLookup(table, addr);
    return hit.found ? found(hit.value, addr) : DUNNO;
  }
  if (!/^[\x00-\x7f]*$/.test(domain)) domain = domainToASCII(domain) || domain;
  domain = domain.replace(/\.$/, '');
  if (!domain) return DUNNO;

  let servers: string[];
  if (type === 'a') servers = [domain];
  else {
    let answer = await dns.servers(domain, type);
    if (answer.status === 'nullmx') return DUNNO;
    let asked = domain;
    if (answer.status === 'notfound') {
      if (type === 'mx') answer = { status: 'ok', hosts: [domain] };
      else {
        // No NS records: the closest parent domain's.
        for (let dot = asked.indexOf('.'); dot >= 0 && dot < asked.length - 1 && answer.status === 'notfound'; dot = asked.indexOf('.')) {
          asked = asked.slice(dot + 1);
          answer = await dns.servers(asked, type);
        }
      }
    }
    if (answer.status !== 'ok') {
      // Postfix names the domain that failed, or the whole name when no parent had any.
      const why = answer.status === 'error' ? answer.error : answer.status === 'nullmx' ? 'Null MX' : 'Host not found';
      warn(`Unable to look up ${type.toUpperCase()} host for ${answer.status === 'notfound' ? name : asked}: ${why}`);
      return DUNNO;
    }
    servers = answer.hosts;
  }

  let count = 0;
  for (const server of servers) {
    const host = server.replace(/\.$/, '');
    if (isIP(host)) {
      const hit = await addrLookup(table, host);
      if (hit.found) return found(hit.value, host);
      continue;
    }
    if (type !== 'a') {
      const hit = await domainLookup(table, host, s);
      if (hit.found) return found(hit.value, host);
    }
    const got = await dns.addresses(host, s.ipv4, s.ipv6);
    if ('error' in got) {
      if (type !== 'a') warn(`Unable to look up ${type.toUpperCase()} host ${host} for ${REPLY_CLASS[stage]} ${replyName(r, stage)}: ${got.error}`);
      continue;
    }
    for (const addr of got.addrs) {
      if (++count > s.addressLimit) {
        warn(`check_server_access: ${type.toUpperCase()} server address count limit (${s.addressLimit}) exceeded for ${REPLY_CLASS[stage]} ${replyName(r, stage)} -- ignoring the remainder`);
        return DUNNO;
      }
      const hit = await addrLookup(table, addr);
      if (hit.found) return found(hit.value, addr);
    }
  }
  return DUNNO;
}

