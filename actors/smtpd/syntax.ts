/**
 * MAIL FROM / RCPT TO syntax and HELO, as Postfix's smtpd takes them (smtpd.c extract_addr,
 * mail_cmd, helo checks), on top of smtp-server's parser (pinned to smtp-server 3.x):
 *
 *  - Quoted local parts: <"a b"@example.com>, <"a@b"@example.com> are accepted (smtp-server
 *    splits the command at spaces and refuses them). The quoted-string is set aside, the rest
 *    goes through smtp-server's checks (domain, IP literal, parameters), and the address is kept
 *    as Postfix keeps it: quotes dropped when not needed ("joe"@x → joe@x), otherwise one
 *    canonical quoted-string (the smtp client sends it as it is, src/address/quote.ts).
 *  - strict_rfc821_envelopes = no (the default): an address without <> is taken too
 *    (MAIL FROM:user@example.com), as Postfix does; = yes: <> is required, as are RFC 821
 *    forms. Bad syntax: "501 5.1.7 Bad sender address syntax" / "501 5.1.3 Bad recipient
 *    address syntax" and the warning "Illegal address syntax from host[addr] in MAIL command:
 *    <text, non-printables as ?>".
 *  - BODY=BINARYMIME (and any BODY other than 7BIT/8BITMIME): "555 5.5.4 Unsupported option:
 *    BODY=BINARYMIME", as Postfix (smtp-server would answer 501).
 *  - smtpd_helo_required = no (Postfix's default): MAIL, RCPT and DATA need no HELO/EHLO
 *    first; = yes: "503 5.5.1 Error: send HELO/EHLO first" (AUTH always needs EHLO).
 */
import { maillog } from '../../src/log/maillog.js';
import { normalizeQuotedLocal } from '../../src/address/quote.js';
import { xtextDecode } from '../../src/smtpd/xattrs.js';
import { validHostname, validMailhostLiteral } from '../../src/address/hostname.js';
import { domainToASCII } from 'node:url';
import type { Command } from '../../src/smtpd/command.js';

const log = maillog('smtpd');

export interface Syntax { strict: boolean; heloRequired: boolean }

type Parsed = { address: string; args: Record<string, string | boolean> | false } | false;

type Conn = {
  _server: { options: Record<string, unknown> & { postactorSyntax?: Syntax; postactorLimits?: { namaddr(s: object): string } } };
  _nextHandler?: unknown;
  hostNameAppearsAs: string | false;
  remoteAddress: string;
  session: object;
};

/** Where an address token ends: its closing '>' (quotes and escapes honoured), or -1. */
function closingBracket(s: string): number {
  let quoted = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) return i;
    else if (c === '<' && !quoted) return -1;
  }
  return -1;
}

/** A bare address (no <>): up to the first space outside quotes. */
function bareToken(s: string): string {
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (/\s/.test(c!) && !quoted) return s.slice(0, i);
  }
  return s;
}

let serial = 0;

