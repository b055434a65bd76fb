/**
 * TLS for the smtp and lmtp delivery agents: builds the worker's TLS engine and client options
 * from the smtp_tls_* (lmtp_tls_*) parameters, and finds the policy of each delivery.
 *
 *   SMTP_AGENT_TLS_PARAMS, LMTP_AGENT_TLS_PARAMS   what it reads, declared (src/config/declared.ts):
 *                                       the agent spreads them into its own declaration
 *   agentTls({ prefix, params }, configDirectory, log)   engine, client options, policy tables;
 *                                       once per worker
 *   requestTls(t, req, dest, nexthop)   the TlsRequest of one delivery (policy, fallback rule)
 *
 * The plaintext retry after a failed handshake at level may is allowed only when the message
 * has waited at least $minimal_backoff_time before this delivery, or for an address probe
 * (Postfix's PLAINTEXT_FALLBACK_OK_AFTER_STARTTLS_FAILURE; no SASL client here, so its "no
 * SASL credentials" condition always holds).
 */
import type { ParamSpec, Params } from '../config/declared.js';
import type { Logger } from '../log/maillog.js';
import { openTable, type LookupTable } from '../maps/index.js';
import type { SmtpClientOptions, TlsRequest } from './client.js';
import { TlsEngine } from './tls.js';
import { TlsSessionCache } from './tls-sessions.js';
import { keyExchangeGroups, sslOptions, TLS_LIBRARY_PARAMS } from '../tls/openssl-options.js';
import { defaults, lmtpTlsSettings, LMTP_TLS_PARAMS, smtpTlsSettings, SMTP_TLS_PARAMS, tlsPolicy, type TlsSettings } from './tls-policy.js';
import type { DeliveryRequest } from '../delivery/request.js';

export interface AgentTls {
  settings: TlsSettings;
  tables: LookupTable[];
  /** Why the policy tables could not be opened (every TLS delivery defers), or null. */
  broken: string | null;
  minimalBackoff: number;
  log: Logger;
  client: Pick<SmtpClientOptions, 'tls' | 'starttlsTimeout' | 'noteStarttlsOffer' | 'wrappermode' | 'onInfo' | 'prefix'>;
}

/** The smtp agent's TLS parameters: the client's, the TLS library's, its session cache, MTA-STS. */
export const SMTP_AGENT_TLS_PARAMS = {
  ...SMTP_TLS_PARAMS,
  ...TLS_LIBRARY_PARAMS,
  'smtp_tls_session_cache_database': 'str',
  'smtp_tls_session_cache_timeout': 'time',
  'smtp_tls_mta_sts': 'bool',
  'minimal_backoff_time': 'time',
} as const satisfies ParamSpec;

/** The lmtp agent's: the same by their lmtp_ names (no MTA-STS: it is smtp's). */
export const LMTP_AGENT_TLS_PARAMS = {
  ...LMTP_TLS_PARAMS,
  ...TLS_LIBRARY_PARAMS,
  'lmtp_tls_session_cache_database': 'str',
  'lmtp_tls_session_cache_timeout': 'time',
  'minimal_backoff_time': 'time',
} as const satisfies ParamSpec;

/** Which agent, with the values it declared. */
export type AgentTlsParams =
  | { prefix: 'smtp'; params: Params<typeof SMTP_AGENT_TLS_PARAMS> }
  | { prefix: 'lmtp'; params: Params<typeof LMTP_AGENT_TLS_PARAMS> };

/** The session cache shared by this agent's threads, or null (parameter empty or timeout 0, as Postfix). */
function sessionCache(prefix: 'smtp' | 'lmtp', database: string, ttl: number): TlsSessionCache | null {
  return database.trim() === '' || ttl === 0 ? null : new TlsSessionCache(prefix, ttl * 1000);
}

export function agentTls(a: AgentTlsParams, configDirectory: string | null, log: Logger): AgentTls {
  const { prefix, params } = a;
  const settings = a.prefix === 'smtp' ? smtpTlsSettings(a.params) : lmtpTlsSettings(a.params);
  const cache = a.prefix === 'smtp'
    ? { database: a.params.smtp_tls_session_cache_database, ttl: a.params.smtp_tls_session_cache_timeout }
    : { database: a.params.lmtp_tls_session_cache_database, ttl: a.params.lmtp_tls_session_cache_timeout };
  const timeout = settings.starttlsTimeout * 1000;
  // No engine when nothing can ever want TLS: level none, no policy table, no MTA-STS.
  const wanted = settings.level !== 'none' || settings.policyMaps.length > 0 || settings.wrappermode ||
    (a.prefix === 'smtp' && a.params.smtp_tls_mta_sts);
  const engine = wanted
    ? new TlsEngine({
        CAfile: settings.CAfile, CApath: settings.CApath, certFile: settings.certFile, keyFile: settings.keyFile,
        loglevel: settings.loglevel, fingerprintDigest: settings.fingerprintDigest, timeout,
        sessions: sessionCache(prefix, cache.database, cache.ttl),
        // Postfix's global TLS library settings apply to its client too (tls_client_init).
        groups: keyExchangeGroups(params, (t) => log.warn(t)),
        secureOptions: sslOptions(params, (t) => log.warn(t)),
        info: (t) => log.info(t), warn: (t) => log.warn(t),
      })
    : null;
  let tables: LookupTable[] = [];
  let broken: string | null = null;
  try {
    const opts = configDirectory ? { configDirectory } : {};
    tables = settings.policyMaps.map((spec) => openTable(spec, opts));
  } catch (e) {
    broken = (e as Error).message;
  }
  return {
    settings, tables, broken, log,
    minimalBackoff: params.minimal_backoff_time * 1000,
    client: {
      tls: engine,
      starttlsTimeout: timeout,
      noteStarttlsOffer: settings.noteStarttlsOffer,
      wrappermode: settings.wrappermode,
      onInfo: (t) => log.info(t),
      prefix,
    },
  };
}

/**
 * The TLS side of one delivery. `dest` is the policy table key (the next hop as routed:
 * "example.com", "[mail.example.com]:587"); `nexthop` its bare domain for match lists.
 */
export async function requestTls(t: AgentTls, req: DeliveryRequest, dest: string, nexthop: string): Promise<TlsRequest> {
  const plaintextFallback = req.verify === true || req.activated - req.arrival >= t.minimalBackoff;
  if (t.broken !== null) {
    t.log.warn(`${t.settings.prefix}_tls_policy_maps: ${t.broken}`);
    return { policy: { level: 'invalid', why: t.broken }, nexthop, plaintextFallback };
  }
  if (t.settings.badLevel !== undefined) {
    t.log.warn(`invalid tls security level: "${t.settings.badLevel}"`);
    return { policy: { level: 'invalid', why: 'invalid tls security level' }, nexthop, plaintextFallback };
  }
  let policy = await tlsPolicy(t.settings, t.tables, dest, (w) => t.log.warn(w));
  if (policy.level === 'dane' || policy.level === 'dane-only') {
    // From a policy table (main.cf refuses it at check): what Postfix does without DNSSEC
    // lookups (smtp_dns_support_level != dnssec): dane becomes may, dane-only defers.
    t.log.warn(`${dest}: ${policy.level} configured with dnssec lookups disabled`);
    policy = policy.level === 'dane' ? defaults(t.settings, 'may') : { level: 'invalid', why: 'dane-only without dnssec lookups' };
  }
  return { policy, nexthop, plaintextFallback };
}
