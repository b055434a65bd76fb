// pgsql:/file.cf — PostgreSQL lookups (pgsql_table(5)) with the pg client.
//
// Parameters: hosts (postgresql:// URIs, inet:host:port, host[:port], unix:/socket/directory;
// default localhost), user, password, dbname, encoding (UTF8), and the common query,
// result_format, domain, expansion_limit (sql.ts). Each table has its own connection per
// host (one per thread, as one per Postfix process; proxy: shares one set in the master).
// Values come back as PostgreSQL's text, as libpq gives them to Postfix. The client library is
// loaded on the first lookup, so threads without such a table never load it.

import type pg from 'pg';

import { HostDown, HostRotation, SqlTable, parseHosts, type DbHost, type SqlBackend, type SqlTableOptions } from './sql.js';
import { TableError } from './types.js';

const RETRY_MS = 60_000;
const IDLE_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

/** Every column as text, as libpq returns it. */
const TEXT_TYPES = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export class PgsqlTable extends SqlTable {
  constructor(spec: string, file: string, opts: SqlTableOptions, private readonly connections = 1) {
    super(spec, file, ['hosts', 'user', 'password', 'dbname', 'encoding'], opts);
    this.cf.required('dbname');
    parseHosts(this.cf.str('hosts', ''), 5432, /^postgres(ql)?:\/\//);
  }

  protected backend(): SqlBackend {
    const hosts = parseHosts(this.cf.str('hosts', ''), 5432, /^postgres(ql)?:\/\//);
    const pools = new Map<DbHost, pg.Pool>();
    const base: pg.PoolConfig = {
      user: this.cf.str('user', '') || undefined,
      password: this.cf.str('password', ''),
      database: this.cf.str('dbname', ''),
      client_encoding: this.cf.str('encoding', 'UTF8'),
      max: this.connections,
      idleTimeoutMillis: IDLE_MS,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      allowExitOnIdle: true,
    };
    let lib: Promise<typeof import('pg')> | null = null;
    const pool = async (h: DbHost): Promise<pg.Pool> => {
      let p = pools.get(h);
      if (!p) {
        const { default: client } = await (lib ??= import('pg'));
        p = pools.get(h);
        if (p) return p;
        p = new client.Pool(h.uri ? { ...base, connectionString: h.uri } : { ...base, host: h.socket ?? h.host, port: h.port ?? 5432 });
        // An idle connection that the server closes must not end the thread.
        p.on('error', () => undefined);
        pools.set(h, p);
      }
      return p;
    };
    const rotation = new HostRotation(hosts, RETRY_MS, this.spec, 'pgsql');
    return {
      // standard_conforming_strings (PostgreSQL's default since 9.1): only ' needs doubling.
      quote: (s) => {
        if (s.includes('\0')) throw new TableError(`${this.spec}: cannot escape input string: NUL character`);
        return s.replace(/'/g, "''");
      },
      run: (sql) => rotation.run(async (h) => {
        let res: pg.QueryArrayResult<(string | null)[]>;
        try {
          res = await (await pool(h)).query({ text: sql, rowMode: 'array', types: TEXT_TYPES });
        } catch (e) {
          const err = e as Error & { severity?: string };
          // A server's ERROR is about this query; anything else (refused, FATAL, lost) is the host.
          if (err.severity === 'ERROR') throw new TableError(`${this.spec}: pgsql query failed: fatal error from host ${h.name}: ${err.message}`);
          throw new HostDown(err.message || String((e as NodeJS.ErrnoException).code ?? e));
        }
        return res.rows.flat();
      }),
      close: () => {
        for (const p of pools.values()) void p.end().catch(() => undefined);
        pools.clear();
      },
    };
  }
}
