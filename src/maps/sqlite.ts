// sqlite:/file.cf — SQLite lookups (sqlite_table(5)) with Node's built-in node:sqlite
// (Node 22.13+/24: no native add-on to build or download, nothing for npm's install scripts).
//
// Parameters: dbpath, and the common query, result_format, domain, expansion_limit (sql.ts).
// The database is opened read-only on the first lookup; a missing or unreadable database, or a
// query SQLite refuses, is a TableError (temporary failure), as with Postfix. node:sqlite is
// loaded on the first lookup (the module does not exist before Node 22.5).

import type { DatabaseSync } from 'node:sqlite';

import { SqlTable, type SqlBackend, type SqlTableOptions } from './sql.js';
import { TableError } from './types.js';

export class SqliteTable extends SqlTable {
  constructor(spec: string, file: string, opts: SqlTableOptions) {
    super(spec, file, ['dbpath'], opts);
    this.cf.required('dbpath');
  }

  protected backend(): SqlBackend {
    const dbpath = this.cf.required('dbpath');
    let db: DatabaseSync | null = null;
    // The import settles once; after it the open and the query run without a pause, so two
    // lookups never open the database twice.
    const lib = import('node:sqlite');
    lib.catch(() => undefined);
    return {
      quote: (s) => s.replace(/'/g, "''"),
      run: async (sql) => {
        try {
          const { DatabaseSync: Database } = await lib;
          db ??= new Database(dbpath, { readOnly: true });
          const rows = db.prepare(sql).all() as Record<string, unknown>[];
          return rows.flatMap((r) => Object.values(r).map((v) => (v === null || v === undefined ? null : v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v))));
        } catch (e) {
          db?.close();
          db = null;
          throw new TableError(`${this.spec}: sqlite query failed: ${dbpath}: ${(e as Error).message}`);
        }
      },
      close: () => {
        db?.close();
        db = null;
      },
    };
  }
}
