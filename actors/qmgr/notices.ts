/**
 * The end of a delivery attempt, as far as notices go: which outcomes are written to which
 * status log (Postfix's bounce/, defer/, trace/ — kept in the queue store, src/queue/store.ts),
 * and the notices sent from those logs:
 *   - failure ("Undelivered Mail Returned to Sender") from the bounce log, to the sender for the
 *     recipients whose DSN NOTIFY asks for FAILURE (the default), a postmaster copy (headers only)
 *     when notify_classes has `bounce`;
 *   - delay ("Delayed Mail (still being retried)") from this attempt's defer records, once,
 *     after delay_warning_time (NOTIFY DELAY, the default), a postmaster copy with `delay`;
 *   - success ("Successful Mail Delivery Report") from the trace log, for NOTIFY=SUCCESS
 *     recipients (not when the next hop announced DSN and took the request on);
 *   - verify ("Mail Delivery Status Report") for sendmail -bv / -v.
 * No bounce loops: a bounce (sender <>) that fails goes to the postmaster as a double bounce
 * only when notify_classes has `2bounce`, from double_bounce_sender; mail from
 * double_bounce_sender that fails is dropped.
 */
import type { Config } from '../../src/config/index.js';
import { valuesOf, type Params } from '../../src/config/declared.js';
import type { Logger } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import type { LogKind, MessageMeta, StatusRecord } from '../../src/queue/types.js';
import type { QueueStore } from '../../src/queue/store.js';
import type { Actor } from '../../src/runtime/endpoint.js';
import { bounceService, cleanupService, type NoticeRequest, type RecipientOutcome } from '../protocol.js';

/** The notify_classes Postactor acts on in qmgr (the others are smtpd's session transcripts). */
export const QMGR_NOTIFY_CLASSES = ['bounce', '2bounce', 'delay'] as const;
/** Classes whose notices are smtpd's session transcripts (actors/smtpd/chat.ts). */
const TRANSCRIPT_CLASSES = new Set(['resource', 'software', 'policy', 'protocol', 'data']);

export interface NoticeConfig {
  notifyClasses: Set<string>;
  doubleBounceSender: string;
  bounceNoticeRecipient: string;
  twoBounceNoticeRecipient: string;
  delayNoticeRecipient: string;
  /** Seconds; 0 = no delay warnings. */
  delayWarningTime: number;
  maximalQueueLifetime: number;
  bounceSizeLimit: number;
  bounceTemplateFile: string;
  confirmDelayCleared: boolean;
}

/** What the notices read (with the rest of qmgr's: manager.ts QMGR_PARAMS). */
export const NOTICE_PARAMS = {
  'myorigin': 'str',
  'notify_classes': 'list',
  'double_bounce_sender': 'str',
  'bounce_notice_recipient': 'str',
  '2bounce_notice_recipient': 'str',
  'delay_notice_recipient': 'str',
  'delay_warning_time': 'time',
  'maximal_queue_lifetime': 'time',
  'bounce_size_limit': 'int',
  'bounce_template_file': 'str',
  'confirm_delay_cleared': 'bool',
} as const;

/** The notices' settings from the values qmgr read (a configuration: read here). */
export function noticeConfig(from: Config | Params<typeof NOTICE_PARAMS>): NoticeConfig {
  const p = valuesOf(from, NOTICE_PARAMS, 'qmgr');
  const myorigin = p.myorigin;
  const qualify = (a: string) => (a.includes('@') ? a : `${a}@${myorigin}`);
  return {
    notifyClasses: new Set(p.notify_classes.map((c) => c.toLowerCase())),
    doubleBounceSender: qualify(p.double_bounce_sender),
    bounceNoticeRecipient: qualify(p.bounce_notice_recipient),
    twoBounceNoticeRecipient: qualify(p['2bounce_notice_recipient']),
    delayNoticeRecipient: qualify(p.delay_notice_recipient),
    delayWarningTime: p.delay_warning_time,
    maximalQueueLifetime: p.maximal_queue_lifetime,
    bounceSizeLimit: p.bounce_size_limit,
    bounceTemplateFile: p.bounce_template_file,
    confirmDelayCleared: p.confirm_delay_cleared,
  };
}

