// What Postfix's database tables share (its db_common.c, carried over as facts): the query
// and result templates with their % expansions, the "domain" filter, and the way result
// rows become one comma-separated value under expansion_limit.
//
// Query template (query, memcache key_format): %% a literal %, %s the key, %u its local part
// (the whole key when there is no @), %d its domain, %[1-9] the domain's labels counted from
// the right (%1 = com in user@mail.example.com), %S %U %D the same as lower case. A key that
// cannot fill the template — no domain for %d, an empty local part for %u, too few labels for
// %3 — is not looked up at all: "not found", and no query is sent.
//
// Result template (result_format, default %s): %s the value, %u and %d the value's local part
// and domain (a value without them is skipped), %S %U %D %[1-9] the KEY's parts.
//
// A table whose query uses a part of the key (%u %d %[1-9] %U %D) answers for partial keys
// itself, so Postfix treats it as a pattern table: the address query orders ask it only the
// full address, never user@domain → @domain (kind 'pattern' here).

import { TableError, type LookupTable } from './types.js';

export interface TemplateFlags {
  keyUser: boolean;
  keyDomain: boolean;
  keyPartial: boolean;
  valueUser: boolean;
  valueDomain: boolean;
  /** The highest %[1-9] used. */
  nparts: number;
}

export function newFlags(): TemplateFlags {
  return { keyUser: false, keyDomain: false, keyPartial: false, valueUser: false, valueDomain: false, nparts: 0 };
}

/** Records what `template` uses in `flags` (shared by a table's query and result templates, as in Postfix). */
export function parseTemplate(file: string, what: 'query' | 'result' | 'key_format', template: string, flags: TemplateFlags): void {
  const query = what !== 'result';
  for (let i = 0; i < template.length; i++) {
    if (template[i] !== '%') continue;
    const c = template[++i];
    switch (c) {
      case '%': case 's': case 'S': break;
      case 'u':
        if (query) { flags.keyUser = true; flags.keyPartial = true; } else flags.valueUser = true;
        break;
      case 'd':
        if (query) { flags.keyDomain = true; flags.keyPartial = true; } else flags.valueDomain = true;
        break;
      case 'U': flags.keyUser = true; flags.keyPartial = true; break;
      case 'D': flags.keyDomain = true; flags.keyPartial = true; break;
      default:
        if (c !== undefined && c >= '1' && c <= '9') {
          flags.nparts = Math.max(flags.nparts, Number(c));
          flags.keyDomain = true;
          flags.keyPartial = true;
          break;
        }
        throw new TableError(`${file}: invalid ${what === 'key_format' ? 'key_format' : what === 'query' ? 'query' : 'result_format'} template: ${template}`);
    }
  }
}

/** Where "user@domain" splits: the domain (after the last @) or null. */
function domainOf(s: string): string | null {
  const at = s.lastIndexOf('@');
  return at < 0 ? null : s.slice(at + 1);
}

/**
 * Expands `template`. With key === null it is a query template and `value` is the key; else a
 * result template, `value` a result and `key` the key. Returns null when the value (or key)
 * cannot fill the template: that query is not made, that result is skipped.
 */
export function expand(template: string, value: string, key: string | null, flags: TemplateFlags, quote: (s: string) => string = (s) => s): string | null {
  if (value === '') return null;
  let vdomain: string | null = null;
  let kdomain: string | null = null;
  if (key !== null) {
    if (flags.valueDomain || flags.valueUser) vdomain = domainOf(value);
    if (((vdomain === null || vdomain === '') && flags.valueDomain) || (vdomain !== null && value.length === vdomain.length + 1 && flags.valueUser)) return null;
    if (flags.keyDomain || flags.keyUser) kdomain = domainOf(key);
    if (((kdomain === null || kdomain === '') && flags.keyDomain) || (kdomain !== null && key.length === kdomain.length + 1 && flags.keyUser)) return null;
  } else {
    if (flags.keyDomain || flags.keyUser) vdomain = domainOf(value);
    if (((vdomain === null || vdomain === '') && flags.keyDomain) || (vdomain !== null && value.length === vdomain.length + 1 && flags.keyUser)) return null;
  }
  let parts: string[] = [];
  if (flags.nparts > 0) {
    parts = ((key !== null ? kdomain : vdomain) ?? '').split('.').filter((p) => p !== '');
    if (parts.length < flags.nparts) return null;
  }
  const userOf = (s: string, d: string | null) => (d === null ? s : s.slice(0, s.length - d.length - 1));
  let out = '';
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c !== '%') { out += c; continue; }
    const t = template[++i];
    switch (t) {
      case '%': out += '%'; break;
      case 's': out += quote(value); break;
      case 'u': out += quote(userOf(value, vdomain)); break;
      case 'd': out += quote(vdomain ?? ''); break;
      case 'S': out += quote(key ?? value); break;
      case 'U': out += quote(key !== null ? userOf(key, kdomain) : userOf(value, vdomain)); break;
      case 'D': out += quote((key !== null ? kdomain : vdomain) ?? ''); break;
      default: out += quote(parts[parts.length - Number(t)]!); break;
    }
  }
  return out;
}

/**
 * The "domain" parameter: names (matched exactly, case-insensitively), /file/name lists of
 * them, and type:table entries (the domain is looked up as a key). With a domain list only
 * user@domain keys with a listed domain and a non-empty local part are looked up.
 */
export class DomainFilter {
  private readonly names = new Set<string>();
  private readonly tables: LookupTable[] = [];

  constructor(value: string, open: (spec: string) => LookupTable, readList: (file: string) => string[]) {
    for (const item of value.split(/[\s,]+/).filter(Boolean)) {
      if (item.startsWith('/')) for (const n of readList(item)) this.names.add(n.toLowerCase());
      else if (/^[a-z0-9_]+:/i.test(item)) this.tables.push(open(item));
      else this.names.add(item.toLowerCase());
    }
  }

  /** True when `key` may be looked up; a table error is thrown (a temporary failure). */
  async allows(key: string): Promise<boolean> {
    const d = domainOf(key);
    if (d === null || key.length === d.length + 1) return false;
    if (this.names.has(d.toLowerCase())) return true;
    for (const t of this.tables) if ((await t.lookup(d)).found) return true;
    return false;
  }
}

export interface ResultOptions {
  resultFormat: string;
  flags: TemplateFlags;
  expansionLimit: number;
  /** Table name for the messages, "pgsql:/etc/postfix/x.cf". */
  spec: string;
  warn: (text: string) => void;
}

/**
 * Turns result cells (row by row, column by column; null cells skipped silently, empty ones
 * with a warning) into the table's value: each expanded by result_format, joined by commas.
 * More than expansion_limit expansions is a temporary failure. Returns null for "not found".
 */
export function assembleResult(cells: Iterable<string | null>, key: string, o: ResultOptions): string | null {
  const out: string[] = [];
  for (const cell of cells) {
    if (cell === null) continue;
    if (cell === '') {
      o.warn(`table "${o.spec}": empty lookup result for: "${key}" -- ignored`);
      continue;
    }
    const v = expand(o.resultFormat, cell, key, o.flags);
    if (v === null) continue;
    out.push(v);
    if (o.expansionLimit > 0 && out.length > o.expansionLimit) {
      o.warn(`${o.spec}: Expansion limit exceeded for key: '${key}'`);
      throw new TableError(`${o.spec}: Expansion limit exceeded for key: '${key}'`);
    }
  }
  const joined = out.join(',');
  return joined === '' ? null : joined;
}
