/** Rewrite and resolve settings of one configuration, and the tables they use. */
import type { Config } from '../config/index.js';
import type { RewriteReply, RewriteRequest, ResolveReply } from './protocol.js';
import { rewriteAddress, type RewriteSettings } from './rewrite.js';
import { domainListProblems, openTables, resolveAddress, resolveSettings, type ResolveSettings, type TableSet } from './resolve.js';

export function rewriteSettings(config: Config): RewriteSettings {
  return {
    myorigin: config.get('myorigin').trim(),
    mydomain: config.get('mydomain').trim(),
    swapBangpath: config.getBool('swap_bangpath'),
    allowPercentHack: config.getBool('allow_percent_hack'),
    appendAtMyorigin: config.getBool('append_at_myorigin'),
    appendDotMydomain: config.getBool('append_dot_mydomain'),
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

/** The configuration probes are resolved with: main.cf with the address_verify_* values in place. */
export function verifyConfig(config: Config): Config {
  const changed = Object.entries(VERIFY_OVERRIDES).filter(([base, v]) => config.get(v) !== config.get(base));
  if (changed.length === 0) return config;
  return config.withOverrides(Object.fromEntries(changed.map(([base, v]) => [base, config.get(v)])));
}

/** Everything one trivial-rewrite (or an in-process fallback) needs, built once per configuration. */
export class TrivialRewrite {
  readonly rewrite: RewriteSettings;
  readonly resolve: ResolveSettings;
  tables: TableSet;
  /** Probes' resolve settings (address_verify_*), made on the first probe. */
  private verifySide: TrivialRewrite | null | undefined;

  constructor(private readonly config: Config, verifySide = true) {
    if (!verifySide) this.verifySide = null;
    this.rewrite = rewriteSettings(config);
    // A domain list whose table or file cannot be read must not be taken as "no such domain":
    // every resolve then fails temporarily (4.3.0, the reason in the log) until it is fixed.
    const problems = domainListProblems(config);
    const broken = Object.fromEntries(problems.map((p) => [p.slice(0, p.indexOf(':')), '']));
    this.resolve = resolveSettings(problems.length > 0 ? config.withOverrides(broken) : config);
    this.tables = openTables(config);
    if (problems.length > 0) this.tables = { ...this.tables, broken: problems.join('; ') };
  }

  handle(req: RewriteRequest): RewriteReply | Promise<ResolveReply> {
    if (req.op === 'rewrite') return { address: rewriteAddress(req.address, req.context, this.rewrite) };
    if (req.op === 'resolve' && req.verify && this.verifySide !== null) {
      if (this.verifySide === undefined) {
        const vc = verifyConfig(this.config);
        this.verifySide = vc === this.config ? null : new TrivialRewrite(vc, false);
      }
      if (this.verifySide) return this.verifySide.handle({ ...req, verify: false });
    }
    if (req.op === 'resolve') return resolveAddress(req.address, this.resolve, this.tables, req.sender);
    throw new Error(`trivial-rewrite: unknown request ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}
