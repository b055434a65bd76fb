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
 *   then smtp-server's own _onCommand (the handlers).
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

  setLine(line: Buffer): void {
    this.line = line;
    const text = line.toString();
    this.text = text;
    const sp = text.indexOf(' ');
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
  const c = conn as { hostNameAppearsAs: string | false };
  if (!cmd.heloOptional) return library!.call(conn, cmd.line, cmd.done);
  // smtp-server checks for HELO/EHLO synchronously at the start of _onCommand; nothing else
  // reads the field before it is put back (the session keeps its own copy, set at HELO/EHLO/RSET).
  c.hostNameAppearsAs = ' ';
  try {
    library!.call(conn, cmd.line, cmd.done);
  } finally {
    if (c.hostNameAppearsAs === ' ') c.hostNameAppearsAs = false;
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
