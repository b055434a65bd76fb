/**
 * The maildrop file format, defined once: what sendmail(1) writes into
 * `queue_directory/maildrop/` and what the pickup actor reads back.
 *
 * Postfix's maildrop holds queue files in its record format (envelope records, the message
 * as text records without line ends, extracted recipients, end marker). Postactor keeps the
 * same information in a simpler shape, one file per submission:
 *
 *   line 1:  "postactor-maildrop 1"                      magic and format version
 *   line 2:  one JSON object, the MaildropEnvelope       (no raw newline inside: JSON escapes them)
 *   rest:    exactly `envelope.size` bytes of message    LF line ends (sendmail strips CRs, as
 *                                                        Postfix's sendmail_fix_line_endings=always)
 *
 * Two writers produce it: the Node sendmail (src/maildrop/spool.ts) and the Perl front end
 * bin/sendmail for the common submission (issue 16: no Node start-up); test/sendmail-lite.test.ts
 * checks that both write the same bytes for the same submission.
 *
 * A file whose magic, JSON, field types or byte count do not match is malformed: pickup logs a
 * warning and moves it to queue_directory/maildrop-quarantine/ (Postfix's pickup deletes such
 * files; Postactor's does not, as the file may be another program's).
 */

export const MAILDROP_MAGIC = 'postactor-maildrop 1';

/** DSN NOTIFY keywords as SMTP spells them (RFC 3461); NEVER stands alone. */
export type NotifyKeyword = 'SUCCESS' | 'DELAY' | 'FAILURE' | 'NEVER';

export interface MaildropEnvelope {
  /** Envelope sender as given (-f/-r) or the login name; "" is the null sender. Unqualified
   *  addresses are qualified later by cleanup (append_at_myorigin), as in Postfix. */
  sender: string;
  /** Command-line recipients plus, with -t, those from To/Cc/Bcc (or Resent-*). */
  recipients: string[];
  /** Sender full name (-F, else $NAME, else the GECOS field); used only for a missing From:. */
  fullName?: string;
  /** -N: per-recipient DSN NOTIFY; absent = the default (delay, failure). */
  notify?: NotifyKeyword[];
  /**
   * Mail that local(8) forwards (an alias or .forward to remote addresses): the original
   * recipient and DSN ORCPT of the recipient it was for, given to every recipient, as Postfix's
   * forward.c writes ORCP and DSN ORCPT records with each RCPT.
   */
  original?: string;
  orcpt?: string;
  /** -R hdrs|full: DSN RET (Postfix's sendmail ignores -R; Postactor records these two values). */
  ret?: 'FULL' | 'HDRS';
  /** -V: DSN envelope ID. */
  envId?: string;
  /** -B: the declared body type. */
  bodyType?: '7BIT' | '8BITMIME';
  /** -bv: verify the recipients, deliver nothing; -v: deliver and report the first attempt. Both mail a report to the sender. */
  trace?: 'verify' | 'record';
  /** -G: 'remote' (gateway submission) instead of the default 'local' rewriting context. */
  rewriteContext: 'local' | 'remote';
  /** Arrival time, ms since the epoch (Postfix: the TIME record postdrop writes). */
  arrival: number;
  /** Who submitted: real uid and login name (informational; pickup logs the file owner's uid). */
  uid: number;
  user: string;
  /** Number of message bytes that follow the envelope line. */
  size: number;
}

/** The whole file: magic line, envelope line, message bytes. */
export function encodeMaildrop(envelope: Omit<MaildropEnvelope, 'size'>, message: Uint8Array): Buffer {
  const env: MaildropEnvelope = { ...envelope, size: message.length };
  const head = Buffer.from(`${MAILDROP_MAGIC}\n${JSON.stringify(env)}\n`, 'utf8');
  return Buffer.concat([head, message]);
}

/** The header part only (for writers that stream the message after it). */
export function encodeMaildropHead(envelope: MaildropEnvelope): Buffer {
  return Buffer.from(`${MAILDROP_MAGIC}\n${JSON.stringify(envelope)}\n`, 'utf8');
}

