// The logic of the postconf command (bin/postconf.ts), as pure functions:
// parameter tables (effective values, Postfix defaults, explicit main.cf
// settings), "name = value" formatting, $-expansion for -x, in-place main.cf
// edits (-e, -#), and master.cf display (-M, -F, -P) in Postfix's layout.
//
// Formats follow Postfix's postconf(1): "name = value" ("name =" when the
// value is empty), master.cf fields at columns 0/11/17/25/33/41/49/57 with
// at least one space between them, -o values in {braces} when they contain
// blanks, fold (-f) at 80 columns with a 4-space indent.

import type { Config } from './config.js';
import { DEFAULTS, domainOf, splitTransportParam } from './defaults.js';
import { ConfigError } from './errors.js';
import { expandValue, referencedNames } from './expand.js';
import { declaration, parameterNames } from './params/registry.js';
import { logicalLines } from './lines.js';
import { PARAM_NAME_RE } from './main-cf.js';
import { serviceParameterNames } from './service-params.js';

// ---------------------------------------------------------------- main.cf

/** "name = value", "name =" for an empty value, or just the value (-h). */
export function formatParam(name: string, value: string, hideName = false): string {
  if (hideName) return value;
  return value === '' ? `${name} =` : `${name} = ${value}`;
}

/** Which parameters a listing shows: effective values, Postfix defaults (-d), or main.cf settings (-n). */
export type ParamMode = 'effective' | 'defaults' | 'explicit';

export interface ParamTableOptions {
  /**
   * The configuration directory as given with -c DIR or POSTACTOR_CONFIG
   * (null for the embedded default). Like Postfix, an explicitly chosen
   * directory counts as a config_directory setting (it shows in -n).
   */
  configDirArg?: string | null;
}

/** Service-defined parameter names of the master.cf services, with their defaults (service-params.ts). */
function serviceParams(config: Config): Map<string, string> {
  // A name with a built-in default of its own (local_destination_concurrency_limit) keeps it,
  // as in Postfix's postconf.
  const out = new Map<string, string>();
  for (const [name, value] of serviceParameterNames(config.services)) if (!Object.hasOwn(DEFAULTS, name)) out.set(name, value);
  return out;
}

