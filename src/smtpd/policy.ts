/**
 * smtpd access policy: the smtpd_*_restrictions lists, evaluated as Postfix does — each list
 * left to right until a restriction says PERMIT, REJECT or DEFER; PERMIT ends only its own list,
 * and the end of a list means "go on to the next list". With smtpd_delay_reject=yes (the
 * default) the client, helo and sender lists run at RCPT time, so their verdicts are RCPT
 * verdicts; with "no" they run at CONNECT, HELO/EHLO and MAIL. smtpd_data_restrictions run at
 * DATA, smtpd_end_of_data_restrictions after the final dot, smtpd_etrn_restrictions at ETRN
 * (after the client and helo lists when smtpd_delay_reject = yes, as Postfix's smtpd_check_etrn).
 *
 * The restrictions themselves live in restrictions/ (one file per concern); this file parses the
 * lists at start-up (every problem refuses start-up with "param: not supported: …"), and
 * evaluates them: DEFER_IF_PERMIT / DEFER_IF_REJECT state, warn_if_reject, table results that
 * name further restrictions, smtpd_restriction_classes, and the log lines Postfix writes
 * ("NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 …; from=<…> to=<…> proto=ESMTP helo=<…>").
 */
import { isIP } from 'node:net';

import { metrics } from '../metrics/thread.js';
import { queueDirectory, type Config } from '../config/index.js';
import { readParams, type Params } from '../config/declared.js';
import { TableError } from '../maps/index.js';
import { DomainList } from '../address/domain.js';
import { parseInetProtocols } from '../address/inet-protocols.js';
import { canonicalIp, ownAddresses } from '../address/interfaces.js';
import { maillog } from '../log/maillog.js';
import { buildNetworks, type NetworkList } from '../net/networks.js';
import { classify, isLocalDomain, RESOLVE_PARAMS, resolveSettings, type ResolveSettings } from '../rewrite/resolve.js';
import { askPolicy, parseEndpoint, type PolicyServiceSettings } from './policy-service.js';
import { accessRestriction, serverError, tableResult, unmapped as unmappedAddress, type AccessKind, type AccessSettings } from './restrictions/access.js';
import { dnsAllowList, dnsBlockList, parseDnsList, PolicyDns, unknownAddressDomain, unknownHelo, type DnsSettings } from './restrictions/dns.js';
import { invalidHelo, nonFqdnAddress, nonFqdnHelo, unknownClient } from './restrictions/hostname.js';
import { senderLoginMismatch, type LoginSettings } from './restrictions/login.js';
import { checkCcertAccess, permitClientCerts, rejectPlaintextSession } from './restrictions/ccert.js';
import { permitMxBackup } from './restrictions/mx-backup.js';
import { serverAccess, type ServerSettings, type ServerSubject, type ServerType } from './restrictions/server.js';
import { SASL_PARAMS, saslSettings, type SaslSettings } from './sasl-settings.js';
import { openPolicyTable, tableSpecError, type PolicyTable } from './restrictions/tables.js';
import { DUNNO, formatReply, PERMIT, rejected, type Action, type Forbid, type PolicyRequest, type Reply, type Restriction, type Stage } from './restrictions/types.js';
import { checkListed, unlisted, type UnlistedSettings } from './restrictions/unlisted.js';
import { unverified, type UnverifiedCodes, type VerifySettings } from './restrictions/verify.js';
import { VerifyClient } from '../verify/client.js';
import { SOFT_BOUNCE_PARAMS } from '../delivery/soft-bounce.js';

export type { PolicyRequest, Stage, Where } from './restrictions/types.js';

/**
 * The actions smtpd hands to cleanup with the message (Postfix's saved_flags, saved_filter,
 * saved_redirect, saved_bcc): HOLD, the last FILTER, the last REDIRECT, every BCC.
 */
export interface Delegated { hold: boolean; filter: string | null; redirect: string | null; bcc: string[] }

/** ok: go on (with the DISCARD / PREPEND / delegated effects seen); else the reply to give. */
export type Verdict =
  | { ok: true; discard: string | null; prepend: string[]; delegated: Delegated | null }
  | { ok: false; code: number; text: string };

export interface PolicyLogger { info(text: string): void; warn(text: string): void }

interface Item { name: string; run: Restriction | 'warn_if_reject' }

/** The restriction lists, declared with the rest of the restrictions' parameters (POLICY_PARAMS). */
const LIST_PARAMS = {
  'smtpd_client_restrictions': 'list',
  'smtpd_helo_restrictions': 'list',
  'smtpd_sender_restrictions': 'list',
  'smtpd_relay_restrictions': 'list',
  'smtpd_recipient_restrictions': 'list',
  'smtpd_data_restrictions': 'list',
  'smtpd_end_of_data_restrictions': 'list',
  'smtpd_etrn_restrictions': 'list',
} as const;

const LISTS: [Stage, keyof typeof LIST_PARAMS][] = [
  ['client', 'smtpd_client_restrictions'],
  ['helo', 'smtpd_helo_restrictions'],
  ['sender', 'smtpd_sender_restrictions'],
  ['relay', 'smtpd_relay_restrictions'],
  ['recipient', 'smtpd_recipient_restrictions'],
  ['data', 'smtpd_data_restrictions'],
  ['end_of_data', 'smtpd_end_of_data_restrictions'],
  ['etrn', 'smtpd_etrn_restrictions'],
];

/**
 * What the restrictions read by name (smtpd declares these with its own: actors/smtpd/index.ts).
 * The restriction classes (smtpd_restriction_classes), whose names are the configuration's own,
 * stay read by their names. Resolving's (src/rewrite/resolve.ts, which
 * trivial-rewrite declares too) and SASL's (with TLS's, which it asks) are spread in.
 */
