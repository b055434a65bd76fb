/**
 * What every delivery agent besides smtp needs (discard, error, pipe, lmtp, local, virtual;
 * Postfix's deliver_request.c and the agents' shared code in src/global): its configuration
 * with its own master.cf line's -o overrides applied, the queue store (agents read the content
 * themselves; only IDs travel), the maillog, and Postfix's per-recipient delivery log line.
 */
import { workerData } from 'piscina';
import { configFromJSON, queueDirectory, type Config, type ConfigJSON, type MasterService } from '../config/index.js';
import { configureMaillog, maillog, type Logger } from '../log/maillog.js';
import { QueueStore } from '../queue/store.js';
import type { ActorWorkerData } from '../runtime/wire.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from './request.js';
import { formatDelays, logDelivery } from './log.js';

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

export function agentContext(): AgentContext {
  const data = workerData as ActorWorkerData<ConfigJSON>;
  const base: Config = configFromJSON(data.config);
  const line = base.services.find((s) => s.name === data.service && s.type === 'unix') ?? base.services.find((s) => s.name === data.service);
  const config = line && Object.keys(line.overrides).length > 0 ? base.withOverrides(line.overrides) : base;
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  return { config, store: QueueStore.open(queueDirectory(config)), log: maillog(data.service), service: data.service, line };
}

/** Logs one "to=<…>, relay=…, delay=…, delays=…, dsn=…, status=… (…)" line per outcome and builds the reply. */
export function report(ctx: AgentContext, req: DeliveryRequest, outcomes: RecipientOutcome[], started: number, timings = { connect: 0, transmit: 0 }, siteFailure?: string): DeliveryReply {
  const delays = formatDelays(req.arrival, req.activated, started, timings, Date.now());
  for (const o of outcomes) {
    const address = req.recipients.find((r) => r.index === o.index)?.address ?? '';
    logDelivery(ctx.log, req.queueId, address, o, delays, req.verify);
  }
  return { queueId: req.queueId, outcomes, ...(siteFailure ? { siteFailure } : {}) };
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
