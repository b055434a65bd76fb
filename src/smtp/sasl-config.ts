/**
 * SMTP AUTH settings of the smtp and lmtp agents (Postfix's smtp_sasl_*), and the password
 * lookup of smtp_sasl_passwd_lookup: with smtp_sender_dependent_authentication the sender
 * (user@domain, then @domain), then the remote host's name, then the next hop as written
 * (`[mail.isp.example]:submission`); the value is "user:password", split at the first colon.
 * No entry: no AUTH at all. A table that fails is a temporary failure, never "no entry".
 */
import type { ParamSpec, Params } from '../config/declared.js';
import { lookupAddress, openTable, type LookupTable } from '../maps/index.js';
import { SECURITY_OPTIONS, type SaslCredentials } from '../sasl/client.js';
import { SaslFailure, type SaslClientSettings } from './sasl-auth.js';

export interface SmtpSasl {
  settings: SaslClientSettings;
  /** The credentials for one delivery's hosts. */
  credentials(sender: string, nexthop: string): (h: { host: string; addr: string }) => Promise<SaslCredentials | null>;
}

/** The words of a security-options list; an unknown word is a configuration error, as in Postfix. */
function securityOptions(list: string[], name: string): string[] {
  const words = list.map((w) => w.toLowerCase());
  const bad = words.find((w) => !SECURITY_OPTIONS.includes(w));
  if (bad !== undefined) throw new Error(`${name}: unknown SASL security option "${bad}" (one of: ${SECURITY_OPTIONS.join(', ')})`);
  return words;
}

/** The parameters, by protocol: Postfix's smtp_ and lmtp_ names. */
const NAMES = {
  smtp: {
    enable: 'smtp_sasl_auth_enable', type: 'smtp_sasl_type', filter: 'smtp_sasl_mechanism_filter',
    options: 'smtp_sasl_security_options', tlsOptions: 'smtp_sasl_tls_security_options',
    softBounce: 'smtp_sasl_auth_soft_bounce', senderDependent: 'smtp_sender_dependent_authentication',
    maps: 'smtp_sasl_password_maps',
  },
  lmtp: {
    enable: 'lmtp_sasl_auth_enable', type: 'lmtp_sasl_type', filter: 'lmtp_sasl_mechanism_filter',
    options: 'lmtp_sasl_security_options', tlsOptions: 'lmtp_sasl_tls_security_options',
    softBounce: 'lmtp_sasl_auth_soft_bounce', senderDependent: 'lmtp_sender_dependent_authentication',
    maps: 'lmtp_sasl_password_maps',
  },
} as const;

/** What the smtp agent reads for SMTP AUTH, declared (src/config/declared.ts): it spreads these into its own. */
export const SMTP_SASL_PARAMS = {
  'smtp_sasl_auth_enable': 'bool', 'smtp_sasl_type': 'str', 'smtp_sasl_mechanism_filter': 'list',
  'smtp_sasl_security_options': 'list', 'smtp_sasl_tls_security_options': 'list',
  'smtp_sasl_auth_soft_bounce': 'bool', 'smtp_sender_dependent_authentication': 'bool',
  'smtp_sasl_password_maps': 'list',
} as const satisfies ParamSpec;

/** The lmtp agent's: the same by their lmtp_ names. */
export const LMTP_SASL_PARAMS = {
  'lmtp_sasl_auth_enable': 'bool', 'lmtp_sasl_type': 'str', 'lmtp_sasl_mechanism_filter': 'list',
  'lmtp_sasl_security_options': 'list', 'lmtp_sasl_tls_security_options': 'list',
  'lmtp_sasl_auth_soft_bounce': 'bool', 'lmtp_sender_dependent_authentication': 'bool',
  'lmtp_sasl_password_maps': 'list',
} as const satisfies ParamSpec;

/** Which agent, with the values it declared. */
export type SaslParams =
  | { prefix: 'smtp'; params: Params<typeof SMTP_SASL_PARAMS> }
  | { prefix: 'lmtp'; params: Params<typeof LMTP_SASL_PARAMS> };

/** The values by what they are, whichever the prefix. */
function valuesOf(a: SaslParams) {
  if (a.prefix === 'smtp') {
    const p = a.params;
    return {
      enable: p.smtp_sasl_auth_enable, type: p.smtp_sasl_type, filter: p.smtp_sasl_mechanism_filter,
      options: p.smtp_sasl_security_options, tlsOptions: p.smtp_sasl_tls_security_options,
      softBounce: p.smtp_sasl_auth_soft_bounce, senderDependent: p.smtp_sender_dependent_authentication,
      maps: p.smtp_sasl_password_maps,
    };
  }
  const p = a.params;
  return {
    enable: p.lmtp_sasl_auth_enable, type: p.lmtp_sasl_type, filter: p.lmtp_sasl_mechanism_filter,
    options: p.lmtp_sasl_security_options, tlsOptions: p.lmtp_sasl_tls_security_options,
    softBounce: p.lmtp_sasl_auth_soft_bounce, senderDependent: p.lmtp_sender_dependent_authentication,
    maps: p.lmtp_sasl_password_maps,
  };
}

/** The agent's SASL client for its protocol prefix ("smtp" or "lmtp"), or null when smtp_sasl_auth_enable = no. */
export function smtpSasl(a: SaslParams, configDirectory: string | null): SmtpSasl | null {
  const n = NAMES[a.prefix];
  const v = valuesOf(a);
  if (!v.enable) return null;
  const type = v.type.trim();
  if (type !== 'cyrus') throw new Error(`${n.type} = ${type}: not supported: the client side of SMTP AUTH is built in (Postfix's cyrus type); Dovecot has no client side`);
  const filter = v.filter;
  const settings: SaslClientSettings = {
    policy: { securityOptions: securityOptions(v.options, n.options), mechanismFilter: filter },
    tlsPolicy: { securityOptions: securityOptions(v.tlsOptions, n.tlsOptions), mechanismFilter: filter },
    softBounce: v.softBounce,
    senderDependent: v.senderDependent,
  };
  const tables: LookupTable[] = v.maps.map((spec) => openTable(spec, configDirectory ? { configDirectory } : {}));
  const find = async (key: string, address = false): Promise<string | null> => {
    for (const t of tables) {
      try {
        const r = address ? await lookupAddress(t, key) : await t.lookup(key.toLowerCase());
        if (r.found) return r.value ?? '';
      } catch (err) {
        const text = `SASL authentication failed: ${n.maps}: table lookup problem: ${(err as Error).message}`;
        throw new SaslFailure({ code: 450, enhanced: '4.3.0', text }, text);
      }
    }
    return null;
  };
  const split = (value: string): SaslCredentials => {
    const i = value.indexOf(':');
    return i < 0 ? { user: value, password: '' } : { user: value.slice(0, i), password: value.slice(i + 1) };
  };
  return {
    settings,
    credentials: (sender, nexthop) => async (h) => {
      const v = (settings.senderDependent && sender !== '' ? await find(sender, true) : null)
        ?? (await find(h.host)) ?? (await find(nexthop));
      return v === null ? null : split(v);
    },
  };
}
