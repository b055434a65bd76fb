/**
 * virtual: Postfix's virtual(8), final delivery for virtual_mailbox_domains, a pool.
 * Recipients are looked up by their full address (folded to lower case), never in the password
 * file; there are no aliases, .forward files, commands or files (virtual_alias_maps in cleanup
 * does forwarding).
 *
 * Per recipient:
 *   1. virtual_mailbox_maps (maps.ts: user+ext@domain, user@domain, @domain): not found →
 *      bounced 5.1.1 'unknown user: "user@domain"'; a broken table → deferred 4.3.5 "mail
 *      system configuration error", the table's error in the log.
 *   2. The mailbox is $virtual_mailbox_base/<result>: a trailing "/" means a Maildir
 *      (tmp → new), anything else an mbox (virtual_mailbox_lock: dot-lock, fcntl and flock).
 *   3. virtual_uid_maps / virtual_gid_maps give the owner (e.g. static:5000): a missing entry,
 *      a uid below virtual_minimum_uid or a gid <= 0 → deferred 4.3.5 with Postfix's warning
 *      ("recipient u@d: bad uid 50 in virtual_uid_maps").
 *   4. The copy gets Return-Path:, X-Original-To: and Delivered-To: (and the From_ line and
 *      ">From " quoting in an mbox), is written as that uid/gid (src/delivery/write.ts: by a
 *      long-lived delivery helper process when running as root) and fsynced before "delivered to maildir" /
 *      "delivered to mailbox" is reported.
 *
 * Failures as Postfix words them: "delivery failed to mailbox PATH: …" (mbox) and "maildir
 * delivery failed: …" (Maildir); a mailbox or Maildir file over virtual_mailbox_limit bounces
 * 5.2.2 "… error writing message: File too large" (Postfix sets that file size limit on itself);
 * any other write failure (an unwritable virtual_mailbox_base) is deferred 4.2.0, so nothing is
 * lost. Postfix's virtual(8) has no Delivered-To loop check (local(8) and pipe(8) have one), and
 * neither has this agent: a loop through virtual_alias_maps ends at hopcount_limit.
 *
 * Configuration errors that make Postfix's virtual(8) exit fatally (a relative
 * virtual_mailbox_base, virtual_mailbox_limit below message_size_limit, an unknown lock method)
 * are logged as warnings and every delivery is deferred 4.3.5 instead.
 */
import { DomainList } from '../../src/address/domain.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import { report, type AgentContext } from '../../src/delivery/agent.js';
import { mailCopy, setEnableOriginalRecipient } from '../../src/delivery/copy.js';
import { LOCK_PARAMS, lockSettings, type LockSettings } from '../../src/delivery/mailbox.js';
import { prestartAgentHelpers, writeMailbox, type WriterJob } from '../../src/delivery/write.js';
import { atol, VirtualMap } from './maps.js';
import { defineService, type Params } from '../../src/runtime/service.js';
import meta from './meta.js';
import { agentContent, corruptReply } from '../../src/delivery/content.js';

/** What virtual reads, once per thread with the registry's types (the lock's set from src/delivery/mailbox.ts). */
const PARAMS = {
  ...LOCK_PARAMS,
  'enable_original_recipient': 'bool',
  'virtual_mailbox_lock': 'list',
  'virtual_mailbox_base': 'str',
  'virtual_mailbox_limit': 'int',
  'message_size_limit': 'int',
  'mydestination': 'list',
  'recipient_delimiter': 'str',
  'virtual_minimum_uid': 'int',
  'strict_mailbox_ownership': 'bool',
  'virtual_mailbox_maps': 'list',
  'virtual_uid_maps': 'list',
  'virtual_gid_maps': 'list',
} as const;

interface State {
  ctx: AgentContext;
  base: string;
  locks: LockSettings;
  sizeLimit: number;
  minimumUid: number;
  strictOwner: boolean;
  mailboxMaps: VirtualMap;
  uidMaps: VirtualMap;
  gidMaps: VirtualMap;
  /** Set when the configuration is unusable: every delivery is deferred 4.3.5. */
  configError: string | null;
}

async function init(ctx: AgentContext & { params: Params<typeof PARAMS> }): Promise<State> {
  const { config, params: p } = ctx;
  setEnableOriginalRecipient(p.enable_original_recipient);
  // One delivery helper per agent thread from the start (more start when deliveries queue up):
  // the set-up ends when it is ready, and the thread takes deliveries only then.
  const helperReady = prestartAgentHelpers(() => (t: string) => ctx.log.warn(t));
  const lock = lockSettings(p.virtual_mailbox_lock, p, 'virtual_mailbox_lock');
  const base = p.virtual_mailbox_base;
  const sizeLimit = p.virtual_mailbox_limit;
  const messageLimit = p.message_size_limit;
  let configError = lock.error;
  if (!base.startsWith('/')) configError = `do not specify relative pathname: virtual_mailbox_base = ${base}`;
  // Postfix: the mailbox limit is also the agent's file size limit, and must leave room for the queue file.
  else if (sizeLimit > 0 && (sizeLimit < messageLimit || messageLimit === 0)) configError = 'main.cf configuration error: virtual_mailbox_limit is smaller than message_size_limit';
  if (configError) ctx.log.warn(`${ctx.service}: ${configError}; deliveries are deferred`);
  const localDomains = new DomainList(p.mydestination, false);
  const opts = { recipientDelimiter: p.recipient_delimiter, localDomain: (d: string) => localDomains.has(d) };
  await helperReady;
  return {
    ctx,
    base: base.replace(/\/+$/, ''),
    locks: lock.locks,
    sizeLimit,
    minimumUid: p.virtual_minimum_uid,
    strictOwner: p.strict_mailbox_ownership,
    mailboxMaps: new VirtualMap('virtual_mailbox_maps', p.virtual_mailbox_maps, config, opts),
    uidMaps: new VirtualMap('virtual_uid_maps', p.virtual_uid_maps, config, opts),
    gidMaps: new VirtualMap('virtual_gid_maps', p.virtual_gid_maps, config, opts),
    configError,
  };
}

