/**
 * SMTP AUTH settings of the smtp and lmtp agents (Postfix's smtp_sasl_*), and the password
 * lookup of smtp_sasl_passwd_lookup: with smtp_sender_dependent_authentication the sender
 * (user@domain, then @domain), then the remote host's name, then the next hop as written
 * (`[mail.isp.example]:submission`); the value is "user:password", split at the first colon.
 * No entry: no AUTH at all. A table that fails is a temporary failure, never "no entry".
 */
import type { Config } from '../config/index.js';
import { lookupAddress, openTable, type LookupTable } from '../maps/index.js';
import { SECURITY_OPTIONS, type SaslCredentials } from '../sasl/client.js';
import { SaslFailure, type SaslClientSettings } from './sasl-auth.js';

export interface SmtpSasl {
  settings: SaslClientSettings;
  /** The credentials for one delivery's hosts. */
  credentials(sender: string, nexthop: string): (h: { host: string; addr: string }) => Promise<SaslCredentials | null>;
}

/** The words of a security-options list; an unknown word is a configuration error, as in Postfix. */
function securityOptions(config: Config, name: string): string[] {
  const words = config.getList(name).map((w) => w.toLowerCase());
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

/** The agent's SASL client for its protocol prefix ("smtp" or "lmtp"), or null when smtp_sasl_auth_enable = no. */
export function smtpSasl(config: Config, p: 'smtp' | 'lmtp', configDirectory: string | null): SmtpSasl | null {
  const n = NAMES[p];
  if (!config.getBool(n.enable)) return null;
  const type = config.get(n.type).trim();
  if (type !== 'cyrus') throw new Error(`${n.type} = ${type}: not supported: the client side of SMTP AUTH is built in (Postfix's cyrus type); Dovecot has no client side`);
  const filter = config.getList(n.filter);
  const settings: SaslClientSettings = {
    policy: { securityOptions: securityOptions(config, n.options), mechanismFilter: filter },
    tlsPolicy: { securityOptions: securityOptions(config, n.tlsOptions), mechanismFilter: filter },
    softBounce: config.getBool(n.softBounce),
    senderDependent: config.getBool(n.senderDependent),
  };
  const tables: LookupTable[] = config.getList(n.maps).map((spec) => openTable(spec, configDirectory ? { configDirectory } : {}));
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
