/** Rewrite and resolve settings of one configuration, and the tables they use. */
import type { Config } from '../../src/config/index.js';
import type { RewriteReply, RewriteRequest, ResolveReply } from '../protocol.js';
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

/** Everything one trivial-rewrite (or an in-process fallback) needs, built once per configuration. */
export class TrivialRewrite {
  readonly rewrite: RewriteSettings;
  readonly resolve: ResolveSettings;
  tables: TableSet;

  constructor(config: Config) {
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
    if (req.op === 'resolve') return resolveAddress(req.address, this.resolve, this.tables, req.sender);
    throw new Error(`trivial-rewrite: unknown request ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
}