/** DSN NOTIFY of a recipient: absent means Postfix's default, FAILURE and DELAY. */
export function wants(notify: string[] | undefined, what: 'SUCCESS' | 'FAILURE' | 'DELAY'): boolean {
  if (!notify || notify.length === 0) return what !== 'SUCCESS';
  return notify.includes(what);
}

/** One outcome as a status log record. */
export function statusRecord(meta: MessageMeta, o: RecipientOutcome, action: string, now: number): StatusRecord {
  const r = meta.recipients[o.index]!;
  // The original recipient is kept only when it differs (bounce_append_service.c): the notice then says "(expanded from <…>)".
  const original = r.original && r.original.toLowerCase() !== r.address.toLowerCase() ? { original: r.original } : {};
  return { index: o.index, address: r.address, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...original, dsn: o.dsn, action, reason: o.reason, relay: o.relay, time: now };
}

/** A notice to send, and the status log it is made from. */
interface Pending {
  log: LogKind | null;
  request: Omit<NoticeRequest, 'original' | 'headersOnly'>;
  /** Mail from <>: null sender; postmaster notices: double_bounce_sender. */
  from: string;
  full: boolean;
  what: string;
}

export class Notifier {
  constructor(
    private readonly settings: NoticeConfig,
    private readonly store: QueueStore,
    private readonly actor: Actor,
    private readonly log: Logger,
  ) {
    for (const c of settings.notifyClasses) {
      if (TRANSCRIPT_CLASSES.has(c)) {
        // Postfix's "data" transcripts come from its smtp client (a queue file it cannot read).
        if (c === 'data') log.warn('notify_classes: data: not supported for the smtp client (its session transcripts are not built; smtpd\'s are sent)');
      } else if (!(QMGR_NOTIFY_CLASSES as readonly string[]).includes(c)) {
        log.warn(`notify_classes: unknown class "${c}" (ignored)`);
      }
    }
    if (settings.confirmDelayCleared) log.warn('confirm_delay_cleared = yes: not supported: no notice is sent when a delayed message is delivered');
    if (settings.bounceTemplateFile) log.warn(`bounce_template_file = ${settings.bounceTemplateFile}: not supported: notices use the built-in templates`);
  }

  /** True if mail from this sender must never cause a notice (a double bounce's own failure). */
  silent(meta: MessageMeta): boolean {
    return meta.sender.toLowerCase() === this.settings.doubleBounceSender.toLowerCase();
  }

  /** A delay notice is due for this message now (once, after delay_warning_time). */
  delayDue(meta: MessageMeta, now: number): boolean {
    const t = this.settings.delayWarningTime;
    return t > 0 && !meta.delayWarned && !this.silent(meta) && now - meta.arrival >= t * 1000;
  }

