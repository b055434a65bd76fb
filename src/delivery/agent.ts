/**
 * What every delivery agent besides smtp needs (discard, error, pipe, lmtp, local, virtual;
 * Postfix's deliver_request.c and the agents' shared code in src/global): its configuration
 * with its own master.cf line's -o overrides applied, the queue store (agents read the content
 * themselves; only IDs travel), the maillog, and Postfix's per-recipient delivery log line.
 */
import type { Config, MasterService } from '../config/index.js';
import type { Logger } from '../log/maillog.js';
import type { QueueStore } from '../queue/store.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from './request.js';
import { formatDelays, StatusLog } from './log.js';
import { bounceOrDefer, softBounceOf } from './soft-bounce.js';

/** What an agent's handler gets: the service skeleton's context (src/runtime/service.ts) has it all. */
export interface AgentContext {
  /** main.cf with this service's "-o name=value" overrides applied. */
  config: Config;
  store: QueueStore;
  log: Logger;
  /** The master.cf service name (first column): the transport name. */
  service: string;
  /** This service's master.cf line (its command arguments), when found. */
  line: MasterService | undefined;
}

/**
 * Logs one "to=<…>, relay=…, delay=…, delays=…, dsn=…, status=… (…)" line per outcome and builds
 * the reply; with soft_bounce a bounce is kept as a deferral (./soft-bounce.ts).
 */
export function report(ctx: AgentContext, req: DeliveryRequest, given: RecipientOutcome[], started: number, timings?: { connect: number; transmit: number }, siteFailure?: string): DeliveryReply {
  const now = Date.now();
  // No timings of its own (local, virtual, discard, error): the delivery's time is the
  // transmission, as Postfix's agents log it ("delays=a/b/0/d": no connection to set up).
  const delays = formatDelays(req.arrival, req.activated, started, timings ?? { connect: 0, transmit: now - started }, now);
  const soft = softBounceOf(ctx.config);
  const outcomes = given.map((o) => bounceOrDefer(o, soft, req.verify));
  const lines = new StatusLog(ctx.log, req.queueId, req);
  for (const o of outcomes) {
    const recipient = req.recipients.find((r) => r.index === o.index) ?? { address: '' };
    lines.line(recipient, o, delays);
  }
  return { queueId: req.queueId, outcomes, ...(siteFailure ? { siteFailure } : {}), ...lines.reply() };
}

/** The same outcome for every recipient of the request. */
export function every(req: DeliveryRequest, o: Omit<RecipientOutcome, 'index'>): RecipientOutcome[] {
  return req.recipients.map((r) => ({ index: r.index, ...o }));
}

/**
 * "4.1.1 text" → { dsn, text } (Postfix's dsn_split): a leading RFC 3463 status code when the
 * value starts with one, else `def` and the whole value.
 */
export function dsnSplit(def: string, value: string): { dsn: string; text: string } {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/.exec(value);
  if (!m) return { dsn: def, text: value.trim() };
  return { dsn: `${m[1]}.${m[2]}.${m[3]}`, text: value.slice(m[0].length).trim() };
}
