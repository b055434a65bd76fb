/**
 * postmulti — Postfix's multi-instance manager (postmulti/postmulti.c with the work of
 * postmulti-script), for Postactor instances:
 *
 *   postmulti -e init
 *   postmulti -l [-aR] [-g group] [-i name]
 *   postmulti -p [-a] [-g group] [-i name] command...       (postactor start | stop | reload | status …)
 *   postmulti -x [-aR] [-g group] [-i name] unix-command...
 *   postmulti -e create [-a] [-g group] [-i name] [-G group] [-I name] [param=value ...]
 *   postmulti -e import [-a] [-g group] [-i name] [-G group] [-I name] [config_directory=/path]
 *   postmulti -e destroy | deport | enable | disable -i name
 *   postmulti -e assign -i name [-I name] [-G group]
 *
 * The primary instance is the located configuration (MAIL_CONFIG, POSTACTOR_CONFIG or
 * /etc/postactor: Postactor has no compiled-in directory that Postfix's "non-default
 * configuration directory" refusal could compare with); the embedded default cannot be one. Each
 * secondary instance is a directory of the primary's multi_instance_directories with its own
 * main.cf, master.cf, queue_directory (its own LMDB store) and data_directory. A new instance
 * gets the embedded default main.cf and master.cf ("main.cf.proto"), the primary's shared
 * settings, its own directories and its name and group; its logs are tagged with its name
 * (syslog_name's default is $multi_instance_name when set).
 *
 * Messages are Postfix's; those of the helper script carry its tag,
 * "$syslog_name/postmulti-script: fatal: …".
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, EMBEDDED_MAIN_CF, EMBEDDED_MASTER_CF, loadConfig, type Config } from '../src/config/index.js';
import { locateConfigDirectory } from '../src/config/locate.js';
import { editMainCf } from '../src/config/postconf.js';
import {
  InstanceTable, loadInstance, matches, MultiError, NAME_PREFIX, primaryInstance, privatePath,
  type Instance, type Selection,
} from '../src/multi/instances.js';
import { masterAnswers } from '../src/queue/admin.js';

const PROG = 'postmulti';
const BIN_DIR = fileURLToPath(new URL('../../bin/', import.meta.url)).replace(/\/$/, '');
const EDIT_ACTIONS = ['create', 'destroy', 'import', 'deport', 'enable', 'disable', 'assign', 'init'] as const;
type EditAction = (typeof EDIT_ACTIONS)[number];
type Mode = { kind: 'edit'; action: EditAction } | { kind: 'list' } | { kind: 'postfix' } | { kind: 'generic' };

/** Parameters a new instance takes over from the primary (postmulti-script's SHARED_PARAMETERS). */
const SHARED_PARAMETERS = [
  'command_directory', 'daemon_directory', 'meta_directory', 'mail_owner', 'setgid_group', 'sendmail_path',
  'mailq_path', 'newaliases_path', 'html_directory', 'manpage_directory', 'sample_directory',
  'readme_directory', 'shlib_directory',
];

function fatal(text: string): never {
  process.stderr.write(`${PROG}: fatal: ${text}\n`);
  process.exit(1);
}

const USAGE = `usage: ${PROG} -l [-v] [-a] [-g group] [-i instance] | ${PROG} -p [-v] [-a] [-g group] [-i instance] command... | ${PROG} -x [-v] [-a] [-i name] [-g group] command... | ${PROG} -e action [-v] [-a] [-i name] [-g group] [-I name] [-G group] [param=value ...]`;

/** A bad command line: the usage on stderr, exit 64 (EX_USAGE) as every Postactor command (Postfix's: "fatal: Usage:…", exit 1). */
function usage(why: string): never {
  process.stderr.write(`${PROG}: ${why}\n${USAGE}\n`);
  process.exit(64);
}

interface Options {
  mode: Mode;
  selection: Selection;
  reverse: boolean;
  name?: string;
  group?: string;
  verbose: boolean;
  args: string[];
}

