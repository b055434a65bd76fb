/**
 * The lookups every content check makes (header_checks(5)), for cleanup's checks and the
 * delivery agents' (smtp_header_checks and friends): which table answers for a header or a body
 * line, the form of a header that a table sees, and the form the log shows.
 */
import type { LookupTable } from '../maps/index.js';

/** The first answer of a list of check tables for one input (a header or a body line). */
export async function checkTables(tables: readonly LookupTable[], input: string): Promise<string | null> {
  for (const t of tables) {
    const r = await t.lookup(input);
    if (r.found) return r.value;
  }
  return null;
}

/**
 * The string header_checks sees for a header: the logical header with its line breaks as "\n"
 * (Postfix keeps the newline of each folded line and removes the CR), no final line end, and at
 * most `sizeLimit` bytes (header_size_limit: the excess is discarded).
 */
export function checkInput(raw: string, sizeLimit: number): string {
  let s = raw.replace(/\r?\n$/, '').replace(/\r\n/g, '\n');
  if (sizeLimit > 0 && s.length > sizeLimit) s = s.slice(0, sizeLimit);
  return Buffer.from(s, 'latin1').toString('utf8');
}

/** The header as the log shows it: folded lines joined, at most 200 characters. */
export function logForm(input: string): string {
  return input.replace(/\n/g, '').slice(0, 200);
}
