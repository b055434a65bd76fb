/**
 * `postactor check`'s look at the lookup tables a configuration names: every `type:file`
 * table in an explicit setting (main.cf or -o) of a parameter Postactor implements is opened
 * and probed once, as Postfix's daemons open theirs, so a missing or broken table is reported
 * before mail meets it (`postmap` not run, a typo in a path). Reported as warnings: as with
 * Postfix, the server still starts, and the daemon that needs the table defers that mail.
 */
import { mainProxymap, openTable, TABLE_TYPES } from '../../src/maps/index.js';
import type { Config, Origin } from '../../src/config/index.js';
import { declaration } from '../../src/config/params/registry.js';

/** Caches the server creates itself (TLS session caches, postscreen's, verify's): not tables to find. */
const CACHE = /_cache_database$|_cache_map$|^address_verify_map$/;

/** Table types without a file behind them: nothing to find missing. */
const NO_FILE = new Set(['inline', 'static', 'nis']);

/** The file-backed `type:name` tables in a value (restriction lists included). */
function tablesIn(value: string): string[] {
  return value.split(/[\s,]+/).filter((item) => {
    const m = /^([a-z0-9]+):(.+)$/.exec(item);
    return m !== null && TABLE_TYPES.includes(m[1]!) && !NO_FILE.has(m[1]!);
  });
}

/** One warning per table that cannot be opened or read, naming the setting's line. */
export async function checkTables(config: Config, settings: Iterable<[string, Origin]>): Promise<string[]> {
  const warnings: string[] = [];
  const seen = new Set<string>();
  // proxy: tables are probed in this process, approved as the master's proxymap would approve them.
  mainProxymap().configure(config.get('proxy_read_maps'));
  for (const [name, origin] of settings) {
    if (declaration(name)?.support !== 'implemented' || CACHE.test(name)) continue;
    for (const spec of tablesIn(config.get(name))) {
      if (seen.has(spec)) continue;
      seen.add(spec);
      try {
        const t = openTable(spec, config.configDirectory ? { configDirectory: config.configDirectory } : {});
        await t.lookup('postactor-check-probe');
        t.close?.();
      } catch (err) {
        warnings.push(`${origin.file}${origin.line != null ? `:${origin.line}` : ''}: ${name}: ${(err as Error).message}`);
      }
    }
  }
  return warnings;
}
