/**
 * reject_unlisted_recipient (and smtpd_reject_unlisted_recipient=yes, which runs it after the
 * recipient lists when they did not reject), reject_unlisted_sender: an address in a domain we
 * are final or relay destination for must be listed in the table of its address class.
 *
 *   local (mydestination)            local_recipient_maps   "User unknown in local recipient table"
 *   virtual alias domains            virtual_alias_maps     "User unknown in virtual alias table"
 *   virtual mailbox domains          virtual_mailbox_maps   "User unknown in virtual mailbox table"
 *   relay domains                    relay_recipient_maps   "User unknown in relay recipient table"
 *
 * An address found in virtual_alias_maps is valid in any class. An empty map means "any user".
 * As Postfix's smtpd_check.c: a bare "postmaster" is always accepted (RFC 5321 4.5.1), and in
 * local domains postmaster@, MAILER-DAEMON@ and double_bounce_sender@ need no table entry
 * (qmgr and bounce absorb or generate them).
 * A broken table is a temporary failure: 451 4.3.0 "<addr>: Temporary lookup failure".
 */
import { lookupAddress, TableError } from '../../maps/index.js';
import type { AddressClass } from '../../rewrite/protocol.js';
import type { PolicyTable } from './tables.js';
import { DUNNO, rejected, type Action, type PolicyRequest, type Restriction } from './types.js';

export interface UnlistedSettings {
  /** The address class of an address (trivial-rewrite's), and the address it resolves to. */
  classOf(address: string): Promise<{ class: AddressClass; recipient: string }>;
  localMaps: PolicyTable[];
  virtualAliasMaps: PolicyTable[];
  virtualMailboxMaps: PolicyTable[];
  relayMaps: PolicyTable[];
  codes: { local: number; virtualAlias: number; virtualMailbox: number; relay: number };
  recipientDelimiter: string;
  isLocalDomain(domain: string): Promise<boolean>;
  /** double_bounce_sender: its local address needs no local_recipient_maps entry. */
  doubleBounceSender?: string;
}

const TEXT: Record<Exclude<AddressClass, 'default'>, string> = {
  'local': 'User unknown in local recipient table',
  'virtual-alias': 'User unknown in virtual alias table',
  'virtual-mailbox': 'User unknown in virtual mailbox table',
  relay: 'User unknown in relay recipient table',
};

async function inAny(maps: PolicyTable[], address: string, s: UnlistedSettings): Promise<boolean> {
  for (const m of maps) {
    const r = await lookupAddress(m, address, { recipientDelimiter: s.recipientDelimiter, localDomain: (d) => s.isLocalDomain(d) });
    if (r.found) return true;
  }
  return false;
}

export async function checkListed(which: 'sender' | 'recipient', r: PolicyRequest, s: UnlistedSettings): Promise<Action> {
  const address = which === 'sender' ? r.sender : r.recipient;
  if (!address) return DUNNO;
  if (address.toLowerCase() === 'postmaster') return DUNNO;
  try {
    const { class: cls, recipient: resolved } = await s.classOf(address);
    if (cls === 'default') return DUNNO;
    if (cls === 'local') {
      const at = resolved.lastIndexOf('@');
      const local = (at < 0 ? resolved : resolved.slice(0, at)).toLowerCase();
      if (local === 'postmaster' || local === 'mailer-daemon' || local === (s.doubleBounceSender ?? 'double-bounce').toLowerCase()) return DUNNO;
    }
    if (await inAny(s.virtualAliasMaps, resolved, s)) return DUNNO;
    const [maps, code] =
      cls === 'local' ? [s.localMaps, s.codes.local]
        : cls === 'virtual-alias' ? [[], s.codes.virtualAlias]
          : cls === 'virtual-mailbox' ? [s.virtualMailboxMaps, s.codes.virtualMailbox]
            : [s.relayMaps, s.codes.relay];
    if (cls !== 'virtual-alias' && maps.length === 0) return DUNNO; // empty map: any user
    if (await inAny(maps, resolved, s)) return DUNNO;
    return { kind: 'reject', reply: rejected(code, which === 'sender' ? '5.1.0' : '5.1.1', r, which, TEXT[cls]) };
  } catch (e) {
    if (!(e instanceof TableError)) throw e;
    return { kind: 'error', reply: { code: 451, dsn: '4.3.0', text: `<${address}>: Temporary lookup failure` }, warning: e.message };
  }
}

export function unlisted(which: 'sender' | 'recipient', s: UnlistedSettings): Restriction {
  return (r) => checkListed(which, r, s);
}
