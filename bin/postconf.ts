/**
 * postconf: Postfix's configuration utility for Postactor's main.cf and master.cf.
 *
 *   postconf [-c config_dir] [-d | -n] [-h] [-x] [-f] [--json] [name ...]
 *   postconf [-c config_dir] -e name=value ...
 *   postconf [-c config_dir] -# name ...
 *   postconf [-c config_dir] -X name ...
 *   postconf [-c config_dir] -M name/type='entry' ...  |  -MX name/type ...  |  -M# name/type ...
 *   postconf [-c config_dir] -F name/type/field=value ...
 *   postconf [-c config_dir] -P name/type/parameter=value ...  |  -PX name/type/parameter ...
 *   postconf [-c config_dir] [-f] [-x] [--json] -M [service[/type] ...]
 *   postconf [-c config_dir] [-f] [-h] [-x] [--json] -F [service[/type[/field]] ...]
 *   postconf [-c config_dir] [-h] [-x] [--json] -P [service[/type[/parameter]] ...]
 *   postconf -m
 *
 * The configuration directory is -c DIR, else $MAIL_CONFIG, else $POSTACTOR_CONFIG, else
 * /etc/postactor if it holds a main.cf, else the embedded default (read-only): see
 * src/config/locate.ts. Options bundle getopt-style (-nx, -cDIR); option parsing stops
 * at the first operand or "--". Exit: 0 (also after warnings), 1 on a configuration
 * error ("postconf: fatal: file:line: ..."), 64 (EX_USAGE) on bad usage.
 * The formatting and editing logic is in src/config/postconf.ts.
 */

import { manual } from '../src/cli/manual.js';
import fs from 'node:fs';
import path from 'node:path';

import { ConfigError, EMBEDDED_MASTER_CF, loadConfig, type Config } from '../src/config/index.js';
import { buildConfig } from '../src/config/load.js';
import { locateConfigDirectory } from '../src/config/locate.js';
import {
  MASTER_FIELDS, editMainCf, expander, formatMasterEntry, formatMasterField, formatParam, masterFieldValue,
  masterParams, matchesService, parameterTable, parseAssignment, parseMasterEntries, parseServicePattern, supportTable,
  type MasterEntry, type MasterField, type ParamMode,
} from '../src/config/postconf.js';
import { PARAM_NAME_RE } from '../src/config/main-cf.js';
import { EditError, editMasterCf } from '../src/config/postconf-edit.js';
import { TABLE_TYPES } from '../src/maps/table-types.js';

const EX_USAGE = 64;

const USAGE = `usage: postconf [-c config_dir] [-d | -n] [-h] [-x] [-f] [--json] [name ...]
       postconf --support [name ...]
       postconf [-c config_dir] -e name=value ...
       postconf [-c config_dir] -# name ...
       postconf [-c config_dir] -X name ...
       postconf [-c config_dir] -M name/type='entry' ... | -MX name/type ... | -M# name/type ...
       postconf [-c config_dir] -F name/type/field=value ...
       postconf [-c config_dir] -P name/type/parameter=value ... | -PX name/type/parameter ...
       postconf [-c config_dir] [-f] [-x] [--json] -M [service[/type] ...]
       postconf [-c config_dir] [-f] [-h] [-x] [--json] -F [service[/type[/field]] ...]
       postconf [-c config_dir] [-h] [-x] [--json] -P [service[/type[/parameter]] ...]
       postconf -m
  -c dir   configuration directory (default: $MAIL_CONFIG, $POSTACTOR_CONFIG, /etc/postactor, else the embedded default)
  -d       show default values (every parameter Postactor knows)
  -n       show only parameters set in main.cf
  -h       show values only, without "name = "
  -x       expand $name in values
  -f       fold long master.cf lines (-M, -F)
  -e       edit main.cf: replace or append name=value settings (implied by a first name=value)
  -#       edit main.cf: comment out the named settings (with -M: master.cf services)
  -X       edit main.cf: remove the named settings (with -M: services, with -P: -o parameters)
  -M, -F, -P with name/type[/field|parameter]=value: edit master.cf entries, fields, -o parameters
  -M       show master.cf services; -F their fields; -P their -o parameters
  -m       show the lookup table types Postactor supports, one per line
  --json   print a JSON object (name -> value) instead of lines
  --support  print, as JSON, what Postactor does with each named parameter (all when none
           is named): implemented (and by which services), refused, or not supported; its
           type, Postactor's default and Postfix 3.8's
  --help   show this help
`;

