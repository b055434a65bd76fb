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
 * "$syslog_name/postmulti-script: fatal: …". This file holds the command line and the iterator
 * mode; the instance table is src/multi/instances.ts, life-cycle management src/multi/lifecycle.ts.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, type Config } from '../src/config/index.js';
import { locateConfigDirectory } from '../src/config/locate.js';
import { InstanceTable, matches, MultiError, type Instance, type Selection } from '../src/multi/instances.js';
import { EDIT_ACTIONS, manage, ScriptFatal, type EditAction } from '../src/multi/lifecycle.js';

const PROG = 'postmulti';
const BIN_DIR = fileURLToPath(new URL('../../bin/', import.meta.url)).replace(/\/$/, '');
type Mode = { kind: 'edit'; action: EditAction } | { kind: 'list' } | { kind: 'postfix' } | { kind: 'generic' };

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
    try {
      await manage({ ...o, binDir: BIN_DIR }, o.mode.action, primaryDir, primary);
    } catch (err) {
      if (err instanceof ScriptFatal) {
        process.stderr.write(`${primary.get('syslog_name')}/postmulti-script: fatal: ${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
    return;
  }
  const table = InstanceTable.load(primary);
  process.exitCode = iterate(o, table);
}

main().catch((err: unknown) => {
  if (err instanceof MultiError) fatal(err.message);
  fatal((err as Error).message);
});
