/** Rewrite and resolve settings of one configuration, and the tables they use. */
import type { Config, MasterService } from '../config/index.js';
import { readParams, valuesOf, type ParamSpec, type Params } from '../config/declared.js';
import type { RewriteReply, RewriteRequest, ResolveReply } from './protocol.js';
import { rewriteAddress, type RewriteSettings } from './rewrite.js';
import { domainListProblems, openTables, resolveAddress, resolveSettings, RESOLVE_PARAMS, RESOLVE_TABLE_PARAMS, type ResolveSettings, type TableSet } from './resolve.js';

/** master.cf's trivial-rewrite service (the one qmgr asks to resolve; smtpd warms it), if any. */
export function rewriteService(config: Config): MasterService | undefined {
  return config.services.find((s) => s.command === 'trivial-rewrite');
}

/** What rewriting reads, declared (src/config/declared.ts). */
export const REWRITE_PARAMS = {
  'myorigin': 'str', 'mydomain': 'str', 'swap_bangpath': 'bool', 'allow_percent_hack': 'bool',
  'append_at_myorigin': 'bool', 'append_dot_mydomain': 'bool',
} as const satisfies ParamSpec;

export function rewriteSettings(from: Config | Params<typeof REWRITE_PARAMS>): RewriteSettings {
  const p = valuesOf(from, REWRITE_PARAMS, 'rewrite');
  return {
    myorigin: p.myorigin.trim(),
    mydomain: p.mydomain.trim(),
    swapBangpath: p.swap_bangpath,
    allowPercentHack: p.allow_percent_hack,
    appendAtMyorigin: p.append_at_myorigin,
    appendDotMydomain: p.append_dot_mydomain,
  };
}

/**
 * The address_verify_* parameters and the ones they replace when an address verification probe
 * is resolved (Postfix's trivial-rewrite keeps a second resolve table for "verify" requests).
 * Each defaults to the parameter it replaces, so probes go the way mail goes unless told.
 */
export const VERIFY_OVERRIDES: Readonly<Record<string, string>> = {
  relayhost: 'address_verify_relayhost',
  transport_maps: 'address_verify_transport_maps',
  local_transport: 'address_verify_local_transport',
  virtual_transport: 'address_verify_virtual_transport',
  relay_transport: 'address_verify_relay_transport',
  default_transport: 'address_verify_default_transport',
  sender_dependent_relayhost_maps: 'address_verify_sender_dependent_relayhost_maps',
  sender_dependent_default_transport_maps: 'address_verify_sender_dependent_default_transport_maps',
};

/** The probes' own parameters (the values of VERIFY_OVERRIDES). */
const VERIFY_PARAMS = {
  'address_verify_relayhost': 'str', 'address_verify_transport_maps': 'list',
  'address_verify_local_transport': 'str', 'address_verify_virtual_transport': 'str',
  'address_verify_relay_transport': 'str', 'address_verify_default_transport': 'str',
  'address_verify_sender_dependent_relayhost_maps': 'list',
  'address_verify_sender_dependent_default_transport_maps': 'list',
} as const satisfies ParamSpec;

/**
 * Everything trivial-rewrite reads, declared: the service spreads it into its own declaration
 * (one reading per thread); an in-process fallback (qmgr's) has it read from its configuration.
 */
export const TRIVIAL_REWRITE_PARAMS = {
  ...REWRITE_PARAMS,
  ...RESOLVE_PARAMS,
  ...RESOLVE_TABLE_PARAMS,
  ...VERIFY_PARAMS,
} as const satisfies ParamSpec;
export type TrivialRewriteParams = Params<typeof TRIVIAL_REWRITE_PARAMS>;

/** The values probes are resolved with: the address_verify_* values in place, or null when none differs. */
function verifyParams(p: TrivialRewriteParams): TrivialRewriteParams | null {
  const v = p as unknown as Readonly<Record<string, string | string[]>>;
  const changed = Object.entries(VERIFY_OVERRIDES).filter(([base, alt]) => String(v[alt]) !== String(v[base]));
  if (changed.length === 0) return null;
  return { ...p, ...Object.fromEntries(changed.map(([base, alt]) => [base, v[alt]])) };
}

/** Everything one trivial-rewrite (or an in-process fallback) needs, built once per configuration. */
export class TrivialRewrite {
  readonly rewrite: RewriteSettings;
  readonly resolve: ResolveSettings;
  tables: TableSet;
  /** Probes' resolve settings (address_verify_*), made on the first probe. */
  private verifySide: TrivialRewrite | null | undefined;
  private readonly params: TrivialRewriteParams;

  constructor(private readonly config: Config, params?: TrivialRewriteParams, verifySide = true) {
    const p = params ?? readParams(config, TRIVIAL_REWRITE_PARAMS, 'trivial-rewrite');
    this.params = p;
    if (!verifySide) this.verifySide = null;
    this.rewrite = rewriteSettings(p);
    // A domain list whose table or file cannot be read must not be taken as "no such domain":
    // every resolve then fails temporarily (4.3.0, the reason in the log) until it is fixed.
    const problems = domainListProblems(p);
    const broken = Object.fromEntries(problems.map((q) => [q.slice(0, q.indexOf(':')), []]));
    this.resolve = resolveSettings(problems.length > 0 ? { ...p, ...broken } : p);
    this.tables = openTables(config, p);
    if (problems.length > 0) this.tables = { ...this.tables, broken: problems.join('; ') };
  }

  handle(req: RewriteRequest): RewriteReply | Promise<ResolveReply> {
    if (req.op === 'rewrite') return { address: rewriteAddress(req.address, req.context, this.rewrite) };
    if (req.op === 'resolve' && req.verify && this.verifySide !== null) {
      if (this.verifySide === undefined) {
        const vp = verifyParams(this.params);
        this.verifySide = vp === null ? null : new TrivialRewrite(this.config, vp, false);
      }
      if (this.verifySide) return this.verifySide.handle({ ...req, verify: false });
    }
    if (req.op === 'resolve') return resolveAddress(req.address, this.resolve, this.tables, req.sender);
    throw new Error(`trivial-rewrite: unknown request ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}