/** Bad usage: message (if any) and the usage text on stderr, exit 64. */
class UsageError extends Error {
  constructor(message: string, readonly showUsage = true) {
    super(message);
  }
}

interface Options {
  configDir: string | null;
  flags: Set<string>;
  json: boolean;
  support: boolean;
  help: boolean;
  operands: string[];
}

const BOOLEAN_FLAGS = 'dnxhe#XMFPfm';

/** getopt-style parsing: bundled flags (-nx), -c DIR / -cDIR, stop at the first operand or "--". */
function parseOptions(argv: string[]): Options {
  const opts: Options = { configDir: null, flags: new Set(), json: false, support: false, help: false, operands: [] };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (arg === '--help') {
      opts.help = true;
      continue;
    }
    if (arg === '--json') {
      opts.json = true;
      continue;
    }
    if (arg === '--support') {
      opts.support = true;
      continue;
    }
    if (arg.startsWith('--')) throw new UsageError(`unrecognized option '${arg}'`);
    if (!arg.startsWith('-') || arg === '-') break;
    for (let k = 1; k < arg.length; k++) {
      const c = arg[k]!;
      if (c === 'c') {
        const value = k + 1 < arg.length ? arg.slice(k + 1) : argv[++i];
        if (value === undefined) throw new UsageError(`option requires an argument -- 'c'`);
        opts.configDir = value;
        break;
      }
      if (!BOOLEAN_FLAGS.includes(c)) throw new UsageError(`invalid option -- '${c}'`);
      opts.flags.add(c);
    }
  }
  opts.operands = argv.slice(i);
  return opts;
}

/** Postfix's option names in its own order (the order its messages list them in). */

/** Options that exclude each other (Postfix's pcf_incompat_options; the first group: major modes). */
const INCOMPATIBLE = ['mpMFP', 'de#nX', 'fe#X', 'xe#X', 'he#X'];
/** What each major mode may be combined with (Postfix's pcf_compat_options). */
const COMPATIBLE: Record<string, string> = {
  p: 'eX#fhxdn',
  M: 'eX#fx',
  F: 'efhx',
  P: 'eXfhx',
  m: '',
};

/**
 * Rejects flag combinations that Postfix rejects, with its wording; first makes the implicit
 * modes explicit as Postfix does: no major mode is -p (main.cf parameters), and a first operand
 * with '=' is an edit (-e).
 */
function checkConflicts(f: Set<string>, json: boolean, operands: readonly string[]): void {
  if (![...'mMFP'].some((m) => f.has(m))) f.add('p');
  if ([...'pMFP'].some((m) => f.has(m)) && operands[0]?.includes('=')) f.add('e');
  const names = (letters: string[]): string => letters.sort((a, b) => postfixOrder(a) - postfixOrder(b)).map((l) => `-${l}`).join(' ');
  for (const group of INCOMPATIBLE) {
    const given = [...group].filter((l) => f.has(l));
    if (given.length > 1) throw new UsageError(`specify one of ${names(given)}`, false);
  }
  for (const [mode, allowed] of Object.entries(COMPATIBLE)) {
    if (!f.has(mode)) continue;
    const excess = [...f].filter((l) => l !== mode && !allowed.includes(l));
    if (excess.length > 0) throw new UsageError(`with option -${mode === 'p' ? 'p' : mode}, do not specify ${names(excess)}`, false);
  }
  if (json) {
    for (const m of ['m', 'e', '#', 'X']) if (f.has(m)) throw new UsageError(`with option -${m}, do not specify --json`, false);
  }
  if (f.has('e') && operands.length === 0) throw new UsageError('-e requires name=value argument', false);
}

