/**
 * The MAIL FROM and RCPT TO parameters Postfix's smtpd knows (smtpd.c mail_cmd, rcpt_cmd): any
 * other one is answered "555 5.5.4 Unsupported option: NAME=value" (RFC 5321 4.1.1.11) instead
 * of being accepted and ignored.
 *   MAIL: BODY=8BITMIME or BODY=7BIT (RFC 1652; BODY=BINARYMIME is not offered), SIZE (RFC 1870),
 *         SMTPUTF8 (RFC 6531, while it is announced), AUTH (RFC 4954), RET and ENVID (RFC 3461)
 *   RCPT: NOTIFY and ORCPT (RFC 3461)
 * The values of the known ones are checked where they are used (SIZE, the DSN parameters).
 */

type Args = Record<string, string | boolean> | false | undefined;

/** "NAME=value" or "NAME" as the client wrote it (smtp-server upper-cases the names). */
function shown(name: string, value: string | boolean): string {
  return value === true ? name : `${name}=${String(value)}`;
}

/** The first MAIL parameter Postfix would not take, as written, or null. */
export function unsupportedMailOption(args: Args, smtputf8: boolean): string | null {
  if (!args) return null;
  for (const [name, value] of Object.entries(args)) {
    const n = name.toUpperCase();
    if (n === 'BODY' && typeof value === 'string' && /^(8BITMIME|7BIT)$/i.test(value)) continue;
    if (n === 'SMTPUTF8' && smtputf8 && value === true) continue;
    if (n === 'SIZE' || n === 'AUTH' || n === 'RET' || n === 'ENVID') continue;
    return shown(name, value);
  }
  return null;
}

/** The first RCPT parameter Postfix would not take, as written, or null. */
export function unsupportedRcptOption(args: Args): string | null {
  if (!args) return null;
  for (const [name, value] of Object.entries(args)) {
    const n = name.toUpperCase();
    if (n === 'NOTIFY' || n === 'ORCPT') continue;
    return shown(name, value);
  }
  return null;
}

/**
 * The parameter `shown` names (smtp-server upper-cases names and decodes xtext values) as the
 * client wrote it in `line`, as Postfix's reply quotes it; `shown` itself when not found.
 */
export function asWritten(line: string | undefined, shown: string): string {
  if (!line) return shown;
  const name = shown.split('=', 1)[0]!.toUpperCase();
  const token = line.split(/[ \t]+/).slice(1).find((w) => w.split('=', 1)[0]!.toUpperCase() === name && !w.includes(':<'));
  return token ?? shown;
}
