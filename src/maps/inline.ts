// inline:{ key=value, { key = value with spaces }, ... } and static:value /
// static:{ value with spaces } (Postfix >= 3.0 syntax).
//
// inline: items are separated by commas and/or whitespace; an item in braces
// may contain whitespace and commas in its value, and the blanks around its
// "=" are dropped. A key never contains whitespace. Keys are folded to lower
// case (like hash tables). Errors (Postfix: fatal) — an empty "inline:{}",
// an item without "=", an unbalanced brace — are TableErrors at open time;
// an empty value (Postfix: warning at lookup) is rejected too.

import { NOT_FOUND, TableError, found, type InfoTable, type LookupResult } from './types.js';

/** Splits "{ a, { b c }, d }" contents into items, honouring nested braces. */
export function splitBraced(spec: string, text: string): string[] {
  const items: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ',' || /\s/.test(c)) { i++; continue; }
    if (c === '{') {
      let depth = 0;
      let j = i;
      for (; j < text.length; j++) {
        if (text[j] === '{') depth++;
        else if (text[j] === '}' && --depth === 0) break;
      }
      if (j >= text.length) throw new TableError(`${spec}: missing '}'`);
      items.push(text.slice(i + 1, j).trim());
      i = j + 1;
      continue;
    }
    if (c === '}') throw new TableError(`${spec}: unexpected '}'`);
    let j = i;
    while (j < text.length && text[j] !== ',' && text[j] !== '{' && text[j] !== '}' && !/\s/.test(text[j]!)) j++;
    items.push(text.slice(i, j));
    i = j;
  }
  return items;
}

/** The text between the outer braces of "{ ... }" (trimmed), or null when not braced. */
export function unbrace(spec: string, text: string): string | null {
  const t = text.trim();
  if (!t.startsWith('{')) return null;
  if (!t.endsWith('}')) throw new TableError(`${spec}: missing '}'`);
  return t.slice(1, -1).trim();
}

export class InlineTable implements InfoTable {
  readonly kind = 'fixed';
  readonly warnings: readonly string[] = [];
  private readonly map = new Map<string, string>();

  constructor(readonly spec: string, name: string, readonly foldsCase = true) {
    const need = `; need "inline:{name=value...}"`;
    const body = unbrace(spec, name);
    if (body === null || body === '') throw new TableError(`${spec}: bad syntax${need}`);
    for (const item of splitBraced(spec, body)) {
      const eq = item.indexOf('=');
      const key = eq < 0 ? '' : item.slice(0, eq).trim();
      if (eq < 0 || key === '' || /\s/.test(key)) throw new TableError(`${spec}: missing '=' after attribute name: "${item}"${need}`);
      const value = item.slice(eq + 1).trim();
      if (value === '') throw new TableError(`${spec}: key ${key}: empty string result is not allowed`);
      const k = foldsCase ? key.toLowerCase() : key;
      if (!this.map.has(k)) this.map.set(k, value);
    }
  }

  lookup(key: string): LookupResult {
    const v = this.map.get(this.foldsCase ? key.toLowerCase() : key);
    return v === undefined ? NOT_FOUND : found(v);
  }

  entries(): Iterable<[string, string]> {
    return this.map.entries();
  }
}

export class StaticTable implements InfoTable {
  readonly kind = 'fixed';
  readonly foldsCase = false;
  readonly warnings: readonly string[] = [];
  private readonly value: string;

  constructor(readonly spec: string, name: string) {
    this.value = unbrace(spec, name) ?? name;
    if (this.value === '') throw new TableError(`${spec}: static: needs a value (static:value or static:{ value })`);
  }

  lookup(): LookupResult {
    return found(this.value);
  }
}