type Result = Omit<RecipientOutcome, 'index' | 'relay'>;
const sent = (reason: string): Result => ({ status: 'sent', dsn: '2.0.0', reason });
const fail = (dsn: string, reason: string): Result => ({ status: dsn.startsWith('5') ? 'bounced' : 'deferred', dsn, reason });
const CONFIG_ERROR = (): Result => fail('4.3.5', 'mail system configuration error');

async function deliver(s: State, req: DeliveryRequest): Promise<DeliveryReply> {
  const started = Date.now();
  const read = agentContent(s.ctx.store, req);
  if ('damaged' in read) return corruptReply(req, read.damaged); // nothing goes out: qmgr sets it aside
  const content = 'content' in read ? read.content : undefined;
  const outcomes: RecipientOutcome[] = [];
  for (const r of req.recipients) {
    let res: Result;
    if (!content) res = fail('4.3.0', 'queue file vanished');
    else if (s.configError) res = CONFIG_ERROR();
    else {
      try {
        res = await deliverRecipient(s, req, content, r.address, r.original ?? r.address);
      } catch (e) {
        s.ctx.log.warn(`${req.queueId}: ${String((e as Error).message ?? e)}`);
        res = fail('4.3.0', 'virtual delivery failed: temporary error');
      }
    }
    outcomes.push({ index: r.index, relay: s.ctx.service, ...res });
  }
  return report(s.ctx, req, outcomes, started);
}

/** A table lookup; a broken table is logged as Postfix does ("table T: lookup K: why") and answers undefined. */
async function find(s: State, map: VirtualMap, user: string): Promise<string | null | undefined> {
  try {
    return await map.find(user);
  } catch (e) {
    s.ctx.log.warn(`table ${map.title}: lookup ${user}: ${(e as Error).message}`);
    return undefined;
  }
}

async function deliverRecipient(s: State, req: DeliveryRequest, content: Uint8Array, address: string, orcpt: string): Promise<Result> {
  const user = address.toLowerCase();
  const mailbox = await find(s, s.mailboxMaps, user);
  if (mailbox === undefined) return CONFIG_ERROR();
  if (mailbox === null) return fail('5.1.1', `unknown user: "${user}"`);
  const path = `${s.base}/${mailbox.trim()}`;

  const uidRes = await find(s, s.uidMaps, user);
  if (uidRes === undefined) return CONFIG_ERROR();
  if (uidRes === null) return configWarning(s, `recipient ${user}: not found in ${s.uidMaps.title}`);
  const uid = atol(uidRes);
  if (uid < s.minimumUid) return configWarning(s, `recipient ${user}: bad uid ${uidRes} in ${s.uidMaps.title}`);
  const gidRes = await find(s, s.gidMaps, user);
  if (gidRes === undefined) return CONFIG_ERROR();
  if (gidRes === null) return configWarning(s, `recipient ${user}: not found in ${s.gidMaps.title}`);
  const gid = atol(gidRes);
  if (gid <= 0) return configWarning(s, `recipient ${user}: bad gid ${gidRes} in ${s.gidMaps.title}`);

  const maildir = path.endsWith('/');
  // sendmail -bv: the lookups decide; nothing is written.
  if (req.verify) return sent(maildir ? `delivers to maildir ${path}` : `delivers to mailbox ${path}`);
  const data = mailCopy(content, {
    flags: new Set(maildir ? ['R', 'O', 'D'] : ['F', 'R', 'O', 'D', '>', 'B']),
    eol: '\n', sender: req.sender, originalRecipient: orcpt, deliveredTo: address, now: new Date(),
  });
  const job: WriterJob = { kind: maildir ? 'maildir' : 'mbox', path, uid, gid, inSpool: false, locks: s.locks, sizeLimit: s.sizeLimit, ...(s.strictOwner ? {} : { anyOwner: true }) };
  const r = await writeMailbox(job, data, user, (t) => s.ctx.log.warn(t));
  if (r.ok) return sent(maildir ? 'delivered to maildir' : 'delivered to mailbox');
  if (r.died) return fail(r.dsn, r.reason);
  if (maildir && /permission denied/i.test(r.reason)) {
    s.ctx.log.warn(`maildir access problem for UID/GID=${uid}/${gid}: ${r.reason}`);
    s.ctx.log.warn('perhaps you need to create the maildirs in advance');
  }
  if (maildir) return fail(r.dsn, `maildir delivery failed: ${r.reason}`);
  // The mbox checks as virtual(8) words them (the shared writer's texts are local(8)'s).
  if (/: not a regular file$/.test(r.reason)) {
    s.ctx.log.warn(`recipient ${address}: destination ${path} is not a regular file`);
    return fail('5.3.5', `delivery failed to mailbox ${path}: mail system configuration error`);
  }
  if (/: file has bad owner uid \d+$/.test(r.reason)) {
    s.ctx.log.warn('specify "strict_mailbox_ownership = no" to ignore mailbox ownership mismatch');
    return fail('4.2.0', `delivery failed to mailbox ${path}: destination ${path} is not owned by recipient`);
  }
  return fail(r.dsn, `delivery failed to mailbox ${path}: ${r.reason}`);
}

function configWarning(s: State, text: string): Result {
  s.ctx.log.warn(text);
  return CONFIG_ERROR();
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup: init,
  handle: deliver,
});
