/**
 * check_client_access, check_helo_access, check_sender_access, check_recipient_access: access(5)
 * tables, queried in Postfix's order, and their results turned into actions.
 *
 * Query orders (fixed-key tables; pattern tables — regexp, pcre, cidr — get only the whole
 * string: access(5) "no parent domain or parent network search"):
 *   client:    hostname, parent domains; address, parent networks (1.2.3.4, 1.2.3, 1.2, 1)
 *   helo:      the HELO name, parent domains
 *   etrn:      the ETRN domain, parent domains
 *   addresses: user@domain, (user@domain without extension), domain, parent domains, user@
 *              (and user+ext@ → user@); the null sender is looked up as smtpd_null_access_lookup_key
 * Parent domains are "example.com" when smtpd_access_maps is listed in
 * parent_domain_matches_subdomains (the default), else ".example.com".
 */
import { isIP } from 'node:net';

import { splitExtension, TableError, type LookupResult } from '../../maps/index.js';
import type { PolicyTable } from './tables.js';
import { DUNNO, REPLY_CLASS, rejected, replyName, splitDsn, type Action, type PolicyRequest, type Reply, type Restriction, type Stage } from './types.js';

export interface AccessSettings {
  accessMapRejectCode: number;
  accessMapDeferCode: number;
  /** smtpd_null_access_lookup_key */
  nullKey: string;
  /** Whether parent domains are looked up without the leading dot. */
  bareParents: boolean;
  recipientDelimiter: string;
}

/** 'reverse_client': check_reverse_client_hostname_access; 'sasl': check_sasl_access. */
export type AccessKind = 'client' | 'reverse_client' | 'helo' | 'sender' | 'recipient' | 'etrn' | 'sasl';

/** A check_<kind>_access restriction on one table. */
export function accessRestriction(kind: AccessKind, table: PolicyTable, s: AccessSettings): Restriction {
  // The reply names what the table tests ("Sender address rejected"), whatever list it is in.
  return async (r) => {
    let value: Found;
    try {
      value = await lookup(kind, table, r, s);
    } catch (e) {
      if (!(e instanceof TableError)) throw e;
      return {
        kind: 'error',
        // Postfix's check_*_access on a failed table: "451 4.3.5 Server configuration error" as the
        // table's result (check_table_result), not reject_dict_retry's 4.3.0.
        reply: rejected(451, '4.3.5', r, kind, 'Server configuration error'),
        warning: `${table.spec}: table lookup problem: ${e.message}`,
      };
    }
    if (!value.found) return DUNNO;
    const action = tableResult(value.value, table.spec, value.datum, r, kind, s);
    return kind === 'reverse_client' ? forbidOk(action, 'check_reverse_client_hostname_access', r.reverseClientName ?? r.clientName) : action;
  };
}

/**
 * Postfix's forbid_allowlist: an OK from a restriction that looks at what the client claims (its
 * unverified name, the servers of a domain) is refused as a configuration error, since it would
 * let anyone who controls that DNS through.
 */
export function forbidOk(action: Action, restriction: string, target: string): Action {
  return action.kind === 'permit' || action.kind === 'restrictions' ? { ...action, forbid: { restriction, target } } : action;
}

/**
 * A lookup's result and its datum: what was looked up, named in the table's warnings as Postfix's
 * check_table_result names it (the whole name, address or mail address, not the parent domain or
 * network that matched).
 */
type Found = (LookupResult & { found: false }) | (LookupResult & { found: true; datum: string });

