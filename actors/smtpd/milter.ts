/**
 * smtpd_milters: smtpd's side of the milter conversation. One conversation per SMTP session,
 * held in the smtpd thread that runs the session (a callback per SMTP command and per header
 * would otherwise hop threads), as Postfix's smtpd holds the milter sockets. The events go out
 * at the SMTP stage they belong to and a milter's reject is answered there, with Postfix's
 * replies and "milter-reject" log lines. At end of message (content complete, before the 250)
 * the milters get headers, body and EOM; their edits (headers, body, sender, recipients,
 * quarantine) are applied here, to the message smtpd then hands to cleanup. (Postfix passes
 * the milter socket to cleanup, which edits the queue file; worker threads cannot pass a
 * socket, so smtpd edits the message before it is queued.)
 */
import type { Config } from '../../src/config/index.js';
import type { Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import { MILTER_PARAMS, Milters, milterSettings, type MacroSource, type Verdict } from '../../src/milter/milters.js';
import { MACRO_SOURCE_PARAMS, macroSource, parseMacroDefaults, type MilterContext } from '../../src/milter/macros.js';
import type { EnvelopeEdits } from '../../src/milter/message.js';
import { filterContent } from '../../src/milter/content.js';
import { openTable, type LookupTable } from '../../src/maps/index.js';

export type { MilterContext } from '../../src/milter/macros.js';

/** An SMTP reply for the client; hangup: close the session after it (421). */
export interface MilterRefusal { code: number; text: string; hangup: boolean }

export type ContentResult =
  | { kind: 'refuse'; refusal: MilterRefusal }
  | { kind: 'discard' }
  /** env: the milters' envelope edits (null: no milter ran); hold: quarantined. */
  | { kind: 'queue'; content: Uint8Array; env: EnvelopeEdits | null; hold: boolean; milterHeaders?: string[] };

interface SessionMilters {
  milters: Milters;
  helo: string | null;
  inTransaction: boolean;
  /** DISCARD / quarantine asked for at MAIL or RCPT: applies to this transaction's message. */
  discard: boolean;
  hold: boolean;
}

/**
 * What smtpd's milter side reads (with the rest of smtpd's: index.ts SMTPD_PARAMS), the milter
 * settings' and macros' sets (src/milter, which cleanup shares) among them.
 */
export const SMTPD_MILTER_PARAMS = {
  ...MILTER_PARAMS,
  ...MACRO_SOURCE_PARAMS,
  'receive_override_options': 'list',
  'smtpd_milters': 'str',
  'smtpd_milter_maps': 'list',
  'milter_macro_defaults': 'str',
  'myhostname': 'str',
} as const;

export class SmtpdMilters {
  private readonly sessions = new WeakMap<object, SessionMilters>();

  private readonly macroDefaults: Map<string, string>;
  private readonly settingsCache = new Map<string, ReturnType<typeof milterSettings>>();
  private readonly hostname: string;

  private constructor(private readonly p: Params<typeof SMTPD_MILTER_PARAMS>, private readonly list: string, private readonly maps: LookupTable[],
    private readonly log: Logger) {
    this.macroDefaults = parseMacroDefaults(p.milter_macro_defaults, (w) => log.warn(w));
    this.hostname = p.myhostname;
  }

  /** The smtpd_milters (and smtpd_milter_maps) of this service, or null when there are none. */
  static from(config: Config, p: Params<typeof SMTPD_MILTER_PARAMS>, log: Logger): SmtpdMilters | null {
    // receive_override_options = no_milters turns them off (Postfix: INPUT_TRANSP_MILTER).
    if (p.receive_override_options.includes('no_milters')) return null;
    const list = p.smtpd_milters.trim();
    const maps = p.smtpd_milter_maps.map((spec) => openTable(spec, { configDirectory: config.configDirectory ?? undefined }));
    if (!list && maps.length === 0) return null;
    milterSettings(p, list, () => undefined); // a bad list stops start-up here
    return new SmtpdMilters(p, list, maps, log);
  }

  /** smtpd_milter_maps: the client address's milter list (DISABLE: none), else smtpd_milters. */
  private async listFor(addr: string): Promise<string> {
    for (const t of this.maps) {
      const r = await t.lookup(addr);
      if (r.found) return r.value.trim().toUpperCase() === 'DISABLE' ? '' : r.value;
    }
    return this.list;
  }

  private macros(ctx: MilterContext): MacroSource {
    return macroSource(this.p, ctx, this.macroDefaults);
  }

  /** "550 5.7.1 text" (or multi-line) → the client's reply, logging milter-reject. */
  private refusal(verdict: string, stage: string, ctx: MilterContext, queued: boolean): MilterRefusal {
    if (verdict === 'S') verdict = '421 4.7.0 Server closing connection';
    if (verdict === 'H' || verdict === 'D') verdict = '451 4.3.5 Server configuration problem - try again later';
    const lines = verdict.split(/\r?\n/);
    const code = Number(verdict.slice(0, 3));
    // A multi-line reply goes out as one line (smtp-server's replies other than EHLO are single
    // lines): the first line's enhanced code, then each line's text.
    const text = lines.map((l, i) => (i === 0 ? l.slice(4) : l.slice(4).replace(/^\d\.\d{1,3}\.\d{1,3} /, ''))).join(' ');
    const who = `${ctx.client.name}[${ctx.client.addr}]`;
    const logged = queued ? text : `${code} ${text}`;
    this.log.info(`${queued ? ctx.queueId : 'NOQUEUE'}: milter-reject: ${stage} from ${who}: ${logged};${this.envelopeLog(ctx)}`);
    return { code, text, hangup: code === 421 || code === 521 };
  }

  private envelopeLog(ctx: MilterContext): string {
    const to = ctx.recipient ?? (ctx.recipients.length === 1 ? ctx.recipients[0]! : null);
    return `${ctx.sender !== null ? ` from=<${ctx.sender}>` : ''}${to !== null ? ` to=<${to}>` : ''} proto=${ctx.protocol} helo=<${ctx.helo}>`;
  }

  private check(v: Verdict, stage: string, ctx: MilterContext, s?: SessionMilters): MilterRefusal | null {
    if (v === null || v === 'skip') return null;
    if (v === 'D' || v === 'H') {
      // Postfix: the transaction goes on; its message is discarded / held (check_milter_reply).
      const what = v === 'D' ? 'discard' : 'hold';
      this.log.info(`${ctx.queueId ?? 'NOQUEUE'}: milter-${what}: ${stage} from ${ctx.client.name}[${ctx.client.addr}]: milter triggers ${v === 'D' ? 'DISCARD' : 'HOLD'} action;${this.envelopeLog(ctx)}`);
      if (s && v === 'D') s.discard = true;
      if (s && v === 'H') s.hold = true;
      return null;
    }
    return this.refusal(v, stage, ctx, false);
  }

  async connect(session: object, ctx: MilterContext): Promise<MilterRefusal | null> {
    let list = this.list;
    try {
      // Without smtpd_milter_maps the list is known: no table lookup to wait for.
      if (this.maps.length) list = await this.listFor(ctx.client.addr);
    } catch (err) {
      // A broken table must not let mail through unfiltered.
      this.log.warn(`smtpd_milter_maps: ${(err as Error).message}`);
      return { code: 421, text: `${this.hostname} Service unavailable - try again later`, hangup: true };
    }
    if (!list.trim()) return null;
    let settings = this.settingsCache.get(list);
    try {
      // Parsed once per list, not per session (the configuration does not change under a running smtpd).
      if (!settings) {
        settings = milterSettings(this.p, list, (w) => this.log.warn(w));
        if (this.settingsCache.size < 100) this.settingsCache.set(list, settings);
      }
    } catch (err) {
      this.log.warn(`smtpd_milter_maps: ${ctx.client.addr}: ${(err as Error).message}`);
      return { code: 421, text: `${this.hostname} Service unavailable - try again later`, hangup: true };
    }
    const milters = new Milters(settings);
    this.sessions.set(session, { milters, helo: null, inTransaction: false, discard: false, hold: false });
    const v = await milters.connect({ name: ctx.client.name, addr: ctx.client.addr, port: ctx.client.port }, this.macros(ctx));
    if (v === null || v === 'skip' || v === 'D' || v === 'H') return null;
    const code = Number(v.slice(0, 3));
    this.log.info(`NOQUEUE: milter-reject: CONNECT from ${ctx.client.name}[${ctx.client.addr}]: ${v.replace(/\r?\n/g, ' ')}; proto=SMTP`);
    // Postfix answers the greeting with its own text: 5xx and 421 refuse the session.
    const host = this.hostname;
    if (v === 'S' || code === 421) return { code: 421, text: `${host} Service unavailable - try again later`, hangup: true };
    if (v.startsWith('5')) return { code: 554, text: `${host} ESMTP not accepting connections`, hangup: true };
    return null;
  }

  /** HELO/EHLO (sent once per name, before the MAIL that follows it when no hook ran earlier). */
  async helo(session: object, ctx: MilterContext): Promise<MilterRefusal | null> {
    const s = this.sessions.get(session);
    if (!s || !this.heloDue(s, ctx)) return null;
    s.helo = ctx.helo;
    return this.check(await s.milters.helo(ctx.helo, this.macros(ctx)), 'HELO', ctx);
  }

  /** Whether the milters have yet to hear this HELO name. */
  private heloDue(s: SessionMilters, ctx: MilterContext): boolean {
    // After a connect-level reject or error HELO is answered; the reply sticks for MAIL.
    return s.helo !== ctx.helo && !s.milters.list.some((m) => m.connectionReply !== null);
  }

  /** A connect/helo-level reject or an error stays the answer for the whole session. */
  private sticky(milters: Milters, stage: string, ctx: MilterContext): MilterRefusal | null {
    for (const m of milters.list) {
      const r = m.connectionReply;
      if (r !== null && r !== 'H' && r !== 'D') return this.refusal(r, stage, ctx, false);
    }
    return null;
  }

  async mail(session: object, ctx: MilterContext, args: string[]): Promise<MilterRefusal | null> {
    const s = this.sessions.get(session);
    if (!s) return null;
    const sticky = this.sticky(s.milters, 'MAIL', ctx);
    if (sticky) return sticky;
    // (Checked here first: MAIL does not wait for a HELO step that has already been sent.)
    if (this.heloDue(s, ctx)) {
      const h = await this.helo(session, ctx);
      if (h) return h;
    }
    if (s.inTransaction) s.milters.abort();
    s.inTransaction = true;
    s.discard = false;
    s.hold = false;
    return this.check(await s.milters.mail(ctx.sender ?? '', args, this.macros(ctx)), 'MAIL', ctx, s);
  }

  async rcpt(session: object, ctx: MilterContext, args: string[]): Promise<MilterRefusal | null> {
    const s = this.sessions.get(session);
    if (!s) return null;
    return this.check(await s.milters.rcpt(ctx.recipient ?? '', args, this.macros(ctx)), 'RCPT', ctx, s);
  }

  async data(session: object, ctx: MilterContext): Promise<MilterRefusal | null> {
    const s = this.sessions.get(session);
    if (!s) return null;
    return this.check(await s.milters.data(this.macros(ctx)), 'DATA', ctx, s);
  }

  /** An unknown SMTP command (its whole line): a milter's reply replaces Postfix's 500. */
  async unknown(session: object, ctx: MilterContext, line: string): Promise<MilterRefusal | null> {
    const s = this.sessions.get(session);
    if (!s || s.milters.list.some((m) => m.connectionReply !== null)) return null;
    return this.check(await s.milters.unknown(line, this.macros(ctx)), 'UNKNOWN', ctx, s);
  }

  /** End of message: headers, body, EOM through each milter; their edits applied to the message. */
  async content(session: object, ctx: MilterContext, content: Uint8Array): Promise<ContentResult> {
    const s = this.sessions.get(session);
    if (!s) return { kind: 'queue', content, env: null, hold: false };
    s.inTransaction = false;
    if (s.discard) {
      s.milters.abort();
      return { kind: 'discard' };
    }
    const out = await filterContent(s.milters, content, this.macros(ctx), (w) => this.log.warn(`${ctx.queueId}: ${w}`));
    const v = out.verdict;
    const who = `${ctx.client.name}[${ctx.client.addr}]`;
    if (v === 'D') {
      this.log.info(`${ctx.queueId}: milter-discard: END-OF-MESSAGE from ${who}: milter triggers DISCARD action;${this.envelopeLog(ctx)}`);
      return { kind: 'discard' };
    }
    if (v !== null && v !== 'skip') return { kind: 'refuse', refusal: this.refusal(v, 'END-OF-MESSAGE', ctx, true) };
    if (out.env.quarantine !== null) {
      this.log.info(`${ctx.queueId}: milter-hold: END-OF-MESSAGE from ${who}: milter triggers HOLD action;${this.envelopeLog(ctx)}`);
    }
    return { kind: 'queue', content: out.content, env: out.env, hold: out.env.quarantine !== null || s.hold, milterHeaders: out.milterHeaders };
  }

  /** The session ends. */
  close(session: object): void {
    this.sessions.get(session)?.milters.quit();
    this.sessions.delete(session);
  }
}
