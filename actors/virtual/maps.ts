/**
 * virtual(8)'s three lookup tables — virtual_mailbox_maps, virtual_uid_maps, virtual_gid_maps —
 * each queried with the full recipient address, folded to lower case, in Postfix's address
 * order (mail_addr_find without extension propagation): user+ext@domain, user@domain, then the
 * bare localpart forms only for a local domain (mydestination), then @domain. Pattern tables
 * (regexp, pcre) see the full address only.
 *
 * A broken table is a TableError ("file:line: …"), answered by the caller as a temporary
 * failure: never a silent "not found".
 */
import type { Config } from '../../src/config/index.js';
import { lookupAddress, openTable, type LookupTable } from '../../src/maps/index.js';

export class VirtualMap {
  private tables: LookupTable[] | null = null;

  constructor(
    /** The parameter name: Postfix's warnings name the map by it ("virtual_uid_maps"). */
    readonly title: string,
    /** Its tables, as virtual read the parameter. */
    private readonly specs: readonly string[],
    private readonly config: Config,
    private readonly opts: { recipientDelimiter: string; localDomain: (d: string) => boolean | Promise<boolean> },
  ) {}

  /** Opens the tables on first use; one that cannot be opened is tried again next time. */
  private open(): LookupTable[] {
    const dir = this.config.configDirectory;
    this.tables ??= this.specs.map((spec) => openTable(spec, dir ? { configDirectory: dir } : {}));
    return this.tables;
  }

  /** The value for the address, or null when no table has it. Throws TableError. */
  async find(address: string): Promise<string | null> {
    for (const t of this.open()) {
      const r = await lookupAddress(t, address.toLowerCase(), this.opts);
      if (r.found) return r.value;
    }
    return null;
  }
}

/** C's atol(): the leading decimal number of a table result ("1000" → 1000, "x" → 0). */
export function atol(value: string): number {
  const m = /^\s*([+-]?\d+)/.exec(value);
  return m ? Number(m[1]) : 0;
}
