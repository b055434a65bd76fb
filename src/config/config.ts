// The Config object: parameter lookup with Postfix semantics (explicit
// setting, else built-in default, else per-transport fallback), $-expansion
// with loop detection, typed getters (int, bool, time, size, list), master.cf
// service lookup, -o overrides, and a structured-clone-able JSON form.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, configError } from './errors.js';
import { DEFAULTS, TIME_UNITS, domainOf, splitTransportParam, transportDefaultName, type TimeUnit } from './defaults.js';
import { expandValue } from './expand.js';
import { declaration, parseTime } from './params/registry.js';
import type { MasterService, ServiceType } from './master-cf.js';

/** Where an explicit setting came from (main.cf line, master.cf -o line). */
export interface Origin {
  file: string;
  line: number | null;
}

export interface Setting extends Origin {
  value: string;
}

export interface ConfigJSON {
  configDirectory: string | null;
  params: Record<string, string>;
  services: MasterService[];
  /** Optional extension: origins of params, so that errors in workers keep file:line. */
  origins?: Record<string, Origin>;
  /** Optional extension: load-time warnings. */
  warnings?: string[];
}

export interface Config {
  readonly configDirectory: string | null;
  readonly services: readonly MasterService[];
  readonly warnings: readonly string[];
  /**
   * Settings of parameters Postactor refuses (not built, and their absence would weaken
   * security or lose mail), as "file:line: name = value: not supported by Postactor (why)…".
   * `postactor check`, start and reload stop on them; the admin commands do not.
   */
  readonly refusals: readonly string[];
  /** Adds a load-time warning (once): the caller logs config.warnings. */
  warn(text: string): void;
  get(name: string): string;
  raw(name: string): string | undefined;
  isSet(name: string): boolean;
  /** Where the value of name is set (main.cf line, master.cf -o line; line null when not in a file). */
  originOf(name: string): Origin;
  getInt(name: string): number;
  getBool(name: string): boolean;
  getTime(name: string): number;
  getSize(name: string): number;
  getList(name: string): string[];
  service(name: string, type?: ServiceType): MasterService | undefined;
  withOverrides(overrides: Record<string, string>, origin?: Origin): Config;
  toJSON(): ConfigJSON;
}

export { parseTime } from './params/registry.js';

/** The pseudo file name used for the embedded default configuration. */
export const EMBEDDED_DIR = '(embedded)';

export class ConfigImpl implements Config {
  readonly configDirectory: string | null;
  readonly services: readonly MasterService[];
  readonly warnings: string[];
  readonly refusals: string[] = [];
  private readonly settings: Map<string, Setting>;
  private readonly mainFile: string;
  private readonly expanding: string[] = [];

  constructor(configDirectory: string | null, settings: Map<string, Setting>, services: readonly MasterService[], warnings: string[]) {
    this.configDirectory = configDirectory;
    this.settings = settings;
    this.services = services;
    this.warnings = warnings;
    this.mainFile = path.join(configDirectory ?? EMBEDDED_DIR, 'main.cf');
  }

  /** Explicit settings (main.cf plus applied overrides), for loaders and postconf -n. */
  explicit(): ReadonlyMap<string, Setting> {
    return this.settings;
  }

  raw(name: string): string | undefined {
    return this.settings.get(name)?.value;
  }

  isSet(name: string): boolean {
    return this.settings.has(name);
  }

  /** True when get(name) would not throw "unknown parameter". */
  isKnown(name: string): boolean {
    return this.settings.has(name) || Object.hasOwn(DEFAULTS, name) || splitTransportParam(name) !== null;
  }

  get(name: string): string {
    const v = this.lookup(name);
    if (v === undefined) throw configError(this.mainFile, null, `unknown parameter ${name}`);
    return v;
  }

  /** Unexpanded value that get() would expand: explicit, else default; undefined if unknown. */
  private rawOrDefault(name: string): string | undefined {
    const s = this.settings.get(name);
    if (s !== undefined) return s.value;
    if (name === 'mydomain') return domainOf(this.lookup('myhostname') ?? '');
    if (name === 'config_directory' && this.configDirectory !== null) return this.configDirectory.replaceAll('$', '$$');
    if (Object.hasOwn(DEFAULTS, name)) return DEFAULTS[name];
    const tp = splitTransportParam(name);
    if (tp !== null) return `$${tp.fallback}`;
    return undefined;
  }

  /** The built-in default of name, expanded against this configuration ("" if it cannot be). */
  expandDefault(name: string): string {
    const raw = Object.hasOwn(DEFAULTS, name) ? DEFAULTS[name]! : '';
    try {
      return expandValue(raw, {
        lookup: (n) => this.lookup(n),
        onUndefined: () => undefined,
        fail: (text) => {
          throw new ConfigError(text);
        },
      });
    } catch {
      return raw;
    }
  }

  /** Where the value of name is set, following plain "$other" defaults. */
  originOf(name: string, depth = 0): Origin {
    const s = this.settings.get(name);
    if (s !== undefined) return s;
    const raw = depth < 20 ? this.rawOrDefault(name) : undefined;
    const m = raw === undefined ? null : /^\$\{?([A-Za-z0-9_]+)\}?$/.exec(raw);
    if (m !== null) return this.originOf(m[1]!, depth + 1);
    return { file: this.mainFile, line: null };
  }

  /** Expanded values: a Config never changes after construction (withOverrides makes a new one). */
  private readonly expanded = new Map<string, string | undefined>();

  private lookup(name: string): string | undefined {
    if (this.expanded.has(name)) return this.expanded.get(name);
    const value = this.expand(name);
    this.expanded.set(name, value);
    return value;
  }

