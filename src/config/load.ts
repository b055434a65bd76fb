// Loading a configuration: from a directory (-c DIR or POSTACTOR_CONFIG) or
// the embedded default, with load-time validation (syntax, $-expansion,
// typed values of known parameters) and postconf-style warnings; and
// rebuilding a Config from its JSON form inside worker threads.

import fs from 'node:fs';
import path from 'node:path';
import { ConfigImpl, EMBEDDED_DIR, type Config, type ConfigJSON, type Setting } from './config.js';
import { DEFAULTS, TIME_UNITS, splitTransportParam } from './defaults.js';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from './embedded.js';
import { ConfigError, configError } from './errors.js';
import { referencedNames } from './expand.js';
import { parseMainCf } from './main-cf.js';
import { parseMasterCf } from './master-cf.js';
import { isServiceParameter } from './service-params.js';

/** Names whose numeric-looking default still accepts other forms. */
const UNTYPED = new Set(['compatibility_level']);

/** Value kind of a known parameter, inferred from its Postfix default. */
function paramKind(name: string): 'time' | 'int' | 'bool' | null {
  const tp = splitTransportParam(name);
  const base = !Object.hasOwn(DEFAULTS, name) && tp !== null ? tp.fallback : name;
  if (Object.hasOwn(TIME_UNITS, base)) return 'time';
  if (UNTYPED.has(base) || base.endsWith('_feedback') || !Object.hasOwn(DEFAULTS, base)) return null;
  const def = DEFAULTS[base]!;
  if (/^\d+$/.test(def)) return 'int';
  if (def === 'yes' || def === 'no') return 'bool';
  return null;
}

/** Expands and type-checks one explicit setting; returns the error, if any. */
function checkSetting(config: Config, name: string): ConfigError | null {
  try {
    config.get(name);
    const kind = paramKind(name);
    if (kind === 'time') config.getTime(name);
    else if (kind === 'int') config.getInt(name);
    else if (kind === 'bool') config.getBool(name);
    return null;
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
}

/**
 * Builds and validates a Config from main.cf and master.cf text. Throws a
 * ConfigError listing every problem (one per line) when anything is wrong.
 */
export function buildConfig(
  configDirectory: string | null,
  mainText: string,
  masterText: string,
  preErrors: ConfigError[] = [],
): Config {
  const base = configDirectory ?? EMBEDDED_DIR;
  const mainFile = path.join(base, 'main.cf');
  const masterFile = path.join(base, 'master.cf');
  const main = parseMainCf(mainText, mainFile);
  const master = parseMasterCf(masterText, masterFile);
  const errors: ConfigError[] = [...preErrors, ...main.errors, ...master.errors];

  const settings = new Map<string, Setting>();
  for (const [name, { value, line }] of main.params) settings.set(name, { value, file: mainFile, line });
  const config = new ConfigImpl(configDirectory, settings, master.services, []);

  // postconf-style "unused parameter" warnings. Format (without postconf's
  // "postconf: warning: " prefix; callers log these as warnings):
  //   FILE: unused parameter: name=value
  // A name is used when it is built in, a per-transport name of a master.cf
  // service, or referenced as $name by some main.cf or -o value.
  const referenced = new Set<string>();
  for (const { value } of main.params.values()) for (const n of referencedNames(value)) referenced.add(n);
  for (const s of master.services) {
    for (const v of Object.values(s.overrides)) for (const n of referencedNames(v)) referenced.add(n);
  }
  const used = (name: string): boolean => Object.hasOwn(DEFAULTS, name) || referenced.has(name) || isServiceParameter(name, master.services);
  for (const [name, { value }] of main.params) {
    if (!used(name)) config.warn(`${mainFile}: unused parameter: ${name}=${value}`);
  }
  for (const s of master.services) {
    for (const [name, value] of Object.entries(s.overrides)) {
      if (!used(name) && !main.params.has(name)) config.warn(`${masterFile}: unused parameter: ${name}=${value}`);
    }
  }

  // Expand (and type-check) every explicit setting now, so that a bad value
  // stops the server at startup rather than inside a worker.
  for (const name of main.params.keys()) {
    const err = checkSetting(config, name);
    if (err !== null) errors.push(err);
  }
  for (const s of master.services) {
    if (Object.keys(s.overrides).length === 0) continue;
    const sc = config.withOverrides(s.overrides, { file: masterFile, line: s.line });
    for (const name of Object.keys(s.overrides)) {
      const err = checkSetting(sc, name);
      if (err !== null && !errors.some((e) => e.message === err.message)) errors.push(err);
    }
    for (const w of sc.warnings) config.warn(w);
  }
  if (errors.length > 0) throw new ConfigError(errors.map((e) => e.message).join('\n'));
  return config;
}

function readConfigFile(file: string, errors: ConfigError[]): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    errors.push(configError(file, null, code === 'ENOENT' ? 'file not found' : `cannot read file: ${code ?? String(err)}`));
    return '';
  }
}

/**
 * Loads the configuration. dir comes from -c DIR; when it is null, undefined
 * or empty, POSTACTOR_CONFIG is used; when that is unset too, the embedded
 * default. A directory must hold both main.cf and master.cf, as with Postfix.
 */
export function loadConfig(dir?: string | null): Config {
  const chosen = dir || process.env.POSTACTOR_CONFIG || null;
  if (chosen === null) return buildConfig(null, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF);
  const abs = path.resolve(chosen);
  let isDir = false;
  try {
    isDir = fs.statSync(abs).isDirectory();
  } catch {
    throw configError(abs, null, 'configuration directory not found');
  }
  if (!isDir) throw configError(abs, null, 'not a directory');
  const errors: ConfigError[] = [];
  const mainText = readConfigFile(path.join(abs, 'main.cf'), errors);
  const masterText = readConfigFile(path.join(abs, 'master.cf'), errors);
  if (errors.length > 0) throw new ConfigError(errors.map((e) => e.message).join('\n'));
  return buildConfig(abs, mainText, masterText);
}

/** Rebuilds a Config from toJSON() output (e.g. in a worker thread). No re-validation. */
export function configFromJSON(j: ConfigJSON): Config {
  const mainFile = path.join(j.configDirectory ?? EMBEDDED_DIR, 'main.cf');
  const settings = new Map<string, Setting>();
  for (const [name, value] of Object.entries(j.params)) {
    const o = j.origins?.[name];
    settings.set(name, { value, file: o?.file ?? mainFile, line: o?.line ?? null });
  }
  const services = j.services.map((s) => ({ ...s, args: [...s.args], overrides: { ...s.overrides } }));
  return new ConfigImpl(j.configDirectory, settings, services, [...(j.warnings ?? [])]);
}


