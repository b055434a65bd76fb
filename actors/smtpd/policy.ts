/**
 * smtpd access policy: the smtpd_*_restrictions lists, evaluated as Postfix does — each list
 * left to right until a restriction says PERMIT, REJECT or DEFER; the end of a list means
 * "go on to the next list". With smtpd_delay_reject=yes (the default) the client, helo and sender
 * lists are evaluated at RCPT time, so all verdicts are RCPT verdicts.
 *
 * This is the walking-skeleton set of restrictions; the rest (access maps, RBLs, policy
 * services, …) belongs to issue 3 and is refused at start-up with "not supported: …".
 */
import type { Config } from '../../src/config/index.js';
import { DomainList, domainOf } from '../../src/address/domain.js';
import { buildNetworks, type NetworkList } from '../../src/net/networks.js';
import { classify, resolveSettings, type ResolveSettings } from '../trivial-rewrite/resolve.js';

export interface PolicyRequest {
  clientAddr: string;
  clientName: string;
  helo: string;
  sender: string;
  recipient: string;
}

export type Verdict = { ok: true } | { ok: false; code: number; text: string };

type Stage = 'client' | 'helo' | 'sender' | 'relay' | 'recipient';
type Result = 'permit' | 'dunno' | Verdict;
type Restriction = (r: PolicyRequest, stage: Stage) => Result;

const LISTS: [Stage, string][] = [
  ['client', 'smtpd_client_restrictions'],
  ['helo', 'smtpd_helo_restrictions'],
  ['sender', 'smtpd_sender_restrictions'],
  ['relay', 'smtpd_relay_restrictions'],
  ['recipient', 'smtpd_recipient_restrictions'],
];

/** Restrictions that stop mail to foreign domains; Postfix insists on one of them. */
const RELAY_GUARDS = new Set(['reject_unauth_destination', 'defer_unauth_destination', 'reject', 'defer', 'defer_if_permit']);

export class SmtpdPolicy {
  readonly mynetworks: NetworkList;
  private readonly lists: [Stage, Restriction[]][] = [];
  private readonly localDomains: DomainList;
  private readonly relayDomains: DomainList;
  private readonly virtualDomains: DomainList;
  private readonly rejectCode: number;
  private readonly deferCode: number;
  private readonly relayRejectCode: number;
  private readonly resolve: ResolveSettings;
  private readonly allowUntrustedRouting: boolean;

  /** Throws an Error whose message lists every problem (the server then refuses to start). */
  constructor(config: Config) {
    const errors: string[] = [];
    const nets = buildNetworks(config.get('mynetworks'), config.get('mynetworks_style'));
    this.mynetworks = nets.networks;
    errors.push(...nets.errors.map((e) => `mynetworks: ${e}`));
    const local = config.getList('mydestination');
    const relay = config.getList('relay_domains');
    const virtual = [...config.getList('virtual_alias_domains'), ...config.getList('virtual_mailbox_domains')];
    for (const [name, items] of [['mydestination', local], ['relay_domains', relay], ['virtual domains', virtual]] as const) {
      for (const t of DomainList.unsupported(items)) errors.push(`${name}: not supported: lookup table "${t}" (lookup tables are issue 3)`);
    }
    this.localDomains = new DomainList(local, false);
    this.relayDomains = new DomainList(relay, true);
    this.virtualDomains = new DomainList(virtual, false);
    this.rejectCode = config.getInt('reject_code');
    this.deferCode = config.getInt('defer_code');
    this.relayRejectCode = config.getInt('relay_domains_reject_code');
    this.resolve = resolveSettings(config);
    this.allowUntrustedRouting = config.getBool('allow_untrusted_routing');

    let guarded = false;
    for (const [stage, param] of LISTS) {
      const names = config.getList(param);
      const list: Restriction[] = [];
      for (const name of names) {
        if (stage === 'relay' || stage === 'recipient') if (RELAY_GUARDS.has(name)) guarded = true;
        const r = this.restriction(name);
        if (typeof r === 'string') errors.push(`${param}: ${r}`);
        else list.push(r);
      }
      this.lists.push([stage, list]);
    }
    if (!guarded) {
      errors.push('in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit');
    }
    if (errors.length) throw new Error(errors.join('\n'));
  }

  private restriction(name: string): Restriction | string {
    switch (name) {
      case 'permit': return () => 'permit';
      case 'reject': return (r, s) => this.refuse(this.rejectCode, '5.7.1', r, s, 'Access denied');
      case 'defer': return (r, s) => this.refuse(this.deferCode, '4.7.1', r, s, 'Access denied');
      case 'permit_mynetworks': return (r) => (this.mynetworks.has(r.clientAddr) ? 'permit' : 'dunno');
      case 'permit_sasl_authenticated': return () => 'dunno'; // no SASL yet: nobody is authenticated
      case 'permit_auth_destination': return (r) => (this.authorizedDestination(r.recipient) ? 'permit' : 'dunno');
      case 'reject_unauth_destination':
        return (r) => (this.authorizedDestination(r.recipient) ? 'dunno' : { ok: false, code: this.relayRejectCode, text: `${dsnFor(this.relayRejectCode, '5.7.1')} <${r.recipient}>: Relay access denied` });
      case 'defer_unauth_destination':
        return (r) => (this.authorizedDestination(r.recipient) ? 'dunno' : { ok: false, code: 454, text: `4.7.1 <${r.recipient}>: Relay access denied` });
      default:
        return `not supported: restriction "${name}" (see the README feature table)`;
    }
  }

  private refuse(code: number, dsn: string, r: PolicyRequest, stage: Stage, reason: string): Verdict {
    const d = dsnFor(code, dsn);
    switch (stage) {
      case 'client': return { ok: false, code, text: `${d} <${r.clientName}[${r.clientAddr}]>: Client host rejected: ${reason}` };
      case 'helo': return { ok: false, code, text: `${d} <${r.helo}>: Helo command rejected: ${reason}` };
      case 'sender': return { ok: false, code, text: `${d} <${r.sender}>: Sender address rejected: ${reason}` };
      default: return { ok: false, code, text: `${d} <${r.recipient}>: Recipient address rejected: ${reason}` };
    }
  }

  /**
   * Postfix's "authorized destination" (permit_auth_destination): the address resolves (as
   * trivial-rewrite does: source routes, quoting, % and ! in our domains undone) to a domain we
   * are final or relay destination for — mydestination, an "[ip]" literal of our own interfaces,
   * the virtual domains, relay_domains — and carries no sender-specified routing
   * (user%other@us, "user@other"@us, other!user@us) unless allow_untrusted_routing = yes.
   */
  authorizedDestination(recipient: string): boolean {
    const c = classify(recipient, this.resolve);
    if (c.routed && !this.allowUntrustedRouting) return false;
    return c.class !== 'default';
  }

  /** Evaluates all lists for one RCPT (smtpd_delay_reject=yes). */
  check(request: PolicyRequest): Verdict {
    for (const [stage, list] of this.lists) {
      for (const restriction of list) {
        const result = restriction(request, stage);
        if (result === 'dunno') continue;
        if (result === 'permit') break; // PERMIT ends this list; the next list still runs
        return result;
      }
    }
    return { ok: true };
  }
}

/** The enhanced code class follows the reply code's class (a 4xx reject_code gives 4.x.x). */
function dsnFor(code: number, dsn: string): string {
  return `${Math.floor(code / 100)}${dsn.slice(1)}`;
}
