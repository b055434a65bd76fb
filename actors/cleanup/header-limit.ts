/**
 * header_size_limit (102400) as Postfix's cleanup applies it (mime_state.c): a message header
 * is collected while it is shorter than the limit; text beyond it is discarded, so the header
 * is kept truncated (its first lines, the last one cut at the limit) and the message goes on.
 * A 1 MB Subject line is therefore stored, checked and relayed as 102,400 bytes.
 */

/** The message with every header field cut to `limit` bytes, or null when none is longer. */
export function limitHeaderSize(msg: Uint8Array, end: number, limit: number): Uint8Array | null {
  if (limit <= 0 || end <= limit) return null;
  const parts: [number, number][] = [];
  let changed = false;
  let pos = 0;
  let fieldLen = 0;
  while (pos < end) {
    const lf = msg.indexOf(10, pos);
    const hasLf = lf >= 0 && lf < end;
    const lineEnd = hasLf ? lf + 1 : end;
    const eolStart = hasLf ? (lf > pos && msg[lf - 1] === 13 ? lf - 1 : lf) : end;
    const continued = pos > 0 && (msg[pos] === 0x20 || msg[pos] === 0x09);
    if (!continued) fieldLen = 0;
    const textLen = eolStart - pos;
    if (continued && fieldLen >= limit) {
      // Nothing more of this header fits: the line is dropped.
      changed = true;
    } else if (fieldLen + textLen > limit) {
      parts.push([pos, pos + (limit - fieldLen)], [eolStart, lineEnd]);
      fieldLen = limit;
      changed = true;
    } else {
      parts.push([pos, lineEnd]);
      fieldLen += textLen + 1;
    }
    pos = lineEnd;
  }
  if (!changed) return null;
  parts.push([end, msg.length]);
  let size = 0;
  for (const [a, b] of parts) size += b - a;
  const out = new Uint8Array(size);
  let o = 0;
  for (const [a, b] of parts) {
    out.set(msg.subarray(a, b), o);
    o += b - a;
  }
  return out;
}
