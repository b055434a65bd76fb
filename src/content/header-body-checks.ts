/**
 * The delivery agents' content checks (Postfix's header_body_checks.c as smtp(8) and lmtp(8)
 * use it: smtp_header_checks, smtp_mime_header_checks, smtp_nested_header_checks,
 * smtp_body_checks and their lmtp_ twins). They act on the message as it goes out; the queue
 * keeps the message as cleanup stored it.
 *
 * The message is walked MIME-aware (src/content/mime.ts, as Postfix's mime_state): the primary
 * headers go through *_header_checks, MIME headers anywhere and every header of a multipart
 * part through *_mime_header_checks, the other headers of an attached message through
 * *_nested_header_checks, and every body line (boundaries and the blank line after a header
 * block included, no size limit) through *_body_checks.
 *
 * Only the actions that are safe in a delivery agent work (header_checks(5)): DUNNO and OK,
 * IGNORE (delete, not logged), STRIP (delete, logged), INFO and WARN (logged), REPLACE and PREPEND
 * (logged; in a header the text must be a header). Anything else — REJECT, DEFER, DISCARD, HOLD,
 * FILTER, REDIRECT, BCC… — changes when or where mail goes, which the agent cannot do: it is
 * logged as unsupported and the line passes unchanged. A log line names the queue ID, the action
 * in lower case, "header" or "body" and what matched (200 characters at most):
 *
 *   4Fx9k2Qz1bz0ab: warning: header Subject: hello: seen on the way out
 *
 * A table that cannot answer (a lookup error) ends the delivery: HbcLookupError, after Postfix's
 * "QUEUEID: smtp header checks lookup error" (or "… body checks …") warning.
 */
import type { ParamSpec, Params } from '../config/declared.js';
import { openTable, TableError, type LookupTable } from '../maps/index.js';
import { checkInput, checkTables, logForm } from './lookup.js';
import { headerNameLength, MIME_HEADERS, walkMime, type MimeLimits } from './mime.js';

/** What the smtp client reads for its content checks (src/config/declared.ts). */
export const SMTP_HBC_PARAMS = {
  'smtp_header_checks': 'list', 'smtp_mime_header_checks': 'list',
  'smtp_nested_header_checks': 'list', 'smtp_body_checks': 'list',
  'header_size_limit': 'int', 'mime_nesting_limit': 'int', 'mime_boundary_length_limit': 'int',
} as const satisfies ParamSpec;

/** The lmtp client's: its own lmtp_ names. */
export const LMTP_HBC_PARAMS = {
  'lmtp_header_checks': 'list', 'lmtp_mime_header_checks': 'list',
  'lmtp_nested_header_checks': 'list', 'lmtp_body_checks': 'list',
  'header_size_limit': 'int', 'mime_nesting_limit': 'int', 'mime_boundary_length_limit': 'int',
} as const satisfies ParamSpec;

/** Which client, with the values it declared. */
export type HbcParams =
  | { prefix: 'smtp'; params: Params<typeof SMTP_HBC_PARAMS> }
  | { prefix: 'lmtp'; params: Params<typeof LMTP_HBC_PARAMS> };

interface HbcLog {
  info(text: string): void;
  warn(text: string): void;
}

/** A check table could not answer: the delivery cannot go on (Postfix: SMTP_ERR_DATA). */
export class HbcLookupError extends Error {
  constructor(readonly where: 'header' | 'body', error: TableError) {
    super(error.message);
    this.name = 'HbcLookupError';
  }
}

/** One check class: its parameter name (Postfix's map_class, as warnings name it) and tables. */
interface CheckList {
  name: string;
  tables: LookupTable[];
}

/** How a matched action changes its line: kept, dropped, replaced, or with a line before it. */
type Outcome = { drop?: boolean; replace?: string; prepend?: string };

export class HeaderBodyChecks {
  private constructor(
    private readonly header: CheckList,
    private readonly mime: CheckList,
    private readonly nested: CheckList,
    private readonly body: CheckList,
    private readonly headerSizeLimit: number,
    private readonly limits: MimeLimits,
    private readonly log: HbcLog,
  ) {}

  /**
   * The checks of the smtp or lmtp client, or null when none is set (Postfix's common case:
   * the content then goes out as stored, without MIME parsing).
   */
  static create(a: HbcParams, log: HbcLog, configDirectory?: string): HeaderBodyChecks | null {
    const v = a.prefix === 'smtp'
      ? { h: a.params.smtp_header_checks, m: a.params.smtp_mime_header_checks, n: a.params.smtp_nested_header_checks, b: a.params.smtp_body_checks }
      : { h: a.params.lmtp_header_checks, m: a.params.lmtp_mime_header_checks, n: a.params.lmtp_nested_header_checks, b: a.params.lmtp_body_checks };
    if (v.h.length + v.m.length + v.n.length + v.b.length === 0) return null;
    const list = (suffix: string, specs: string[]): CheckList => ({
      name: `${a.prefix}_${suffix}`,
      tables: specs.map((spec) => openTable(spec, configDirectory ? { configDirectory } : {})),
    });
    return new HeaderBodyChecks(
      list('header_checks', v.h), list('mime_header_checks', v.m), list('nested_header_checks', v.n), list('body_checks', v.b),
      a.params.header_size_limit,
      { nesting: a.params.mime_nesting_limit, boundaryLength: a.params.mime_boundary_length_limit },
      log,
    );
  }

