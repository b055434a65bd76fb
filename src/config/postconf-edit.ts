/**
 * postconf's master.cf editing, as Postfix's postconf -M / -F / -P edit it:
 *
 *   -M  name/type='entry'   add or replace a whole service (-Me; the first match is replaced,
 *                           later ones removed; a service matching the new entry's own
 *                           name/type counts as a match too; no match: appended)
 *   -MX name/type           remove a service      -M# name/type   comment it out
 *   -F  name/type/field=value                     replace one field ("command" takes the rest)
 *   -P  name/type/parameter=value                 add or replace "-o parameter=value"
 *   -PX name/type/parameter                       remove "-o parameter=…"
 *
 * Comment and blank lines pass through as they are; a replaced entry is written in postconf's
 * folded layout (columns, one -o per line). Bad input is an EditError with Postfix's wording.
 */
import { formatMasterEntry, MASTER_FIELDS, normalizeArgs, splitQuoted } from './postconf.js';

export class EditError extends Error {}

export type MasterEditKind = 'M' | 'F' | 'P';
export type MasterEditMode = 'set' | 'delete' | 'comment';

interface Request {
  raw: string;
  pattern: string[];
  value: string | null;
  /** -F: the field's index (0..7). */
  field: number;
  matches: number;
}

const VALID_TYPES = ['unix', 'fifo', 'inet', 'pass', 'unix-dgram'];
const BLANK = /[ \t\r\n]/;

/** Postfix's split_nameval(): "name = value" with blanks trimmed; throws with its wording. */
export function splitNameValue(text: string, raw: string): [string, string] {
  const m = /^\s*([^\s=]*)\s*(=?)/.exec(text)!;
  if (m[1] === '') throw new EditError(`missing attribute name: "${raw}"`);
  if (m[2] !== '=') throw new EditError(`missing '=' after attribute name: "${raw}"`);
  return [m[1]!, text.slice(m[0].length).trim()];
}

/** Postfix's pcf_parse_service_pattern(): exactly `parts` parts, '*' only on its own. */
function servicePattern(text: string, parts: number): string[] | null {
  if (text.startsWith('/')) return null;
  const p = text.split('/').filter((x) => x !== '');
  if (p.length !== parts) return null;
  if (p.some((x) => x !== '*' && x.includes('*'))) return null;
  return p;
}

const matchOne = (p: string, v: string): boolean => p === '*' || p === v;
const matches = (pattern: readonly string[], name: string, type: string): boolean => matchOne(pattern[0]!, name) && matchOne(pattern[1]!, type);

/** Postfix's pcf_check_master_entry(): the fixed columns of an entry. */
function checkEntry(argv: readonly string[], raw: string): void {
  const text = raw.replace(/\n/g, ' ');
  if (!VALID_TYPES.includes(argv[1]!)) throw new EditError(`invalid type field "${argv[1]}" in "${text}"`);
  for (let f = 2; f <= 4; f++) {
    const v = argv[f]!;
    if (v.length !== 1 || !'yn-'.includes(v)) throw new EditError(`invalid ${MASTER_FIELDS[f]} field "${v}" in "${text}"`);
  }
  const wakeup = argv[5]!;
  const digits = wakeup.endsWith('?') ? wakeup.slice(0, -1) : wakeup;
  if (!(wakeup === '-') && !/^[0-9]*$/.test(digits)) throw new EditError(`invalid wakeup field "${wakeup}" in "${text}"`);
  if (argv[6] !== '-' && !/^[0-9]*$/.test(argv[6]!)) throw new EditError(`invalid process_limit field "${argv[6]}" in "${text}"`);
}

/** One entry's text → its normalized argv; a string is the error (Postfix's pcf_parse_master_entry). */
function parseEntry(text: string): string[] | string {
  const argv = splitQuoted(text);
  if (argv.length < 8) return 'bad field count';
  checkEntry(argv, text);
  normalizeArgs(argv);
  return argv;
}

function print(argv: string[]): string {
  return formatMasterEntry({ argv, line: 0 }, { fold: true }) + '\n';
}

/** -F: replaces one field; "command" replaces the command and all its arguments. */
function editField(argv: string[], field: number, value: string): void {
  if (field === 7) {
    argv.length = 7;
    argv.push(...splitQuoted(value));
    normalizeArgs(argv);
  } else {
    argv[field] = value;
  }
  checkEntry(argv, value);
}

/** -P / -PX: sets or removes "-o name=value" among the daemon options. */
function editParam(argv: string[], name: string, value: string | null): void {
  let matched = false;
  let k = 8;
  for (; k < argv.length; k++) {
    const arg = argv[k]!;
    if (!arg.startsWith('-') || arg === '--') break;
    if (arg[1] !== 'o' || k + 1 >= argv.length) continue;
    const aval = argv[k + 1]!;
    if (arg === '-o' && aval.startsWith(`${name}=`)) {
      matched = true;
      if (value !== null) argv[k + 1] = `${name}=${value}`;
      else {
        argv.splice(k, 2);
        k -= 2;
      }
    }
    k += 1;
  }
  if (value !== null && !matched) argv.splice(k, 0, '-o', `${name}=${value}`);
}