export class MaildropFormatError extends Error {}

const NOTIFY = new Set(['SUCCESS', 'DELAY', 'FAILURE', 'NEVER']);

function isString(v: unknown): v is string {
  return typeof v === 'string';
}

/** Parses a maildrop file; throws MaildropFormatError with a short reason when malformed. */
export function decodeMaildrop(file: Buffer): { envelope: MaildropEnvelope; message: Buffer } {
  const nl1 = file.indexOf(0x0a);
  if (nl1 < 0 || file.toString('latin1', 0, nl1) !== MAILDROP_MAGIC) throw new MaildropFormatError('bad magic line');
  const nl2 = file.indexOf(0x0a, nl1 + 1);
  if (nl2 < 0) throw new MaildropFormatError('no envelope line');
  let raw: unknown;
  try {
    raw = JSON.parse(file.toString('utf8', nl1 + 1, nl2));
  } catch {
    throw new MaildropFormatError('envelope is not JSON');
  }
  if (!raw || typeof raw !== 'object') throw new MaildropFormatError('envelope is not an object');
  const e = raw as Record<string, unknown>;
  if (!isString(e['sender'])) throw new MaildropFormatError('no envelope sender');
  if (!Array.isArray(e['recipients']) || !e['recipients'].every(isString)) throw new MaildropFormatError('bad recipient list');
  if (e['recipients'].length === 0) throw new MaildropFormatError('no recipients');
  if (typeof e['arrival'] !== 'number' || !Number.isFinite(e['arrival'])) throw new MaildropFormatError('bad arrival time');
  if (typeof e['uid'] !== 'number' || !isString(e['user'])) throw new MaildropFormatError('bad submitter');
  if (typeof e['size'] !== 'number' || !Number.isInteger(e['size']) || e['size'] < 0) throw new MaildropFormatError('bad size');
  if (e['rewriteContext'] !== 'local' && e['rewriteContext'] !== 'remote') throw new MaildropFormatError('bad rewrite context');
  if (e['fullName'] !== undefined && !isString(e['fullName'])) throw new MaildropFormatError('bad full name');
  if (e['envId'] !== undefined && !isString(e['envId'])) throw new MaildropFormatError('bad envelope ID');
  if (e['ret'] !== undefined && e['ret'] !== 'FULL' && e['ret'] !== 'HDRS') throw new MaildropFormatError('bad RET');
  if (e['trace'] !== undefined && e['trace'] !== 'verify' && e['trace'] !== 'record') throw new MaildropFormatError('bad trace mode');
  if (e['bodyType'] !== undefined && e['bodyType'] !== '7BIT' && e['bodyType'] !== '8BITMIME') throw new MaildropFormatError('bad body type');
  if (e['original'] !== undefined && !isString(e['original'])) throw new MaildropFormatError('bad original recipient');
  if (e['orcpt'] !== undefined && !isString(e['orcpt'])) throw new MaildropFormatError('bad DSN original recipient');
  if (e['notify'] !== undefined && (!Array.isArray(e['notify']) || !e['notify'].every((n) => isString(n) && NOTIFY.has(n)))) {
    throw new MaildropFormatError('bad NOTIFY');
  }
  const message = file.subarray(nl2 + 1);
  if (message.length !== e['size']) throw new MaildropFormatError(`message is ${message.length} bytes, envelope says ${e['size']}`);
  return { envelope: e as unknown as MaildropEnvelope, message };
}

/**
 * Maildrop file names: the submission's queue-ID-shaped name (src/queue/qid.ts: time in base 52,
 * fixed width), so sorting names sorts submissions by arrival and pickup takes them in order.
 * Names starting with "." are files still being written (temporary names).
 */
export function isMaildropName(name: string): boolean {
  return !name.startsWith('.') && /^[0-9A-Za-z]+$/.test(name);
}
