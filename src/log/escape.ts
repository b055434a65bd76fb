/**
 * Postfix's escape() (util/unescape.c): printable ASCII as it is (a backslash doubled), the C
 * escapes \a \b \f \n \r \t \v, every other byte as \ooo (octal). Used where Postfix logs text
 * a client sent (improper pipelining, non-SMTP commands), so a client cannot forge log lines
 * or hide control characters in them.
 */
export function escapeBytes(data: string | Buffer): string {
  const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
  let out = '';
  for (const ch of b) {
    if (ch >= 0x20 && ch < 0x7f) out += ch === 0x5c ? '\\\\' : String.fromCharCode(ch);
    else out += NAMED[ch] ?? `\\${ch.toString(8).padStart(3, '0')}`;
  }
  return out;
}

const NAMED: Record<number, string> = { 7: '\\a', 8: '\\b', 12: '\\f', 10: '\\n', 13: '\\r', 9: '\\t', 11: '\\v' };
