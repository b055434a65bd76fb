/**
 * Lookup tables for the smtpd policy: access maps and recipient maps, opened at start-up.
 *
 * A table whose file is missing or broken at start-up does not stop smtpd: it becomes a table
 * whose every lookup throws that TableError ("file:line: …"), so the restriction answers a
 * temporary failure (451 4.3.0) and logs the error, and it is opened again (at most once a
 * second) until the file is fixed. A table *type* Postactor does not have (src/maps
 * TABLE_TYPES: ldap:, …) is a configuration error and refuses start-up.
 *
 * `proxy:TYPE:NAME` goes to the master's proxymap (src/maps/proxy.ts), except
 * `proxy:unix:passwd.byname`, which each worker reads itself: `unix:passwd.byname` reads
 * /etc/passwd (local_recipient_maps' default), a file with no connection to share.
 */
import { readFileSync, statSync } from 'node:fs';

import { openTable, splitSpec, SUPPORTED_TYPES, TableError, unsupportedTypeMessage, type LookupResult, type LookupTable, type TableInfo } from '../../maps/index.js';

export type PolicyTable = LookupTable & Partial<TableInfo>;

/** Path of the passwd file behind unix:passwd.byname (a parameter for tests). */
export const PASSWD_FILE = { path: '/etc/passwd' };

/** Validates a "type:name" for smtpd use; returns an error text, or null. */
export function tableSpecError(spec: string): string | null {
  // A proxy: table is checked by the type it names.
  const s = stripProxy(spec).replace(/^(proxy:)+/, '');
  if (s === 'unix:passwd.byname') return null;
  let type: string;
  try {
    type = splitSpec(s).type;
  } catch (e) {
    return (e as Error).message;
  }
  if (type === 'unix') return `not supported: dictionary "${s}" (only unix:passwd.byname)`;
  if (!SUPPORTED_TYPES.includes(type)) return unsupportedTypeMessage(type);
  return null;
}

function stripProxy(spec: string): string {
  return spec === 'proxy:unix:passwd.byname' ? spec.slice('proxy:'.length) : spec;
}

/** Opens a table for smtpd (call tableSpecError first); never throws for file problems. */
export function openPolicyTable(spec: string, configDirectory: string | null, onError: (message: string) => void): PolicyTable {
  const s = stripProxy(spec);
  if (s === 'unix:passwd.byname') return new PasswdTable(spec, PASSWD_FILE.path);
  const open = () => openTable(s, configDirectory ? { configDirectory } : {});
  try {
    return open();
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    onError(e.message);
    return new RetryingTable(spec, open, e);
  }
}

/** A table that failed to open: each lookup tries to open it again (at most once a second). */
class RetryingTable implements LookupTable {
  private table: (LookupTable & TableInfo) | null = null;
  private lastTry = Date.now();

  constructor(readonly spec: string, private readonly open: () => LookupTable & TableInfo, private error: TableError) {}

  get kind(): TableInfo['kind'] | undefined { return this.table?.kind; }
  get foldsCase(): boolean | undefined { return this.table?.foldsCase; }

  lookup(key: string): LookupResult | Promise<LookupResult> {
    if (!this.table && Date.now() - this.lastTry >= 1000) {
      this.lastTry = Date.now();
      try {
        this.table = this.open();
      } catch (e) {
        if (!(e instanceof TableError)) throw e;
        this.error = e;
      }
    }
    if (!this.table) throw this.error;
    return this.table.lookup(key);
  }
}

/** unix:passwd.byname: user name → passwd line, re-read when /etc/passwd changes. */
export class PasswdTable implements LookupTable {
  readonly kind = 'fixed' as const;
  readonly foldsCase = true; // Postfix folds the address before the lookup
  private users = new Map<string, string>();
  private mtime = -1;

  constructor(readonly spec: string, private readonly file: string) {}

  lookup(key: string): LookupResult {
    let st;
    try {
      st = statSync(this.file);
    } catch (e) {
      throw new TableError(`${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (st.mtimeMs !== this.mtime) {
      const users = new Map<string, string>();
      for (const line of readFileSync(this.file, 'utf8').split('\n')) {
        const name = line.split(':', 1)[0]!;
        if (name && !name.startsWith('#') && !users.has(name)) users.set(name, line);
      }
      this.users = users;
      this.mtime = st.mtimeMs;
    }
    const v = this.users.get(key);
    return v === undefined ? { found: false } : { found: true, value: v };
  }
}
