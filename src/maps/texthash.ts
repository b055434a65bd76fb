// texthash:/path — a plain "key value" file read into memory (Postfix's
// texthash, also the input syntax of postmap). Keys are folded to lower case
// unless fold is off (postmap -f); values are kept verbatim. A duplicate key
// keeps the first entry and records a warning, as Postfix does. The file is
// re-read when its mtime/size/inode change (checked on every lookup), so
// edits are seen without a restart; a file that became broken makes lookups
// throw TableError until it is fixed.

import fs from 'node:fs';

import { logicalLines, splitKeyValue } from './lines.js';
import { NOT_FOUND, found, tableError, type InfoTable, type LookupResult } from './types.js';

export interface ParsedKeyValues {
  map: Map<string, string>;
  warnings: string[];
}

export interface KeyValueOptions {
  fold?: boolean;
  /** postmap -r: a later duplicate replaces the earlier one (silently). */
  replace?: boolean;
  /** postmap -w: no duplicate warnings. */
  quiet?: boolean;
}

/** Parses texthash/postmap input; a line without a value is a TableError (file:line). */
export function parseKeyValues(text: string, file: string, opts: KeyValueOptions = {}, into?: Map<string, string>): ParsedKeyValues {
  const fold = opts.fold ?? true;
  const map = into ?? new Map<string, string>();
  const warnings: string[] = [];
  for (const l of logicalLines(text)) {
    const kv = splitKeyValue(l.text);
    if (kv === null) throw tableError(file, l.line, `expected format: key whitespace value: "${l.text}"`);
    const key = fold ? kv.key.toLowerCase() : kv.key;
    if (map.has(key) && !opts.replace) {
      if (!opts.quiet) warnings.push(`${file}:${l.line}: duplicate entry: "${key}" (keeping the first)`);
      continue;
    }
    map.set(key, kv.value);
  }
  return { map, warnings };
}

export function readTableFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw tableError(file, null, `cannot open table: ${describeErrno(err)}`);
  }
}

export function describeErrno(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return 'No such file or directory';
  if (e.code === 'EACCES') return 'Permission denied';
  if (e.code === 'EISDIR') return 'Is a directory';
  return e.code ?? String(err);
}

/** Identity of a file version: changes when the file is rewritten or replaced. */
export function fileStamp(file: string): string | null {
  const st = fs.statSync(file, { throwIfNoEntry: false, bigint: true });
  return st === undefined ? null : `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * A table backed by a text file that is re-parsed whenever the file changes.
 * parse() throws TableError on a broken file; lookups then throw it too.
 */
export abstract class ReloadingFileTable<T> {
  private stamp: string | null = null;
  private state: T | null = null;
  private error: Error | null = null;

  constructor(readonly file: string) {}

  protected abstract parse(text: string): T;

  /** Loads at open time: a broken table throws here. */
  protected load(): void {
    this.refresh();
    if (this.error !== null) throw this.error;
  }

  protected current(): T {
    this.refresh();
    if (this.error !== null) throw this.error;
    return this.state!;
  }

  private refresh(): void {
    const stamp = fileStamp(this.file);
    if (stamp !== null && stamp === this.stamp) return;
    this.stamp = stamp;
    try {
      this.state = this.parse(readTableFile(this.file));
      this.error = null;
    } catch (err) {
      this.state = null;
      this.error = err as Error;
      // A missing file has no stamp: retry on the next lookup.
      if (stamp === null) this.stamp = null;
    }
  }
}

export class TexthashTable extends ReloadingFileTable<ParsedKeyValues> implements InfoTable {
  readonly kind = 'fixed';
  readonly foldsCase: boolean;

  constructor(readonly spec: string, file: string, opts: { fold?: boolean } = {}) {
    super(file);
    this.foldsCase = opts.fold ?? true;
    this.load();
  }

  protected parse(text: string): ParsedKeyValues {
    return parseKeyValues(text, this.file, { fold: this.foldsCase });
  }

  get warnings(): readonly string[] {
    return this.current().warnings;
  }

  lookup(key: string): LookupResult {
    const map = this.current().map;
    const v = map.get(this.foldsCase ? key.toLowerCase() : key);
    return v === undefined ? NOT_FOUND : found(v);
  }

  entries(): Iterable<[string, string]> {
    return this.current().map.entries();
  }
}
