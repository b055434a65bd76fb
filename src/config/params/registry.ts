/**
 * The parameter registry: one declaration per parameter, joining Postfix's facts (postfix.ts)
 * with what Postactor does with each (support.ts), plus Postactor's own parameters
 * (support.ts POSTACTOR_PARAMS: no Postfix default, `own` set). Everything else asks here: the defaults
 * table, the loader's validation and honesty rules, and postconf.
 *
 *   declaration(name)   the declaration of a built-in name, or undefined
 *   parameterNames()    every name `postconf -d` lists (Postfix's legacy names left out)
 *   checkValue(d, v)    what is wrong with an expanded value of that type, or null
 */

import { POSTFIX_PARAMS, type ParamType } from './postfix.js';
import { DIFFERENCES, FIXED, POSTACTOR_PARAMS, READERS, REFUSED, WORDS } from './support.js';

export type { ParamType } from './postfix.js';
export type TimeUnit = 's' | 'm' | 'h' | 'd' | 'w';

/** implemented: read by `readers`; refused: fatal when set; unsupported: warned when set. */
export type Support = 'implemented' | 'refused' | 'unsupported';

export interface Declaration {
  name: string;
  type: ParamType;
  /** Postactor's default (unexpanded). */
  default: string;
  /** Postfix 3.8's default, as `postconf -d` prints it ('' for Postactor's own). */
  postfixDefault: string;
  /** Postactor's own parameter (Postfix has no such name): what it does. */
  own?: string;
  /** Why Postactor's default differs, when it does. */
  difference?: string;
  /** Default unit of a time parameter. */
  unit?: TimeUnit;
  min?: number;
  max?: number;
  support: Support;
  /** Postactor services that read it (implemented parameters). */
  readers: readonly string[];
  /** Why it is refused (refused parameters). */
  refusal?: string;
  /** The one value Postactor behaves as, when its behaviour is built in. */
  fixed?: string;
  /** The words a list value may hold (Postfix's name masks), when fixed. */
  words?: readonly string[];
  /** Postfix keeps it for old configurations; `postconf -d` does not list it. */
  legacy: boolean;
  computed: boolean;
}

const readersOf = new Map<string, string[]>();
for (const [reader, names] of Object.entries(READERS)) {
  for (const n of names) readersOf.set(n, [...(readersOf.get(n) ?? []), reader]);
}

function unitOf(def: string): TimeUnit {
  const last = def.trim().slice(-1);
  return /[smhdw]/.test(last) ? (last as TimeUnit) : 's';
}

const DECLARATIONS = new Map<string, Declaration>();
for (const [name, p] of Object.entries(POSTFIX_PARAMS)) {
  const diff = DIFFERENCES[name];
  const readers = readersOf.get(name) ?? [];
  const d: Declaration = {
    name,
    type: p.type,
    default: diff?.value ?? p.default,
    postfixDefault: p.default,
    support: readers.length > 0 ? 'implemented' : Object.hasOwn(REFUSED, name) ? 'refused' : 'unsupported',
    readers,
    legacy: p.legacy === true,
    computed: p.computed === true,
  };
  if (diff !== undefined) d.difference = diff.why;
  if (p.type === 'time') d.unit = unitOf(p.default);
  if (p.min !== undefined) d.min = p.min;
  if (p.max !== undefined) d.max = p.max;
  if (d.support === 'refused') d.refusal = REFUSED[name]!;
  if (Object.hasOwn(FIXED, name)) d.fixed = FIXED[name]!;
  if (Object.hasOwn(WORDS, name)) d.words = WORDS[name]!;
  DECLARATIONS.set(name, d);
}
for (const [name, p] of Object.entries(POSTACTOR_PARAMS)) {
  // A name Postfix has would make `postconf -d` lie about Postfix: a bug in the table.
  if (DECLARATIONS.has(name)) throw new Error(`${name}: Postactor's own parameter has a Postfix name`);
  const d: Declaration = {
    name, type: p.type, default: p.default, postfixDefault: '', own: p.description,
    support: 'implemented', readers: p.readers, legacy: false, computed: false,
  };
  if (p.type === 'time') d.unit = unitOf(p.default);
  DECLARATIONS.set(name, d);
}

export function declaration(name: string): Declaration | undefined {
  return DECLARATIONS.get(name);
}

/** Every declared name that `postconf -d` lists, sorted. */
export function parameterNames(): string[] {
  return [...DECLARATIONS.values()].filter((d) => !d.legacy).map((d) => d.name).sort();
}

/** All declarations (legacy names included). */
export function declarations(): IterableIterator<Declaration> {
  return DECLARATIONS.values();
}

const UNIT_SECONDS: Record<TimeUnit, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Postfix time value ("300", "300s", "5d", ...) in seconds; null if malformed. */
export function parseTime(value: string, defaultUnit: TimeUnit): number | null {
  const m = /^(\d+)([smhdw])?$/.exec(value.trim());
  if (m === null) return null;
  return Number(m[1]) * UNIT_SECONDS[(m[2] as TimeUnit | undefined) ?? defaultUnit];
}

function bounds(d: Declaration, what: string, n: number, value: string): string | null {
  const unit = d.type === 'time' ? 's' : '';
  if (d.min !== undefined && n < d.min) return `bad ${what} parameter value: ${d.name} = ${value} (must be at least ${d.min}${unit})`;
  if (d.max !== undefined && n > d.max) return `bad ${what} parameter value: ${d.name} = ${value} (must be at most ${d.max}${unit})`;
  return null;
}

/**
 * What is wrong with an expanded value of a declared parameter ("bad numerical parameter
 * value: name = value (must be at least 1)"), or null when the value is good. The bounds are
 * Postfix's (its daemons refuse the same values).
 */
export function checkValue(d: Declaration, value: string): string | null {
  const v = value.trim();
  switch (d.type) {
    case 'int':
    case 'nint':
    case 'long': {
      if (!/^[-+]?\d+$/.test(v) || !Number.isSafeInteger(Number(v))) return `bad numerical parameter value: ${d.name} = ${value}`;
      return bounds(d, 'numerical', Number(v), value);
    }
    case 'bool':
    case 'nbool':
      return /^(yes|no|true|false)$/i.test(v) ? null : `bad boolean parameter value: ${d.name} = ${value}`;
    case 'time': {
      const t = parseTime(v, d.unit ?? 's');
      if (t === null) return `bad time parameter value: ${d.name} = ${value}`;
      return bounds(d, 'time', t, value);
    }
    case 'str':
    case 'raw':
      if (d.min !== undefined && value.trim().length < d.min) return `bad parameter value: ${d.name} = ${value} (must not be empty)`;
      if (d.max !== undefined && value.length > d.max) return `bad parameter value: ${d.name} = ${value} (longer than ${d.max})`;
      if (d.words !== undefined) {
        const bad = value.split(/[\s,]+/).filter((w) => w !== '' && !d.words!.includes(w.toLowerCase()));
        if (bad.length > 0) return `bad parameter value: ${d.name} = ${value} (unknown "${bad[0]}"; one of: ${d.words.join(', ')})`;
      }
      return null;
  }
}
