/**
 * Small helpers of Postfix's postscreen_misc.c and util/: elapsed times as postscreen logs
 * them ("0.01", "6", "1.2"), and text escaped for the log as Postfix's escape() does.
 */

/**
 * format_tv with 2 significant digits and at most 2 decimals (SIG_DIGS, and the default
 * delay_logging_resolution_limit): 0.0123 s → "0.01", 6.0 s → "6", 1.234 s → "1.2".
 */
export function formatDelta(ms: number): string {
  const MILLION = 1_000_000;
  let sec = Math.floor(ms / 1000);
  let usec = Math.round((ms - sec * 1000) * 1000);
  const wid = 100;
  let ures = MILLION / 100;
  if (sec > 0) {
    let n = 1;
    while (sec >= n && n <= wid / 10) n *= 10;
    ures = (MILLION / wid) * n;
  } else {
    while (usec >= wid * ures) ures *= 10;
  }
  if (ures > 1) {
    usec += ures / 2;
    if (usec >= MILLION) {
      sec += 1;
      usec -= MILLION;
    }
  }
  let out = String(sec);
  if (usec >= ures) {
    out += '.';
    for (let rem = usec, n = MILLION / 10; rem >= ures && n > 0; n /= 10) {
      out += String(Math.floor(rem / n));
      rem %= n;
    }
  }
  return out;
}

/** Postfix's escape(): C escapes for control characters (\a \b \f \n \r \t \v, else \ooo), bytes ≥ 0x7f as \ooo, "\\" doubled. */
const ESCAPES: Record<number, string> = { 7: 'a', 8: 'b', 12: 'f', 10: 'n', 13: 'r', 9: 't', 11: 'v' };

export function escapeText(bytes: Uint8Array, max = bytes.length): string {
  let out = '';
  for (let i = 0; i < bytes.length && i < max; i++) {
    const c = bytes[i]!;
    if (c === 0x5c) out += '\\\\';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else if (c < 0x7f && ESCAPES[c] !== undefined) out += `\\${ESCAPES[c]}`;
    else out += `\\${c.toString(8).padStart(3, '0')}`;
  }
  return out;
}
