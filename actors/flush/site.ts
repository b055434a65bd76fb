/**
 * A destination as the flush service names its log (Postfix's flush_site_to_path): the site is
 * converted to ASCII (IDNA, which also folds case) and must be a name a log can carry — not
 * empty, at most 255 characters (Postfix's mail_queue_id_ok on the log's file name). Postfix
 * then masks every non-alphanumeric character with "_" to make a file name; the store keys by
 * name, so Postactor keeps the dots and brackets (the same destination, the same log).
 */
import { domainToASCII } from 'node:url';

export type SiteKey = { key: string } | { problem: 'bad' | 'deny' };

/** The log key of a destination: its lower-case ASCII form; 'deny' when it has none, 'bad' when it cannot be a log name. */
export function siteKey(site: string): SiteKey {
  if (site === '' || site.length > 255) return { problem: 'bad' };
  // An address literal "[1.2.3.4]" has no IDNA form; it is kept as it is (lower case, for IPv6).
  const ascii = site.startsWith('[') ? site.toLowerCase() : /^[\x21-\x7e]+$/.test(site) ? site.toLowerCase() : domainToASCII(site);
  if (ascii === '') return { problem: 'deny' };
  if (ascii.length > 255 || /[\x00-\x20\x7f]/.test(ascii)) return { problem: 'bad' };
  return { key: ascii };
}
