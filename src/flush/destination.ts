/**
 * What a flush request may name (Postfix's checks in smtpd's etrn_cmd and in postqueue -s): a
 * host name (valid_hostname: labels of letters, digits, "-" and "_", not all numeric), or an
 * address literal (valid_mailhost_literal: "[1.2.3.4]" or "[IPv6:…]"); and ETRN's checks before
 * it asks anything (smtpd, and sendmail -bs's stand-alone dialogue).
 */
import { validHostname, validMailhostLiteral } from '../address/hostname.js';

export { validHostname, validMailhostLiteral };

/** A destination a flush request may name. */
export function validDestination(site: string): boolean {
  return site.startsWith('[') ? validMailhostLiteral(site) : validHostname(site);
}

/** The reply to an ETRN whose argument is `args`, before the restrictions (Postfix's order): the reply, or the domain to ask for. */
export function etrnSyntax(args: string[], inTransaction: boolean, heloMissing: boolean): { code: number; text: string } | { domain: string } {
  if (heloMissing) return { code: 503, text: 'Error: send HELO/EHLO first' };
  if (inTransaction) return { code: 503, text: 'Error: MAIL transaction in progress' };
  if (args.length !== 1) return { code: 500, text: 'Syntax: ETRN domain' };
  const domain = args[0]!.startsWith('@') || args[0]!.startsWith('#') ? args[0]!.slice(1) : args[0]!;
  if (!validHostname(domain) && !validMailhostLiteral(domain)) return { code: 501, text: 'Error: invalid parameter syntax' };
  return { domain };
}