  private expand(name: string): string | undefined {
    const raw = this.rawOrDefault(name);
    if (raw === undefined) return undefined;
    if (!raw.includes('$')) return raw;
    // Postfix's raw parameters (smtpd_reject_footer, forward_path …) are read without $name
    // expansion: their $names are the reader's own (the session's, the recipient's).
    if (this.settings.has(name) && declaration(name)?.type === 'raw') return raw;
    const at = this.expanding.indexOf(name);
    if (at >= 0) {
      const chain = [...this.expanding.slice(at), name].join(' -> ');
      const o = this.originOf(name);
      this.expanding.length = 0;
      throw configError(o.file, o.line, `recursive expansion: ${chain}`);
    }
    this.expanding.push(name);
    try {
      const origin = this.settings.get(name) ?? { file: this.mainFile, line: null };
      return expandValue(raw, {
        lookup: (n) => this.lookup(n),
        onUndefined: (n) => this.warn(`${origin.file}: undefined parameter: ${n}`),
        fail: (text) => {
          throw configError(origin.file, origin.line, `parameter ${name}: ${text}`);
        },
      });
    } finally {
      this.expanding.pop();
    }
  }

  warn(text: string): void {
    if (!this.warnings.includes(text)) this.warnings.push(text);
  }

  private bad(name: string, what: string, value: string): never {
    const o = this.originOf(name);
    throw configError(o.file, o.line, `bad ${what} parameter value: ${name} = ${value}`);
  }

  getInt(name: string): number {
    const v = this.get(name).trim();
    if (!/^[-+]?\d+$/.test(v)) this.bad(name, 'numerical', v);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) this.bad(name, 'numerical', v);
    return n;
  }

  getBool(name: string): boolean {
    const v = this.get(name).trim().toLowerCase();
    if (v === 'yes' || v === 'true') return true;
    if (v === 'no' || v === 'false') return false;
    return this.bad(name, 'boolean', this.get(name));
  }

  getTime(name: string): number {
    const v = this.get(name);
    const t = parseTime(v, timeUnitOf(name));
    if (t === null) this.bad(name, 'time', v);
    return t!;
  }

  getSize(name: string): number {
    const v = this.get(name).trim();
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) this.bad(name, 'size', v);
    return Number(v);
  }

  /** Items separated by whitespace or commas; `{ … }` groups stay whole (`inline:{ a=1, b=2 }`). */
  getList(name: string): string[] {
    const value = this.get(name);
    const items: string[] = [];
    let depth = 0;
    let item = '';
    for (const ch of value) {
      if (ch === '{') depth++;
      else if (ch === '}' && depth > 0) depth--;
      if (depth === 0 && (ch === ',' || ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r')) {
        if (item) items.push(item);
        item = '';
      } else {
        item += ch;
      }
    }
    if (item) items.push(item);
    return items;
  }

  service(name: string, type?: ServiceType): MasterService | undefined {
    const candidates = type === undefined ? this.services : this.services.filter((s) => s.type === type);
    const exact = candidates.find((s) => s.name === name);
    if (exact !== undefined) return exact;
    return candidates.find((s) => {
      if (s.type !== 'inet') return false;
      const colon = s.name.lastIndexOf(':');
      return colon >= 0 && s.name.slice(colon + 1) === name;
    });
  }

  withOverrides(overrides: Record<string, string>, origin?: Origin): Config {
    const settings = new Map(this.settings);
    const o: Origin = origin ?? { file: path.join(this.configDirectory ?? EMBEDDED_DIR, 'master.cf'), line: null };
    for (const [k, v] of Object.entries(overrides)) {
      settings.delete(k);
      settings.set(k, { value: v, file: o.file, line: o.line });
    }
    return new ConfigImpl(this.configDirectory, settings, this.services, [...this.warnings]);
  }

  toJSON(): ConfigJSON {
    const params: Record<string, string> = {};
    const origins: Record<string, Origin> = {};
    for (const [k, s] of this.settings) {
      params[k] = s.value;
      origins[k] = { file: s.file, line: s.line };
    }
    return {
      configDirectory: this.configDirectory,
      params,
      services: this.services.map((s) => ({ ...s, args: [...s.args], overrides: { ...s.overrides } })),
      origins,
      warnings: [...this.warnings],
    };
  }
}

/** Default unit of a time parameter (per-transport names use their default_ parameter's unit). */
export function timeUnitOf(name: string): TimeUnit {
  if (Object.hasOwn(TIME_UNITS, name)) return TIME_UNITS[name]!;
  const tp = splitTransportParam(name);
  if (tp !== null && Object.hasOwn(TIME_UNITS, tp.fallback)) return TIME_UNITS[tp.fallback]!;
  return 's';
}

/**
 * Value of <transport>_<suffix>, falling back to default_<suffix> (or, for
 * initial_destination_concurrency, to that parameter). Fully expanded string.
 */
export function transportParam(config: Config, transport: string, suffix: string): string {
  const name = `${transport}_${suffix}`;
  // Known per-transport names fall back inside get(); for other suffixes try
  // the transport-specific name, then the default_ name.
  try {
    return config.get(name);
  } catch (err) {
    if (!(err instanceof ConfigError) || !err.message.endsWith(`unknown parameter ${name}`)) throw err;
    return config.get(transportDefaultName(suffix));
  }
}

/** queue_directory as an absolute path (a relative value is taken from process.cwd()). */
/**
 * queue_directory as an absolute path. A relative value is resolved against the configuration
 * directory, or — for the embedded default — against the project's root, so that the server,
 * sendmail and the admin commands find the same queue from any working directory.
 */
export function queueDirectory(config: Config): string {
  const base = config.configDirectory ?? PROJECT_ROOT;
  return path.resolve(base, config.get('queue_directory'));
}

/** The project's root directory (this file is dist/src/config/config.js there). */
export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
