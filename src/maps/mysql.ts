// mysql:/file.cf — MySQL and MariaDB lookups (mysql_table(5)) with the mysql2 client.
//
// Parameters: hosts (inet:host:port, host[:port], unix:/socket; default localhost), user,
// password, dbname, and the common query, result_format, domain, expansion_limit (sql.ts).
// Refused (they would change how or whether the connection is protected or configured, and
// Postactor does not build them): option_file, option_group, tls_* — a stop with a clear
// error rather than a plaintext connection the file did not ask for. The client library is
// loaded on the first lookup, so threads without such a table never load it.

import type mysql from 'mysql2';

import { HostDown, HostRotation, SqlTable, parseHosts, type DbHost, type SqlBackend, type SqlTableOptions } from './sql.js';
import { TableError } from './types.js';

const RETRY_MS = 60_000;
const IDLE_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

const REFUSED = Object.fromEntries([
  'option_file', 'option_group', 'tls_cert_file', 'tls_key_file', 'tls_CAfile', 'tls_CApath', 'tls_ciphers', 'tls_verify_cert',
].map((n) => [n, 'not supported by Postactor (remove it; connections are made with hosts, user, password and dbname only)']));

export class MysqlTable extends SqlTable {
  constructor(spec: string, file: string, opts: SqlTableOptions, private readonly connections = 1) {
    super(spec, file, ['hosts', 'user', 'password', 'dbname', 'require_result_set', 'idle_interval', 'retry_interval'], opts);
    for (const [name, why] of Object.entries(REFUSED)) if (this.cf.has(name)) throw new TableError(`${file}: ${name}: ${why}`);
    this.cf.required('dbname');
    parseHosts(this.cf.str('hosts', ''), 3306, null);
  }

  protected backend(): SqlBackend {
    const hosts = parseHosts(this.cf.str('hosts', ''), 3306, null);
    const requireResultSet = this.cf.bool('require_result_set', true);
    const pools = new Map<DbHost, mysql.Pool>();
    const idle = this.cf.int('idle_interval', IDLE_MS / 1000) * 1000;
    let lib: Promise<typeof import('mysql2')> | null = null;
    const pool = async (h: DbHost): Promise<mysql.Pool> => {
      const have = pools.get(h);
      if (have) return have;
      const client = await (lib ??= import('mysql2'));
      {
        const again = pools.get(h);
        if (again) return again;
        const p = client.createPool({
          ...(h.socket ? { socketPath: h.socket } : { host: h.host!, port: h.port! }),
          user: this.cf.str('user', ''),
          password: this.cf.str('password', ''),
          database: this.cf.str('dbname', ''),
          connectionLimit: this.connections,
          maxIdle: 0,
          idleTimeout: idle,
          connectTimeout: CONNECT_TIMEOUT_MS,
          rowsAsArray: true,
          dateStrings: true,
          supportBigNumbers: true,
          bigNumberStrings: true,
          multipleStatements: false,
        });
        pools.set(h, p);
        return p;
      }
    };
    const rotation = new HostRotation(hosts, this.cf.int('retry_interval', RETRY_MS / 1000) * 1000, this.spec, 'mysql');
    return {
      // mysql_real_escape_string's set: NUL, newline, CR, backslash, quotes, ^Z.
      quote: (s) => s.replace(/[\0\n\r\\'"\x1a]/g, (c) => ({ '\0': '\\0', '\n': '\\n', '\r': '\\r', '\x1a': '\\Z' } as Record<string, string>)[c] ?? `\\${c}`),
      run: (sql) => rotation.run(async (h) => {
        const p = await pool(h);
        return new Promise<(string | null)[]>((resolve, reject) => p.query({ sql, rowsAsArray: true }, (err, rows) => {
          if (err) {
            const e = err as mysql.QueryError & { fatal?: boolean };
            if (e.fatal || !('sqlState' in e) || e.code === 'ER_ACCESS_DENIED_ERROR' || e.code === 'ER_BAD_DB_ERROR') reject(new HostDown(e.message || e.code));
            else reject(new TableError(`${this.spec}: mysql query failed: ${e.message}`));
            return;
          }
          if (!Array.isArray(rows)) {
            if (requireResultSet) reject(new TableError(`${this.spec}: mysql query did not return a result set`));
            else resolve([]);
            return;
          }
          resolve((rows as unknown[][]).flat().map((v) => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v.toString('utf8') : String(v))));
        }));
      }),
      close: () => {
        for (const p of pools.values()) p.end(() => undefined);
        pools.clear();
      },
    };
  }
}
