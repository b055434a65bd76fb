/**
 * smtpd's smtpd_sasl_* settings, read once per smtpd service (Postfix's smtpd_sasl_glue.c
 * set-up): smtpd's AUTH (actors/smtpd/sasl.ts) uses them, and master checks them at start-up
 * through the restriction engine (src/smtpd/policy.ts), so they live here, not in the actor.
 */
import { join } from 'node:path';

import { queueDirectory, type Config } from '../config/index.js';
import { readParams, type Params } from '../config/declared.js';
import { NetworkList } from '../net/networks.js';
import { SMTPD_TLS_PARAMS, smtpdTlsEnforced } from './tls.js';

/** smtpd_sasl_security_options words → the Dovecot MECH flag each one excludes or requires. */
const SECURITY_OPTIONS: Record<string, { flag: string; require: boolean }> = {
  noplaintext: { flag: 'plaintext', require: false },
  noactive: { flag: 'active', require: false },
  nodictionary: { flag: 'dictionary', require: false },
  noanonymous: { flag: 'anonymous', require: false },
  forward_secrecy: { flag: 'forward-secrecy', require: true },
  mutual_auth: { flag: 'mutual-auth', require: true },
};

type SecurityOptions = readonly { flag: string; require: boolean }[];

export interface SaslSettings {
  enabled: boolean;
  /** The Dovecot socket: "inet:host:port" or an absolute UNIX-domain path. */
  path: string;
  service: string;
  options: SecurityOptions;
  tlsOptions: SecurityOptions;
  tlsAuthOnly: boolean;
  brokenClients: boolean;
  /** Clients AUTH is not announced to (they may still use it). */
  exceptions: NetworkList | null;
  responseLimit: number;
  mechanismFilter: (mech: string) => boolean;
  /** AUTH is in smtpd_discard_ehlo_keywords: not announced, not accepted. */
  discarded: boolean;
  /** smtpd_sasl_authenticated_header: "(Authenticated sender: user)" in Received. */
  authenticatedHeader: boolean;
  /** smtpd_sasl_local_domain: the realm; Dovecot's protocol has no field for it (nor has Postfix's client). */
  realm: string;
}

function securityOptions(param: string, value: string, errors: string[]): SecurityOptions {
  const out: { flag: string; require: boolean }[] = [];
  for (const word of value.split(/[\s,]+/).filter(Boolean)) {
    const o = SECURITY_OPTIONS[word.toLowerCase()];
    if (o) out.push(o);
    else errors.push(`${param}: unknown option "${word}" (known: ${Object.keys(SECURITY_OPTIONS).join(', ')})`);
  }
  return out;
}

/**
 * smtpd_sasl_mechanism_filter as a predicate: names and "!name" decide for that mechanism,
 * "static:all" / "static:rest" let the rest through; no match leaves a mechanism out.
 */
function mechanismFilter(value: string, errors: string[]): (mech: string) => boolean {
  const items = value.split(/[\s,]+/).filter(Boolean);
  if (items.length === 0) return () => true;
  for (const i of items) {
    if (i.includes(':') && !/^static:(all|rest)$/i.test(i)) errors.push(`smtpd_sasl_mechanism_filter: not supported: "${i}" (mechanism names, !name, static:rest)`);
  }
  return (mech) => {
    for (const i of items) {
      if (/^static:(all|rest)$/i.test(i)) return true;
      if (i.startsWith('!') && i.slice(1).toUpperCase() === mech) return false;
      if (i.toUpperCase() === mech) return true;
    }
    return false;
  };
}

/**
 * What the SASL settings read (with the restrictions': src/smtpd/policy.ts POLICY_PARAMS), and
 * TLS's, which decide whether smtpd_tls_auth_only is forced on.
 */
export const SASL_PARAMS = {
  ...SMTPD_TLS_PARAMS,
  'smtpd_sasl_auth_enable': 'bool',
  'smtpd_sasl_type': 'str',
  'smtpd_sasl_path': 'str',
  'smtpd_sasl_exceptions_networks': 'str',
  'smtpd_sasl_security_options': 'str',
  'smtpd_sasl_service': 'str',
  'smtpd_sasl_tls_security_options': 'str',
  'smtpd_tls_auth_only': 'bool',
  'broken_sasl_auth_clients': 'bool',
  'smtpd_sasl_response_limit': 'int',
  'smtpd_sasl_mechanism_filter': 'str',
  'smtpd_discard_ehlo_keywords': 'list',
  'smtpd_sasl_authenticated_header': 'bool',
  'smtpd_sasl_local_domain': 'str',
} as const;

/**
 * The smtpd_sasl_* settings of one smtpd service, from the values read (read here from the
 * configuration when not given); problems go to `errors` ("param: …").
 */
export function saslSettings(config: Config, errors: string[], p: Params<typeof SASL_PARAMS> = readParams(config, SASL_PARAMS, 'smtpd')): SaslSettings {
  const enabled = p.smtpd_sasl_auth_enable;
  const type = p.smtpd_sasl_type.trim();
  if (enabled && type !== 'dovecot') {
    errors.push(`smtpd_sasl_type = ${type}: not supported by Postactor (only smtpd_sasl_type = dovecot: Postactor speaks Dovecot's auth protocol, not Cyrus SASL)`);
  }
  // Postfix: a relative path is under the queue directory ("private/auth"), which is also
  // where a chrooted smtpd finds it.
  let path = p.smtpd_sasl_path.trim();
  if (!path.startsWith('inet:')) {
    const file = path.startsWith('unix:') ? path.slice(5) : path;
    path = file.startsWith('/') ? file : join(queueDirectory(config), file);
  } else if (!/^inet:.+:\d+$/.test(path)) {
    errors.push(`smtpd_sasl_path = ${path}: expected inet:host:port`);
  }
  const exceptionsText = p.smtpd_sasl_exceptions_networks.trim();
  let exceptions: NetworkList | null = null;
  if (exceptionsText) {
    exceptions = new NetworkList();
    for (const item of exceptionsText.split(/[\s,]+/).filter(Boolean)) {
      const err = exceptions.add(item);
      if (err) errors.push(`smtpd_sasl_exceptions_networks: not supported: ${err} (addresses and networks only)`);
    }
  }
  const optionsText = p.smtpd_sasl_security_options;
  return {
    enabled,
    path,
    service: p.smtpd_sasl_service.trim(),
    options: securityOptions('smtpd_sasl_security_options', optionsText, errors),
    tlsOptions: securityOptions('smtpd_sasl_tls_security_options', p.smtpd_sasl_tls_security_options, errors),
    // Postfix forces smtpd_tls_auth_only on when TLS is required (level encrypt, wrapper mode).
    tlsAuthOnly: p.smtpd_tls_auth_only || smtpdTlsEnforced(p),
    brokenClients: p.broken_sasl_auth_clients,
    exceptions,
    responseLimit: p.smtpd_sasl_response_limit,
    mechanismFilter: mechanismFilter(p.smtpd_sasl_mechanism_filter, errors),
    discarded: p.smtpd_discard_ehlo_keywords.some((k) => k.toLowerCase() === 'auth'),
    authenticatedHeader: p.smtpd_sasl_authenticated_header,
    realm: p.smtpd_sasl_local_domain.trim(),
  };
}
