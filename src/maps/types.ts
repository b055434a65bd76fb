// Shared types of the lookup-table ("type:name") layer.

export type LookupResult = { found: true; value: string } | { found: false };

/**
 * A broken or unreadable table. The message is "file:line: what is wrong"
 * (or "file: what is wrong", or "spec: what is wrong" for inline tables).
 * Callers must treat it as a TEMPORARY lookup failure (an SMTP 4xx, a
 * deferral), never as "not found": a broken table must not silently miss.
 */
export class TableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TableError';
  }
}

export function tableError(file: string, line: number | null | undefined, text: string): TableError {
  return new TableError(line != null && line > 0 ? `${file}:${line}: ${text}` : `${file}: ${text}`);
}

export interface LookupTable {
  /** The "type:name" this table was opened with. */
  readonly spec: string;
  lookup(key: string): LookupResult | Promise<LookupResult>;
  close?(): void;
}

/** Extra capabilities some tables have (used by postmap -s and by lookupAddress). */
export interface TableInfo {
  /** Fixed-key tables (texthash, lmdb, inline, static) vs pattern tables (regexp, pcre, cidr). */
  readonly kind: 'fixed' | 'pattern';
  /** True when fixed keys are folded to lower case (postmap -f turns this off). */
  readonly foldsCase: boolean;
  /** Non-fatal remarks from parsing (e.g. duplicate entries), "file:line: text". */
  readonly warnings: readonly string[];
  /** All entries, for postmap -s; undefined when the type cannot enumerate. */
  entries?(): Iterable<[string, string]>;
}

export type InfoTable = LookupTable & TableInfo;

export const NOT_FOUND: LookupResult = Object.freeze({ found: false });

export function found(value: string): LookupResult {
  return { found: true, value };
}