export const POLICY_PARAMS = {
  ...SOFT_BOUNCE_PARAMS,
  ...SASL_PARAMS,
  ...RESOLVE_PARAMS,
  ...LIST_PARAMS,
  'mynetworks': 'str',
  'mynetworks_style': 'str',
  'mydestination': 'list',
  'relay_domains': 'list',
  'virtual_alias_domains': 'list',
  'virtual_mailbox_domains': 'list',
  'reject_code': 'int',
  'defer_code': 'int',
  'relay_domains_reject_code': 'int',
  'allow_untrusted_routing': 'bool',
  'smtpd_delay_reject': 'bool',
  'smtpd_reject_unlisted_recipient': 'bool',
  'smtpd_reject_unlisted_sender': 'bool',
  'recipient_delimiter': 'str',
  'access_map_reject_code': 'int',
  'access_map_defer_code': 'int',
  'smtpd_null_access_lookup_key': 'str',
  'parent_domain_matches_subdomains': 'list',
  'unknown_address_reject_code': 'int',
  'unknown_hostname_reject_code': 'int',
  'unknown_address_tempfail_action': 'str',
  'unknown_helo_hostname_tempfail_action': 'str',
  'maps_rbl_reject_code': 'int',
  'smtpd_policy_service_timeout': 'time',
  'smtpd_policy_service_try_limit': 'int',
  'smtpd_policy_service_retry_delay': 'time',
  'smtpd_policy_service_default_action': 'str',
  'smtpd_policy_service_policy_context': 'str',
  'local_recipient_maps': 'list',
  'virtual_alias_maps': 'list',
  'virtual_mailbox_maps': 'list',
  'relay_recipient_maps': 'list',
  'relay_clientcerts': 'list',
  'smtpd_sender_login_maps': 'list',
  'unknown_local_recipient_reject_code': 'int',
  'unknown_virtual_alias_reject_code': 'int',
  'unknown_virtual_mailbox_reject_code': 'int',
  'unknown_relay_recipient_reject_code': 'int',
  'double_bounce_sender': 'str',
  'address_verify_service_name': 'str',
  'address_verify_poll_count': 'int',
  'address_verify_poll_delay': 'time',
  'unverified_sender_defer_code': 'int',
  'unverified_sender_reject_code': 'int',
  'unverified_sender_tempfail_action': 'str',
  'unverified_sender_reject_reason': 'str',
  'unverified_recipient_defer_code': 'int',
  'unverified_recipient_reject_code': 'int',
  'unverified_recipient_tempfail_action': 'str',
  'unverified_recipient_reject_reason': 'str',
  'smtpd_tls_ask_ccert': 'bool',
  'plaintext_reject_code': 'int',
  'invalid_hostname_reject_code': 'int',
  'non_fqdn_reject_code': 'int',
  'smtpd_restriction_classes': 'list',
  'inet_protocols': 'str',
  'smtpd_sasl_auth_enable': 'bool',
  'unknown_client_reject_code': 'int',
  'multi_recipient_bounce_reject_code': 'int',
  'permit_mx_backup_networks': 'str',
  'maps_rbl_domains': 'list',
  'mail_name': 'str',
} as const;
type PolicyParams = Params<typeof POLICY_PARAMS>;

/** Restrictions that stop mail to foreign domains; Postfix insists on one of them. */
const RELAY_GUARDS = new Set(['reject_unauth_destination', 'defer_unauth_destination', 'reject', 'defer', 'defer_if_permit']);

/** check_{client,reverse_client_hostname,helo,sender,recipient}_{a,mx,ns}_access (restrictions/server.ts). */
const SERVER_ACCESS = /^check_(client|reverse_client_hostname|helo|sender|recipient)_(a|mx|ns)_access$/;

/** Every restriction name Postfix 3.8 knows (mail_params.h), to tell "not built" from a typo. */
const POSTFIX_RESTRICTIONS = new Set([
  'permit_rhswl_client', 'reject_rhsbl_reverse_client', 'sleep',
  'check_sasl_access', 'check_reverse_client_hostname_access',
  'check_client_a_access', 'check_client_mx_access', 'check_client_ns_access',
  'check_reverse_client_hostname_a_access', 'check_reverse_client_hostname_mx_access', 'check_reverse_client_hostname_ns_access',
  'check_helo_a_access', 'check_helo_mx_access', 'check_helo_ns_access',
  'check_sender_a_access', 'check_sender_mx_access', 'check_sender_ns_access',
  'check_recipient_a_access', 'check_recipient_mx_access', 'check_recipient_ns_access',
  'check_address_map', 'check_ccert_access', 'check_client_access', 'check_etrn_access', 'check_helo_access',
  'check_policy_service', 'check_recipient_access', 'check_recipient_maps', 'check_relay_domains', 'check_sender_access',
  'defer', 'defer_if_permit', 'defer_if_reject', 'defer_unauth_destination', 'permit', 'permit_auth_destination',
  'permit_dnswl_client', 'permit_inet_interfaces', 'permit_mx_backup', 'permit_mynetworks', 'permit_naked_ip_address',
  'permit_sasl_authenticated', 'permit_tls_all_clientcerts', 'permit_tls_clientcerts', 'reject', 'reject_invalid_helo_hostname',
  'reject_invalid_hostname', 'reject_maps_rbl', 'reject_multi_recipient_bounce', 'reject_non_fqdn_helo_hostname',
  'reject_non_fqdn_hostname', 'reject_non_fqdn_recipient', 'reject_non_fqdn_sender', 'reject_plaintext_session', 'reject_rbl',
  'reject_rbl_client', 'reject_rhsbl_client', 'reject_rhsbl_helo', 'reject_rhsbl_recipient', 'reject_rhsbl_reverse_client',
  'reject_rhsbl_sender', 'reject_sender_login_mismatch', 'reject_authenticated_sender_login_mismatch',
  'reject_known_sender_login_mismatch', 'reject_unauthenticated_sender_login_mismatch', 'reject_unauth_destination',
  'reject_unauth_pipelining', 'reject_unknown_address', 'reject_unknown_client', 'reject_unknown_client_hostname',
  'reject_unknown_forward_client_hostname', 'reject_unknown_helo_hostname', 'reject_unknown_hostname',
  'reject_unknown_recipient_domain', 'reject_unknown_reverse_client_hostname', 'reject_unknown_sender_domain',
  'reject_unlisted_recipient', 'reject_unlisted_sender', 'reject_unverified_recipient', 'reject_unverified_sender', 'sleep',
  'warn_if_reject',
]);

/** reject_maps_rbl's deprecation warning, once per thread as Postfix's once per process. */
let warnedMapsRbl = false;

