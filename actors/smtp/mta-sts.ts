/**
 * MTA-STS in the smtp delivery agent (smtp_tls_mta_sts = yes, Postactor's own parameter).
 *
 *   stsAgent(params, store, resolver, log)   the worker's MtaSts, or null when the switch is off
 *   applyMtaSts(sts, queueId, nexthop, resolved, log)   the MX hosts a delivery may use
 *   stsTls(tls, settings)                    the delivery's TLS request raised to level secure
 *
 * Only MX-routed deliveries are subject to a policy: a nexthop in brackets ("[host]",
 * relayhost's usual form), an IP literal, or a domain without MX records (mail to its address
 * records) keeps its hosts. The policy domain is the nexthop's domain.
 *
 *  - enforce: MX hosts whose names match none of the policy's mx patterns are dropped (one
 *    line each in the maillog); when none is left the delivery defers with 4.7.5 and the
 *    policy in the reason, so the mail waits in the queue instead of going to an MX the domain
 *    did not publish. The remaining hosts must be reached with TLS at level secure, the MX
 *    host name being the name the certificate must carry and the SNI name (stsTls: Postfix's
 *    "secure match=hostname servername=hostname"), trusted through smtp_tls_CAfile /
 *    smtp_tls_CApath as every verified level is. A fingerprint policy from
 *    smtp_tls_policy_maps is kept: the admin's pin is stronger than the Web PKI.
 *  - testing: nothing changes; an MX host outside the mx patterns is logged as the failure it
 *    would have been.
 *
 * Why Postactor does this itself: Postfix asks an external policy server for a TLS policy
 * ("secure match=…") and still connects to any MX from DNS; here the MX list itself is
 * checked, as RFC 8461 §4.1 requires.
 */

import type { Params } from '../../src/config/declared.js';
import type { SMTP_AGENT_TLS_PARAMS } from '../../src/smtp/agent-tls.js';
import { parseNexthop, type NextHopResolver, type ResolveResult, type Resolved } from '../../src/dns/resolver.js';
import type { Logger } from '../../src/log/maillog.js';
import { MtaSts, mxMatches, type StsCache } from '../../src/mta-sts/index.js';
import type { TlsRequest } from '../../src/smtp/client.js';
import { defaults, type TlsSettings } from '../../src/smtp/tls-policy.js';

/** What a policy asks of a delivery. */
export interface StsDecision {
  resolved: ResolveResult;
  /** enforce: TLS at level secure, the certificate verified for the MX host name. */
  requireSecure: boolean;
}

/**
 * The HTTPS port of policy hosts: 443. POSTACTOR_MTA_STS_PORT exists for tests only (a local
 * HTTPS server on a free port), as POSTACTOR_DNS_SERVERS points the resolver at a test server.
 */
export function stsPortFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env['POSTACTOR_MTA_STS_PORT'];
  if (!v || !/^\d{1,5}$/.test(v)) return undefined;
  return Number(v);
}

/** The parameters it reads, from smtp's declared ones (SMTP_AGENT_TLS_PARAMS). */
type StsParams = Pick<Params<typeof SMTP_AGENT_TLS_PARAMS>, 'smtp_tls_mta_sts' | 'smtp_tls_CAfile' | 'smtp_tls_CApath'>;

export function stsAgent(p: StsParams, cache: StsCache, resolver: NextHopResolver, log: Logger): MtaSts | null {
  if (!p.smtp_tls_mta_sts) return null;
  // Without trust anchors no MX certificate verifies (Postactor never trusts Node's bundled
  // roots for SMTP, as Postfix trusts nothing without a CAfile): every enforce domain defers.
  if (p.smtp_tls_CAfile === '' && p.smtp_tls_CApath === '') {
    log.warn('smtp_tls_mta_sts = yes without smtp_tls_CAfile or smtp_tls_CApath: no MX certificate can be verified, so mail to domains with an MTA-STS enforce policy will be deferred');
  }
  const port = stsPortFromEnv();
  return new MtaSts({ resolver, cache, warn: (t) => log.warn(t), ...(port !== undefined ? { port } : {}) });
}

export async function applyMtaSts(sts: MtaSts, queueId: string, nexthop: string, resolved: ResolveResult, log: Logger): Promise<StsDecision> {
  const nh = parseNexthop(nexthop);
  if (!resolved.ok || resolved.mx !== true || nh === null || nh.noMx || nh.ipVersion !== 0) return { resolved, requireSecure: false };
  const policy = await sts.policyFor(nh.name);
  if (policy === null) return { resolved, requireSecure: false };
  const outside = [...new Set(resolved.hosts.filter((h) => !mxMatches(policy, h.host)).map((h) => h.host))];
  const what = `MTA-STS policy for ${nh.name} (id ${policy.id}, mode ${policy.mode}, mx: ${policy.mx.join(', ')})`;
  if (policy.mode === 'testing') {
    for (const host of outside) log.info(`${queueId}: ${what}: MX host ${host} does not match; delivering anyway (testing)`);
    return { resolved, requireSecure: false };
  }
  const hosts: Resolved[] = resolved.hosts.filter((h) => mxMatches(policy, h.host));
  if (hosts.length === 0) {
    return {
      resolved: { ok: false, temporary: true, dsn: '4.7.5', reason: `${what}: no MX host matches (MX hosts: ${outside.join(', ')})` },
      requireSecure: true,
    };
  }
  for (const host of outside) log.info(`${queueId}: ${what}: skipping MX host ${host}: it does not match`);
  return { resolved: { ...resolved, hosts }, requireSecure: true };
}

/** The TLS request of a delivery under an enforce policy: level secure for the MX host name. */
export function stsTls(tls: TlsRequest, settings: TlsSettings): TlsRequest {
  // A broken TLS configuration defers anyway; a fingerprint pin is the admin's stronger choice.
  if (tls.policy.level === 'invalid' || tls.policy.level === 'fingerprint') return tls;
  const secure = defaults(settings, 'secure');
  if (secure.level === 'invalid') return tls;
  return { ...tls, policy: { ...secure, match: ['hostname'], servername: 'hostname' } };
}
