/**
 * The instances of a multi-instance configuration, as Postfix's postmulti(1) sees them: the
 * primary instance (the located configuration directory) first, then each directory of its
 * multi_instance_directories, each with its own config_directory, queue_directory and
 * data_directory, and its multi_instance_name, multi_instance_group, multi_instance_enable.
 *
 * Names and directories are claimed once: two instances with the same name or the same
 * directory stop postmulti with Postfix's "conflicts with" error, since two masters on one
 * queue would each take the other's mail.
 */
import path from 'node:path';
import { loadConfig, queueDirectory, type Config } from '../config/index.js';

export interface Instance {
  configDir: string;
  queueDir: string;
  dataDir: string;
  /** multi_instance_name, null when empty. */
  name: string | null;
  /** multi_instance_group, null when empty. */
  group: string | null;
  enabled: boolean;
  primary: boolean;
}

/** An error postmulti reports as "postmulti: fatal: text". */
export class MultiError extends Error {}

/** Instance names other than "-" start with this (Postfix's NAME_PREFIX). */
export const NAME_PREFIX = 'postfix-';

export type Selection =
  | { type: 'none' }
  | { type: 'all' }
  | { type: 'group'; name: string }
  | { type: 'name'; name: string };

const nullIfEmpty = (s: string) => (s === '' ? null : s);

/** The primary's and every secondary's settings; a secondary that does not load is fatal, as in Postfix. */
export class InstanceTable {
  readonly list: Instance[] = [];
  private claims = new Map<string, string>();

  constructor(readonly primaryConfig: Config) {}

  static load(primary: Config): InstanceTable {
    const t = new InstanceTable(primary);
    const secondaries = secondaryDirs(primary);
    const p = primaryInstance(primary);
    if (secondaries.length === 0) p.enabled = true; // single-instance mode
    t.append(p);
    for (const dir of secondaries) t.append(loadInstance(dir));
    return t;
  }

  /** register_claim(): a value belongs to one instance's parameter. */
  claim(configDir: string, param: string, value: string): void {
    const requestor = `${configDir}, ${param}`;
    const owner = this.claims.get(value);
    if (owner === undefined) this.claims.set(value, requestor);
    else if (owner !== requestor) throw new MultiError(`instance ${configDir}, ${param}=${value} conflicts with instance ${owner}=${value}`);
  }

  claimedBy(value: string): string | undefined {
    return this.claims.get(value);
  }

  private claimAll(ip: Instance): void {
    if (ip.name) this.claim(ip.configDir, 'multi_instance_name', ip.name);
    this.claim(ip.configDir, 'config_directory', ip.configDir);
    this.claim(ip.configDir, 'queue_directory', ip.queueDir);
    this.claim(ip.configDir, 'data_directory', ip.dataDir);
  }

  append(ip: Instance): void {
    this.claimAll(ip);
    this.list.push(ip);
  }

  /** insert_instance(): before the first secondary the selection matches (-a: the first). */
  insert(ip: Instance, selection: Selection): void {
    this.claimAll(ip);
    if (selection.type !== 'none') {
      const at = this.list.findIndex((x) => !x.primary && matches(x, selection));
      if (at >= 0) {
        this.list.splice(at, 0, ip);
        return;
      }
      if (selection.type !== 'all') throw new MultiError('No matching secondary instances');
    }
    this.list.push(ip);
  }

  secondaries(): Instance[] {
    return this.list.filter((x) => !x.primary);
  }
}

export function secondaryDirs(primary: Config): string[] {
  return primary.get('multi_instance_directories').split(/[\s,]+/).filter(Boolean);
}

export function primaryInstance(c: Config): Instance {
  return {
    configDir: c.configDirectory ?? c.get('config_directory'),
    queueDir: queueDirectory(c),
    dataDir: c.get('data_directory'),
    name: nullIfEmpty(c.get('multi_instance_name')),
    group: nullIfEmpty(c.get('multi_instance_group')),
    enabled: c.get('multi_instance_enable') === 'yes',
    primary: true,
  };
}

/** load_instance(): the five parameters, expanded in the instance's own main.cf. */
export function loadInstance(dir: string): Instance {
  let c: Config;
  try {
    c = loadConfig(dir);
  } catch (err) {
    throw new MultiError(`Cannot parse ${dir}/main.cf file: ${(err as Error).message}`);
  }
  const enable = c.get('multi_instance_enable');
  if (enable !== 'yes' && enable !== 'no') throw new MultiError(`Unexpected ${dir}/main.cf entry: multi_instance_enable = ${enable}`);
  return {
    configDir: dir,
    queueDir: queueDirectory(c),
    dataDir: path.resolve(dir, c.get('data_directory')),
    name: nullIfEmpty(c.get('multi_instance_name')),
    group: nullIfEmpty(c.get('multi_instance_group')),
    enabled: enable === 'yes',
    primary: false,
  };
}

/**
 * match_instance_selection(): by name, by the name without "postfix-", by configuration
 * directory (a name starting with "/", or an instance without a name), "-" for the primary.
 */
export function matches(ip: Instance, sel: Selection): boolean {
  switch (sel.type) {
    case 'none': return false;
    case 'all': return true;
    case 'group': return ip.group !== null && ip.group === sel.name;
    case 'name': {
      const name = sel.name;
      let iname: string;
      if (name.startsWith('/') || ip.name === null) iname = ip.configDir;
      else if (!name.startsWith(NAME_PREFIX) && ip.name.startsWith(NAME_PREFIX)) iname = ip.name.slice(NAME_PREFIX.length);
      else iname = ip.name;
      return name === iname || (ip.primary && name === '-');
    }
  }
}

/** make_private_path(): the primary's directory with its last component replaced by the name. */
export function privatePath(param: string, primaryValue: string, name: string | undefined): string {
  if (!name) throw new MultiError(`Missing ${param} parameter value`);
  if (!primaryValue.startsWith('/')) throw new MultiError(`Invalid default ${param} parameter value: '${primaryValue}': specify an absolute pathname`);
  const base = primaryValue.replace(/\/+$/, '').replace(/\/[^/]*$/, '');
  return `${base}/${name}`;
}
