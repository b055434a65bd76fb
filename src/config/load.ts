// Loading a configuration: from a directory (-c DIR or POSTACTOR_CONFIG) or
// the embedded default, with load-time validation (syntax, $-expansion,
// typed values of known parameters) and postconf-style warnings; and
// rebuilding a Config from its JSON form inside worker threads.

import fs from 'node:fs';
import path from 'node:path';
import { ConfigImpl, EMBEDDED_DIR, type Config, type ConfigJSON, type Origin, type Setting } from './config.js';
import { DEFAULTS, splitTransportParam } from './defaults.js';
import { checkValue, declaration, type Declaration } from './params/registry.js';
import { REFUSED_VALUES } from './params/support.js';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF } from './embedded.js';
import { ConfigError, configError } from './errors.js';
import { referencedNames } from './expand.js';
import { parseMainCf } from './main-cf.js';
import { parseMasterCf } from './master-cf.js';
import { isServiceParameter, serviceParameterNames } from './service-params.js';
import { locateConfigDirectory } from './locate.js';

/**
 * The declaration whose type and bounds a name follows (per-transport names: their default_
 * name's; service-defined names such as policyd-spf_time_limit: their default's).
 */
function typeDeclaration(name: string, services: Config['services']): Declaration | undefined {
  const d = declaration(name);
  if (d !== undefined) return d;
  const fallback = serviceParameterNames(services).get(name);
  if (fallback !== undefined) return declaration(fallback.slice(1));
  const tp = splitTransportParam(name);
  return tp === null ? undefined : declaration(tp.fallback);
}

/** Expands and type-checks one explicit setting; returns the error, if any. */
function checkSetting(config: ConfigImpl, name: string, origin: Origin): ConfigError | null {
  try {
    const value = config.get(name);
    const d = typeDeclaration(name, config.services);
    const wrong = d === undefined ? null : checkValue({ ...d, name }, value);
    return wrong === null ? null : configError(origin.file, origin.line, wrong);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
}

/** Values that mean the same as the default: compared with blanks and commas folded. */
function sameAsDefault(config: ConfigImpl, d: Declaration, name: string): boolean {
  const fold = (v: string): string => v.replace(/[\s,]+/g, ' ').trim().toLowerCase();
  const value = fold(config.get(name));
  if (d.fixed !== undefined && value === fold(d.fixed)) return true;
  if (value === fold(config.expandDefault(name))) return true;
  // "none" is the TLS levels' off value, which their empty default means too.
  return d.name.endsWith('_security_level') && d.default === '' && value === 'none';
}

/**
 * The honesty rules for one explicit setting (main.cf or -o): a refused parameter set to
 * anything but its default is a refusal (`postactor check`, start and reload stop on it; the
 * admin commands still run); any other parameter Postactor does not implement gets one
 * warning.
 */
function honesty(config: ConfigImpl, target: ConfigImpl, name: string, raw: string, origin: Origin): void {
  const d = declaration(name);
  if (d === undefined) return;
  const where = origin.line != null ? `${origin.file}:${origin.line}` : origin.file;
  const shown = `${name} = ${raw}`;
  if (d.support === 'implemented') {
    // An implemented parameter with a value Postactor cannot honour (smtp_tls_security_level = dane).
    const why = REFUSED_VALUES[name]?.[config.get(name).trim().toLowerCase()];
    if (why !== undefined) {
      const text = `${where}: ${shown}: not supported by Postactor (${why}); remove it or choose another value`;
      if (!target.refusals.includes(text)) target.refusals.push(text);
    }
    return;
  }
  if (sameAsDefault(config, d, name)) return;
  if (d.support === 'refused') {
    const text = `${where}: ${shown}: not supported by Postactor (${d.refusal}); remove it or set it to its default "${d.default}"`;
    if (!target.refusals.includes(text)) target.refusals.push(text);
  } else {
    target.warn(`${where}: ${shown}: not supported by Postactor, ignored`);
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
  for (const [name, { value, line }] of main.params) {
    const origin = { file: mainFile, line };
    const err = checkSetting(config, name, origin);
    if (err !== null) errors.push(err);
    else honesty(config, config, name, value, origin);
  }
  for (const s of master.services) {
    if (Object.keys(s.overrides).length === 0) continue;
    const origin = { file: masterFile, line: s.line };
    const sc = config.withOverrides(s.overrides, origin) as ConfigImpl;
    for (const [name, value] of Object.entries(s.overrides)) {
      const err = checkSetting(sc, name, origin);
      if (err !== null && !errors.some((e) => e.message === err.message)) errors.push(err);
      else if (err === null) honesty(sc, config, name, value, origin);
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
 * or empty, the directory is located as Postfix's commands do (locate.ts:
 * MAIL_CONFIG, POSTACTOR_CONFIG, /etc/postactor), else the embedded default.
 * A directory must hold both main.cf and master.cf, as with Postfix.
 */
export function loadConfig(dir?: string | null): Config {
  const chosen = locateConfigDirectory(dir).dir;
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


