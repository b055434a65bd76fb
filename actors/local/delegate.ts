/**
 * Delegation of a local recipient to another transport (Postfix's deliver_pass): local(8) hands
 * the recipient to
 *   mailbox_transport_maps / mailbox_transport    for every recipient that reaches its mailbox
 *                                                 (after aliases and .forward; before
 *                                                 mailbox_command and the passwd check);
 *   fallback_transport_maps / fallback_transport  for a user that is not in the password file
 *                                                 (before luser_relay and the 5.1.1 bounce).
 * The maps are looked up with the user name (lower case, without extension). A value is
 * "transport:nexthop"; an empty nexthop means the request's own (the local domain), as in
 * Postfix: "lmtp:unix:/run/dovecot/lmtp", "smtp:[127.0.0.1]:10025", "cyrus".
 *
 * The recipient goes to the named master.cf service as a DeliveryRequest of its own, through
 * the master (src/runtime/service-request.ts: a pool worker has no port to the router). That
 * agent logs its own "to=… status=…" line; local relays its outcome to qmgr and logs nothing
 * more for that recipient. A service that is missing, busy or crashed defers 4.3.0 "mail
 * transport unavailable", as deliver_pass does; a broken map defers 4.3.0 "table lookup failure".
 */
import { workerData } from 'node:worker_threads';
import type { Config } from '../../src/config/index.js';
import type { Params } from '../../src/config/declared.js';
import type { DELEGATION_PARAMS } from './params.js';
import { openTable, type LookupTable } from '../../src/maps/index.js';
import { requestService } from '../../src/runtime/service-request.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import type { Logger } from '../../src/log/maillog.js';
import type { DeliveryReply, DeliveryRequest, HeldStatusLine, RecipientOutcome } from '../protocol.js';

export type Passed = Omit<RecipientOutcome, 'index'> & { passed: true; probeLines?: HeldStatusLine[] };
export type Failed = { status: 'deferred'; dsn: string; reason: string };

export class Delegation {
  private tables: LookupTable[] | null = null;
  readonly transport: string;
  private readonly maps: string[];
  private readonly ipcTimeoutMs: number;

  constructor(
    /** "mailbox_transport" or "fallback_transport". */
    readonly param: 'mailbox_transport' | 'fallback_transport',
    private readonly config: Config,
    private readonly log: Logger,
    p: Params<typeof DELEGATION_PARAMS>,
  ) {
    this.transport = p[param].trim();
    this.maps = p[`${param}_maps`];
    this.ipcTimeoutMs = p.ipc_timeout * 1000;
  }

  get configured(): boolean {
    return this.transport !== '' || this.maps.length > 0;
  }

  /** The transport for user: its _maps entry, else the parameter; null when neither. Throws TableError. */
  private async find(user: string): Promise<string | null> {
    if (this.maps.length > 0) {
      const dir = this.config.configDirectory;
      this.tables ??= this.maps.map((spec) => openTable(spec, dir ? { configDirectory: dir } : {}));
      for (const t of this.tables) {
        const r = await t.lookup(user.toLowerCase());
        if (r.found) return r.value.trim();
      }
    }
    return this.transport || null;
  }

  /**
   * Passes recipient (the request's one recipient, its address possibly rewritten by alias
   * expansion) to the transport for `user`; null when there is none.
   */
  async pass(req: DeliveryRequest, user: string, address: string, original: string): Promise<Passed | Failed | null> {
    let spec: string | null;
    try {
      spec = await this.find(user);
    } catch (e) {
      this.log.warn(`${req.queueId}: ${this.param}_maps: lookup ${user}: ${(e as Error).message}`);
      return { status: 'deferred', dsn: '4.3.0', reason: 'table lookup failure' };
    }
    if (!spec) return null;
    const colon = spec.indexOf(':');
    const transport = colon < 0 ? spec : spec.slice(0, colon);
    const nexthop = colon < 0 || colon === spec.length - 1 ? req.nexthop : spec.slice(colon + 1);
    if (!transport) {
      this.log.warn(`${req.queueId}: ${this.param}: missing transport name in "${spec}"`);
      return { status: 'deferred', dsn: '4.3.5', reason: 'mail system configuration error' };
    }
    const data = workerData as ActorWorkerData<unknown>;
    if (transport === data.service) {
      // Passing to ourselves would pass again, without end.
      this.log.warn(`${req.queueId}: ${this.param}: "${spec}" names this service itself`);
      return { status: 'deferred', dsn: '4.3.5', reason: 'mail system configuration error' };
    }
    const rcpt = req.recipients[0]!;
    // As Postfix's deliver_pass(): the recipient with its DSN fields and its original recipient.
    const request: DeliveryRequest = { ...req, transport, nexthop, recipients: [{ ...rcpt, address, original }] };
    let reply: DeliveryReply;
    try {
      reply = await requestService<DeliveryReply>(data.instance, transport, request, this.ipcTimeoutMs);
    } catch (e) {
      this.log.warn(`${req.queueId}: ${this.param} ${transport}: ${(e as Error).message}`);
      return { status: 'deferred', dsn: '4.3.0', reason: 'mail transport unavailable' };
    }
    const o = reply.outcomes.find((x) => x.index === rcpt.index);
    if (!o) return { status: 'deferred', dsn: '4.3.0', reason: 'unknown mail transport error' };
    // A probe's status line, held by that transport, goes back to qmgr with this agent's reply.
    return { status: o.status, dsn: o.dsn, reason: o.reason, relay: o.relay, passed: true, ...(reply.probeLines ? { probeLines: reply.probeLines } : {}) };
  }
}
