/**
 * cleanup: the only writer of new queue entries (a piscina pool, one task per message).
 * It adds the headers Postfix's cleanup adds, writes envelope + content into the incoming queue
 * in one LMDB transaction, waits until that commit is on disk, tells qmgr, and replies — after
 * which smtpd may say "250 Ok: queued".
 */
import { workerData } from 'piscina';
import { configFromJSON, queueDirectory, type Config, type ConfigJSON } from '../../src/config/index.js';
import { configureMaillog, maillog } from '../../src/log/maillog.js';
import { QueueStore, type MessageMeta } from '../../src/queue/store.js';
import { tell } from '../../src/runtime/mailbox.js';
import { buildNetworks, type NetworkList } from '../../src/net/networks.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import type { CleanupReply, CleanupRequest, QmgrMessage } from '../protocol.js';
import { dropHeaders, receivedHeader, rfc2822Date, scanHeaders } from './headers.js';
import { formatPhrase } from '../../src/maildrop/address.js';

const log = maillog('cleanup');

interface State {
  config: Config;
  store: QueueStore;
  instance: string;
  myhostname: string;
  mailName: string;
  hopLimit: number;
  alwaysAdd: boolean;
  /** Clients whose messages get missing headers (local_header_rewrite_clients). */
  rewriteClients: (addr: string) => boolean;
  /** Local submissions (origin 'pickup'): append_at_myorigin and friends. */
  myorigin: string;
  appendAtMyorigin: boolean;
  emptyAddressRecipient: string;
  undisclosedRecipientsHeader: string;
}

let state: State | null = null;

function init(): State {
  const data = workerData as ActorWorkerData<ConfigJSON>;
  const config = configFromJSON(data.config);
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  return {
    config,
    store: QueueStore.open(queueDirectory(config)),
    instance: data.instance,
    myhostname: config.get('myhostname'),
    mailName: config.get('mail_name'),
    hopLimit: config.getInt('hopcount_limit'),
    alwaysAdd: config.getBool('always_add_missing_headers'),
    rewriteClients: rewriteClientMatcher(config),
    myorigin: config.get('myorigin'),
    appendAtMyorigin: config.getBool('append_at_myorigin'),
    emptyAddressRecipient: config.get('empty_address_recipient'),
    // Postfix >= 2.8: empty by default (no "To: undisclosed-recipients:;" is added).
    undisclosedRecipientsHeader: config.raw('undisclosed_recipients_header') ?? '',
  };
}

/** local_header_rewrite_clients: permit_inet_interfaces, permit_mynetworks, permit (issue 3 adds tables). */
function rewriteClientMatcher(config: Config): (addr: string) => boolean {
  const tests: ((addr: string) => boolean)[] = [];
  for (const item of config.getList('local_header_rewrite_clients')) {
    if (item === 'permit') tests.push(() => true);
    else if (item === 'permit_inet_interfaces') {
      const own: NetworkList = buildNetworks('', 'host').networks;
      tests.push((a) => own.has(a));
    } else if (item === 'permit_mynetworks') {
      const nets = buildNetworks(config.get('mynetworks'), config.get('mynetworks_style')).networks;
      tests.push((a) => nets.has(a));
    } else {
      log.warn(`local_header_rewrite_clients: not supported: "${item}" (ignored)`);
    }
  }
  return (addr) => tests.some((t) => t(addr));
}

/** Headers Postfix's cleanup removes from local submissions (HDR_OPT_DROP). */
const DROPPED = new Set(['bcc', 'resent-bcc', 'return-path', 'content-length']);

/**
 * A local submission (pickup): qualify envelope addresses as trivial-rewrite does in the local
 * context (append_at_myorigin; the empty recipient becomes $empty_address_recipient) and drop
 * Bcc/Resent-Bcc/Return-Path/Content-Length, before the common path below.
 */
function localSubmission(s: State, request: CleanupRequest): CleanupRequest {
  const qualify = (a: string) => (a && s.appendAtMyorigin && !a.includes('@') ? `${a}@${s.myorigin}` : a);
  const scan = scanHeaders(request.content);
  const dropped = dropHeaders(request.content, scan.end, DROPPED);
  return {
    ...request,
    sender: qualify(request.sender),
    recipients: request.recipients.map((r) => ({ ...r, address: qualify(r.address || s.emptyAddressRecipient) })),
    content: dropped.msg,
  };
}

