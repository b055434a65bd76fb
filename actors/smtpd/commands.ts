/**
 * smtpd's command table, as Postfix's smtpd.c has one: a single patch of smtp-server's
 * `SMTPConnection.prototype._onCommand` decodes each command line once and runs the checks of
 * the concerns in this fixed order, each in its own file, before smtp-server's own command
 * handling. The first check that answers (or takes the command over) ends the walk.
 *
 *   1. chat.ts          the "In:" line of the postmaster's session transcript (every line is heard)
 *   2. bare-newline.ts  a command line ending in a bare LF (smtpd_forbid_bare_newline = reject)
 *   3. pipelining.ts    improper pipelining: talking before the greeting, a command that must
 *                       end a pipelined group (smtpd_forbid_unauth_pipelining)
 *   4. syntax.ts        the HELO/EHLO name neutered; smtpd_helo_required = no
 *   5. limits.ts        the hard error limit, the error sleep, the request deadline, "where"
 *   6. dialect.ts       the command counters of the disconnect line; unknown commands to the milters
 *   7. tls.ts           smtpd_tls_req_ccert's abort; "Must issue a STARTTLS command first"
 *   then smtp-server's command handling (its _onCommand's checks, redone here with the verb
 *   already found: `handle`) and its handlers.
 *
 * This is the order the seven chained patches ran in before (each wrapped the one installed
 * before it). A check that waits (pipelining before the greeting, the error sleep, a milter's
 * answer to an unknown command) goes on with `cmd.resume()` at the check after it.
 * One function per check, one call site, the verb parsed once: the chain of patches re-parsed
 * the line seven times and made every one of its call sites megamorphic.
 */
import type { Command, CommandCheck } from '../../src/smtpd/command.js';
import { tlsCommand } from '../../src/smtpd/tls.js';
import { chatCommand } from './chat.js';
import { bareNewlineCommand } from './bare-newline.js';
import { pipeliningCommand } from './pipelining.js';
import { syntaxCommand } from './syntax.js';
import { limitsCommand } from './limits.js';
import { dialectCommand } from './dialect.js';
import { escapeBytes } from '../../src/log/escape.js';
import { maillog } from '../../src/log/maillog.js';
import { nonSmtpCommand, type ForbiddenCommands } from '../../src/smtpd/forbidden.js';

const log = maillog('smtpd');

/** The checks, in the order they run. */
const CHECKS: readonly CommandCheck[] = [
  chatCommand,
  bareNewlineCommand,
  pipeliningCommand,
  syntaxCommand,
  limitsCommand,
  dialectCommand,
  tlsCommand,
];

type OnCommand = (this: object, line: Buffer, cb: () => void) => void;

/** smtp-server's own _onCommand (the last stage). */
let library: OnCommand | null = null;

const NOOP = (): boolean => false;

/** C's isspace() in the C locale: space, \t, \n, \v, \f, \r. */
const isSpace = (b: number): boolean => b === 0x20 || (b >= 0x09 && b <= 0x0d);

class Line implements Command {
  text: string;
  verb = '';
  ascii = true;
  heloOptional = false;
  stage = 0;
  constructor(readonly conn: object, public line: Buffer, public done: () => void) {
    this.text = '';
    this.setLine(line);
  }

  setLine(raw: Buffer): void {
    // As Postfix's smtpd reads a command: the line ends at a NUL (a C string), and its tokenizer
    // skips white space before the verb and splits words at any white space.
    let line = raw;
    const nul = line.indexOf(0);
    if (nul >= 0) line = line.subarray(0, nul);
    let start = 0;
    while (start < line.length && isSpace(line[start]!)) start++;
    if (start > 0) line = line.subarray(start);
    this.line = line;
    const text = line.toString();
    this.text = text;
    let sp = text.indexOf(' ');
    const tab = text.indexOf('\t');
    if (tab >= 0 && (sp < 0 || tab < sp)) sp = tab;
    const word = sp < 0 ? text : text.slice(0, sp);
    let ascii = true;
    for (let i = 0; i < word.length; i++) {
      if (word.charCodeAt(i) > 0x7f) {
        ascii = false;
        break;
      }
    }
    this.ascii = ascii;
    this.verb = word.toUpperCase();
  }

  latin1Verb(): string {
    return this.ascii ? this.verb : this.line.toString('latin1').split(' ', 1)[0]!.toUpperCase();
  }

  resume(): void {
    run(this);
  }
}

function run(cmd: Line): void {
  const conn = cmd.conn;
  while (cmd.stage < CHECKS.length) {
    const check = CHECKS[cmd.stage++]!;
    if (check(conn, cmd)) return;
  }
  const c = conn as Conn;
  if (!cmd.heloOptional) return handle(c, cmd);
  // smtp-server checks for HELO/EHLO synchronously at the start of _onCommand; nothing else
  // reads the field before it is put back (the session keeps its own copy, set at HELO/EHLO/RSET).
  c.hostNameAppearsAs = ' ';
  try {
    handle(c, cmd);
  } finally {
    if (c.hostNameAppearsAs === ' ') c.hostNameAppearsAs = false;
  }
}