/** Old names Postfix still accepts. */
const ALIASES: Record<string, string> = {
  reject_invalid_hostname: 'reject_invalid_helo_hostname',
  reject_non_fqdn_hostname: 'reject_non_fqdn_helo_hostname',
  reject_unknown_hostname: 'reject_unknown_helo_hostname',
  check_relay_domains: 'reject_unauth_destination',
  reject_unknown_client: 'reject_unknown_client_hostname',
  reject_rbl: 'reject_rbl_client',
  check_recipient_maps: 'reject_unlisted_recipient',
  reject_unknown_address: 'reject_unknown_sender_domain',
};

/** Per-evaluation state (one RCPT, one DATA, …), as Postfix keeps it in SMTPD_STATE. */
interface Evaluation {
  deferIfPermit: Reply | null;
  deferIfReject: Reply | null;
  discard: string | null;
  prepend: string[];
  delegated: Delegated | null;
  depth: number;
}

export class SmtpdPolicy {
  readonly mynetworks: NetworkList;
  readonly delayReject: boolean;
  /** The smtpd_sasl_* settings (checked here, so that `postactor check` sees their problems). */
  readonly sasl: SaslSettings;
  private readonly login: LoginSettings;
  private readonly lists = new Map<Stage, Item[]>();
  private readonly classes = new Map<string, Item[]>();
  private readonly nested = new Map<string, Item[] | string>();
  private readonly rejectCode: number;
  private readonly deferCode: number;
  private readonly relayRejectCode: number;
  private readonly rejectUnlistedRecipient: boolean;
  private readonly explicitUnlisted: boolean;
  /** smtpd_reject_unlisted_sender, unless reject_unlisted_sender is already in a list. */
  private readonly implicitUnlistedSender: boolean;
  private readonly access: AccessSettings;
  /** permit_mx_backup_networks, when set. */
  private mxBackupNetworks: NetworkList | null = null;
  /** check_*_{a,mx,ns}_access */
  private readonly server: ServerSettings;
  private readonly dnsSettings: DnsSettings;
  private readonly policySettings: PolicyServiceSettings;
  private readonly unlistedSettings: UnlistedSettings;
  private readonly tables = new Map<string, PolicyTable>();
  private dnsClient: PolicyDns | null = null;
  private readonly log: PolicyLogger;
  private readonly config: Config;
  private readonly resolve: ResolveSettings;
  private readonly allowUntrustedRouting: boolean;
  /** relay_clientcerts, for permit_tls_clientcerts. */
  private readonly relayClientCerts: PolicyTable[];
  private readonly askCcert: boolean;
  /** reject_unverified_*: the verify service's client (set by smtpd; absent in `postactor check`). */
  private verifyClient: VerifyClient | null = null;
  private readonly verifySettings: VerifySettings;
  private readonly unverifiedCodes: Record<'sender' | 'recipient', UnverifiedCodes>;
  private readonly verifyService: string;