/** Postfix's printable(name, '?') and neuter(name, " <>()\\\";@", '?'), words joined by a space first. */
export function neuterHelo(args: string): string {
  return args.split(/[ \t]+/).join(' ').replace(/[\x00-\x1f\x7f <>()\\";@]/g, '?');
}

/** Patches smtp-server's connection class. */
export function installSyntax(proto: Record<string, unknown>): void {
  const parse = proto._parseAddressCommand as (this: Conn, name: string, command: unknown) => Parsed;
  proto._parseAddressCommand = function (this: Conn, rawName: string, rawCommand: unknown) {
    const settings = this._server.options.postactorSyntax;
    if (!settings) return parse.call(this, rawName, rawCommand);
    const command = String(rawCommand ?? '');
    let parsed = rewritten(this, settings, rawName, command, parse);
    // The domain as trivial-rewrite's resolve checks it (Postfix's smtpd_check_addr): a host name
    // or an address literal, whatever the leniency about the local part.
    if (parsed && parsed.address && !domainOk(parsed.address)) parsed = false;
    // A parameter given twice: Postfix refuses it only for the DSN ones (their syntax replies:
    // dialect.ts); SIZE, BODY, AUTH and SMTPUTF8 simply take the last value.
    const dup = parsed ? (parsed as { duplicate?: string }).duplicate : undefined;
    if (dup !== undefined && !DUPLICATE_REFUSED.has(dup.toUpperCase())) delete (parsed as { duplicate?: string }).duplicate;
    if (parsed === false && rawName.toUpperCase() === command.split(':', 1)[0]!.trim().toUpperCase()) {
      const where = rawName.toLowerCase().startsWith('mail') ? 'MAIL' : 'RCPT';
      const namaddr = this._server.options.postactorLimits?.namaddr(this.session) ?? `unknown[${this.remoteAddress}]`;
      const text = command.slice(command.indexOf(':') + 1).trim().replace(/[^\x20-\x7e]/g, '?');
      log.warn(`Illegal address syntax from ${namaddr} in ${where} command: ${text}`);
    }
    return parsed;
  };

  // BODY= other than 7BIT / 8BITMIME: Postfix's 555 (smtp-server: 501).
  const validate = proto._validateMailParams as (this: Conn, parsed: { args?: Record<string, unknown> | false }) => unknown;
  proto._validateMailParams = function (this: Conn, parsed: { args?: Record<string, unknown> | false }) {
    const body = parsed.args ? parsed.args['BODY'] : undefined;
    if (this._server.options.postactorSyntax && typeof body === 'string' && !/^(7BIT|8BITMIME)$/i.test(body)) {
      return { code: 555, message: `5.5.4 Unsupported option: BODY=${body}`, enhancedCode: null };
    }
    return validate.call(this, parsed);
  };
}

/** Parameters Postfix refuses when given twice (smtpd.c mail_cmd, rcpt_cmd). */
const DUPLICATE_REFUSED = new Set(['ENVID', 'RET', 'NOTIFY', 'ORCPT']);

/** The domain of an address (after its last '@'; none: a bare local part) is a valid host name or address literal. */
export function domainOk(address: string): boolean {
  const at = address.lastIndexOf('@');
  if (at < 0) return true;
  const domain = address.slice(at + 1);
  if (domain.startsWith('[')) return validMailhostLiteral(domain);
  // A UTF-8 domain (SMTPUTF8, or punycode smtp-server turned into Unicode) is checked as its A-labels.
  const ascii = /^[\x00-\x7f]*$/.test(domain) ? domain : domainToASCII(domain);
  return ascii !== '' && validHostname(ascii);
}

/** Every ENVID= of a MAIL line (in Postfix's tokens): exactly one, valid xtext, printable or tab once decoded. */
export function envidValid(line: string): boolean {
  const values = line.split(/[ \t]+/).slice(2).filter((w) => /^ENVID=/i.test(w)).map((w) => w.slice(6));
  if (values.length !== 1) return false;
  const decoded = xtextDecode(values[0]!);
  return decoded !== null && /^[\x20-\x7e\t]*$/.test(decoded);
}

/**
 * The command table's check (commands.ts, after pipelining.ts): the HELO/EHLO name as Postfix
 * keeps it, and with smtpd_helo_required = no smtp-server's "send HELO/EHLO first" check is
 * passed for MAIL, RCPT and DATA.
 */
export function syntaxCommand(conn: object, cmd: Command): boolean {
  const c = conn as Conn;
  const settings = c._server.options.postactorSyntax;
  if (!settings || c._nextHandler) return false;
  const verb = cmd.verb;
  // (Only a line that starts with HELO or EHLO can match: the test before the regex is cheap.)
  if (verb.startsWith('HELO') || verb.startsWith('EHLO')) {
    // HELO/EHLO: the name as Postfix keeps it (printable, then neuter): the words joined, and
    // control characters and " <>()\";@" each made '?', so the name cannot break the
    // Received header, the log or a policy request.
    const m = /^(HELO|EHLO)[ \t]+(.*)$/i.exec(cmd.line.toString('latin1'));
    if (m && m[2]!.trim()) cmd.setLine(Buffer.from(`${m[1]} ${neuterHelo(m[2]!.trim())}`, 'latin1'));
  }
  if (settings.heloRequired || c.hostNameAppearsAs) return false;
  const name = cmd.latin1Verb();
  // AUTH needs EHLO whatever the setting (Postfix's auth_cmd).
  if (name === 'MAIL' || name === 'RCPT' || name === 'DATA') cmd.heloOptional = true;
  return false;
}

/** local@domain in dot-atoms of letters, digits and atext, without parameters or punycode. */
const PLAIN = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*$/;

/**
 * An address smtp-server's parser would take as it is (the common case: two of them per
 * message): every one of its checks passes (no source route, no IP literal, local part and
 * domain without leading, trailing or double dots, no ".-" or "-.", at most 253 bytes) and its
 * punycode step leaves the domain alone (no "xn--" label). Anything else goes through the
 * parser; the answer is the same, without its splitting, parameter loop and punycode mapping.
 */
function plainAddress(a: string): boolean {
  return a.length <= 253 && PLAIN.test(a) && !a.includes('.-') && !a.includes('-.') && !/(?:^|[.@])xn--/.test(a);
}

function rewritten(conn: Conn, settings: Syntax, rawName: string, command: string, parse: (this: Conn, name: string, command: unknown) => Parsed): Parsed {
  const colon = command.indexOf(':');
  if (colon < 0) return parse.call(conn, rawName, command);
  const head = command.slice(0, colon + 1);
  const rest = command.slice(colon + 1).replace(/^\s+/, '');
  let inner: string;
  let after: string;
  if (rest.startsWith('<')) {
    const end = closingBracket(rest);
    if (end < 0) return false;
    inner = rest.slice(1, end);
    after = rest.slice(end + 1);
    // Parameters must be separated from the address.
    if (after !== '' && !/^\s/.test(after)) return false;
  } else {
    if (settings.strict) return false;
    const token = bareToken(rest);
    if (token === '') return false;
    inner = token;
    after = rest.slice(token.length);
  }
  // A quoted local part, after an optional source route: set aside, checked on its own.
  const m = /^((?:@[^:"]*:)?)("(?:[^"\\\r\n]|\\[^\r\n])*")(@[^"]*)?$/.exec(inner);
  if (!m) {
    if (inner.includes('"')) return false;
    if (after === '' && plainAddress(inner) && head.slice(0, -1).trim().toUpperCase() === rawName.trim().toUpperCase()) return { address: inner, args: false };
    return parse.call(conn, rawName, `${head}<${inner}>${after}`);
  }
  const local = normalizeQuotedLocal(m[2]!);
  if (local === null || !m[3]) return false;
  const placeholder = `paq${process.pid}x${++serial}`;
  const parsed = parse.call(conn, rawName, `${head}<${m[1]}${placeholder}${m[3]}>${after}`);
  if (parsed === false) return false;
  parsed.address = parsed.address.replace(placeholder, local);
  return parsed;
}
