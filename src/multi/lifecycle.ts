/**
 * postmulti's life-cycle management (postmulti.c's manage() and the work of postmulti-script):
 * init, create, import, destroy, deport, enable, disable and assign, each changing main.cf
 * files (postconf -e, written atomically) and the instances' directories. Errors of
 * postmulti.c's part are MultiError ("postmulti: fatal: …"), those of the script's part
 * ScriptFatal ("$syslog_name/postmulti-script: fatal: …"), with Postfix's texts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF, loadConfig, type Config } from '../config/index.js';
import { editMainCf } from '../config/postconf.js';
import { masterAnswers } from '../queue/admin.js';
import { InstanceTable, loadInstance, matches, MultiError, NAME_PREFIX, primaryInstance, privatePath, type Instance, type Selection } from './instances.js';

export const EDIT_ACTIONS = ['create', 'destroy', 'import', 'deport', 'enable', 'disable', 'assign', 'init'] as const;
export type EditAction = (typeof EDIT_ACTIONS)[number];

/** What -e needs from the command line. */
export interface LifecycleRequest {
  selection: Selection;
  /** -I / -G ("-" given as ""). */
  name?: string;
  group?: string;
  /** param=value arguments of create / import. */
  args: string[];
  /** The directory of postmulti itself (multi_instance_wrapper). */
  binDir: string;
}

/** Parameters a new instance takes over from the primary (postmulti-script's SHARED_PARAMETERS). */
const SHARED_PARAMETERS = [
  'command_directory', 'daemon_directory', 'meta_directory', 'mail_owner', 'setgid_group', 'sendmail_path',
  'mailq_path', 'newaliases_path', 'html_directory', 'manpage_directory', 'sample_directory',
  'readme_directory', 'shlib_directory',
];

// ---------------------------------------------------------------------------------------------
// main.cf edits (postconf -e), written atomically.

export function editMain(dir: string, settings: Record<string, string>): void {
  const file = path.join(dir, 'main.cf');
  const text = fs.readFileSync(file, 'utf8');
  const result = editMainCf(text, new Map(Object.entries(settings)), 'set', file);
  for (const w of result.warnings) process.stderr.write(`postmulti: warning: ${w}\n`);
  if (result.text === text) return;
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, result.text, { mode: fs.statSync(file).mode & 0o7777 });
  fs.renameSync(tmp, file);
}

// ---------------------------------------------------------------------------------------------
// Life-cycle management (postmulti.c's manage() and postmulti-script).

/** An error of the helper script's part, reported as "$syslog_name/postmulti-script: fatal: text". */
export class ScriptFatal extends Error {}

function checkNames(name: string | undefined, group: string | undefined): void {
  const safe = (s: string) => /^[A-Za-z0-9!@%\-_=+:./]+$/.test(s);
  if (name) {
    if (!safe(name)) throw new MultiError(`Unsafe characters in new instance name: '${name}'`);
    if (name.includes('/')) throw new MultiError(`Illegal '/' character in new instance name: '${name}'`);
    if (!name.startsWith(NAME_PREFIX)) throw new MultiError(`New instance name must start with '${NAME_PREFIX}'`);
  }
  if (group && !safe(group)) throw new MultiError(`Unsafe characters in '-G ${group}'`);
}

/** The instance -i selects (unlink: destroy/deport, which never take the primary or an enabled one). */
function selectExisting(table: InstanceTable, sel: Selection, unlink: boolean): Instance {
  if (sel.type !== 'name') throw new MultiError("Select an instance via '-i name'");
  const at = table.list.findIndex((ip) => matches(ip, sel));
  if (at < 0) throw new MultiError(`No instance named ${sel.name}`);
  const ip = table.list[at]!;
  if (unlink) {
    if (ip.primary) throw new MultiError('Cannot remove the primary instance');
    if (ip.enabled) throw new MultiError('Cannot remove enabled instances');
    table.list.splice(at, 1);
  }
  return ip;
}

/** assign_new_parameter(): config_directory, queue_directory, data_directory = /absolute/path. */
function newParameter(ip: Partial<Instance>, action: EditAction, arg: string): void {
  const m = /^\s*([^\s=]+)\s*=\s*(.*?)\s*$/.exec(arg);
  if (!m) throw new MultiError(`Malformed parameter setting '${arg}'`);
  const [, name, raw] = m;
  const key = name === 'config_directory' ? 'configDir'
    : action !== 'import' && name === 'queue_directory' ? 'queueDir'
      : action !== 'import' && name === 'data_directory' ? 'dataDir' : null;
  if (key === null) throw new MultiError(`Parameter '${name}' not valid with action ${action}`);
  if (!raw!.startsWith('/')) throw new MultiError(`Parameter setting '${name}' is not an absolute path`);
  const value = raw!.length > 1 ? raw!.replace(/\/+$/, '') || '/' : raw!;
  if (value === '/') throw new MultiError(`Parameter setting '${name}' is the root directory`);
  ip[key] = value;
}