  /**
   * Throws an Error whose message lists every problem (the server then refuses to start). `p`:
   * the values smtpd read (read here from the configuration when not given: master's check, tests).
   */
  constructor(config: Config, log: PolicyLogger = maillog('smtpd'), private readonly p: PolicyParams = readParams(config, POLICY_PARAMS, 'smtpd')) {
    this.config = config;
    this.log = log;
    const errors: string[] = [];
    const nets = buildNetworks(p.mynetworks, p.mynetworks_style);
    this.mynetworks = nets.networks;
    errors.push(...nets.errors.map((e) => `mynetworks: ${e}`));
    if (p.permit_mx_backup_networks.trim()) {
      const mx = buildNetworks(p.permit_mx_backup_networks, p.mynetworks_style);
      this.mxBackupNetworks = mx.networks;
      errors.push(...mx.errors.map((e) => `permit_mx_backup_networks: ${e}`));
    }
    const local = p.mydestination;
    const relay = p.relay_domains;
    const valias = p.virtual_alias_domains;
    const vmailbox = p.virtual_mailbox_domains;
    for (const [name, items] of [['mydestination', local], ['relay_domains', relay], ['virtual_alias_domains', valias], ['virtual_mailbox_domains', vmailbox]] as const) {
      for (const t of DomainList.unsupported(items)) errors.push(`${name}: ${t}`);
    }
    this.rejectCode = p.reject_code;
    this.deferCode = p.defer_code;
    this.relayRejectCode = p.relay_domains_reject_code;
    this.resolve = resolveSettings(p);
    this.allowUntrustedRouting = p.allow_untrusted_routing;
    this.delayReject = p.smtpd_delay_reject;
    this.rejectUnlistedRecipient = p.smtpd_reject_unlisted_recipient;
    const delimiter = p.recipient_delimiter;
    this.access = {
      accessMapRejectCode: p.access_map_reject_code,
      accessMapDeferCode: p.access_map_defer_code,
      nullKey: p.smtpd_null_access_lookup_key,
      bareParents: p.parent_domain_matches_subdomains.includes('smtpd_access_maps'),
      recipientDelimiter: delimiter,
    };
    // A bad value is master's to refuse, naming its main.cf line (src/net/listen.ts).
    const protocols = parseInetProtocols(p.inet_protocols);
    this.server = {
      ...this.access,
      // Postfix's var_dns_rr_list_limit: built in, not a main.cf parameter.
      addressLimit: 100,
      ipv4: typeof protocols === 'string' || protocols.ipv4,
      ipv6: typeof protocols === 'string' || protocols.ipv6,
    };
    const tempfail = (param: 'unknown_address_tempfail_action' | 'unknown_helo_hostname_tempfail_action' | 'unverified_sender_tempfail_action' | 'unverified_recipient_tempfail_action'): 'defer' | 'defer_if_permit' => {
      const v = p[param].trim();
      if (v === 'defer' || v === 'defer_if_permit') return v;
      errors.push(`${param}: not supported: "${v}" (defer or defer_if_permit)`);
      return 'defer_if_permit';
    };
    this.dnsSettings = {
      unknownAddressCode: p.unknown_address_reject_code,
      unknownHostnameCode: p.unknown_hostname_reject_code,
      addressTempfail: tempfail('unknown_address_tempfail_action'),
      heloTempfail: tempfail('unknown_helo_hostname_tempfail_action'),
      rblCode: p.maps_rbl_reject_code,
    };
    for (const name of ['rbl_reply_maps', 'default_rbl_reply']) {
      if (config.isSet(name) && config.raw(name)!.trim() !== '') errors.push(`${name}: not supported (Postactor answers Postfix's default RBL reply)`);
    }
    this.policySettings = {
      timeoutMs: p.smtpd_policy_service_timeout * 1000,
      tryLimit: p.smtpd_policy_service_try_limit,
      retryDelayMs: p.smtpd_policy_service_retry_delay * 1000,
      defaultAction: p.smtpd_policy_service_default_action,
      policyContext: p.smtpd_policy_service_policy_context,
    };
    const maps = (param: 'local_recipient_maps' | 'virtual_alias_maps' | 'virtual_mailbox_maps' | 'relay_recipient_maps' | 'relay_clientcerts' | 'smtpd_sender_login_maps'): PolicyTable[] => this.openMaps(param, p[param], errors);
    this.unlistedSettings = {
      classOf: (a) => classify(a, this.resolve),
      localMaps: maps('local_recipient_maps'),
      virtualAliasMaps: maps('virtual_alias_maps'),
      virtualMailboxMaps: maps('virtual_mailbox_maps'),
      relayMaps: maps('relay_recipient_maps'),
      codes: {
        local: p.unknown_local_recipient_reject_code,
        virtualAlias: p.unknown_virtual_alias_reject_code,
        virtualMailbox: p.unknown_virtual_mailbox_reject_code,
        relay: p.unknown_relay_recipient_reject_code,
      },
      recipientDelimiter: delimiter,
      isLocalDomain: (d) => isLocalDomain(this.resolve, d),
      doubleBounceSender: p.double_bounce_sender,
    };

    this.verifyService = p.address_verify_service_name.trim();
    this.verifySettings = {
      client: () => this.verifyClient,
      pollCount: p.address_verify_poll_count,
      pollDelay: p.address_verify_poll_delay * 1000,
      warn: (t) => this.log.warn(t),
    };
    this.unverifiedCodes = {
      sender: {
        deferCode: p.unverified_sender_defer_code,
        rejectCode: p.unverified_sender_reject_code,
        tempfail: tempfail('unverified_sender_tempfail_action'),
        reason: p.unverified_sender_reject_reason.trim(),
      },
      recipient: {
        deferCode: p.unverified_recipient_defer_code,
        rejectCode: p.unverified_recipient_reject_code,
        tempfail: tempfail('unverified_recipient_tempfail_action'),
        reason: p.unverified_recipient_reject_reason.trim(),
      },
    };

    this.relayClientCerts = maps('relay_clientcerts');
    this.askCcert = p.smtpd_tls_ask_ccert;
    this.sasl = saslSettings(config, errors, p);
    this.login = {
      saslEnabled: this.sasl.enabled,
      maps: maps('smtpd_sender_login_maps'),
      resolve: async (a) => (await classify(a, this.resolve)).recipient,
      recipientDelimiter: delimiter,
      isLocalDomain: (d) => isLocalDomain(this.resolve, d),
    };

    const classNames = p.smtpd_restriction_classes;
    for (const name of classNames) {
      if (!config.isSet(name)) {
        errors.push(`smtpd_restriction_classes: restriction class "${name}" has no parameter ${name} in main.cf`);
        continue;
      }
      this.classes.set(name, []);
    }
    for (const name of this.classes.keys()) this.classes.set(name, this.build(config.getList(name), name, errors));

    let guarded = false;
    let explicitUnlisted = false;
    for (const [stage, param] of LISTS) {
      const tokens = p[param];
      if (stage === 'relay' || stage === 'recipient') {
        if (tokens.some((t) => RELAY_GUARDS.has(t))) guarded = true;
        if (tokens.includes('reject_unlisted_recipient')) explicitUnlisted = true;
      }
      this.lists.set(stage, this.build(tokens, param, errors));
    }
    this.explicitUnlisted = explicitUnlisted;
    this.implicitUnlistedSender = p.smtpd_reject_unlisted_sender && !LISTS.some(([, param]) => p[param].includes('reject_unlisted_sender'));
    if (!guarded) {
      errors.push('in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify at least one working instance of: reject_unauth_destination, defer_unauth_destination, reject, defer, defer_if_permit');
    }
    if (errors.length) throw new Error(errors.join('\n'));
  }

  // ---- start-up: lists and tables

  private openMaps(param: string, specs: readonly string[], errors: string[]): PolicyTable[] {
    const out: PolicyTable[] = [];
    for (const spec of specs) {
      const t = this.table(spec, param, errors);
      if (t) out.push(t);
    }
    return out;
  }

  private table(spec: string, param: string, errors: string[]): PolicyTable | null {
    const err = tableSpecError(spec);
    if (err) {
      errors.push(`${param}: ${err}`);
      return null;
    }
    let t = this.tables.get(spec);
    if (!t) {
      t = openPolicyTable(spec, this.config.configDirectory, (m) => this.log.warn(`${spec}: ${m}`));
      this.tables.set(spec, t);
    }
    return t;
  }

  private dns(): PolicyDns {
    return (this.dnsClient ??= new PolicyDns());
  }

  /** Parses one restriction list; problems go to `errors` as "param: …". */
  private build(tokens: string[], param: string, errors: string[]): Item[] {
    const items: Item[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const raw = tokens[i]!;
      const name = ALIASES[raw] ?? raw;
      const arg = (): string | null => {
        const a = tokens[i + 1];
        if (a === undefined || a.includes('{') || a.includes('}')) {
          errors.push(a === undefined ? `${param}: restriction ${name} needs an argument` : `${param}: not supported: "{ … }" arguments of ${name}`);
          return null;
        }
        i++;
        return a;
      };
      if (raw.includes('{') || raw.includes('}')) {
        errors.push(`${param}: not supported: "{ … }" syntax in restriction lists`);
        continue;
      }
      if (name.includes(':')) {
        // Postfix's short-hand: a bare "type:table" is the list's own check_<kind>_access.
        const r = this.implicitAccess(name, param, errors);
        if (r) items.push({ name, run: r });
        continue;
      }
      const r = this.restriction(name, arg, param, errors);
      if (r) items.push({ name, run: r });
    }
    return items;
  }

