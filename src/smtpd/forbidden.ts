/**
 * smtpd_forbidden_commands and postscreen_forbidden_commands (Postfix 3.8 default "CONNECT GET
 * POST regexp:{{/^[^A-Z]/ Bogus}}"): command words that are not SMTP, and inline regexp patterns.
 * A client whose first word is one of them, or looks like a message header ("Subject:"), is
 * talking some other protocol (an HTTP proxy, a mail body sent as commands): smtpd says goodbye
 * and hangs up, postscreen fails its non-SMTP command test.
 */

export interface ForbiddenCommands { words: Set<string>; patterns: RegExp[] }

export function parseForbiddenCommands(value: string): ForbiddenCommands {
  const out: ForbiddenCommands = { words: new Set(), patterns: [] };
  // Items are separated by spaces or commas outside braces.
  for (const item of value.match(/[^\s,{]*\{[^]*?\}+|[^\s,]+/g) ?? []) {
    const re = /^(?:regexp|pcre):\{\{?\s*\/(.*)\/([a-z]*)\s[^}]*\}\}?$/i.exec(item);
    if (re) {
      try {
        // Postfix's regexp tables ignore case unless the pattern says "i" (which toggles it off).
        out.patterns.push(new RegExp(re[1]!, re[2]!.includes('i') ? '' : 'i'));
      } catch { /* a bad pattern: lookup errors are ignored here, as in Postfix (non-critical) */ }
    } else if (!item.includes(':')) out.words.add(item.toLowerCase());
  }
  return out;
}

/** is_header(): "Name:" (a run of printable non-space characters, optional blanks, then ':'). */
export function isHeader(text: string): boolean {
  return /^[\x21-\x39\x3b-\x7e]+[ \t]*:/.test(text);
}

/** Whether a command's first word says the client does not speak SMTP. */
export function nonSmtpCommand(word: string, f: ForbiddenCommands): boolean {
  return isHeader(word) || f.words.has(word.toLowerCase()) || f.patterns.some((p) => p.test(word));
}