/** smtp-server's connection, as its _onCommand uses it (pinned to smtp-server 3.x). */
type Handler = (this: Conn, line: Buffer, cb: () => void) => void;
type Conn = Record<string, unknown> & {
  _server: {
    _closeTimeout?: unknown;
    options: { lmtp?: boolean; authOptional?: boolean; postactorForbidden?: { commands: ForbiddenCommands; namaddr: (session: object) => string } };
    logger: { error(meta: object, ...args: unknown[]): void };
  };
  id: string;
  name: string;
  session: object;
  close(): void;
  _upgrading: boolean;
  _ready: boolean;
  _nextHandler: Handler | false | undefined;
  _handlerPending: boolean;
  _unrecognizedCommands: number;
  openingCommand: string | false;
  hostNameAppearsAs: string | false;
  send(code: number, data: unknown, context?: unknown): void;
  _whenWritable(next: () => void): void;
  _isDisabled(name: string): boolean;
  _isSupported(name: string): boolean;
  _getHandler(name: string): Handler | undefined;
};

/** The library's handler method of each command smtpd knows (an internalized name for each). */
const HANDLERS = new Map(['HELO', 'EHLO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'HELP',
  'STARTTLS', 'AUTH', 'XCLIENT', 'XFORWARD', 'ETRN', 'WIZ', 'SHELL', 'KILL'].map((v) => [v, `handler_${v}`]));

/**
 * smtp-server's _onCommand with the verb already found: the same checks and replies in the same
 * order, without decoding the line twice more, a debug record for a logger that is off, and a
 * handler lookup by a string built per command. What smtpd never sets up (LMTP, AUTH required
 * before mail) is left to the library's own code.
 */
function handle(c: Conn, cmd: Line): void {
  const o = c._server.options;
  if (o.lmtp || !o.authOptional) return library!.call(c, cmd.line, cmd.done);
  const next = cmd.done;
  const done = (): void => c._whenWritable(next);
  const verb = cmd.verb;
  // Plaintext that arrived during a TLS handshake is dropped, never answered.
  if (c._upgrading) return done();
  if (c._server._closeTimeout) return c.send(421, 'Server shutting down', verb);
  if (!c._ready) return c.send(421, c.name + ' You talk too soon', verb);
  let handler: Handler | undefined;
  if (c._nextHandler) {
    handler = c._nextHandler;
    c._nextHandler = false;
  } else {
    if (verb === 'HELO' || verb === 'EHLO' || verb === 'LHLO') c.openingCommand = verb;
    const method = HANDLERS.get(verb);
    if (method === undefined) handler = c._isSupported(verb) ? c._getHandler(verb) : undefined;
    else if (!c._isDisabled(verb) && typeof c[method] === 'function') handler = c[method] as Handler;
  }
  if (!handler && cmd.text.length === 0) {
    // A line with no word at all (empty, or only white space): Postfix's tokenizer finds nothing.
    c.send(500, '5.5.2 Error: bad syntax', false);
    setImmediate(done);
    return;
  }
  if (!handler) {
    // Not SMTP at all (smtpd_forbidden_commands, or a header line): Postfix's goodbye and hang-up.
    const forbidden = o.postactorForbidden;
    const sp = cmd.text.indexOf(' ');
    const word = sp < 0 ? cmd.text : cmd.text.slice(0, sp);
    if (forbidden && nonSmtpCommand(word, forbidden.commands)) {
      log.warn(`non-SMTP command from ${forbidden.namaddr(c.session)}: ${escapeBytes(cmd.line).slice(0, 100)}`);
      c.send(221, '2.7.0 Error: I can break rules, too. Goodbye.', verb);
      c.close();
      return;
    }
    c._unrecognizedCommands++;
    if (c._unrecognizedCommands >= 10) return c.send(421, 'Error: too many unrecognized commands', verb);
    c.send(500, 'Error: command not recognized', verb);
    setImmediate(done);
    return;
  }
  if (!c.hostNameAppearsAs && (verb === 'MAIL' || verb === 'RCPT' || verb === 'DATA' || verb === 'AUTH')) {
    c.send(503, 'Error: send HELO/EHLO first');
    setImmediate(done);
    return;
  }
  // A handler that throws must not escape into the socket's data pipe (as in smtp-server).
  let handlerDone = false;
  const handlerCallback = (): void => {
    handlerDone = true;
    c._handlerPending = false;
    return done();
  };
  c._handlerPending = true;
  try {
    handler.call(c, cmd.line, handlerCallback);
  } catch (E) {
    const err = E as Error;
    c._server.logger.error({ err, tnx: 'command', cid: c.id, command: verb }, '%s Failed to process %s command: %s', c.id, verb, err.message);
    if (!handlerDone) {
      c.send(451, 'Error: internal server error');
      handlerCallback();
    }
  }
}

/** Patches smtp-server's connection class (once per thread). */
export function installCommands(proto: Record<string, unknown>): void {
  if (library) return;
  library = proto._onCommand as OnCommand;
  proto._onCommand = function (this: object, line: Buffer, cb: () => void) {
    run(new Line(this, line, cb ?? NOOP));
  };
}