  /**
   * A bare "type:table" in a restriction list (smtpd_check.c's implicit access map): the access
   * check of the list it runs for (check_client_access in smtpd_client_restrictions, …,
   * check_recipient_access in the relay and recipient lists). In a restriction class that is
   * the list that called the class; the data lists have none, so there it is Postfix's
   * "specify one of …" — a start-up error in the list itself, a server error from a class.
   */
  private implicitAccess(spec: string, param: string, errors: string[]): Restriction | null {
    const stage = LISTS.find(([, p]) => p === param)?.[0];
    const kindOf = (st: Stage): AccessKind | null =>
      st === 'relay' ? 'recipient' : st === 'client' || st === 'helo' || st === 'sender' || st === 'recipient' || st === 'etrn' ? st : null;
    const specify = (st: Stage) =>
      `specify one of (check_client_access, check_reverse_client_hostname_access, check_helo_access, check_sender_access, check_recipient_access, check_etrn_access) before ${st} restriction "${spec}"`;
    if (stage !== undefined && kindOf(stage) === null) {
      errors.push(`${param}: ${specify(stage)}`);
      return null;
    }
    const t = this.table(spec, param, errors);
    if (!t) return null;
    const byKind = new Map<AccessKind, Restriction>();
    return (r, st) => {
      const kind = kindOf(st);
      if (kind === null) return serverError(specify(st));
      let run = byKind.get(kind);
      if (!run) byKind.set(kind, (run = accessRestriction(kind, t, this.access)));
      return run(r, st);
    };
  }

