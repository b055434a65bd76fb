/**
 * One SMTP command line on its way through smtpd's checks: the shape every check of the
 * command table (actors/smtpd/commands.ts) takes. The line is decoded and its verb found once
 * here, instead of once per check. In src/ so that checks outside actors/ (tls.ts) share it.
 */
export interface Command {
  /** The line as read, without its line ending (syntax.ts may rewrite a HELO/EHLO line: `setLine`). */
  line: Buffer;
  /** The line decoded as UTF-8 (as `String(line)`). */
  text: string;
  /** The first word up to a space, upper-cased (as smtp-server finds the command name). */
  verb: string;
  /** The verb is ASCII (then its Latin-1 and lower-case forms are the obvious ones). */
  ascii: boolean;
  /** Called when the command is done and the next line may be read (a check may wrap it). */
  done: () => void;
  /** smtpd_helo_required = no: smtp-server's "send HELO/EHLO first" is passed for this command. */
  heloOptional: boolean;
  /** Goes on with the checks after the one that took the command over (after a wait). */
  resume(): void;
  /** Replaces the line (and decodes it again). */
  setLine(line: Buffer): void;
  /** The verb of the line read as Latin-1, upper-cased. */
  latin1Verb(): string;
}

/**
 * A check of the command table: runs for every command line, in the table's order. Returns true
 * when it answered the command or took it over (it then calls `cmd.done()`, or `cmd.resume()`
 * to let the later checks run); false to let the next check run now.
 */
export type CommandCheck = (conn: object, cmd: Command) => boolean;