  /**
   * Sends the notices for what the logs hold: failure (bounce log), success (trace log),
   * verify (trace log, -bv/-v), and a delay notice from `delayed` when asked. Resolves which logs
   * are done with (their notices are queued, or nobody is to be told) and whether the delay
   * notice went out. A log whose notice could not be queued is kept: the next attempt sends it.
   * `holdBounces` (soft_bounce): the bounce log is kept and no failure notice is sent.
   */
  async send(meta: MessageMeta, delayed: StatusRecord[] | null, now: number, holdBounces = false): Promise<{ cleared: LogKind[]; delayWarned: boolean }> {
    const cleared: LogKind[] = [];
    let delayWarned = false;
    const s = this.settings;
    const common = { queueId: meta.queueId, sender: meta.sender, arrival: meta.arrival, ...(meta.envId ? { envId: meta.envId } : {}), ...(meta.smtputf8?.requested ? { smtputf8: true } : {}) };
    const notifyOf = (r: StatusRecord) => meta.recipients[r.index]?.notify;
    const silent = this.silent(meta);

    const bounces = holdBounces ? [] : this.store.logs(meta.queueId, 'bounce');
    if (bounces.length) {
      const jobs: Pending[] = [];
      if (silent) {
        this.log.info(`${meta.queueId}: undeliverable postmaster notice discarded`);
      } else if (meta.sender === '') {
        if (s.notifyClasses.has('2bounce')) {
          jobs.push({ log: 'bounce', request: { ...common, kind: 'failure', postmaster: true, to: s.twoBounceNoticeRecipient, records: bounces }, from: s.doubleBounceSender, full: true, what: 'postmaster non-delivery notification' });
        } else {
          this.log.info(`${meta.queueId}: undeliverable bounce from <> discarded (no bounce loops; notify_classes has no 2bounce)`);
        }
      } else {
        const toSender = bounces.filter((r) => wants(notifyOf(r), 'FAILURE'));
        if (toSender.length) jobs.push({ log: 'bounce', request: { ...common, kind: 'failure', to: meta.sender, records: toSender }, from: '', full: meta.ret !== 'HDRS', what: 'sender non-delivery notification' });
        if (s.notifyClasses.has('bounce')) jobs.push({ log: 'bounce', request: { ...common, kind: 'failure', postmaster: true, to: s.bounceNoticeRecipient, records: bounces }, from: s.doubleBounceSender, full: false, what: 'postmaster non-delivery notification' });
      }
      if (await this.all(meta, jobs)) cleared.push('bounce');
    }

    const traces = this.store.logs(meta.queueId, 'trace');
    if (traces.length) {
      const jobs: Pending[] = [];
      if (meta.trace && !silent) {
        jobs.push({ log: 'trace', request: { ...common, kind: 'verify', to: meta.sender || s.bounceNoticeRecipient, records: traces }, from: '', full: false, what: 'sender delivery status notification' });
      } else if (meta.sender !== '' && !silent) {
        const ok = traces.filter((r) => wants(notifyOf(r), 'SUCCESS'));
        // Postfix's trace service returns the headers only, whatever RET= says (bounce_trace_service.c).
        if (ok.length) jobs.push({ log: 'trace', request: { ...common, kind: 'success', to: meta.sender, records: ok }, from: '', full: false, what: 'sender delivery status notification' });
      }
      if (await this.all(meta, jobs)) cleared.push('trace');
    }

    if (delayed && delayed.length) {
      const jobs: Pending[] = [];
      const delay = { ...common, kind: 'delay' as const, willRetryUntil: meta.arrival + s.maximalQueueLifetime * 1000 };
      const toSender = meta.sender === '' ? [] : delayed.filter((r) => wants(notifyOf(r), 'DELAY'));
      // Headers only, whatever RET= says, as Postfix's bounce_warn_service.c.
      if (toSender.length) jobs.push({ log: null, request: { ...delay, to: meta.sender, records: toSender }, from: '', full: false, what: 'sender delay notification' });
      if (s.notifyClasses.has('delay')) jobs.push({ log: null, request: { ...delay, postmaster: true, to: s.delayNoticeRecipient, records: delayed }, from: s.doubleBounceSender, full: false, what: 'postmaster delay notification' });
      delayWarned = await this.all(meta, jobs);
    }
    return { cleared, delayWarned };
  }

  /** Sends each notice; true if all were queued. */
  private async all(meta: MessageMeta, jobs: Pending[]): Promise<boolean> {
    let ok = true;
    for (const job of jobs) if (!(await this.one(meta, job))) ok = false;
    return ok;
  }

  private async one(meta: MessageMeta, job: Pending): Promise<boolean> {
    const content = this.store.content(meta.queueId) ?? Buffer.alloc(0);
    const headersOnly = !job.full || content.length > this.settings.bounceSizeLimit;
    const request: NoticeRequest = { ...job.request, original: headersOnly ? headerSection(content) : content, headersOnly };
    try {
      const notice = await bounceService.call(this.actor, request);
      const id = newQueueId();
      const queued = await cleanupService.call(this.actor, {
        queueId: id,
        sender: job.from,
        recipients: [{ address: job.request.to }],
        content: notice.content,
        arrival: Date.now(),
        origin: 'bounce',
        // Postfix's post_mail(): a notice about mail that requested SMTPUTF8 requests it too.
        ...(meta.smtputf8?.requested ? { smtputf8: true } : {}),
      });
      if (!queued.ok) throw new Error(`${queued.code} ${queued.dsn} ${queued.text}`);
      this.log.info(`${meta.queueId}: ${job.what}: ${id}`);
      return true;
    } catch (err) {
      this.log.warn(`${meta.queueId}: ${job.what} failed: ${(err as Error).message}`);
      return false;
    }
  }
}

/** The header section of a message (up to and including the blank line). */
export function headerSection(content: Buffer): Buffer {
  const crlf = content.indexOf('\r\n\r\n');
  if (crlf >= 0) return content.subarray(0, crlf + 4);
  const lf = content.indexOf('\n\n');
  return lf >= 0 ? content.subarray(0, lf + 2) : content;
}
