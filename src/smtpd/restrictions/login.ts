/**
 * Who may use which sender address: smtpd_sender_login_maps (sender address → the SASL login
 * names that own it, separated by commas or spaces) and the restrictions that consult it, as
 * Postfix's smtpd_check.c has them:
 *
 *   reject_authenticated_sender_login_mismatch   logged in, and the sender is not owned by
 *                                                this login (or has no owner at all)
 *   reject_known_sender_login_mismatch           the same, but only for senders the map knows;
 *                                                plus the unauthenticated check below
 *   reject_unauthenticated_sender_login_mismatch not logged in, and the sender has an owner
 *   reject_sender_login_mismatch                 the authenticated and unauthenticated checks
 *
 * Replies: "553 5.7.1 <addr>: Sender address rejected: not owned by user NAME" and
 * "553 5.7.1 <addr>: Sender address rejected: not logged in". The null sender is never
 * checked. Without smtpd_sasl_auth_enable the restrictions do nothing but log
 * "restriction `NAME' ignored: no SASL support", as Postfix does. The address is looked up
 * as trivial-rewrite resolves it, in Postfix's order: user@domain, user (local domains only),
 * @domain. A broken table throws (the evaluator answers 451 4.3.5).
 */
import { lookupAddress } from '../../maps/index.js';
import type { PolicyTable } from './tables.js';
import { DUNNO, type Action, type PolicyRequest, type Restriction } from './types.js';

export interface LoginSettings {
  saslEnabled: boolean;
  maps: PolicyTable[];
  /** The address trivial-rewrite resolves a sender to. */
  resolve(address: string): Promise<string>;
  recipientDelimiter: string;
  isLocalDomain(domain: string): Promise<boolean>;
}

export type LoginCheck = 'authenticated' | 'known' | 'unauthenticated' | 'both';

const NAMES: Record<LoginCheck, string> = {
  authenticated: 'reject_authenticated_sender_login_mismatch',
  known: 'reject_known_sender_login_mismatch',
  unauthenticated: 'reject_unauthenticated_sender_login_mismatch',
  both: 'reject_sender_login_mismatch',
};

/** The owners of a sender address (null: the map does not know it). */
async function owners(sender: string, s: LoginSettings): Promise<string[] | null> {
  const address = await s.resolve(sender);
  for (const m of s.maps) {
    const r = await lookupAddress(m, address, { recipientDelimiter: s.recipientDelimiter, localDomain: (d) => s.isLocalDomain(d) });
    if (r.found) return r.value.split(/[\s,]+/).filter(Boolean);
  }
  return null;
}

function rejectWith(sender: string, text: string): Action {
  return { kind: 'reject', reply: { code: 553, dsn: '5.7.1', text: `<${sender}>: Sender address rejected: ${text}` } };
}

/** Logged in, and not an owner of the sender (allowUnknown: a sender without owners passes). */
async function authenticatedMismatch(r: PolicyRequest, sender: string, allowUnknown: boolean, s: LoginSettings): Promise<Action> {
  if (s.maps.length === 0 || !r.saslUsername) return DUNNO;
  const list = await owners(sender, s);
  if (list === null && allowUnknown) return DUNNO;
  const user = r.saslUsername.toLowerCase();
  if (list?.some((o) => o.toLowerCase() === user)) return DUNNO;
  return rejectWith(sender, `not owned by user ${r.saslUsername}`);
}

/** Not logged in, and the sender has an owner. */
async function unauthenticatedMismatch(r: PolicyRequest, sender: string, s: LoginSettings): Promise<Action> {
  if (s.maps.length === 0 || r.saslUsername) return DUNNO;
  return (await owners(sender, s)) !== null ? rejectWith(sender, 'not logged in') : DUNNO;
}

export function senderLoginMismatch(check: LoginCheck, s: LoginSettings): Restriction {
  return async (r) => {
    if (!s.saslEnabled) return { kind: 'warning', warning: `restriction \`${NAMES[check]}' ignored: no SASL support` };
    const sender = r.sender;
    if (!sender) return DUNNO;
    switch (check) {
      case 'authenticated': return authenticatedMismatch(r, sender, false, s);
      case 'unauthenticated': return unauthenticatedMismatch(r, sender, s);
      case 'known': return r.saslUsername ? authenticatedMismatch(r, sender, true, s) : unauthenticatedMismatch(r, sender, s);
      case 'both': {
        const a = await authenticatedMismatch(r, sender, false, s);
        return a.kind !== 'dunno' ? a : unauthenticatedMismatch(r, sender, s);
      }
    }
  };
}
