/**
 * postscreen_access_list: Postfix's server_acl (global/server_acl.c), the permanent allow and
 * deny list. Items, first decision wins: permit, reject, dunno, permit_mynetworks, and
 * type:table looked up by the client address whose value is again such a list (without
 * tables). A table that cannot be read, or an unknown word, ends the evaluation with a
 * warning, and the client is then treated as "not listed" (Postfix's SERVER_ACL_ACT_ERROR).
 */
import type { Config } from '../config/index.js';
import { openTable, type LookupTable } from '../maps/index.js';
import { buildNetworks, type NetworkList } from '../net/networks.js';

export type AclVerdict = 'permit' | 'reject' | 'dunno' | 'error';

export interface AccessList {
  items: string[];
  mynetworks: NetworkList;
  tables: Map<string, LookupTable>;
}

const NAME = 'postscreen_access_list';

export function parseAccessList(config: Config): AccessList {
  const items = config.get(NAME).split(/[\s,]+/).filter(Boolean);
  const { networks, errors } = buildNetworks(config.get('mynetworks'), config.get('mynetworks_style'));
  if (errors.length > 0 && items.some((i) => i.toLowerCase() === 'permit_mynetworks')) throw new Error(`mynetworks: ${errors[0]}`);
  const tables = new Map<string, LookupTable>();
  for (const item of items) {
    if (item.includes(':')) tables.set(item, openTable(item, { configDirectory: config.configDirectory ?? '.' }));
  }
  return { items, mynetworks: networks, tables };
}

/** server_acl_eval; warn gets Postfix's warning texts. */
export async function evalAccessList(acl: AccessList, addr: string, warn: (text: string) => void, items = acl.items, origin = NAME): Promise<AclVerdict> {
  for (const item of items) {
    const word = item.toLowerCase();
    if (word === 'reject') return 'reject';
    if (word === 'permit') return 'permit';
    if (word === 'dunno') return 'dunno';
    if (word === 'permit_mynetworks') {
      if (acl.mynetworks.has(addr)) return 'permit';
      continue;
    }
    if (item.includes(':')) {
      const table = acl.tables.get(item);
      if (!table || origin !== NAME) {
        warn(`table ${origin}: lookup result "${item}" is not allowed -- ignoring remainder of access list`);
        return 'dunno';
      }
      let found;
      try {
        found = await table.lookup(addr);
      } catch {
        warn(`${origin}: ${item}: table lookup error -- ignoring the remainder of this access list`);
        return 'error';
      }
      if (!found.found) continue;
      const v = await evalAccessList(acl, addr, warn, found.value.split(/[\s,]+/).filter(Boolean), item);
      if (v !== 'dunno') return v;
      continue;
    }
    warn(`${origin}: unknown command: ${item} -- ignoring the remainder of this access list`);
    return 'error';
  }
  return 'dunno';
}