/** GETOPT("ae:g:i:G:I:lpRvx") and main()'s checks, with Postfix's messages. */
function parseOptions(argv: string[]): Options {
  let selectCount = 0;
  let modeCount = 0;
  let mode: Mode | null = null;
  let selection: Selection = { type: 'none' };
  let reverse = false;
  let name: string | undefined;
  let group: string | undefined;
  let verbose = false;
  const same = (m: Mode) => mode !== null && mode.kind === m.kind && (m.kind !== 'edit' || (mode.kind === 'edit' && mode.action === m.action));
  const setMode = (m: Mode) => {
    if (!same(m)) modeCount++;
    mode = m;
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') { i++; break; }
    if (!a.startsWith('-') || a === '-') break;
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      let value: string | undefined;
      if ('egiGI'.includes(c)) {
        value = a.slice(j + 1);
        if (value === '') {
          if (i + 1 >= argv.length) {
            usage(`option requires an argument -- '${c}'`);
          }
          value = argv[++i]!;
        }
        j = a.length;
      }
      switch (c) {
        case 'a':
          if (selection.type !== 'all') selectCount++;
          selection = { type: 'all' };
          break;
        case 'e':
          if (!(EDIT_ACTIONS as readonly string[]).includes(value!)) {
            fatal(`Invalid '-e' edit action '${value}'. Specify 'create', 'destroy', 'import', 'deport', 'enable', 'disable', 'assign' or 'init'`);
          }
          setMode({ kind: 'edit', action: value as EditAction });
          break;
        case 'g': selectCount++; selection = { type: 'group', name: value! }; break;
        case 'i': selectCount++; selection = { type: 'name', name: value! }; break;
        case 'G':
          if (group !== undefined) fatal("Specify at most one '-G' option");
          group = value === '-' ? '' : value!;
          break;
        case 'I':
          if (name !== undefined) fatal("Specify at most one '-I' option");
          name = value === '-' ? '' : value!;
          break;
        case 'l': setMode({ kind: 'list' }); break;
        case 'p': setMode({ kind: 'postfix' }); break;
        case 'R': reverse = !reverse; break;
        case 'v': verbose = true; break;
        case 'x': setMode({ kind: 'generic' }); break;
        default:
          usage(`invalid option -- '${c}'`);
      }
    }
  }
  const args = argv.slice(i);
  const m = mode as Mode | null;
  if (selectCount > 1) fatal("Specity no more than one of '-a', '-g', '-i'"); // (sic: Postfix's text)
  if (modeCount !== 1 || m === null) fatal("Specify exactly one of '-e', '-l', '-p', '-x'");
  if (m.kind === 'list' && args.length) fatal("Command not allowed with '-l'");
  if ((m.kind === 'postfix' || m.kind === 'generic') && args.length === 0) fatal("Command required with '-p' or '-x' option");
  if ((m.kind === 'postfix' || m.kind === 'edit') && reverse) fatal("The '-p' and '-e' options preclude the use of '-R'");
  const assigns = m.kind === 'edit' && ['create', 'import', 'assign'].includes(m.action);
  if (!assigns && (name !== undefined || group !== undefined)) {
    if (m.kind !== 'edit') fatal("Cannot assign instance name or group without '-e assign'");
    fatal(`Cannot assign instance name or group with '-e ${m.action}'`);
  }
  if (m.kind === 'edit') {
    if (m.action === 'assign' && name === undefined && group === undefined) fatal("Specify new instance name or group with '-e assign'");
    if (!['create', 'import'].includes(m.action) && args.length) fatal(`Parameter overrides not valid with '-e ${m.action}'`);
  }
  return { mode: m, selection, reverse, name, group, verbose, args };
}

// ---------------------------------------------------------------------------------------------
// main.cf edits (postconf -e), written atomically.

function editMain(dir: string, settings: Record<string, string>): void {
  const file = path.join(dir, 'main.cf');
  const text = fs.readFileSync(file, 'utf8');
  const result = editMainCf(text, new Map(Object.entries(settings)), 'set', file);
  for (const w of result.warnings) process.stderr.write(`${PROG}: warning: ${w}\n`);
  if (result.text === text) return;
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, result.text, { mode: fs.statSync(file).mode & 0o7777 });
  fs.renameSync(tmp, file);
}