async function lookup(kind: AccessKind, table: PolicyTable, r: PolicyRequest, s: AccessSettings): Promise<Found> {
  switch (kind) {
    // check_client_access: the verified name; check_reverse_client_hostname_access: the PTR name.
    case 'client':
    case 'reverse_client': {
      const name = kind === 'client' ? r.clientName : r.reverseClientName ?? r.clientName;
      const byName = await domainLookup(table, name, s);
      if (byName.found) return { ...byName, datum: name };
      const addr = unmapped(r.clientAddr);
      return datum(await addrLookup(table, addr), addr);
    }
    case 'helo':
      return r.helo ? datum(await domainLookup(table, r.helo, s), r.helo) : { found: false };
    // check_etrn_access: the ETRN domain, then its parent domains (Postfix's check_domain_access).
    case 'etrn':
      return r.etrnDomain ? datum(await domainLookup(table, r.etrnDomain, s), r.etrnDomain) : { found: false };
    case 'sender':
      return r.sender === null ? { found: false } : datum(await mailLookup(table, r.sender, s), r.sender || s.nullKey);
    case 'recipient':
      return r.recipient === null ? { found: false } : datum(await mailLookup(table, r.recipient, s), r.recipient || s.nullKey);
    // check_sasl_access: the login name alone (Postfix's check_access, no partial keys).
    case 'sasl':
      return r.saslUsername ? datum(await table.lookup(key(table, r.saslUsername)), r.saslUsername) : { found: false };
  }
}

function datum(result: LookupResult, what: string): Found {
  return result.found ? { ...result, datum: what } : result;
}

export function fixed(table: PolicyTable): boolean {
  return table.kind !== 'pattern';
}

export function key(table: PolicyTable, k: string): string {
  return fixed(table) && table.foldsCase !== false ? k.toLowerCase() : k;
}

/** The name, then (fixed tables, non-numeric names) its parent domains. */
export async function domainLookup(table: PolicyTable, domain: string, s: AccessSettings): Promise<LookupResult> {
  const d = domain.endsWith('.') ? domain.slice(0, -1) : domain;
  if (!d) return { found: false };
  const first = await table.lookup(key(table, d));
  if (first.found || !fixed(table) || isIP(d.replace(/^\[|\]$/g, ''))) return first;
  for (let dot = d.indexOf('.', 1); dot > 0; dot = d.indexOf('.', dot + 1)) {
    const parent = s.bareParents ? d.slice(dot + 1) : d.slice(dot);
    if (!parent || parent === '.') break;
    const r = await table.lookup(key(table, parent));
    if (r.found) return r;
  }
  return { found: false };
}

/** The address, then (fixed tables) its parent networks: 1.2.3.4, 1.2.3, 1.2, 1 (IPv6: by ':'). */
export async function addrLookup(table: PolicyTable, addr: string): Promise<LookupResult> {
  const first = await table.lookup(addr);
  if (first.found || !fixed(table)) return first;
  const delim = addr.includes(':') ? ':' : '.';
  let rest = addr;
  for (let i = rest.lastIndexOf(delim); i > 0; i = rest.lastIndexOf(delim)) {
    rest = rest.slice(0, i);
    const r = await table.lookup(key(table, rest));
    if (r.found) return r;
  }
  return { found: false };
}

/** user@domain, unextended user@domain, domain and parents, user@, unextended user@. */
async function mailLookup(table: PolicyTable, address: string, s: AccessSettings): Promise<LookupResult> {
  if (address === '') return table.lookup(s.nullKey);
  const first = await table.lookup(key(table, address));
  if (first.found || !fixed(table)) return first;
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  const domain = at < 0 ? '' : address.slice(at + 1);
  const split = splitExtension(local, s.recipientDelimiter);
  if (split && domain) {
    const r = await table.lookup(key(table, `${split.user}@${domain}`));
    if (r.found) return r;
  }
  if (domain) {
    const r = await domainLookup(table, domain, s);
    if (r.found) return r;
  }
  const r = await table.lookup(key(table, `${local}@`));
  if (r.found || !split) return r;
  return table.lookup(key(table, `${split.user}@`));
}

export function unmapped(addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr;
}

const HEADER = /^[\x21-\x39\x3b-\x7e]+:/;

/**
 * An access(5) result ("REJECT text", "550 text", "DEFER_IF_PERMIT", "permit_mynetworks, …")
 * as an action. As Postfix's check_table_result: `table` names the table in warnings as the
 * restriction names it ("texthash:/etc/postfix/access", or a policy server's endpoint), and
 * `datum` is what was looked up ("user@example.com", or "policy query").
 */