  /**
   * The content as it goes out: the same buffer when no action changed anything. Throws
   * HbcLookupError when a table fails (logged here first).
   */
  async content(content: Buffer, queueId: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    let copied = 0;
    const edit = (start: number, end: number, o: Outcome) => {
      if (o.prepend === undefined && !o.drop && o.replace === undefined) return;
      // A new line ends as the line it stands for (CRLF in the queue; LF if that is what it had).
      const bareLf = content[end - 1] === 0x0a && (end - 2 < start || content[end - 2] !== 0x0d);
      const eol = bareLf ? '\n' : '\r\n';
      parts.push(content.subarray(copied, start));
      if (o.prepend !== undefined) parts.push(Buffer.from(o.prepend + eol, 'utf8'));
      if (o.replace !== undefined) parts.push(Buffer.from(o.replace.replace(/\r?\n/g, eol) + eol, 'utf8'));
      else if (!o.drop) parts.push(content.subarray(start, end));
      copied = end;
    };
    for (const ev of walkMime(content, this.limits, false)) {
      if (ev.kind === 'header') {
        // Postfix's hbc_header_checks: a MIME header counts as a multipart part's, wherever it is.
        const list = MIME_HEADERS.has(ev.name) || ev.cls === 'multipart' ? this.mime : ev.cls === 'nested' ? this.nested : this.header;
        if (list.tables.length === 0) continue;
        const input = checkInput(content.toString('latin1', ev.start, ev.end), this.headerSizeLimit);
        const value = await this.find(list, input, 'header', queueId);
        if (value !== null) edit(ev.start, ev.end, this.act(list, 'header', value, input, queueId));
        continue;
      }
      if (this.body.tables.length === 0) {
        // Only the primary headers are checked: the rest need not be walked.
        if (this.mime.tables.length === 0 && this.nested.tables.length === 0) break;
        continue;
      }
      const line = content.toString('utf8', ev.start, ev.end).replace(/\r?\n$/, '');
      const value = await this.find(this.body, line, 'body', queueId);
      if (value !== null) edit(ev.start, ev.end, this.act(this.body, 'body', value, line, queueId));
    }
    if (parts.length === 0) return content;
    parts.push(content.subarray(copied));
    return Buffer.concat(parts);
  }

  private async find(list: CheckList, input: string, where: 'header' | 'body', queueId: string): Promise<string | null> {
    try {
      return await checkTables(list.tables, input);
    } catch (e) {
      if (!(e instanceof TableError)) throw e;
      // Postfix names the smtp client's checks so in lmtp mode too.
      this.log.warn(`${queueId}: smtp ${where} checks lookup error`);
      throw new HbcLookupError(where, e);
    }
  }

  /** Postfix's hbc_action(): the command is the first word of the value, in any case. */
  private act(list: CheckList, where: 'header' | 'body', value: string, input: string, queueId: string): Outcome {
    const cmd = value.trim();
    const word = /^[^ \t]*/.exec(cmd)![0];
    const text = cmd.slice(word.length).trim();
    const logged = (action: string) => this.log.info(`${queueId}: ${action}: ${where} ${logForm(input)}${text ? `: ${text}` : ''}`);
    switch (word.toUpperCase()) {
      case 'WARN': logged('warning'); return {};
      case 'INFO': logged('info'); return {};
      case 'REPLACE':
        if (text === '') { this.log.warn(`REPLACE action without text in ${list.name} map`); return {}; }
        if (where === 'header' && headerNameLength(text) === 0) {
          this.log.warn(`bad REPLACE header text "${text}" in ${list.name} map -- need "headername: headervalue"`);
          return {};
        }
        logged('replace');
        return { replace: text };
      case 'PREPEND':
        if (text === '') { this.log.warn(`PREPEND action without text in ${list.name} map`); return {}; }
        if (where === 'header' && headerNameLength(text) === 0) {
          this.log.warn(`bad PREPEND header text "${text}" in ${list.name} map -- need "headername: headervalue"`);
          return {};
        }
        logged('prepend');
        return { prepend: text };
      case 'STRIP': logged('strip'); return { drop: true };
      // Not logged, as cleanup does not log it either.
      case 'IGNORE': return { drop: true };
      case 'DUNNO': case 'OK': return {};
      default:
        // REJECT, DEFER, DISCARD, HOLD, FILTER, REDIRECT, BCC…: the whole value, as Postfix logs it.
        this.log.warn(`unsupported command in ${list.name} map: ${cmd}`);
        return {};
    }
  }
}