/** Postfix's order of option names (pcf_compat_names). */
function postfixOrder(letter: string): number {
  return 'abCdefFhHlmMnopPtTxX#'.indexOf(letter);
}

interface Output {
  out: string[];
  warnings: string[];
}

function jsonText(obj: unknown): string {
  return JSON.stringify(obj, null, 2);
}

/** -e / -# / -X: edits main.cf in place (atomically) after checking that the result loads. */
function editMain(dirArg: string | null, f: Set<string>, operands: string[], o: Output): void {
  const mode = f.has('#') ? 'comment' : f.has('X') ? 'delete' : 'set';
  if (dirArg === null) throw new UsageError('cannot edit the embedded default configuration; use -c DIR', false);
  const edits = new Map<string, string>();
  for (const arg of operands) {
    if (arg.includes('\n')) throw new UsageError('-e, -X, or -# accepts no multi-line input', false);
    const text = arg.replace(/^\s+/, '');
    if (text.startsWith('#')) throw new UsageError('-e, -X, or -# accepts no comment input', false);
    if (mode !== 'set') {
      if (text === '') throw new UsageError('-X or -# requires non-blank parameter names', false);
      if (text.includes('=')) throw new UsageError('-X or -# requires parameter names without value', false);
      const name = text.trim();
      if (!PARAM_NAME_RE.test(name)) throw new UsageError(`bad parameter name: "${name}"`, false);
      edits.set(name, '');
      continue;
    }
    try {
      const [name, value] = parseAssignment(text);
      const earlier = edits.get(name);
      if (earlier !== undefined && earlier !== value) o.warnings.push(`ignoring earlier request: '${name} = ${earlier}'`);
      edits.delete(name);
      edits.set(name, value);
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(err.message, false);
      throw err;
    }
  }
  const dir = path.resolve(dirArg);
  const mainFile = path.join(dir, 'main.cf');
  const text = readConfigFile(mainFile);
  const result = editMainCf(text, edits, mode, mainFile);
  o.warnings.push(...result.warnings);
  if (result.text === text) return;
  // The edited configuration must still load (syntax, $-expansion, typed values).
  let masterText = '';
  try {
    masterText = fs.readFileSync(path.join(dir, 'master.cf'), 'utf8');
  } catch {
    // buildConfig reports what else is wrong; a missing master.cf is not main.cf's problem.
  }
  buildConfig(dir, result.text, masterText);
  writeAtomically(mainFile, result.text);
}

/** -M / -F / -P with an edit (-e, -X, -#): edits master.cf in place, after checking that the result loads. */
function editMaster(dirArg: string | null, f: Set<string>, operands: string[], o: Output): void {
  if (dirArg === null) throw new UsageError('cannot edit the embedded default configuration; use -c DIR', false);
  const kind = f.has('M') ? 'M' : f.has('F') ? 'F' : 'P';
  const mode = f.has('#') ? 'comment' : f.has('X') ? 'delete' : 'set';
  const dir = path.resolve(dirArg);
  const masterFile = path.join(dir, 'master.cf');
  const text = readConfigFile(masterFile);
  let result;
  try {
    result = editMasterCf(text, kind, mode, operands, masterFile);
  } catch (err) {
    if (err instanceof EditError) throw new UsageError(err.message, false);
    throw err;
  }
  o.warnings.push(...result.warnings);
  if (result.text === text) return;
  let mainText = '';
  try {
    mainText = fs.readFileSync(path.join(dir, 'main.cf'), 'utf8');
  } catch {
    // as above
  }
  buildConfig(dir, mainText, result.text);
  writeAtomically(masterFile, result.text);
}

function readConfigFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`open ${file} for reading: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (err as Error).message}`);
  }
}