function parseRequests(kind: MasterEditKind, mode: MasterEditMode, args: readonly string[]): Request[] {
  const opts = '-Me, -Fe, -Pe, -X, or -#';
  return args.map((raw) => {
    if (raw.includes('\n')) throw new EditError(`${opts} accept no multi-line input`);
    const text = raw.replace(/^\s+/, '');
    if (text.startsWith('#')) throw new EditError(`${opts} accept no comment input`);
    let patternText: string;
    let value: string | null = null;
    if (mode === 'set') {
      [patternText, value] = splitNameValue(text, raw);
    } else {
      if (text.includes('=')) throw new EditError('-X or -# requires names without value');
      patternText = text.trim();
    }
    const req: Request = { raw, pattern: [], value, field: -1, matches: 0 };
    if (kind === 'M') {
      const p = servicePattern(patternText, 2);
      if (!p) throw new EditError('-Me, -MX or -M# requires service_name/type');
      req.pattern = p;
    } else if (kind === 'F') {
      const p = servicePattern(patternText, 3);
      if (!p) throw new EditError('-Fe or -FX requires service_name/type/field_name');
      req.pattern = p;
      if (p[2] === '*') throw new EditError('-Fe does not accept wild-card field name');
      req.field = (MASTER_FIELDS as readonly string[]).indexOf(p[2]!);
      if (req.field < 0) throw new EditError(`invalid service attribute name: "${p[2]}"`);
      if (value !== null && req.field < 7 && BLANK.test(value)) throw new EditError('-Fe does not accept whitespace in non-command field');
    } else {
      const p = servicePattern(patternText, 3);
      if (!p) throw new EditError('-Pe or -PX requires service_name/type/parameter');
      req.pattern = p;
      if (p[2] === '*') throw new EditError('-Pe does not accept wild-card parameter name');
      if (value !== null && BLANK.test(value)) throw new EditError('-Pe does not accept whitespace in parameter value');
    }
    return req;
  });
}

export interface MasterEditResult { text: string; warnings: string[] }

/** Edits master.cf text (`file` names it in errors); see the file comment for the operations. */
export function editMasterCf(text: string, kind: MasterEditKind, mode: MasterEditMode, args: readonly string[], file: string): MasterEditResult {
  const reqs = parseRequests(kind, mode, args);
  const lines = text.split('\n');
  // Every line ends in a newline, the last one too.
  if (lines[lines.length - 1] === '') lines.pop();
  const src = lines.map((l) => `${l}\n`);
  const isInfo = (l: string) => !/^\s*(#|$)/.test(l);
  let out = '';
  let matched = false;
  let i = 0;
  let lineno = 0;
  while (i < src.length) {
    const line = src[i++]!;
    lineno++;
    if (!isInfo(line)) { out += line; continue; }
    if (/^\s/.test(line)) {
      // A continuation line of the entry before.
      if (!matched) out += line;
      else if (mode === 'comment') out += `#${line}`;
      continue;
    }
    matched = false;
    const words = line.split(/[ \t\r\n]+/).filter(Boolean);
    const [name, type] = words;
    if (name === undefined || type === undefined) throw new EditError(`file ${file}: line ${lineno}: specify service name and type on the same line`);
    if (name.includes('=')) throw new EditError(`file ${file}: line ${lineno}: service name syntax "${name}" is unsupported with -Me, -Fe, -Pe, -X, or -#`);
    if (/[=/]/.test(type)) throw new EditError(`file ${file}: line ${lineno}: service type syntax "${type}" is unsupported with -Me, -Fe, -Pe, -X, or -#`);
    let entry: string[] | null = null;
    for (const req of reqs) {
      let tentative: string[] | null = null;
      let useTentative = false;
      if (kind === 'M' && mode === 'set') {
        const t = parseEntry(req.value!);
        if (typeof t === 'string') throw new EditError(`${t}: "${req.raw}"`);
        tentative = t;
      }
      if (matches(req.pattern, name, type)) {
        matched = true;
        req.matches++;
        if (mode === 'set' || (kind === 'P' && mode === 'delete')) {
          if (kind === 'M') {
            if (req.matches === 1) useTentative = true;
          } else {
            if (entry === null) {
              // The whole entry: its continuation lines (comment lines among them are written out now).
              let full = line;
              while (i < src.length && /^[\s#]/.test(src[i]!)) {
                const next = src[i++]!;
                if (isInfo(next)) full += next;
                else out += next;
              }
              const e = parseEntry(full);
              if (typeof e === 'string') throw new EditError(`file ${file}: line ${lineno}: ${e}`);
              entry = e;
            }
            if (kind === 'F') editField(entry, req.field, req.value!);
            else editParam(entry, req.pattern[2]!, req.value);
          }
        }
      } else if (tentative !== null && matches(tentative, name, type)) {
        matched = true;
        req.matches++;
        if (req.matches === 1) useTentative = true;
      }
      if (tentative !== null && useTentative) entry = tentative;
    }
    if (entry !== null) out += print(entry);
    else if (!matched) out += line;
    else if (mode === 'comment') out += `#${line}`;
  }
  const warnings: string[] = [];
  for (const req of reqs) {
    if (req.matches > 0) continue;
    if (kind === 'M' && mode === 'set') {
      const e = parseEntry(req.value!);
      if (typeof e === 'string') throw new EditError(`${e}: "${req.raw}"`);
      out += print(e);
    } else if (kind !== 'M') {
      warnings.push(`unmatched service_name/type: "${req.raw}"`);
    }
  }
  return { text: out, warnings };
}
