/**
 * non_smtpd_milters: the milters for mail that did not come in over SMTP (sendmail/pickup), run
 * by cleanup as Postfix's cleanup_milter.c runs them. cleanup pretends the mail arrived from
 * localhost [127.0.0.1] over ESMTP: connect, EHLO (the client name), MAIL, one RCPT per
 * recipient and DATA are emulated, then the message as cleanup built it (with the headers
 * cleanup added, so a DKIM signer signs what goes out) goes through headers, body and EOM, and
 * the milters' edits are applied before the message is queued. A reject is the submission's
 * outcome (cleanup bounces it to the sender, as Postfix does for local submissions); a milter
 * cannot reject one recipient of a local submission: that is a configuration error and the
 * message waits ("4.3.5 Server configuration error"), as in Postfix.
 * The two milter stages of cleanup's processing are here too, as in cleanup_milter.c:
 * milterInspect() (the local submission through the milters) and milterHeaderChecks()
 * (milter_header_checks on the header fields milters produced).
 */
import type { Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';
import { applyAction } from './act.js';
import { checkInput, checkTables, logForm, parseAction } from './checks.js';
import type { CleanupSettings, Tables } from './settings.js';
import type { Failure, Verdict as CheckVerdict } from './state.js';
import { editRecipients, filterContent, type DsnRecipient } from '../../src/milter/content.js';
import { MACRO_SOURCE_PARAMS, macroSource, parseMacroDefaults, type MilterContext } from '../../src/milter/macros.js';
import { MILTER_PARAMS, Milters, milterSettings, type Verdict } from '../../src/milter/milters.js';

/** What the milters decided for one local submission. */
export type CleanupMilterResult =
  | { kind: 'accept'; content: Uint8Array; sender: string; recipients: DsnRecipient[]; ret?: 'FULL' | 'HDRS'; envId?: string; hold: boolean; milterHeaders: string[] }
  | { kind: 'discard' }
  /** A reject (5xx) or tempfail (4xx): code, enhanced status and text. */
  | { kind: 'reject'; code: number; dsn: string; text: string };

export interface LocalMessage {
  queueId: string;
  sender: string;
  recipients: DsnRecipient[];
  content: Uint8Array;
  ret?: 'FULL' | 'HDRS';
  envId?: string;
}

/**
 * What the local submissions' milters read, with cleanup's parameters (settings.ts): the milter
 * settings' and macros' sets (src/milter, which smtpd shares) among them.
 */
export const CLEANUP_MILTER_PARAMS = {
  ...MILTER_PARAMS,
  ...MACRO_SOURCE_PARAMS,
  'non_smtpd_milters': 'str',
  'milter_macro_defaults': 'str',
  'receive_override_options': 'list',
  'inet_protocols': 'list',
} as const;

export class CleanupMilters {
  private readonly macroDefaults: Map<string, string>;
  /** Postfix: "localhost", 127.0.0.1 (or ::1 when inet_protocols lists IPv6 first), port unknown. */
  private readonly ipv6First: boolean;

  private constructor(private readonly p: Params<typeof CLEANUP_MILTER_PARAMS>, private readonly list: string, private readonly log: Logger) {
    this.macroDefaults = parseMacroDefaults(p.milter_macro_defaults, (w) => log.warn(w));
    this.ipv6First = p.inet_protocols[0] === 'ipv6';
  }

  /** The non_smtpd_milters, or null when there are none (or receive_override_options has no_milters). */
  static from(p: Params<typeof CLEANUP_MILTER_PARAMS>, log: Logger): CleanupMilters | null {
    const list = p.non_smtpd_milters.trim();
    if (!list || p.receive_override_options.includes('no_milters')) return null;
    milterSettings(p, list, () => undefined); // a bad list stops start-up here
    return new CleanupMilters(p, list, log);
  }

  async inspect(msg: LocalMessage): Promise<CleanupMilterResult> {
    const warn = (w: string) => this.log.warn(w);
    const milters = new Milters(milterSettings(this.p, this.list, warn));
    const addr = this.ipv6First ? '::1' : '127.0.0.1';
    const ctx: MilterContext = {
      client: { name: 'localhost', addr, port: 0 }, localAddr: addr, localPort: 0, noPorts: true,
      helo: 'localhost', protocol: 'ESMTP', sender: null, recipient: null,
      recipients: msg.recipients.map((r) => r.address), queueId: msg.queueId,
    };
    const macros = () => macroSource(this.p, ctx, this.macroDefaults);
    const stage = (event: string, v: Verdict): CleanupMilterResult | 'hold' | null => {
      if (v === null || v === 'skip') return null;
      if (v === 'H') { this.logAction(ctx, 'milter-hold', event, 'milter triggers HOLD action'); return 'hold'; }
      if (v === 'D') { this.logAction(ctx, 'milter-discard', event, 'milter triggers DISCARD action'); return { kind: 'discard' }; }
      return this.reject(ctx, event, v);
    };
    let hold = false;
    try {
      // The emulated SMTP events (cleanup_milter_emul_mail, _rcpt, _data).
      let r = stage('CONNECT', await milters.connect({ name: ctx.client.name, addr, port: 0 }, macros()));
      if (r === 'hold') hold = true; else if (r) return r;
      r = stage('EHLO', await milters.helo('localhost', macros()));
      if (r === 'hold') hold = true; else if (r) return r;
      ctx.sender = msg.sender;
      r = stage('MAIL', await milters.mail(msg.sender, [], macros()));
      if (r === 'hold') hold = true; else if (r) return r;
      for (const rcpt of msg.recipients) {
        ctx.recipient = rcpt.address;
        const v = await milters.rcpt(rcpt.address, [], macros());
        if (v === 'H') { hold = true; this.logAction(ctx, 'milter-hold', 'RCPT', 'milter triggers HOLD action'); continue; }
        if (v === 'D') { this.logAction(ctx, 'milter-discard', 'RCPT', 'milter triggers DISCARD action'); return { kind: 'discard' }; }
        if (v !== null && v !== 'skip') {
          this.reject(ctx, 'RCPT', v);
          this.log.warn(`${msg.queueId}: milter configuration error: can't reject recipient in non-smtpd(8) submission`);
          this.log.warn(`${msg.queueId}: message not accepted, try again later`);
          return { kind: 'reject', code: 451, dsn: '4.3.5', text: 'Server configuration error' };
        }
      }
      ctx.recipient = null;
      r = stage('DATA', await milters.data(macros()));
      if (r === 'hold') hold = true; else if (r) return r;

      const out = await filterContent(milters, msg.content, macros(), (w) => this.log.warn(`${msg.queueId}: ${w}`));
      const end = stage('END-OF-MESSAGE', out.verdict);
      if (end !== null && end !== 'hold') return end;
      if (out.env.quarantine !== null) this.logAction(ctx, 'milter-hold', 'END-OF-MESSAGE', 'milter triggers HOLD action');
      const env = out.env;
      return {
        kind: 'accept',
        content: out.content,
        sender: env.sender ?? msg.sender,
        recipients: editRecipients(msg.recipients, env),
        ...(env.ret ?? msg.ret ? { ret: env.ret ?? msg.ret } : {}),
        ...(env.envId ?? msg.envId ? { envId: env.envId ?? msg.envId } : {}),
        hold: hold || out.env.quarantine !== null,
        milterHeaders: out.milterHeaders,
      };
    } finally {
      milters.quit();
    }
  }

  /** "ID: milter-reject: EVENT from localhost[127.0.0.1]: 5.7.1 text; from=<s> to=<r>" (cleanup_milter_apply). */
  private reject(ctx: MilterContext, event: string, v: string): CleanupMilterResult {
    if (v === 'S') {
      this.logAction(ctx, 'milter-reject', event, 'message content rejected');
      return { kind: 'reject', code: 550, dsn: '5.7.1', text: 'message content rejected' };
    }
    const first = v.split(/\r?\n/)[0]!;
    const code = Number(first.slice(0, 3));
    const rest = v.split(/\r?\n/).map((l) => l.slice(4)).join(' ');
    const m = /^([245]\.\d{1,3}\.\d{1,3}) (.*)$/s.exec(rest);
    const dsn = m ? m[1]! : `${String(code)[0]}.7.1`;
    const text = m ? m[2]! : rest;
    this.logAction(ctx, 'milter-reject', event, `${dsn} ${text}`);
    return { kind: 'reject', code, dsn, text };
  }

  private logAction(ctx: MilterContext, action: string, event: string, text: string): void {
    let line = `${ctx.queueId}: ${action}: ${event} from ${ctx.client.name}[${ctx.client.addr}]: ${text};`;
    if (ctx.sender !== null) line += ` from=<${ctx.sender}>`;
    const to = ctx.recipient ?? ctx.recipients[0];
    if (to !== undefined) line += ` to=<${to}>`;
    this.log.info(line);
  }
}

/**
 * non_smtpd_milters: a local submission through the milters, after cleanup's own header and body
 * work; their envelope edits apply before BCC and aliases. Other mail, a discarded message, or no
 * milters: the request and content unchanged. A milter's discard or reject is the reply.
 */
export async function milterInspect(milters: CleanupMilters | null, request: CleanupRequest, verdict: CheckVerdict, content: Uint8Array): Promise<{ reply: CleanupReply } | { request: CleanupRequest; content: Uint8Array }> {
  if (request.origin !== 'pickup' || !milters || verdict.discard) return { request, content };
  const r = await milters.inspect({
    queueId: request.queueId, sender: request.sender, recipients: request.recipients, content,
    ...(request.ret ? { ret: request.ret } : {}), ...(request.envId ? { envId: request.envId } : {}),
  });
  if (r.kind === 'discard') return { reply: { ok: true, queueId: request.queueId, size: content.length } };
  if (r.kind === 'reject') return { reply: { ok: false, code: r.code, dsn: r.dsn, text: r.text } };
  request = { ...request, sender: r.sender, recipients: r.recipients, ...(r.ret ? { ret: r.ret } : {}), ...(r.envId ? { envId: r.envId } : {}) };
  if (r.hold) verdict.hold = true;
  if (r.milterHeaders.length) request = { ...request, milterHeaders: r.milterHeaders };
  return { request, content: r.content };
}

/**
 * milter_header_checks: the header fields milters produced (smtpd_milters' in the request, or
 * milterInspect()'s), with header_checks' actions (Postfix: not PREPEND; REPLACE and IGNORE
 * cannot change a field already written either). A REJECT or DEFER is returned.
 */
export async function milterHeaderChecks(s: Pick<CleanupSettings, 'headerSizeLimit'>, t: Tables, request: CleanupRequest, verdict: CheckVerdict, warn: (text: string) => void): Promise<Failure | null> {
  if (!request.milterHeaders?.length || t.milterHeaderChecks.length === 0 || verdict.discard) return null;
  for (const field of request.milterHeaders) {
    const input = checkInput(field, s.headerSizeLimit);
    const value = await checkTables(t.milterHeaderChecks, input);
    if (value === null) continue;
    const action = parseAction(value);
    if (action.kind === 'prepend' || action.kind === 'replace' || action.kind === 'ignore') {
      warn(`milter_header_checks: action ${action.kind.toUpperCase()} is not supported for milter headers: ${logForm(input)}`);
      continue;
    }
    const r = applyAction(request, verdict, action, 'header', input, 'milter_header_checks', 'milter-header-');
    if ('ok' in r) return r;
    if (verdict.discard) break;
  }
  return null;
}
