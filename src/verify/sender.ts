/**
 * The sender address of address verification probes (Postfix's verify_sender_addr.c):
 * address_verify_sender (default $double_bounce_sender), in canonical form (@$myorigin
 * appended as trivial-rewrite's local context does); "<>" or empty is the null sender. With
 * address_verify_sender_ttl > 0 the localpart gets a time stamp that changes every ttl seconds
 * (base 31, Postfix's digits and consonants, no delimiter), so that a site cannot denylist one
 * fixed probe sender.
 *
 * smtpd uses `valid` to recognise probes of this site coming back (a probe from another MTA of
 * the same site, or ours through a loop): their sender and recipient are not put to the access
 * restrictions, else a timeout or a UCE block could cache each side negatively for the other.
 * The current, previous and next time slot are accepted.
 */
import type { Config } from '../config/index.js';
import { valuesOf, type Params } from '../config/declared.js';
import { rewriteAddress } from '../rewrite/rewrite.js';
import { REWRITE_PARAMS, rewriteSettings } from '../rewrite/settings.js';

const DIGITS = '0123456789BCDFGHJKLMNPQRSTVWXYZ';

function base31(n: number): string {
  let out = '';
  do {
    out = DIGITS[n % 31]! + out;
    n = Math.floor(n / 31);
  } while (n > 0);
  return out;
}

function parseBase31(s: string): number | null {
  if (s === '') return null;
  let n = 0;
  for (const ch of s) {
    const d = DIGITS.indexOf(ch);
    if (d < 0) return null;
    n = n * 31 + d;
  }
  return n;
}

/** What the probe sender reads (with rewriting's, for its canonical form); its users spread these into theirs. */
export const VERIFY_SENDER_PARAMS = {
  ...REWRITE_PARAMS,
  'address_verify_sender': 'str',
  'address_verify_sender_ttl': 'time',
} as const;

export class VerifySender {
  /** The bare address as configured; '' for the null sender. */
  private readonly bare: string;
  /** Its canonical, time-independent form ('' for the null sender). */
  readonly canonical: string;
  private readonly ttl: number;
  private readonly canonicalize: (address: string) => string;

  /** From the values read (or read here from a configuration). Throws on a value Postfix refuses ("must not start/end with '@'"). */
  constructor(from: Config | Params<typeof VERIFY_SENDER_PARAMS>) {
    const p = valuesOf(from, VERIFY_SENDER_PARAMS, 'verify');
    const v = p.address_verify_sender.trim();
    this.bare = v === '<>' ? '' : v;
    this.ttl = p.address_verify_sender_ttl;
    if (this.bare.startsWith('@')) throw new Error(`parameter address_verify_sender: value "${v}" must not start with '@'`);
    if (this.bare.endsWith('@')) throw new Error(`parameter address_verify_sender: value "${v}" must not end with '@'`);
    const rs = rewriteSettings(p);
    this.canonicalize = (a) => rewriteAddress(a, 'local', rs);
    this.canonical = this.bare === '' ? '' : this.canonicalize(this.bare);
  }

  /** The sender of a probe sent now (make_verify_sender_addr). */
  make(now = Date.now()): string {
    if (this.bare === '') return '';
    if (this.ttl <= 0) return this.canonical;
    const at = this.bare.indexOf('@');
    const local = at >= 0 ? this.bare.slice(0, at) : this.bare;
    const domain = at >= 0 ? this.bare.slice(at) : '';
    return this.canonicalize(`${local}${base31(Math.floor(now / 1000 / this.ttl))}${domain}`);
  }

  /**
   * valid_verify_sender_addr: the time-independent address when `theirs` is a probe sender of
   * ours (the time stamp within one slot of now), else null.
   */
  valid(theirs: string, now = Date.now()): string | null {
    if (this.bare === '') return theirs === '' ? '' : null;
    const mine = this.canonical;
    const myAt = mine.indexOf('@');
    const baseLen = myAt >= 0 ? myAt : mine.length;
    if (theirs.slice(0, baseLen).toLowerCase() !== mine.slice(0, baseLen).toLowerCase()) return null;
    const theirAt = theirs.indexOf('@', baseLen);
    if (theirAt < 0 && myAt >= 0) return null;
    if (theirAt >= 0 && (myAt < 0 || theirs.slice(theirAt).toLowerCase() !== mine.slice(myAt).toLowerCase())) return null;
    const stamp = theirs.slice(baseLen, theirAt >= 0 ? theirAt : theirs.length);
    if (this.ttl > 0) {
      const theirEpoch = parseBase31(stamp);
      if (theirEpoch === null) return null;
      const myEpoch = Math.floor(now / 1000 / this.ttl);
      if (theirEpoch < myEpoch - 1 || theirEpoch > myEpoch + 1) return null;
    } else if (stamp !== '') {
      return null;
    }
    return mine;
  }
}
