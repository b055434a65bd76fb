/**
 * The client side of SMTP AUTH (RFC 4954) as Postfix's smtp(8) uses its SASL library: which
 * mechanism to use, and the exchange.
 *
 *   chooseMechanism(offered, policy)   the mechanism to use, or null ("no worthy mechs")
 *   authExchange(mech, creds, talk)    AUTH with an initial response where it fits, then the
 *                                      334 challenges, up to Postfix's limit of 100 rounds
 *
 * Mechanisms: PLAIN, LOGIN and CRAM-MD5 (what Debian's libsasl2-modules gives Postfix for a
 * password; DIGEST-MD5 is obsolete, RFC 6331). The security options are Cyrus SASL's
 * properties as Postfix passes them: noplaintext excludes PLAIN and LOGIN; noactive and
 * nodictionary exclude all three; mutual_auth and forward_secrecy exclude all three too;
 * noanonymous excludes ANONYMOUS, which is never used. Among the allowed ones the strongest
 * is chosen, as Cyrus does: CRAM-MD5, then PLAIN, then LOGIN.
 */
import { createHmac } from 'node:crypto';

export interface SaslCredentials {
  user: string;
  password: string;
}

export interface SaslPolicy {
  /** smtp_sasl_security_options (or _tls_ / _tls_verified_ for the session's security). */
  securityOptions: readonly string[];
  /** smtp_sasl_mechanism_filter: names or "!name"; empty = no filter. */
  mechanismFilter: readonly string[];
}

const STRENGTH = ['CRAM-MD5', 'PLAIN', 'LOGIN'] as const;
type Mechanism = (typeof STRENGTH)[number];

const EXCLUDED_BY: Record<string, readonly Mechanism[]> = {
  noplaintext: ['PLAIN', 'LOGIN'],
  noactive: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
  nodictionary: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
  mutual_auth: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
  forward_secrecy: ['PLAIN', 'LOGIN', 'CRAM-MD5'],
  noanonymous: [],
};

/** The security option words Postfix accepts; anything else is a configuration error. */
export const SECURITY_OPTIONS = Object.keys(EXCLUDED_BY);

/** Mechanisms from EHLO's `AUTH a b` and `AUTH=a b` lines (both forms, lists joined). */
export function offeredMechanisms(ehloLines: readonly string[]): string[] {
  const out: string[] = [];
  for (const line of ehloLines) {
    const m = /^AUTH[ =](.*)$/i.exec(line.trim());
    if (m) for (const w of m[1]!.split(/\s+/)) if (w && !out.includes(w.toUpperCase())) out.push(w.toUpperCase());
  }
  return out;
}

function passesFilter(mech: string, filter: readonly string[]): boolean {
  if (filter.length === 0) return true;
  for (const f of filter) {
    const neg = f.startsWith('!');
    if ((neg ? f.slice(1) : f).toUpperCase() === mech) return !neg;
  }
  // Only negations: everything else passes; any positive name: only the named ones pass.
  return filter.every((f) => f.startsWith('!'));
}

export function chooseMechanism(offered: readonly string[], policy: SaslPolicy): Mechanism | null {
  const excluded = new Set<string>(policy.securityOptions.flatMap((o) => EXCLUDED_BY[o.toLowerCase()] ?? []));
  for (const m of STRENGTH) {
    if (offered.includes(m) && !excluded.has(m) && passesFilter(m, policy.mechanismFilter)) return m;
  }
  return null;
}

/** One SMTP command (or a SASL response line) and its reply. */
export type Talk = (line: string) => Promise<{ code: number; enhanced?: string | undefined; text: string; line: string }>;

export interface AuthOutcome {
  ok: boolean;
  /** The server's final reply (as a whole line), or what went wrong. */
  reply: { code: number; enhanced?: string | undefined; text: string; line: string };
  loop?: boolean;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** The response to one challenge (already base64-decoded). */
function respond(mech: Mechanism, creds: SaslCredentials, challenge: string, round: number): string {
  switch (mech) {
    case 'PLAIN':
      return `\0${creds.user}\0${creds.password}`;
    case 'LOGIN':
      return round === 0 ? creds.user : creds.password;
    case 'CRAM-MD5':
      return `${creds.user} ${createHmac('md5', creds.password).update(challenge).digest('hex')}`;
  }
}

/**
 * AUTH mech [initial-response] and the challenge rounds. PLAIN sends its response inline when
 * "AUTH PLAIN <resp>" fits in 512 bytes (Postfix's limit), else after an empty 334.
 */
export async function authExchange(mech: Mechanism, creds: SaslCredentials, talk: Talk): Promise<AuthOutcome> {
  let round = 0;
  let reply;
  if (mech === 'PLAIN') {
    const initial = b64(respond(mech, creds, '', 0));
    const cmd = `AUTH PLAIN ${initial}`;
    reply = await talk(cmd.length + 2 <= 512 ? cmd : 'AUTH PLAIN');
    if (cmd.length + 2 <= 512) round = 1;
  } else {
    reply = await talk(`AUTH ${mech}`);
  }
  while (reply.code === 334) {
    if (round >= 100) return { ok: false, reply, loop: true };
    const challenge = Buffer.from(reply.text.trim(), 'base64').toString('latin1');
    reply = await talk(b64(respond(mech, creds, challenge, mech === 'PLAIN' ? 0 : round)));
    round++;
  }
  return { ok: reply.code >= 200 && reply.code < 300, reply };
}
