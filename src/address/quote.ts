/**
 * RFC 5321 local-part quoting as Postfix's quote_822_local (global/quote_822_local.c): a local
 * part that is not a dot-atom goes out as a quoted-string, with '"' and '\' escaped. The local
 * part ends at the last '@', so "a@b"@c keeps its inner '@'. 8-bit bytes stay as they are
 * (SMTPUTF8, QUOTE_FLAG_8BITCLEAN). Addresses in Postactor's queue are kept as clients wrote
 * them (a quoted local part stays quoted): a local part that already is one well-formed
 * quoted-string is sent as it is.
 */

const QUOTED = /^"(?:[^"\\\r\n]|\\[\s\S])*"$/;

/** Whether a local part is a dot-atom that needs no quotes. */
function isDotString(local: string): boolean {
  if (local === '' || local.startsWith('.') || local.endsWith('.') || local.includes('..')) return false;
  return !/[\x00-\x1f\x7f ()<>@,;:\\"[\]]/.test(local);
}

/** The address with its local part quoted when it must be (the null address stays empty). */
export function quote822Local(address: string): string {
  if (address === '') return '';
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  if (isDotString(local) || QUOTED.test(local)) return address;
  const quoted = '"' + local.replace(/["\\\r]/g, '\\$&') + '"';
  return at < 0 ? quoted : quoted + address.slice(at);
}

/**
 * A quoted local part as Postfix keeps it: without quotes when they are not needed
 * ("joe"@x → joe@x), otherwise as one canonical quoted-string (escapes only where needed).
 * Returns null when the quoted-string is malformed.
 */
export function normalizeQuotedLocal(quoted: string): string | null {
  if (!QUOTED.test(quoted)) return null;
  const inner = quoted.slice(1, -1).replace(/\\([\s\S])/g, '$1');
  return isDotString(inner) ? inner : '"' + inner.replace(/["\\]/g, '\\$&') + '"';
}

/**
 * Local part quoting (Postfix quote_822_local) as the delivery agents and qmqpd use it: quote
 * when it is not a dot-atom (an already quoted local part is quoted again, unlike quote822Local).
 */
export function quoteLocal(address: string): string {
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  if (local.length === 0 || /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\xff-]+)*$/.test(local)) return address;
  const quoted = '"' + local.replace(/(["\\])/g, '\\$1') + '"';
  return at < 0 ? quoted : quoted + address.slice(at);
}