function sortedMap(entries: Iterable<[string, string]>): Map<string, string> {
  return new Map([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Parameter name -> unexpanded value, sorted by name, as postconf lists them:
 *  - 'defaults': every built-in parameter (and per-transport names of master.cf
 *    delivery agents) with Postfix's default value;
 *  - 'explicit': only what main.cf sets (plus config_directory when chosen explicitly);
 *  - 'effective': the defaults overlaid with main.cf settings.
 * In 'explicit' and 'effective', a main.cf name that Postactor does not know
 * appears only when some value refers to it ($name), as with Postfix (it is
 * an "unused parameter" otherwise).
 */
export function parameterTable(config: Config, mode: ParamMode, opts: ParamTableOptions = {}): Map<string, string> {
  const explicit = new Map(Object.entries(config.toJSON().params));
  const dirArg = opts.configDirArg ?? null;
  // Postfix's legacy names (virtual_maps, …) are known but not listed, as with Postfix.
  const table = new Map<string, string>([...Object.entries(DEFAULTS).filter(([n]) => declaration(n)?.legacy !== true), ...serviceParams(config)]);
  if (mode === 'defaults') return sortedMap(table);

  // A main.cf name that Postactor does not know is listed (also by -n) only
  // when some value refers to it; otherwise it is an "unused parameter".
  const referenced = new Set<string>();
  for (const v of explicit.values()) for (const n of referencedNames(v)) referenced.add(n);
  for (const s of config.services) {
    for (const v of Object.values(s.overrides)) for (const n of referencedNames(v)) referenced.add(n);
  }
  const known = (name: string): boolean => table.has(name) || referenced.has(name) || splitTransportParam(name) !== null;
  if (mode === 'explicit') {
    const shown = [...explicit].filter(([name]) => known(name));
    if (dirArg !== null && !explicit.has('config_directory')) shown.push(['config_directory', dirArg]);
    return sortedMap(shown);
  }
  for (const [name, value] of explicit) if (known(name)) table.set(name, value);
  if (!explicit.has('config_directory') && dirArg !== null) table.set('config_directory', dirArg);
  if (!explicit.has('mydomain')) {
    // Postfix derives mydomain from the (expanded) myhostname at run time.
    const host = expander(table, '').expand(table.get('myhostname') ?? '');
    table.set('mydomain', domainOf(host));
  }
  return sortedMap(table);
}

export interface Expander {
  /** $-expands a value against the table (recursively); $$ becomes $. */
  expand(value: string): string;
  /** Warnings such as "FILE: undefined parameter: NAME" (Postfix's wording). */
  readonly warnings: string[];
}

/**
 * $-expansion against a parameter table, for -x. Names missing from the
 * table expand to "" with a warning; per-transport names fall back to their
 * default_ parameter. overlay (master.cf -o settings) is looked up first.
 */
export function expander(table: ReadonlyMap<string, string>, mainFile: string, overlay?: ReadonlyMap<string, string>): Expander {
  const warnings: string[] = [];
  const active: string[] = [];
  const cache = new Map<string, string>();
  const rawOf = (name: string): string | undefined => {
    const v = overlay?.get(name) ?? table.get(name);
    if (v !== undefined) return v;
    const tp = splitTransportParam(name);
    return tp === null ? undefined : `$${tp.fallback}`;
  };
  const expandText = (text: string): string =>
    expandValue(text, {
      lookup: (n) => lookup(n),
      onUndefined: (n) => {
        const w = `${mainFile}: undefined parameter: ${n}`;
        if (!warnings.includes(w)) warnings.push(w);
      },
      fail: (msg) => {
        throw new ConfigError(`${mainFile}: ${msg}`);
      },
    });
  const lookup = (name: string): string | undefined => {
    const cached = cache.get(name);
    if (cached !== undefined) return cached;
    const raw = rawOf(name);
    if (raw === undefined) return undefined;
    if (active.includes(name)) {
      throw new ConfigError(`${mainFile}: recursive expansion: ${[...active.slice(active.indexOf(name)), name].join(' -> ')}`);
    }
    active.push(name);
    try {
      const v = expandText(raw);
      cache.set(name, v);
      return v;
    } finally {
      active.pop();
    }
  };
  return { expand: expandText, warnings };
}

/** Result of editing main.cf text. */
export interface EditResult {
  text: string;
  /** Postfix-style warnings, e.g. FILE: multiple entries for "NAME". */
  warnings: string[];
}

/**
 * Parses a postconf -e argument "name=value" (blanks around both trimmed);
 * throws a ConfigError with Postfix's wording when it is malformed.
 */
export function parseAssignment(arg: string): [string, string] {
  const eq = arg.indexOf('=');
  if (eq < 0) throw new ConfigError(`missing '=' after attribute name: "${arg.trim()}"`);
  const name = arg.slice(0, eq).trim();
  const value = arg.slice(eq + 1).trim();
  if (name === '') throw new ConfigError(`missing attribute name: "${arg.trim()}"`);
  if (!PARAM_NAME_RE.test(name)) throw new ConfigError(`bad parameter name: "${name}"`);
  if (/[\r\n]/.test(value)) throw new ConfigError(`parameter ${name}: value must be one line`);
  return [name, value];
}

/**
 * Edits main.cf text as postconf -e / -# / -X do.
 *  - set (edits maps name -> value): every setting of a name is replaced by
 *    one "name = value" line, its continuation lines dropped (comment lines
 *    inside it are kept).
 *  - comment (edits' keys are the names): every physical line of each
 *    setting gets a leading '#'; names not present are ignored.
 *  - delete (-X): every setting of the names goes, with its continuation lines.
 * Names that -e sets and main.cf lacks are appended in name order (Postfix sorts them).
 * All other lines (comments, blank lines, other settings) are kept as they are.
 */
export function editMainCf(text: string, edits: ReadonlyMap<string, string>, mode: 'set' | 'comment' | 'delete', file = 'main.cf'): EditResult {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const out: string[] = [];
  const seen = new Map<string, number>();
  let inEdited = false;
  for (const line of lines) {
    if (/^\s*$/.test(line) || /^\s*#/.test(line)) {
      out.push(line);
      continue;
    }
    if (/^\s/.test(line)) {
      // Continuation of the current logical line.
      if (!inEdited) out.push(line);
      else if (mode === 'comment') out.push(`#${line}`);
      continue;
    }
    // The name is what precedes the first blank or '=' (Postfix's postconf reads it so).
    const name = /^[^ \t\r\n=]*/.exec(line)![0];
    inEdited = edits.has(name);
    if (!inEdited) {
      out.push(line);
      continue;
    }
    seen.set(name, (seen.get(name) ?? 0) + 1);
    if (mode === 'comment') out.push(`#${line}`);
    else if (mode === 'set') out.push(`${name} = ${edits.get(name)}`);
  }
  if (mode === 'set') {
    const missing = [...edits.keys()].filter((n) => !seen.has(n)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const name of missing) out.push(`${name} = ${edits.get(name)}`);
  }
  const warnings: string[] = [];
  for (const [name, n] of seen) if (n > 1) warnings.push(`${file}: multiple entries for "${name}"`);
  return { text: out.length === 0 ? '' : out.join(eol) + eol, warnings };
}

// ---------------------------------------------------------------- master.cf

/** master.cf field names as postconf -F prints them. */
export const MASTER_FIELDS = ['service', 'type', 'private', 'unprivileged', 'chroot', 'wakeup', 'process_limit', 'command'] as const;
export type MasterField = (typeof MASTER_FIELDS)[number];

/**
 * A master.cf entry in postconf's normalized form: the 8 columns as written
 * ('-' stays '-'), then the command arguments, with "-oname=value" split into
 * "-o" "name=value", "{ name = value }" after -o turned into "name=value",
 * and { text } arguments unwrapped.
 */
export interface MasterEntry {
  /** service, type, private, unpriv, chroot, wakeup, maxproc, command, args... */
  argv: string[];
  line: number;
}

const COLUMN_GOALS = [0, 11, 17, 25, 33, 41, 49, 57];
const LINE_LIMIT = 80;
const INDENT = '    ';
const BLANK_RE = /[ \t\r\n]/;

/** Splits on blanks; text inside balanced {} stays in one token. */
export function splitQuoted(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    while (i < text.length && BLANK_RE.test(text[i]!)) i++;
    if (i >= text.length) break;
    let j = i;
    let depth = 0;
    while (j < text.length && (depth > 0 || !BLANK_RE.test(text[j]!))) {
      if (text[j] === '{') depth++;
      else if (text[j] === '}' && depth > 0) depth--;
      j++;
    }
    out.push(text.slice(i, j));
    i = j;
  }
  return out;
}

/** "{ text }" -> "text" (outer braces removed, blanks trimmed). */
function unbrace(arg: string): string {
  if (!arg.startsWith('{')) return arg;
  const inner = arg.endsWith('}') ? arg.slice(1, -1) : arg.slice(1);
  return inner.trim();
}

/** "name = value" -> "name=value" (blanks around name and value trimmed). */
function normalizeNameValue(text: string): string {
  const eq = text.indexOf('=');
  if (eq < 0) return text;
  return `${text.slice(0, eq).trim()}=${text.slice(eq + 1).trim()}`;
}

function isOptionEnd(arg: string): boolean {
  return !arg.startsWith('-') || arg === '--';
}

/** Normalizes the daemon arguments after the command (index 8 on), as postconf does. */
export function normalizeArgs(argv: string[]): void {
  let k = 8;
  for (; k < argv.length; k++) {
    let arg = argv[k]!;
    if (isOptionEnd(arg)) break;
    // "-vo name=value": split "-v" and "-o name=value".
    const o = arg.indexOf('o', 1);
    if (o > 1) {
      argv.splice(k + 1, 0, `-${arg.slice(o)}`);
      arg = argv[k] = arg.slice(0, o);
    }
    if (arg[1] !== 'o') continue;
    if (arg.length > 2) {
      argv.splice(k + 1, 0, arg.slice(2));
      argv[k] = '-o';
    } else if (k + 1 >= argv.length) {
      continue;
    }
    k += 1;
    if (argv[k]!.startsWith('{')) argv[k] = normalizeNameValue(unbrace(argv[k]!));
  }
  for (; k < argv.length; k++) if (argv[k]!.startsWith('{')) argv[k] = unbrace(argv[k]!);
}

/** Parses master.cf text into display entries (the text is assumed valid: loadConfig checked it). */
export function parseMasterEntries(text: string, file = 'master.cf'): MasterEntry[] {
  const entries: MasterEntry[] = [];
  for (const { text: entry, line } of logicalLines(text, file, 'service').lines) {
    const argv = splitQuoted(entry);
    if (argv.length < 8) continue;
    normalizeArgs(argv);
    entries.push({ argv, line });
  }
  return entries;
}

/** The -o settings of an entry (daemon options only), later ones winning, sorted by name. */
export function masterParams(e: MasterEntry): Map<string, string> {
  const params = new Map<string, string>();
  for (let k = 8; k < e.argv.length; k++) {
    const arg = e.argv[k]!;
    if (isOptionEnd(arg)) break;
    if (arg !== '-o' || k + 1 >= e.argv.length) continue;
    const pair = e.argv[++k]!;
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    params.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return sortedMap(params);
}

export interface MasterFormatOptions {
  /** -f: fold long lines at 80 columns. */
  fold?: boolean;
  /** -x: expands a "-o name=value" argument. */
  expand?: (nameValue: string) => string;
}

/**
 * Appends the command arguments (argv[8...]) to a line being built, as
 * postconf does: each -o option with its value on a line of its own when
 * folding, values with blanks in {braces}. optExtra is the extra length
 * postconf reserves for an option value (3 for -M, 1 for -F).
 */
function appendArgs(e: MasterEntry, start: string, startLen: number, opts: MasterFormatOptions, optExtra: number): string {
  let out = start;
  let len = startLen;
  let inOptions = true;
  const argv = e.argv;
  for (let k = 8; k < argv.length; k++) {
    const arg = argv[k]!;
    let argLen = arg.length;
    let aval: string | null = null;
    let parens = false;
    if (inOptions) {
      if (isOptionEnd(arg)) {
        inOptions = false;
      } else if (arg[1] === 'o' && k + 1 < argv.length) {
        aval = argv[k + 1]!;
        len = LINE_LIMIT; // an option with a value starts a new line
        if (arg === '-o' && opts.expand) aval = opts.expand(aval);
        argLen += aval.length + optExtra;
        parens = BLANK_RE.test(aval);
        if (parens) argLen += 2;
      }
    } else {
      parens = BLANK_RE.test(arg);
    }
    if (len > INDENT.length) {
      if (!opts.fold || len + 1 + argLen < LINE_LIMIT) {
        out += ' ';
        len += 1;
      } else {
        out += `\n${INDENT}`;
        len = INDENT.length;
      }
    }
    const shown = !inOptions && parens ? `{${arg}}` : arg;
    out += shown;
    len += shown.length;
    if (aval !== null) {
      const v = parens ? `{${aval}}` : aval;
      out += ` ${v}`;
      k += 1;
      len = LINE_LIMIT; // and ends it
    }
  }
  return out;
}

/** One master.cf entry as postconf -M prints it (without the trailing newline). */
export function formatMasterEntry(e: MasterEntry, opts: MasterFormatOptions = {}): string {
  let out = '';
  for (let f = 0; f < 8; f++) {
    const arg = e.argv[f]!;
    if (out.length > 0) {
      do out += ' ';
      while (out.length < COLUMN_GOALS[f]!);
    }
    out += arg;
  }
  return appendArgs(e, out, out.length, opts, 3);
}

/** The value of one field; for 'command', the command with its arguments on one line. */
export function masterFieldValue(e: MasterEntry, field: MasterField, opts: Omit<MasterFormatOptions, 'fold'> = {}): string {
  const i = MASTER_FIELDS.indexOf(field);
  if (field !== 'command') return e.argv[i]!;
  return appendArgs(e, e.argv[7]!, e.argv[7]!.length, { ...opts, fold: false }, 1);
}

/** One "service/type/field = value" line as postconf -F prints it (hideName: -h). */
export function formatMasterField(e: MasterEntry, field: MasterField, opts: MasterFormatOptions & { hideName?: boolean } = {}): string {
  const i = MASTER_FIELDS.indexOf(field);
  let out = '';
  if (!opts.hideName) {
    out = `${e.argv[0]}/${e.argv[1]}/${field} = `;
    if (out.length + e.argv[i]!.length > LINE_LIMIT) out += `\n${INDENT}`;
  }
  const lineLen = out.length - (out.lastIndexOf('\n') + 1);
  out += e.argv[i]!;
  if (field !== 'command') return out;
  return appendArgs(e, out, lineLen + e.argv[i]!.length, opts, 1);
}

/**
 * A -M/-F/-P selector "service[/type[/field-or-parameter]]" split into parts;
 * null when it has too many or empty parts. Absent parts match anything.
 */
export function parseServicePattern(text: string, maxParts: number): string[] | null {
  const parts = text.split('/');
  if (parts.length > maxParts || parts.some((p) => p === '')) return null;
  return parts;
}

/** True when the entry's service name and type match the pattern (a '*' part matches anything). */
export function matchesService(pattern: readonly string[], e: MasterEntry): boolean {
  const ok = (p: string | undefined, v: string): boolean => p === undefined || p === '*' || p === v;
  return ok(pattern[0], e.argv[0]!) && ok(pattern[1], e.argv[1]!);
}


// ---------------------------------------------------------------- support (--support)

/** One parameter's entry in `postconf --support`. */
export interface SupportEntry {
  support: 'implemented' | 'refused' | 'unsupported';
  readers?: readonly string[];
  refusal?: string;
  type: string;
  default: string;
  /** Absent for Postactor's own parameters (Postfix has no such name). */
  postfix_default?: string;
  difference?: string;
  /** Postactor's own parameter: always true when present. */
  own?: true;
  description?: string;
}

/** What Postactor does with the named parameters (all declared ones when none is named). */
export function supportTable(names: readonly string[]): { table: Record<string, SupportEntry>; unknown: string[] } {
  const table: Record<string, SupportEntry> = {};
  const unknown: string[] = [];
  for (const name of names.length > 0 ? names : parameterNames()) {
    const d = declaration(name);
    if (d === undefined) {
      unknown.push(name);
      continue;
    }
    const e: SupportEntry = d.own !== undefined
      ? { support: d.support, own: true, description: d.own, type: d.type, default: d.default }
      : { support: d.support, type: d.type, default: d.default, postfix_default: d.postfixDefault };
    if (d.readers.length > 0) e.readers = d.readers;
    if (d.refusal !== undefined) e.refusal = d.refusal;
    if (d.difference !== undefined) e.difference = d.difference;
    table[name] = e;
  }
  return { table, unknown };
}