  private restriction(name: string, arg: () => string | null, param: string, errors: string[]): Restriction | 'warn_if_reject' | null {
    const access = (kind: AccessKind): Restriction | null => {
      const spec = arg();
      if (spec === null) return null;
      const t = this.table(spec, param, errors);
      return t ? accessRestriction(kind, t, this.access) : null;
    };
    const list = (make: (zone: string, match: string | null) => Restriction): Restriction | null => {
      const a = arg();
      if (a === null) return null;
      const p = parseDnsList(a);
      if (typeof p === 'string') {
        errors.push(`${param}: ${name}: ${p}`);
        return null;
      }
      return make(p.zone, p.match);
    };
    const d = this.dnsSettings;
    switch (name) {
      case 'permit': return () => PERMIT;
      case 'reject': return (r, s) => ({ kind: 'reject', reply: rejected(this.rejectCode, '5.7.1', r, s, 'Access denied') });
      case 'defer': return (r, s) => ({ kind: 'reject', reply: rejected(this.deferCode, '4.7.1', r, s, 'Access denied') });
      case 'defer_if_permit': return (r, s) => ({ kind: 'defer_if_permit', reply: rejected(450, '4.7.0', r, s, 'defer_if_permit requested') });
      case 'defer_if_reject': return (r, s) => ({ kind: 'defer_if_reject', reply: rejected(450, '4.7.0', r, s, 'defer_if_reject requested') });
      case 'warn_if_reject': return 'warn_if_reject';
      case 'reject_unauth_pipelining': return (r, s) => (r.illPipelining ? { kind: 'reject', reply: rejected(503, '5.5.0', r, s, 'Improper use of SMTP command pipelining') } : DUNNO);
      case 'permit_mynetworks': return (r) => (this.mynetworks.has(r.clientAddr) ? PERMIT : DUNNO);
      // A client logged in with AUTH (an ANONYMOUS login does not count).
      case 'permit_sasl_authenticated': return (r) => (r.saslMethod && r.saslMethod.toLowerCase() !== 'anonymous' ? PERMIT : DUNNO);
      case 'reject_authenticated_sender_login_mismatch': return senderLoginMismatch('authenticated', this.login);
      case 'reject_known_sender_login_mismatch': return senderLoginMismatch('known', this.login);
      case 'reject_unauthenticated_sender_login_mismatch': return senderLoginMismatch('unauthenticated', this.login);
      case 'reject_sender_login_mismatch': return senderLoginMismatch('both', this.login);
      case 'permit_auth_destination': return this.destination((ok) => (ok ? PERMIT : DUNNO));
      case 'reject_unauth_destination':
        return this.destination((ok, r) => (ok ? DUNNO : { kind: 'reject', reply: { code: this.relayRejectCode, dsn: dsnClass(this.relayRejectCode, '5.7.1'), text: `<${r.recipient}>: Relay access denied` } }));
      case 'defer_unauth_destination':
        return this.destination((ok, r) => (ok ? DUNNO : { kind: 'reject', reply: { code: 454, dsn: '4.7.1', text: `<${r.recipient}>: Relay access denied` } }));
      case 'check_client_access': return access('client');
      case 'check_helo_access': return access('helo');
      case 'check_sender_access': return access('sender');
      case 'check_recipient_access': return access('recipient');
      case 'check_etrn_access': return access('etrn');
      case 'check_reverse_client_hostname_access': return access('reverse_client');
      case 'check_sasl_access': {
        const run = access('sasl');
        if (run === null || this.p.smtpd_sasl_auth_enable) return run;
        return () => ({ kind: 'warning', warning: "restriction `check_sasl_access' ignored: no SASL support" });
      }
      case 'permit_tls_clientcerts': return permitClientCerts(false, this.relayClientCerts, this.askCcert);
      case 'permit_tls_all_clientcerts': return permitClientCerts(true, this.relayClientCerts, this.askCcert);
      case 'reject_plaintext_session': return rejectPlaintextSession(this.p.plaintext_reject_code);
      case 'check_ccert_access': {
        const spec = arg();
        if (spec === null) return null;
        const t = this.table(spec, param, errors);
        return t ? checkCcertAccess(t, this.askCcert, this.access) : null;
      }
      case 'reject_invalid_helo_hostname': return invalidHelo(this.p.invalid_hostname_reject_code);
      case 'reject_unknown_client_hostname': return unknownClient('verified', this.p.unknown_client_reject_code);
      case 'reject_unknown_reverse_client_hostname': return unknownClient('reverse', this.p.unknown_client_reject_code);
      case 'reject_non_fqdn_helo_hostname': return nonFqdnHelo(this.p.non_fqdn_reject_code);
      case 'reject_non_fqdn_sender': return nonFqdnAddress('sender', this.p.non_fqdn_reject_code);
      case 'reject_non_fqdn_recipient': return nonFqdnAddress('recipient', this.p.non_fqdn_reject_code);
      case 'reject_unknown_sender_domain': return unknownAddressDomain('sender', this.dns(), d);
      case 'reject_unknown_recipient_domain': return unknownAddressDomain('recipient', this.dns(), d);
      case 'reject_unknown_helo_hostname': return unknownHelo(this.dns(), d);
      case 'reject_unlisted_recipient': return unlisted('recipient', this.unlistedSettings);
      case 'reject_unlisted_sender': return unlisted('sender', this.unlistedSettings);
      case 'reject_unverified_recipient':
      case 'reject_unverified_sender': {
        if (!this.config.services.some((s) => s.name === this.verifyService && s.command === 'verify')) {
          errors.push(`${param}: ${name}: master.cf has no "${this.verifyService}" service (command verify) to ask (address_verify_service_name)`);
          return null;
        }
        const which = name === 'reject_unverified_sender' ? 'sender' : 'recipient';
        return unverified(which, this.unverifiedCodes[which], this.verifySettings);
      }
      case 'reject_rbl_client': return list((z, m) => dnsBlockList('rbl_client', z, m, this.dns(), d));
      case 'reject_rhsbl_client': return list((z, m) => dnsBlockList('rhsbl_client', z, m, this.dns(), d));
      case 'reject_rhsbl_sender': return list((z, m) => dnsBlockList('rhsbl_sender', z, m, this.dns(), d));
      case 'reject_rhsbl_helo': return list((z, m) => dnsBlockList('rhsbl_helo', z, m, this.dns(), d));
      case 'reject_rhsbl_recipient': return list((z, m) => dnsBlockList('rhsbl_recipient', z, m, this.dns(), d));
      case 'permit_dnswl_client': return list((z, m) => dnsAllowList(z, m, this.dns()));
      case 'permit_mx_backup':
        return permitMxBackup({
          authorized: (a) => this.authorizedDestination(a),
          isLocal: (h) => isLocalDomain(this.resolve, h),
          own: this.resolve.own,
          networks: this.mxBackupNetworks,
          ipv4: this.server.ipv4,
          ipv6: this.server.ipv6,
          dns: () => this.dns(),
        });
      case 'permit_inet_interfaces': {
        const own = ownAddresses(this.p.inet_interfaces);
        return (r) => (own.has(canonicalIp(unmappedAddress(r.clientAddr)) ?? '') ? PERMIT : DUNNO);
      }
      // Deprecated in Postfix, kept for old configurations: the client said HELO with a bare address.
      case 'permit_naked_ip_address':
        return (r, s) => {
          this.log.warn('restriction permit_naked_ip_address is deprecated. Use permit_mynetworks or permit_sasl_authenticated instead');
          if (!r.helo || !/^[0-9.:]+$/.test(r.helo)) return DUNNO;
          if (isIP(r.helo)) return PERMIT;
          return { kind: 'reject', reply: rejected(this.p.invalid_hostname_reject_code, '5.5.2', r, s === 'helo' ? s : 'helo', 'invalid ip address') };
        };
      // Deprecated in Postfix: reject_rbl_client for each of maps_rbl_domains.
      case 'reject_maps_rbl': {
        const zones = this.p.maps_rbl_domains.map((z) => dnsBlockList('rbl_client', z.replace(/\.$/, ''), null, this.dns(), d));
        return async (r, s) => {
          if (!warnedMapsRbl) {
            warnedMapsRbl = true;
            this.log.warn(`support for restriction "reject_maps_rbl" will be removed from ${this.p.mail_name}; use "reject_rbl_client domain-name" instead`);
          }
          for (const z of zones) {
            const a = await z(r, s);
            if (a.kind !== 'dunno') return a;
          }
          return DUNNO;
        };
      }
      case 'permit_rhswl_client': return list((z, m) => dnsAllowList(z, m, this.dns(), 'name'));
      case 'reject_rhsbl_reverse_client': return list((z, m) => dnsBlockList('rhsbl_reverse_client', z, m, this.dns(), d));
      // At RCPT the recipients accepted before this one; at DATA and after, all of them.
      case 'reject_multi_recipient_bounce':
        return (r, s) => (r.sender === '' && r.recipientCount > (r.where === 'RCPT' ? 0 : 1)
          ? { kind: 'reject', reply: rejected(this.p.multi_recipient_bounce_reject_code, '5.5.3', r, s, 'Multi-recipient bounce') }
          : DUNNO);
      case 'sleep': {
        const a = arg();
        if (a === null) return null;
        if (!/^\d+$/.test(a)) {
          errors.push(`${param}: restriction sleep must be followed by number`);
          return null;
        }
        const ms = Number(a) * 1000;
        return () => new Promise<Action>((resolve) => setTimeout(() => resolve(DUNNO), ms));
      }
      case 'check_policy_service': {
        const spec = arg();
        if (spec === null) return null;
        const ep = parseEndpoint(spec, queueDirectory(this.config));
        if (typeof ep === 'string') {
          errors.push(`${param}: ${ep}`);
          return null;
        }
        return async (r, s) => {
          const action = await askPolicy(ep, r, this.policySettings, r.instance ?? '', (w) => this.log.warn(w));
          return tableResult(action, spec, 'policy query', r, s, this.access);
        };
      }
    }
    const server = SERVER_ACCESS.exec(name);
    if (server) {
      const spec = arg();
      if (spec === null) return null;
      const t = this.table(spec, param, errors);
      const subject = (server[1] === 'reverse_client_hostname' ? 'reverse_client' : server[1]) as ServerSubject;
      return t ? serverAccess(subject, server[2] as ServerType, t, () => this.dns(), this.server, (w) => this.log.warn(w)) : null;
    }
    if (this.classes.has(name)) {
      return (r, s) => ({ kind: 'restrictions', names: [name], source: `restriction class ${name}`, stage: s });
    }
    // A Postfix restriction not built here is "not supported"; anything else is a typo, named
    // as Postfix's smtpd names it (smtpd_check.c), but at start-up instead of at every RCPT.
    if (POSTFIX_RESTRICTIONS.has(name)) errors.push(`${param}: not supported: restriction "${name}" (see the README feature table)`);
    else errors.push(`${param}: unknown smtpd restriction: "${name}"`);
    return null;
  }

  /** smtpd's connection to the verify service (reject_unverified_*), as its thread makes it. */
  useVerifyService(request: (service: string, body: unknown) => Promise<unknown>): void {
    this.verifyClient = new VerifyClient(request, this.verifyService);
  }

  // ---- address classes (trivial-rewrite's classify: domain lists only, no tables)