export function tableResult(value: string, table: string, datum: string, r: PolicyRequest, stage: Stage, s: Pick<AccessSettings, 'accessMapRejectCode' | 'accessMapDeferCode'>): Action {
  const source = table;
  const v = value.trim();
  const sp = v.search(/[ \t]/);
  const cmd = sp < 0 ? v : v.slice(0, sp);
  const text = sp < 0 ? '' : v.slice(sp).trim();
  const word = cmd.toUpperCase();
  const coded = (code: number, dsn: string, fallback: string): Reply => {
    const [d, t] = splitDsn(text, dsn);
    return rejected(code, d, r, stage, t || fallback);
  };
  switch (word) {
    case 'DUNNO': return DUNNO;
    case 'OK':
    case 'RELAY': return { kind: 'permit' };
    case 'REJECT': return { kind: 'reject', reply: coded(s.accessMapRejectCode, '5.7.1', 'Access denied') };
    case 'DEFER': return { kind: 'reject', reply: coded(s.accessMapDeferCode, '4.7.1', 'Access denied') };
    case 'DEFER_IF_PERMIT': return { kind: 'defer_if_permit', reply: coded(s.accessMapDeferCode, '4.7.1', 'Service unavailable') };
    case 'DEFER_IF_REJECT': return { kind: 'defer_if_reject', reply: coded(s.accessMapDeferCode, '4.7.1', 'Service unavailable') };
    case 'WARN': return { kind: 'warn', text };
    case 'DISCARD': return { kind: 'discard', text: `<${replyName(r, stage)}>: ${REPLY_CLASS[stage]} ${text || 'triggers DISCARD action'}`, source };
    case 'PREPEND':
      if (!HEADER.test(text)) return { kind: 'warning', warning: `access table ${source} entry "${datum}" requires header: text` };
      return { kind: 'prepend', header: text, source };
    // Handed to cleanup with the message; evaluation goes on (policy.ts checks where they may be used).
    case 'HOLD':
      return { kind: 'delegate', what: 'hold', text: `<${replyName(r, stage)}>: ${REPLY_CLASS[stage]} ${text || 'triggers HOLD action'}`, value: '', source };
    case 'FILTER':
      if (text === '') return { kind: 'warning', warning: `access table ${source} entry "${datum}" has FILTER entry without value` };
      if (!text.includes(':')) return { kind: 'warning', warning: `access table ${source} entry "${datum}" requires transport:destination` };
      return { kind: 'delegate', what: 'filter', text: `<${replyName(r, stage)}>: ${REPLY_CLASS[stage]} triggers FILTER ${text}`, value: text, source };
    case 'REDIRECT':
    case 'BCC':
      if (!text.includes('@')) return { kind: 'warning', warning: `access table ${source} entry "${datum}" requires user@domain target` };
      return { kind: 'delegate', what: word === 'BCC' ? 'bcc' : 'redirect', text: `<${replyName(r, stage)}>: ${REPLY_CLASS[stage]} triggers ${word} ${text}`, value: text, source };
  }
  if (/^\d+$/.test(v)) return { kind: 'permit' }; // all-numeric: OK (an out-of-band time stamp)
  if (/^[45]\d\d$/.test(cmd) && text) {
    const code = Number(cmd);
    return { kind: 'reject', reply: coded(code, `${cmd[0]}.7.1`, 'Access denied') };
  }
  if (v.includes(':')) {
    return serverError([
      `access table ${source} has entry with lookup table: ${v}`,
      'do not specify lookup tables inside SMTPD access maps',
      'define a restriction class and specify its name instead.',
    ]);
  }
  const names = v.split(/[\s,]+/).filter((n) => n !== '');
  if (names.length === 0) return { kind: 'permit', warning: `access table ${source} entry ${v} has empty value` };
  return { kind: 'restrictions', names, source: `access table ${source}`, stage };
}

/** Postfix's reject_server_error: "451 4.3.5 Server configuration error", and a warning. */
export function serverError(warning: string | string[]): Action {
  return { kind: 'error', reply: { code: 451, dsn: '4.3.5', text: 'Server configuration error' }, warning };
}