// ---------------------------------------------------------------------------------------------
// Iterator mode.

/** run_user_command(): the command for one instance, with MAIL_CONFIG (and for -x the instance's settings). */
function runCommand(ip: Instance, argv: string[], generic: boolean, verbose: boolean): number {
  const env: NodeJS.ProcessEnv = { ...process.env, MAIL_CONFIG: ip.configDir };
  if (verbose) env['MAIL_VERBOSE'] = '';
  if (generic) {
    Object.assign(env, {
      command_directory: BIN_DIR,
      daemon_directory: BIN_DIR,
      config_directory: ip.configDir,
      queue_directory: ip.queueDir,
      data_directory: ip.dataDir,
      multi_instance_name: ip.name ?? '',
      multi_instance_group: ip.group ?? '',
      multi_instance_enable: ip.enabled ? 'yes' : 'no',
      PATH: `${BIN_DIR}:${process.env['PATH'] ?? ''}`,
    });
  }
  const r = spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit', env });
  if (r.error) {
    process.stderr.write(`${PROG}: fatal: execvp ${argv[0]}: ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : r.error.message}\n`);
    return 1;
  }
  return r.status ?? 1;
}

function iterate(o: Options, table: InstanceTable): number {
  const selection: Selection = o.selection.type === 'none' ? { type: 'all' } : o.selection;
  const primary = table.primaryConfig;
  const words = (param: string) => primary.get(param).split(/[\s,]+/).filter(Boolean);
  let reverse = o.reverse;
  let skipDisabled = false;
  let checkDisabled = false;
  let argv = o.args;
  if (o.mode.kind === 'postfix') {
    const cmd = o.args[0]!;
    if (words('postmulti_start_commands').includes(cmd)) checkDisabled = true;
    else if (words('postmulti_stop_commands').includes(cmd)) { skipDisabled = true; reverse = true; }
    else if (words('postmulti_control_commands').includes(cmd)) skipDisabled = true;
    argv = [path.join(BIN_DIR, 'postactor'), ...o.args];
  }
  const order = reverse ? [...table.list].reverse() : table.list;
  if (o.mode.kind === 'list') {
    let out = '';
    for (const ip of order) {
      if (!matches(ip, selection)) continue;
      out += `${(ip.name ?? '-').padEnd(15)} ${(ip.group ?? '-').padEnd(15)} ${(ip.enabled ? 'y' : 'n').padEnd(9)} ${ip.configDir}\n`;
    }
    process.stdout.write(out);
    return 0;
  }
  let status = 0;
  let matched = false;
  for (const ip of order) {
    if (skipDisabled && !ip.enabled) continue;
    if (!matches(ip, selection)) continue;
    matched = true;
    // A start-like command checks a disabled instance instead of starting it.
    const run = checkDisabled && !ip.enabled ? [argv[0]!, 'check', ...argv.slice(2)] : argv;
    if (runCommand(ip, run, o.mode.kind === 'generic', o.verbose) !== 0) status = 1;
  }
  if (!matched) fatal('No matching instances');
  return status;
}

// ---------------------------------------------------------------------------------------------
// Life-cycle management (postmulti.c's manage() and postmulti-script).

class ScriptFatal extends Error {}

function checkNames(name: string | undefined, group: string | undefined): void {
  const safe = (s: string) => /^[A-Za-z0-9!@%\-_=+:./]+$/.test(s);
  if (name) {
    if (!safe(name)) fatal(`Unsafe characters in new instance name: '${name}'`);
    if (name.includes('/')) fatal(`Illegal '/' character in new instance name: '${name}'`);
    if (!name.startsWith(NAME_PREFIX)) fatal(`New instance name must start with '${NAME_PREFIX}'`);
  }
  if (group && !safe(group)) fatal(`Unsafe characters in '-G ${group}'`);
}