  /**
   * Postfix's "authorized destination" (permit_auth_destination): the address resolves (as
   * trivial-rewrite does: source routes, quoting, % and ! in our domains undone) to a domain we
   * are final or relay destination for — mydestination, an "[ip]" literal of our own interfaces,
   * the virtual domains, relay_domains — and carries no sender-specified routing
   * (user%other@us, "user@other"@us, other!user@us) unless allow_untrusted_routing = yes.
   */
  async authorizedDestination(recipient: string): Promise<boolean> {
    const c = await classify(recipient, this.resolve);
    if (c.routed && !this.allowUntrustedRouting) return false;
    return c.class !== 'default';
  }

  /**
   * A restriction on authorizedDestination(); no recipient is DUNNO. A domain list whose table
   * fails answers 451 4.3.0 Temporary lookup failure (Postfix's reject_dict_retry), never a
   * relay decision.
   */
  private destination(decide: (authorized: boolean, r: PolicyRequest) => Action): Restriction {
    return async (r) => {
      if (r.recipient === null) return DUNNO;
      try {
        return decide(await this.authorizedDestination(r.recipient), r);
      } catch (e) {
        if (!(e instanceof TableError)) throw e;
        return { kind: 'error', reply: { code: 451, dsn: '4.3.0', text: `<${r.recipient}>: Temporary lookup failure` }, warning: e.message };
      }
    };
  }

  // ---- evaluation

  /** True when the stage has anything to check: its list, or an implicit check (index.ts skips the hook otherwise). */
  has(stage: Stage): boolean {
    if (stage === 'sender' && this.implicitUnlistedSender) return true;
    return (this.lists.get(stage)?.length ?? 0) > 0;
  }

  /** smtpd_client_restrictions at CONNECT (smtpd_delay_reject = no). */
  checkClient(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(['client'], r);
  }

  /** smtpd_helo_restrictions at HELO/EHLO (smtpd_delay_reject = no). */
  checkHelo(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(['helo'], r);
  }

  /** smtpd_sender_restrictions at MAIL FROM (smtpd_delay_reject = no), then the unlisted sender. */
  checkSender(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(['sender'], r, this.implicitChecks(r));
  }

  /** One RCPT: (client, helo, sender and unlisted sender with delay_reject), relay, recipient, unlisted recipient. */
  checkRecipient(r: PolicyRequest): Promise<Verdict> {
    const stages: Stage[] = this.delayReject ? ['client', 'helo', 'sender', 'relay', 'recipient'] : ['relay', 'recipient'];
    return this.evaluate(stages, r, this.implicitChecks(r));
  }

  /**
   * Postfix's implicit checks at the end of a list: smtpd_reject_unlisted_sender after the
   * sender restrictions (smtpd_check_mail), smtpd_reject_unlisted_recipient after the recipient
   * restrictions, each unless the list already has the explicit restriction.
   */
  private implicitChecks(r: PolicyRequest): Partial<Record<Stage, () => Promise<Action>>> {
    const out: Partial<Record<Stage, () => Promise<Action>>> = {};
    if (this.implicitUnlistedSender) out.sender = () => checkListed('sender', r, this.unlistedSettings);
    if (this.rejectUnlistedRecipient && !this.explicitUnlisted) out.recipient = () => checkListed('recipient', r, this.unlistedSettings);
    return out;
  }

  /** smtpd_data_restrictions at DATA. */
  checkData(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(['data'], r);
  }

  /** ETRN: (client, helo with delay_reject), then smtpd_etrn_restrictions. */
  checkEtrn(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(this.delayReject ? ['client', 'helo', 'etrn'] : ['etrn'], r);
  }

  /** smtpd_end_of_data_restrictions after the final dot. */
  checkEndOfData(r: PolicyRequest): Promise<Verdict> {
    return this.evaluate(['end_of_data'], r);
  }

  private async evaluate(stages: Stage[], r: PolicyRequest, after: Partial<Record<Stage, () => Promise<Action>>> = {}): Promise<Verdict> {
    const ev: Evaluation = { deferIfPermit: null, deferIfReject: null, discard: null, prepend: [], delegated: null, depth: 0 };
    try {
      for (const stage of stages) {
        const items = this.lists.get(stage);
        // (An empty list is DUNNO: no promise to wait for.)
        if (items && items.length > 0) {
          const out = await this.runList(items, r, stage, ev);
          if (typeof out === 'object') return this.refuse(out, r, `smtpd_${stage}_restrictions`);
        }
        const implicit = after[stage];
        // A discarded message needs no check (Postfix: state->discard).
        if (implicit && !ev.discard) {
          const res = await this.apply(await implicit(), r, stage, ev, false);
          if (typeof res === 'object') return this.refuse(res, r, `reject_unlisted_${stage}`);
        }
      }
    } catch (e) {
      this.log.warn(`smtpd access policy: ${(e as Error).message}`);
      return this.refuse({ code: 451, dsn: '4.3.5', text: 'Server configuration error' }, r, 'configuration_error');
    }
    if (ev.deferIfPermit) return this.refuse(ev.deferIfPermit, r, 'defer_if_permit');
    return { ok: true, discard: ev.discard, prepend: ev.prepend, delegated: ev.delegated };
  }

  /** A list, left to right: 'permit', 'dunno' (end of list), or the reply that ends it all. */
  private async runList(items: Item[], r: PolicyRequest, stage: Stage, ev: Evaluation): Promise<'permit' | 'dunno' | Reply> {
    let warnNext = false;
    for (const item of items) {
      if (item.run === 'warn_if_reject') {
        warnNext = true;
        continue;
      }
      const warn = warnNext;
      warnNext = false;
      const out = await this.apply(await item.run(r, stage), r, stage, ev, warn);
      if (out !== 'dunno') return out;
    }
    return 'dunno';
  }