function newInstance(o: LifecycleRequest, action: EditAction, table: InstanceTable): Instance {
  checkNames(o.name, o.group);
  const primary = primaryInstance(table.primaryConfig);
  const ip: Partial<Instance> = {};
  for (const arg of o.args) newParameter(ip, action, arg);
  ip.configDir ??= privatePath('config_directory', primary.configDir, o.name);
  const owner = table.claimedBy(ip.configDir);
  if (owner !== undefined) throw new MultiError(`new config_directory=${ip.configDir} is already in use by instance ${owner}=${ip.configDir}`);
  if (action === 'import') {
    const loaded = loadInstance(ip.configDir);
    Object.assign(ip, { queueDir: loaded.queueDir, dataDir: loaded.dataDir, name: loaded.name, group: loaded.group, enabled: loaded.enabled });
  } else {
    ip.queueDir ??= privatePath('queue_directory', primary.queueDir, o.name);
    ip.dataDir ??= privatePath('data_directory', primary.dataDir, o.name);
  }
  const full: Instance = { configDir: ip.configDir, queueDir: ip.queueDir!, dataDir: ip.dataDir!, name: ip.name ?? null, group: ip.group ?? null, enabled: ip.enabled ?? false, primary: false };
  if (o.name !== undefined && o.name !== (full.name ?? '')) {
    table.claim(full.configDir, 'multi_instance_name', o.name);
    full.name = o.name || null;
  }
  if (o.group !== undefined) full.group = o.group || null;
  table.insert(full, o.selection);
  return full;
}

/** update_cfdirs(): the primary's multi_instance_directories, and alternate_config_directories. */
function updateDirectories(table: InstanceTable, dir: string, op: 'add' | 'del'): void {
  const primaryDir = table.list.find((x) => x.primary)!.configDir;
  const alt = table.primaryConfig.get('alternate_config_directories').split(/[\s,]+/).filter(Boolean);
  const keep = alt.filter((d) => d !== dir);
  const found = keep.length !== alt.length;
  const settings: Record<string, string> = { multi_instance_directories: table.secondaries().map((x) => x.configDir).join(' ') };
  if (op === 'add' && !found) settings['alternate_config_directories'] = [...keep, dir].join(' ');
  if (op === 'del' && found) settings['alternate_config_directories'] = keep.join(' ');
  editMain(primaryDir, settings);
}

/** assign_names(): "-" (here "") clears. */
function assignNames(ip: Instance, o: LifecycleRequest): void {
  const settings: Record<string, string> = {};
  if (o.name !== undefined) settings['multi_instance_name'] = o.name;
  if (o.group !== undefined) settings['multi_instance_group'] = o.group;
  if (Object.keys(settings).length) editMain(ip.configDir, settings);
}

