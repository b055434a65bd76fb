/**
 * The quick configuration read of the short-lived commands (sendmail, mailq, postqueue -p):
 * the few main.cf values such a command needs, without loading the parameter registry, the
 * defaults table and the whole-configuration validation (src/config/load.ts). Those cost a
 * Node command more time than the rest of a submission (bench/sendmail), while Postfix's
 * sendmail and postqueue read only the parameters they use.
 *
 * It finds the directory as every command does (locate.ts), reads main.cf and master.cf and
 * parses both with the loader's own parsers, then $-expands the requested names with the
 * loader's own expansion. Whenever it is not sure to get what loadConfig() would get, it
 * returns null and the command loads the configuration the full way, which then reports any
 * problem in its usual words: a missing or unreadable file, a syntax error in either file, a
 * set-id caller with a directory to authorize, a value that refers to a parameter whose
 * default is not in QUICK_DEFAULTS, an undefined name, a recursive or malformed expansion.
 * What it does not do is type-check the parameters it does not read (as Postfix's commands do
 * not: each reads its own table).
 *
 * QUICK_DEFAULTS must equal the registry's defaults (DEFAULTS in defaults.ts): a test compares them.
 */
import { join, resolve } from 'node:path';
import { EMBEDDED_MAIN_CF } from './embedded.js';
import { expandValue } from './expand.js';
import { locateConfigDirectory } from './locate.js';
import { parseMainCf } from './main-cf.js';
import { parseMasterCf } from './master-cf.js';

// Not an ES module import of node:fs: see locate.ts.
const { readFileSync, statSync } = process.getBuiltinModule('node:fs');

/** Postactor's defaults of the parameters the quick commands read (and may refer to). */
export const QUICK_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  queue_directory: '/var/spool/postactor',
  message_size_limit: '10240000',
  empty_address_recipient: 'MAILER-DAEMON',
  enable_long_queue_ids: 'yes',
  authorized_submit_users: 'static:anyone',
  authorized_mailq_users: 'static:anyone',
  authorized_flush_users: 'static:anyone',
  mail_owner: 'postfix',
});

export interface QuickConfig {
  /** As Config.configDirectory: the resolved directory, null for the embedded default. */
  configDirectory: string | null;
  /** The expanded values of the names asked for. */
  values: Record<string, string>;
}

/** Thrown inside the expansion when the quick read cannot be sure: the caller returns null. */
class NotSure extends Error {}

function readOrNull(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * The expanded values of `names` for the configuration `dir` (-c; else the usual search), or
 * null when only loadConfig() can say (see the header).
 */
export function quickConfig(dir: string | undefined, names: readonly string[]): QuickConfig | null {
  let located;
  try {
    located = locateConfigDirectory(dir);
  } catch {
    return null;
  }
  let configDirectory: string | null = null;
  let mainText: string;
  if (located.dir === null) {
    mainText = EMBEDDED_MAIN_CF;
  } else {
    configDirectory = resolve(located.dir);
    try {
      if (!statSync(configDirectory).isDirectory()) return null;
    } catch {
      return null;
    }
    const main = readOrNull(join(configDirectory, 'main.cf'));
    const master = readOrNull(join(configDirectory, 'master.cf'));
    if (main === null || master === null) return null;
    if (parseMasterCf(master, join(configDirectory, 'master.cf')).errors.length > 0) return null;
    mainText = main;
  }
  const main = parseMainCf(mainText, 'main.cf');
  if (main.errors.length > 0) return null;

  const done = new Map<string, string>();
  const expanding = new Set<string>();
  const lookup = (name: string): string => {
    const known = done.get(name);
    if (known !== undefined) return known;
    let raw = main.params.get(name)?.value;
    if (raw === undefined && name === 'config_directory' && configDirectory !== null) raw = configDirectory.replaceAll('$', '$$');
    if (raw === undefined && Object.hasOwn(QUICK_DEFAULTS, name)) raw = QUICK_DEFAULTS[name];
    if (raw === undefined || expanding.has(name)) throw new NotSure();
    expanding.add(name);
    const value = raw.includes('$')
      ? expandValue(raw, { lookup, onUndefined: () => { throw new NotSure(); }, fail: () => { throw new NotSure(); } })
      : raw;
    expanding.delete(name);
    done.set(name, value);
    return value;
  };
  const values: Record<string, string> = {};
  try {
    for (const name of names) values[name] = lookup(name);
  } catch (err) {
    if (err instanceof NotSure) return null;
    throw err;
  }
  return { configDirectory, values };
}