/** Missing headers of a local submission, Postfix style (Resent- versions when the message is resent). */
function localMissingHeaders(s: State, request: CleanupRequest, present: Set<string>, eol: string): { added: string; messageId: string | null } {
  const resent = [...present].some((n) => n.startsWith('resent-')) ? 'Resent-' : '';
  const has = (n: string) => present.has((resent + n).toLowerCase());
  let added = '';
  let messageId: string | null = null;
  if (!has('message-id')) {
    messageId = `<${request.queueId}@${s.myhostname}>`;
    added += `${resent}Message-Id: ${messageId}${eol}`;
  }
  if (!has('date')) added += `${resent}Date: ${rfc2822Date(request.arrival)}${eol}`;
  if (!has('from')) {
    const addr = request.sender || 'MAILER-DAEMON';
    const name = request.local?.fullName;
    added += request.sender && name ? `${resent}From: ${formatPhrase(name)} <${addr}>${eol}` : `${resent}From: ${addr}${eol}`;
  }
  if (!present.has('to') && !present.has('cc') && !present.has('resent-to') && !present.has('resent-cc') && s.undisclosedRecipientsHeader) {
    added += `${s.undisclosedRecipientsHeader}${eol}`;
  }
  return { added, messageId };
}

export default async function cleanup(incoming: CleanupRequest): Promise<CleanupReply> {
  const s = (state ??= init());
  const now = Date.now();
  const request = incoming.origin === 'pickup' ? localSubmission(s, incoming) : incoming;
  const original = request.content;
  const scan = scanHeaders(original);
  if (scan.received > s.hopLimit) {
    log.info(`${request.queueId}: reject: header Received: too many hops; from=<${request.sender}>`);
    return { ok: false, code: 554, dsn: '5.4.0', text: 'Error: too many hops' };
  }

  // Headers Postfix adds at the end of the header section, for local clients (or always).
  const addMissing = request.origin === 'smtpd' && (s.alwaysAdd || (request.client ? s.rewriteClients(request.client.addr) : true));
  let added = '';
  let messageId = scan.messageId;
  if (request.origin === 'pickup') {
    // -G (rewrite context remote) adds no headers, unless always_add_missing_headers.
    if (request.local?.rewriteContext !== 'remote' || s.alwaysAdd) {
      const local = localMissingHeaders(s, request, scan.present, scan.eol);
      added = local.added;
      messageId = local.messageId ?? messageId;
    }
  } else if (addMissing || request.origin === 'bounce') {
    if (!scan.present.has('message-id')) {
      messageId = `<${request.queueId}@${s.myhostname}>`;
      added += `Message-Id: ${messageId}${scan.eol}`;
    }
    if (!scan.present.has('date')) added += `Date: ${rfc2822Date(request.arrival)}${scan.eol}`;
    if (!scan.present.has('from')) added += `From: ${request.sender || 'MAILER-DAEMON'}${scan.eol}`;
  }
  const received = request.client && request.origin === 'smtpd'
    ? receivedHeader({
        helo: request.client.helo,
        clientName: request.client.name,
        clientAddr: request.client.addr,
        protocol: request.client.protocol,
        myhostname: s.myhostname,
        mailName: s.mailName,
        queueId: request.queueId,
        recipient: request.recipients.length === 1 ? request.recipients[0]!.address : undefined,
        date: request.arrival,
      }, scan.eol)
    : '';
  const separator = scan.hasSeparator || scan.end === original.length ? '' : scan.eol;
  const content = splice(original, scan.end, received, added + separator);

  const meta: MessageMeta = {
    queueId: request.queueId,
    queue: 'incoming',
    arrival: request.arrival,
    sender: request.sender,
    recipients: request.recipients.map((r) => ({ address: r.address, done: false, ...(r.orcpt ? { orcpt: r.orcpt } : {}), ...(r.notify ? { notify: r.notify } : {}) })),
    size: content.length,
    nextAttempt: 0,
    attempts: 0,
    ...(messageId ? { messageId } : {}),
    ...(request.client ? { client: request.client } : {}),
    ...(request.envId ? { envId: request.envId } : {}),
    ...(request.ret ? { ret: request.ret } : {}),
  };
  try {
    await s.store.enqueue(meta, content);
  } catch (err) {
    log.warn(`${request.queueId}: queue file write error: ${(err as Error).message}`);
    return { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };
  }
  if (messageId) log.info(`${request.queueId}: message-id=${messageId}`);
  tell(s.instance, 'qmgr', { type: 'queued', queueId: request.queueId } satisfies QmgrMessage);
  void now;
  return { ok: true, queueId: request.queueId, size: content.length };
}

/** prefix + msg[0:at] + insert + msg[at:], in one allocation. */
function splice(msg: Uint8Array, at: number, prefix: string, insert: string): Buffer {
  if (!prefix && !insert) return Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  const p = Buffer.from(prefix, 'latin1');
  const ins = Buffer.from(insert, 'latin1');
  const out = Buffer.allocUnsafeSlow(p.length + msg.length + ins.length);
  p.copy(out, 0);
  out.set(msg.subarray(0, at), p.length);
  ins.copy(out, p.length + at);
  out.set(msg.subarray(at), p.length + at + ins.length);
  return out;
}