/** Writes file via a temporary file in the same directory and rename(2), keeping its mode. */
function writeAtomically(file: string, text: string): void {
  const target = fs.realpathSync(file);
  const mode = fs.statSync(target).mode & 0o7777;
  const tmp = `${target}.tmp.${process.pid}`;
  try {
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.writeFileSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.chmodSync(tmp, mode);
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new ConfigError(`cannot update ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** Prints main.cf parameters (no flag, -d or -n; -h, -x; names). */
function showParams(config: Config, dirArg: string | null, opts: Options, o: Output): void {
  const f = opts.flags;
  const mode: ParamMode = f.has('d') ? 'defaults' : f.has('n') ? 'explicit' : 'effective';
  const table = parameterTable(config, mode, { configDirArg: dirArg });
  const mainFile = path.join(config.configDirectory ?? '(embedded)', 'main.cf');
  const exp = f.has('x')
    ? expander(mode === 'defaults' ? table : parameterTable(config, 'effective', { configDirArg: dirArg }), mainFile)
    : null;
  let names: string[];
  if (opts.operands.length === 0) {
    names = [...table.keys()];
  } else {
    names = [];
    for (const n of opts.operands) {
      if (table.has(n)) names.push(n);
      else if (mode !== 'explicit') o.warnings.push(`${n}: unknown parameter`);
    }
  }
  const json: Record<string, string> = {};
  for (const n of names) {
    const value = exp === null ? table.get(n)! : exp.expand(table.get(n)!);
    if (opts.json) json[n] = value;
    else o.out.push(formatParam(n, value, f.has('h')));
  }
  if (exp !== null) o.warnings.push(...exp.warnings);
  if (opts.json) o.out.push(jsonText(json));
}

const SELECTOR_SYNTAX: Record<string, string> = {
  M: 'service_name[/type]',
  F: 'service_name[/type[/field]]',
  P: 'service_name[/type[/parameter]]',
};

/** Parses -M/-F/-P selectors; a bad one is a usage error with Postfix's wording. */
function patterns(operands: string[], which: 'M' | 'F' | 'P'): string[][] {
  return operands.map((text) => {
    const p = parseServicePattern(text, which === 'M' ? 2 : 3);
    if (p === null) throw new UsageError(`-${which} option requires ${SELECTOR_SYNTAX[which]}`, false);
    return p;
  });
}

/** Prints master.cf entries, fields or -o parameters (-M, -F, -P). */
function showMaster(config: Config, dirArg: string | null, masterText: string, opts: Options, o: Output): void {
  const f = opts.flags;
  const masterFile = path.join(config.configDirectory ?? '(embedded)', 'master.cf');
  const mainFile = path.join(config.configDirectory ?? '(embedded)', 'main.cf');
  const entries = parseMasterEntries(masterText, masterFile);
  const effective = f.has('x') ? parameterTable(config, 'effective', { configDirArg: dirArg }) : null;
  const expandFor = (e: MasterEntry): ((v: string) => string) | undefined => {
    if (effective === null) return undefined;
    const exp = expander(effective, mainFile, masterParams(e));
    return (v) => {
      const r = exp.expand(v);
      for (const w of exp.warnings) if (!o.warnings.includes(w)) o.warnings.push(w);
      return r;
    };
  };
  const which = f.has('M') ? 'M' : f.has('F') ? 'F' : 'P';
  const pats = patterns(opts.operands, which);
  if (which === 'F') {
    for (const p of pats) {
      const field = p[2];
      if (field !== undefined && field !== '*' && !(MASTER_FIELDS as readonly string[]).includes(field)) {
        throw new UsageError(`invalid service attribute name: "${field}"`, false);
      }
    }
  }
  const matches = new Array<number>(pats.length).fill(0);
  const json: Record<string, unknown> = {};
  const ns = (e: MasterEntry): string => `${e.argv[0]}/${e.argv[1]}`;

  const emitEntry = (e: MasterEntry): void => {
    const expand = expandFor(e);
    if (opts.json) {
      const fields: Record<string, string> = {};
      for (const field of MASTER_FIELDS) fields[field] = masterFieldValue(e, field, { expand });
      json[ns(e)] = fields;
    } else {
      o.out.push(formatMasterEntry(e, { fold: f.has('f'), expand }));
    }
  };
  const emitFields = (e: MasterEntry, fields: readonly MasterField[]): void => {
    const expand = expandFor(e);
    for (const field of fields) {
      if (opts.json) json[`${ns(e)}/${field}`] = masterFieldValue(e, field, { expand });
      else o.out.push(formatMasterField(e, field, { fold: f.has('f'), expand, hideName: f.has('h') }));
    }
  };
  const emitParams = (e: MasterEntry, only: string | undefined): boolean => {
    const expand = expandFor(e);
    let any = false;
    for (const [name, raw] of masterParams(e)) {
      if (only !== undefined && only !== '*' && only !== name) continue;
      any = true;
      const value = expand ? expand(raw) : raw;
      if (opts.json) json[`${ns(e)}/${name}`] = value;
      else o.out.push(f.has('h') ? value : `${ns(e)}/${name} = ${value}`);
    }
    return any;
  };

  for (const e of entries) {
    if (pats.length === 0) {
      if (which === 'M') emitEntry(e);
      else if (which === 'F') emitFields(e, MASTER_FIELDS);
      else emitParams(e, undefined);
      continue;
    }
    pats.forEach((p, i) => {
      if (!matchesService(p, e)) return;
      if (which === 'M') {
        matches[i]!++;
        emitEntry(e);
      } else if (which === 'F') {
        matches[i]!++;
        const field = p[2];
        emitFields(e, field === undefined || field === '*' ? MASTER_FIELDS : [field as MasterField]);
      } else if (emitParams(e, p[2])) {
        matches[i]!++;
      }
    });
  }
  pats.forEach((_, i) => {
    if (matches[i] === 0) o.warnings.push(`unmatched request: "${opts.operands[i]}"`);
  });
  if (opts.json) o.out.push(jsonText(json));
}

function run(argv: string[]): number {
  const o: Output = { out: [], warnings: [] };
  const flush = (): void => {
    if (o.out.length > 0) process.stdout.write(o.out.join('\n') + '\n');
    for (const w of new Set(o.warnings)) process.stderr.write(`postconf: warning: ${w}\n`);
    o.out.length = 0;
    o.warnings.length = 0;
  };
  try {
    const opts = parseOptions(argv);
    if (opts.help) {
      process.stdout.write(manual('postconf', USAGE) ?? USAGE);
      return 0;
    }
    checkConflicts(opts.flags, opts.json, opts.operands);
    if (opts.support) {
      const r = supportTable(opts.operands);
      o.out.push(jsonText(r.table));
      o.warnings.push(...r.unknown.map((n) => `${n}: unknown parameter`));
      flush();
      return 0;
    }
    const f = opts.flags;
    if (f.has('m')) {
      process.stdout.write(TABLE_TYPES.map((t) => `${t}\n`).join(''));
      return 0;
    }
    const located = locateConfigDirectory(opts.configDir);
    // Like Postfix, only a non-default directory counts as a config_directory setting (-n).
    const dirArg = located.source === 'system' ? null : located.dir;
    if (f.has('e') || f.has('#') || f.has('X')) {
      if (opts.operands.length === 0) throw new UsageError('missing service argument', false);
      if (f.has('M') || f.has('F') || f.has('P')) editMaster(located.dir, f, opts.operands, o);
      else editMain(located.dir, f, opts.operands, o);
      flush();
      return 0;
    }
    const config = loadConfig(located.dir);
    o.warnings.push(...config.warnings);
    if (f.has('M') || f.has('F') || f.has('P')) {
      let masterText = EMBEDDED_MASTER_CF;
      if (config.configDirectory !== null) masterText = fs.readFileSync(path.join(config.configDirectory, 'master.cf'), 'utf8');
      showMaster(config, dirArg, masterText, opts, o);
    } else {
      showParams(config, dirArg, opts, o);
    }
    flush();
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      flush();
      process.stderr.write(`postconf: ${err.showUsage ? '' : 'fatal: '}${err.message}\n`);
      if (err.showUsage) process.stderr.write(USAGE);
      return EX_USAGE;
    }
    if (err instanceof ConfigError) {
      o.out.length = 0;
      flush();
      for (const line of err.message.split('\n')) process.stderr.write(`postconf: fatal: ${line}\n`);
      return 1;
    }
    throw err;
  }
}

process.exitCode = run(process.argv.slice(2));