  private async apply(action: Action, r: PolicyRequest, stage: Stage, ev: Evaluation, warn: boolean): Promise<'permit' | 'dunno' | Reply> {
    switch (action.kind) {
      case 'dunno': return 'dunno';
      case 'permit':
        if (action.warning) this.log.warn(action.warning);
        return action.forbid && !ev.discard ? this.forbidden(action.forbid) : 'permit';
      case 'reject': {
        if (warn) {
          this.whatsup('reject_warning', r, formatReply(this.softened(action.reply)));
          return 'dunno';
        }
        // DEFER_IF_REJECT turns a later 5xx into its 4xx.
        return ev.deferIfReject && action.reply.code >= 500 ? ev.deferIfReject : action.reply;
      }
      case 'error':
        for (const w of typeof action.warning === 'string' ? [action.warning] : action.warning) this.log.warn(w);
        return action.reply;
      case 'defer_if_permit':
        if (warn) this.whatsup('reject_warning', r, formatReply(this.softened(action.reply)));
        else ev.deferIfPermit ??= action.reply;
        return 'dunno';
      case 'defer_if_reject':
        ev.deferIfReject ??= action.reply;
        return 'dunno';
      case 'warn':
        this.whatsup('warn', r, action.text);
        return 'dunno';
      case 'warning':
        this.log.warn(action.warning);
        return 'dunno';
      case 'discard':
        if (!this.canDelegate(r, action.source, 'DISCARD')) return 'dunno';
        this.whatsup('discard', r, action.text);
        ev.discard = action.text;
        return 'permit';
      case 'delegate': {
        if (!this.canDelegate(r, action.source, action.what.toUpperCase())) return 'dunno';
        // Logged once per transaction, as Postfix skips a HOLD when the flag is already set.
        if (action.what === 'hold' && (r.held || ev.delegated?.hold)) return 'dunno';
        const d = (ev.delegated ??= { hold: false, filter: null, redirect: null, bcc: [] });
        if (action.what === 'hold') d.hold = true;
        else if (action.what === 'filter') d.filter = action.value;
        else if (action.what === 'redirect') d.redirect = action.value;
        else d.bcc.push(action.value);
        this.whatsup(action.what, r, action.text);
        return 'dunno';
      }
      case 'prepend':
        if (r.where === 'END-OF-MESSAGE') this.log.warn(`access table ${action.source}: action PREPEND must be used before smtpd_end_of_data_restrictions`);
        else if (r.sender === null) this.log.warn(`access table ${action.source}: with smtpd_delay_reject=no, action PREPEND is always skipped in client or helo restrictions`);
        else ev.prepend.push(action.header);
        return 'dunno';
      case 'restrictions': {
        if (ev.depth >= 100) {
          this.log.warn(`${action.source} entry ${action.names.join(' ')} causes unreasonable recursion`);
          return { code: 451, dsn: '4.3.5', text: 'Server configuration error' };
        }
        const items = this.nestedList(action.names);
        if (typeof items === 'string') return this.apply(serverError(`${action.source}: ${items}`), r, action.stage, ev, false);
        ev.depth++;
        let out: 'permit' | 'dunno' | Reply;
        try {
          out = await this.runList(items, r, action.stage, ev);
        } finally {
          ev.depth--;
        }
        return out === 'permit' && action.forbid && !ev.discard ? this.forbidden(action.forbid) : out;
      }
    }
  }

  /** Postfix's forbid_allowlist: three warnings and reject_server_error. */
  private forbidden(f: Forbid): Reply {
    this.log.warn(`restriction ${f.restriction} returns OK for ${f.target}`);
    this.log.warn('this is not allowed for security reasons');
    this.log.warn('use DUNNO instead of OK if you want to make an exception');
    return { code: 451, dsn: '4.3.5', text: 'Server configuration error' };
  }

  /** A table result's restriction names, parsed once ("not supported: …" when they cannot be). */
  private nestedList(names: string[]): Item[] | string {
    const key = names.join(' ');
    let cached = this.nested.get(key);
    if (cached === undefined) {
      if (names.length === 1 && this.classes.has(names[0]!)) cached = this.classes.get(names[0]!)!;
      else {
        const errors: string[] = [];
        const items = this.build(names, 'access table result', errors);
        cached = errors.length ? errors.join('; ') : items;
      }
      this.nested.set(key, cached);
    }
    return cached;
  }

  /** `reason` (the restriction list, or what else refused) labels the reject in the metrics. */
  private refuse(given: Reply, r: PolicyRequest, reason: string): Verdict {
    const reply = this.softened(given);
    this.whatsup('reject', r, formatReply(reply));
    metrics().smtpdRejects.inc({ code: String(reply.code), stage: r.where, reason });
    return { ok: false, code: reply.code, text: `${reply.dsn} ${reply.text}` };
  }

  /**
   * soft_bounce (smtpd_check_reject): a 5xx reject is logged and sent as 4xx, its status code's
   * class with it, so that the reject line shows the code the client got (smtpd's reply output
   * softens every other 5xx reply: actors/smtpd/chat.ts).
   */
  private softened(reply: Reply): Reply {
    if (!this.p.soft_bounce || reply.code < 500 || reply.code > 599) return reply;
    return { ...reply, code: reply.code - 100, dsn: reply.dsn.startsWith('5') ? `4${reply.dsn.slice(1)}` : reply.dsn };
  }

  /** Postfix's log_whatsup: "QID: reject: RCPT from name[addr]: text; from=<…> to=<…> proto=… helo=<…>". */
  /**
   * Whether an action cleanup carries out with the message can apply here (Postfix's
   * can_delegate_action): not to ETRN, which receives no mail, and not to client or HELO
   * restrictions evaluated before MAIL FROM (smtpd_delay_reject = no), which are outside any
   * transaction. Otherwise the action is skipped with a warning.
   */
  private canDelegate(r: PolicyRequest, source: string, action: string): boolean {
    if (r.where === 'ETRN') {
      this.log.warn(`access table ${source}: action ${action} is unavailable in smtpd_etrn_restrictions`);
      return false;
    }
    if (r.sender === null) {
      this.log.warn(`access table ${source}: with smtpd_delay_reject=no, action ${action} is always skipped in client or helo restrictions`);
      return false;
    }
    return true;
  }

  private whatsup(what: string, r: PolicyRequest, text: string): void {
    let line = `${r.queueId ?? 'NOQUEUE'}: ${what}: ${r.where} from ${r.clientName}[${r.clientAddr}]: ${text};`;
    if (r.sender !== null) line += ` from=<${r.sender}>`;
    if (r.recipient !== null) line += ` to=<${r.recipient}>`;
    line += ` proto=${r.protocol}`;
    if (r.helo) line += ` helo=<${r.helo}>`;
    this.log.info(line);
  }
}

function dsnClass(code: number, dsn: string): string {
  return `${Math.floor(code / 100)}${dsn.slice(1)}`;
}