/** The instance -i selects (unlink: destroy/deport, which never take the primary or an enabled one). */
function selectExisting(table: InstanceTable, sel: Selection, unlink: boolean): Instance {
  if (sel.type !== 'name') fatal("Select an instance via '-i name'");
  const at = table.list.findIndex((ip) => matches(ip, sel));
  if (at < 0) fatal(`No instance named ${sel.name}`);
  const ip = table.list[at]!;
  if (unlink) {
    if (ip.primary) fatal('Cannot remove the primary instance');
    if (ip.enabled) fatal('Cannot remove enabled instances');
    table.list.splice(at, 1);
  }
  return ip;
}

/** assign_new_parameter(): config_directory, queue_directory, data_directory = /absolute/path. */
function newParameter(ip: Partial<Instance>, action: EditAction, arg: string): void {
  const m = /^\s*([^\s=]+)\s*=\s*(.*?)\s*$/.exec(arg);
  if (!m) fatal(`Malformed parameter setting '${arg}'`);
  const [, name, raw] = m;
  const key = name === 'config_directory' ? 'configDir'
    : action !== 'import' && name === 'queue_directory' ? 'queueDir'
      : action !== 'import' && name === 'data_directory' ? 'dataDir' : null;
  if (key === null) fatal(`Parameter '${name}' not valid with action ${action}`);
  if (!raw!.startsWith('/')) fatal(`Parameter setting '${name}' is not an absolute path`);
  const value = raw!.length > 1 ? raw!.replace(/\/+$/, '') || '/' : raw!;
  if (value === '/') fatal(`Parameter setting '${name}' is the root directory`);
  ip[key] = value;
}

function newInstance(o: Options, action: EditAction, table: InstanceTable): Instance {
  checkNames(o.name, o.group);
  const primary = primaryInstance(table.primaryConfig);
  const ip: Partial<Instance> = {};
  for (const arg of o.args) newParameter(ip, action, arg);
  ip.configDir ??= privatePath('config_directory', primary.configDir, o.name);
  const owner = table.claimedBy(ip.configDir);
  if (owner !== undefined) fatal(`new config_directory=${ip.configDir} is already in use by instance ${owner}=${ip.configDir}`);
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
function assignNames(ip: Instance, o: Options): void {
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
    const { QueueStore } = await import('../src/queue/store.js');
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

async function manage(o: Options, action: EditAction, primaryDir: string, primary: Config): Promise<void> {
  const tag = `${primary.get('syslog_name')}/postmulti-script`;
  const warn = (t: string) => process.stderr.write(`${tag}: warning: ${t}\n`);
  if (action === 'init') {
    // The wrapper is this postmulti (Postfix: ${command_directory}/postmulti, which here would name Postfix's).
    editMain(primaryDir, { multi_instance_wrapper: `${path.join(BIN_DIR, 'postmulti')} -p --`, multi_instance_enable: 'yes' });
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
  try {
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
  } catch (err) {
    if (err instanceof ScriptFatal) {
      process.stderr.write(`${tag}: fatal: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help')) {
    const { manual } = await import('../src/cli/manual.js');
    process.stdout.write(manual(PROG, USAGE) ?? USAGE + '\n');
    return;
  }
  const o = parseOptions(argv);
  const located = locateConfigDirectory(null, { privileged: false });
  if (located.dir === null) fatal('no primary instance: set MAIL_CONFIG or POSTACTOR_CONFIG to its configuration directory, or create /etc/postactor/main.cf');
  const primaryDir = path.resolve(located.dir);
  let primary: Config;
  try {
    primary = loadConfig(primaryDir);
  } catch (err) {
    if (err instanceof ConfigError) fatal(err.message);
    throw err;
  }
  if (o.mode.kind === 'edit') {
    await manage(o, o.mode.action, primaryDir, primary);
    return;
  }
  const table = InstanceTable.load(primary);
  process.exitCode = iterate(o, table);
}

main().catch((err: unknown) => {
  if (err instanceof MultiError) fatal(err.message);
  fatal((err as Error).message);
});