/** The new instance's main.cf and master.cf, unless the directory already holds both (then: import as is). */
function createFiles(ip: Instance, action: EditAction, table: InstanceTable): void {
  const main = path.join(ip.configDir, 'main.cf');
  const master = path.join(ip.configDir, 'master.cf');
  if (fs.existsSync(main) && fs.existsSync(master)) return;
  if (action !== 'create') {
    if (!fs.existsSync(main)) throw new ScriptFatal(`'${ip.configDir}' lacks a main.cf file`);
    throw new ScriptFatal(`'${ip.configDir}' lacks a master.cf file`);
  }
  fs.mkdirSync(ip.configDir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(ip.queueDir, { recursive: true, mode: 0o755 });
  fs.mkdirSync(ip.dataDir, { recursive: true, mode: 0o700 });
  const primary = table.primaryConfig;
  const shared = SHARED_PARAMETERS.filter((p) => primary.isSet(p)).map((p): [string, string] => [p, primary.raw(p) ?? '']);
  const tmp = path.join(ip.configDir, '.tmp');
  fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
  // postconf -e on the prototype: settings it has are replaced in place, the others appended.
  const settings = new Map([...shared, ['queue_directory', ip.queueDir], ['data_directory', ip.dataDir]]);
  const text = editMainCf(EMBEDDED_MAIN_CF, settings, 'set', path.join(tmp, 'main.cf')).text;
  fs.writeFileSync(path.join(tmp, 'main.cf'), `# Made by "postmulti -e create" from Postactor's default main.cf (its main.cf.proto).\n${text}`, { mode: 0o644 });
  fs.writeFileSync(path.join(tmp, 'master.cf'), EMBEDDED_MASTER_CF, { mode: 0o644 });
  fs.renameSync(path.join(tmp, 'main.cf'), main);
  fs.renameSync(path.join(tmp, 'master.cf'), master);
  fs.rmdirSync(tmp);
}

async function running(ip: Instance): Promise<boolean> {
  try {
    return await masterAnswers(loadConfig(ip.configDir), 1000);
  } catch {
    return false;
  }
}

/** destroy: the instance's directories, emptied of what Postactor made; anything else stays, with a warning. */
async function removeInstance(ip: Instance, warn: (t: string) => void): Promise<void> {
  const store = path.join(ip.queueDir, 'queue.lmdb');
  let empty = true;
  if (fs.existsSync(store)) {
    // LMDB only here: with it loaded, process.exit() (every fatal error) can hang at exit.
    const { QueueStore } = await import('../queue/store.js');
    const s = QueueStore.open(ip.queueDir, { readOnly: true });
    try {
      for (const q of ['incoming', 'active', 'deferred', 'hold', 'corrupt'] as const) if ([...s.list(q)].length) empty = false;
    } finally {
      void s.close();
    }
    if (empty) for (const f of ['queue.lmdb', 'queue.lmdb-lock']) fs.rmSync(path.join(ip.queueDir, f), { force: true });
    else warn(`${store}: please verify contents and remove by hand`);
  }
  for (const q of ['active', 'bounce', 'corrupt', 'defer', 'deferred', 'flush', 'hold', 'incoming', 'maildrop', 'pid', 'private', 'public', 'saved', 'trace']) {
    const p = path.join(ip.queueDir, q);
    if (!fs.existsSync(p)) continue;
    try {
      // Postactor's own run-time files (sockets, pid and lock files) go; anything else stays.
      if (q === 'pid' || q === 'private' || q === 'public') {
        for (const f of fs.readdirSync(p)) {
          const st = fs.lstatSync(path.join(p, f));
          if (st.isSocket() || st.isFIFO() || /\.(pid|lock)$/.test(f)) fs.rmSync(path.join(p, f), { force: true });
        }
      }
      fs.rmdirSync(p);
    } catch {
      warn(`${p}: please verify contents and remove by hand`);
    }
  }
  for (const d of [ip.dataDir, ip.queueDir]) {
    try {
      fs.rmdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') warn(`${d}: please verify contents and remove by hand`);
    }
  }
  fs.rmSync(path.join(ip.configDir, 'master.cf'), { force: true });
  fs.rmSync(path.join(ip.configDir, 'main.cf'), { force: true });
  try {
    fs.rmdirSync(ip.configDir);
  } catch {
    warn(`${ip.configDir}: please verify contents and remove by hand`);
  }
}

export async function manage(o: LifecycleRequest, action: EditAction, primaryDir: string, primary: Config): Promise<void> {
  const tag = `${primary.get('syslog_name')}/postmulti-script`;
  const warn = (t: string) => process.stderr.write(`${tag}: warning: ${t}\n`);
  if (action === 'init') {
    // The wrapper is this postmulti (Postfix: ${command_directory}/postmulti, which here would name Postfix's).
    editMain(primaryDir, { multi_instance_wrapper: `${path.join(o.binDir, 'postmulti')} -p --`, multi_instance_enable: 'yes' });
    return;
  }
  const table = InstanceTable.load(primary);
  let target: Instance;
  switch (action) {
    case 'create':
    case 'import':
      target = newInstance(o, action, table);
      break;
    case 'destroy':
    case 'deport':
      target = selectExisting(table, o.selection, true);
      break;
    case 'assign': {
      target = selectExisting(table, o.selection, false);
      checkNames(o.name, o.group);
      const nameChanges = o.name !== undefined && o.name !== (target.name ?? '');
      const groupChanges = o.group !== undefined && o.group !== (target.group ?? '');
      if (nameChanges) table.claim(target.configDir, 'multi_instance_name', o.name!);
      if (!nameChanges && !groupChanges) return;
      if (!nameChanges) o.name = undefined;
      if (!groupChanges) o.group = undefined;
      break;
    }
    default:
      target = selectExisting(table, o.selection, false);
  }
  if (!primary.get('multi_instance_wrapper')) throw new ScriptFatal("multi_instance_wrapper is empty, run 'postmulti -e init' first.");
  if (primary.get('multi_instance_enable') !== 'yes') throw new ScriptFatal("multi_instance_enable!=yes, run 'postmulti -e init' first.");
  switch (action) {
    case 'create':
    case 'import':
      createFiles(target, action, table);
      assignNames(target, o);
      updateDirectories(table, target.configDir, 'del');
      break;
    case 'deport':
      if (!fs.existsSync(path.join(target.configDir, 'main.cf'))) return updateDirectories(table, target.configDir, 'del');
      if (await running(target)) throw new ScriptFatal(`Instance '${target.configDir}' is not stopped`);
      updateDirectories(table, target.configDir, 'add');
      break;
    case 'destroy':
      if (!fs.existsSync(path.join(target.configDir, 'main.cf'))) throw new ScriptFatal(`${target.configDir}/main.cf file not found`);
      if (await running(target)) throw new ScriptFatal(`Instance '${target.configDir}' is not stopped`);
      updateDirectories(table, target.configDir, 'del');
      await removeInstance(target, warn);
      break;
    case 'enable':
    case 'disable':
      editMain(target.configDir, { multi_instance_enable: action === 'enable' ? 'yes' : 'no' });
      break;
    case 'assign':
      assignNames(target, o);
      break;
  }
}
