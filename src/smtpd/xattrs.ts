/**
 * The attribute=value arguments of XCLIENT and XFORWARD, checked as Postfix's smtpd checks them
 * (smtpd.c xclient_cmd, xforward_cmd): xtext-decoded (a value that is not valid xtext is taken
 * as it is, for pre-2.3 clients), non-printable characters masked with '?', at most 255 bytes,
 * and each attribute's own syntax. Also who may send them: `smtpd_authorized_xclient_hosts` and
 * `smtpd_authorized_xforward_hosts` (addresses and networks).
 */
import { isIP } from 'node:net';
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import { NetworkList } from '../net/networks.js';
import { validHostname } from '../address/hostname.js';

export { validHostname };

/** "[UNAVAILABLE]": the attribute is not known (Postfix: XCLIENT_UNAVAILABLE, XFORWARD_UNAVAILABLE). */
export const UNAVAILABLE = '[UNAVAILABLE]';
/** "[TEMPUNAVAIL]": XCLIENT NAME looked up with a temporary failure. */
export const TEMPUNAVAIL = '[TEMPUNAVAIL]';

export type Reply = { code: number; text: string };

/** Splits "NAME=value" arguments; the Postfix reply for the first bad one. */
export function attributes(args: string[]): { name: string; value: string }[] | Reply {
  const out: { name: string; value: string }[] = [];
  for (const arg of args) {
    const eq = arg.indexOf('=');
    if (eq < 0 || eq === arg.length - 1) return { code: 501, text: '5.5.4 Error: attribute=value expected' };
    const raw = arg.slice(eq + 1);
    if (raw.length > 255) return { code: 501, text: '5.5.4 Error: attribute value too long' };
    out.push({ name: arg.slice(0, eq).toUpperCase(), value: printable(xtextDecode(raw) ?? raw) });
  }
  return out;
}

/** RFC 3461 xtext ("+XX" escapes); null when the text is not valid xtext. */
export function xtextDecode(s: string): string | null {
  if (!/^(?:[^+]|\+[0-9A-Fa-f]{2})*$/.test(s)) return null;
  // Byte by byte: printable() then masks each byte outside ASCII, as Postfix does.
  return s.replace(/\+([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Postfix's printable(): control and non-ASCII characters become '?'. */
export function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}

/** Postfix's neuter() with NEUTER_CHARACTERS: characters that could break headers or macros. */
export function neuter(s: string): string {
  return s.replace(/[ <>()\\";@]/g, '?');
}

/** Postfix's normalize_mailhost_addr(): "1.2.3.4", "IPv6:…" or a bare IPv6 address → the bare address. */
export function normalizeAddress(value: string): string | null {
  let a = value.replace(/^ipv6:/i, '');
  if (a.toLowerCase().startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  const family = isIP(a);
  if (family === 0) return null;
  if (family === 4 && /^ipv6:/i.test(value)) return null;
  return family === 6 ? a.toLowerCase() : a;
}

/** A port number as Postfix takes it: digits only, at most five. */
export function validPort(value: string): boolean {
  return /^\d{1,5}$/.test(value);
}

/** The "authorized hosts" lists (smtpd declares these with its own: actors/smtpd/index.ts). */
export const AUTHORIZED_HOSTS_PARAMS = {
  'smtpd_authorized_xclient_hosts': 'str',
  'smtpd_authorized_xforward_hosts': 'str',
} as const;

/**
 * One of the "authorized hosts" lists: addresses and networks ($mynetworks expanded by the
 * configuration), or null when empty. A table or host name pattern is refused with the reason.
 */
export function authorizedHosts(from: Config | Params<typeof AUTHORIZED_HOSTS_PARAMS>, name: keyof typeof AUTHORIZED_HOSTS_PARAMS): NetworkList | null {
  const value = valuesOf(from, AUTHORIZED_HOSTS_PARAMS, 'smtpd')[name].trim();
  if (!value) return null;
  const list = new NetworkList();
  for (const item of value.split(/[\s,]+/).filter(Boolean)) {
    const err = list.add(item);
    if (err) throw new Error(`${name} = ${value}: ${err} (Postactor takes addresses and networks only)`);
  }
  return list;
}
