/**
 * cleanup: the only writer of new queue entries (a pool, one request per message).
 * It adds the headers Postfix's cleanup adds, writes envelope + content into the incoming queue
 * in one LMDB transaction, waits until that commit is on disk, tells qmgr, and replies — after
 * which smtpd may say "250 Ok: queued".
 *
 * This file is the worker: its start-up and the handling of one request. The work on a message
 * is done by stages named as Postfix's cleanup_*.c files, in Postfix's order (processMessage):
 *   settings.ts  cleanup_init.c      main.cf parameters and tables
 *   state.ts     cleanup_state.c     the message's verdict, the refusals
 *   envelope.ts  cleanup_addr.c, cleanup_out_recipient.c  canonical, masquerade, BCC, virtual, dedup
 *   message.ts   cleanup_message.c   header section: added headers, header_checks, header rewriting
 *   body.ts      cleanup_message.c   MIME part headers and body_checks
 *   act.ts       cleanup_message.c   what a check's action does (cleanup_act)
 *   milter.ts    cleanup_milter.c    non_smtpd_milters, milter_header_checks
 *   out.ts       cleanup_out.c, cleanup_final.c, cleanup_bounce.c  the queue write, qmgr, the reply
 * with the helpers they share: mappings.ts (cleanup_map11.c, cleanup_map1n.c, cleanup_masquerade.c),
 * checks.ts (header_checks actions, address lists), headers.ts, header-limit.ts, mime.ts
 * (mime_state.c), smtputf8.ts.
 */
import { metrics } from '../../src/metrics/thread.js';
import type { Config } from '../../src/config/index.js';
import { maillog } from '../../src/log/maillog.js';
import type { QueueStore } from '../../src/queue/store.js';
import { flowOf, type MailFlow } from '../../src/runtime/flow.js';
import { defineService, type ServiceContext } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';
import type { HeaderScan } from './headers.js';
import { MappingFailure } from './mappings.js';
import { CLEANUP_PARAMS, cleanupSettings, type CleanupSettings, type Tables } from './settings.js';
import { newVerdict, WRITE_ERROR } from './state.js';
import { bccAddress, dsnOriginals, keepOriginals, localSubmission, outRecipients, rewriteEnvelope } from './envelope.js';
import { utf8Addresses } from './smtputf8.js';
import { addedHeaders, headerSection, isLocalClient, readMessage } from './message.js';
import { bodyChecks } from './body.js';
import { milterHeaderChecks, milterInspect } from './milter.js';
import { bounceLocal, writeMessage } from './out.js';
import { SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';

const log = maillog('cleanup');

interface State extends CleanupSettings {
  config: Config;
  store: QueueStore;
  instance: string;
  /** in_flow_delay (ms) and the flow tokens qmgr produces (src/runtime/flow.ts). */
  inFlowDelay: number;
  flow: MailFlow | null;
  /** soft_bounce: a local submission refused for good is not bounced (see handle). */
  softBounce: boolean;
}

let state: State | null = null;

/** What cleanup reads, once per thread with the registry's types (settings.ts, and in_flow_delay here). */
const PARAMS = { ...CLEANUP_PARAMS, 'in_flow_delay': 'time', ...SOFT_BOUNCE_PARAMS } as const;

function init(ctx: ServiceContext<typeof PARAMS>): State {
  const { config, data, params: p } = ctx;
  return {
    config,
    store: ctx.store,
    instance: data.instance,
    inFlowDelay: p.in_flow_delay * 1000,
    flow: flowOf(data),
    softBounce: p.soft_bounce,
    ...cleanupSettings(config, p),
  };
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup: (ctx) => (state = init(ctx)),
  handle: (_s, incoming: CleanupRequest) => cleanup(incoming),
});

async function cleanup(incoming: CleanupRequest): Promise<CleanupReply> {
  const reply = await cleanupMessage(incoming);
  if (reply.ok) metrics().cleanupMessages.inc();
  else metrics().cleanupRejects.inc();
  return reply;
}

async function cleanupMessage(incoming: CleanupRequest): Promise<CleanupReply> {
  const s = state!; // set by the service's setup (defineService above) before its first request
  // in_flow_delay (Postfix's mail_flow): each message takes a token that qmgr gives back as it
  // takes mail out of incoming; with none left, input is ahead of delivery, and this message
  // waits in_flow_delay first — slowed, never refused. qmgr's own notices do not wait.
  if (s.flow && s.inFlowDelay > 0 && incoming.origin !== 'bounce' && !s.flow.get(1)) {
    await new Promise((r) => setTimeout(r, s.inFlowDelay));
  }
  // Each recipient's original recipient is kept as it came, before anything rewrites it.
  const kept = keepOriginals(incoming);
  const request0 = kept.origin === 'pickup' ? localSubmission(s, kept) : kept;
  const read = readMessage(s, request0);
  if ('ok' in read) return read;
  const { content: original, scan } = read;
  if ('broken' in s.tables) {
    log.warn(`${request0.queueId}: table lookup problem -- message not accepted, try again later: ${s.tables.broken}`);
    return WRITE_ERROR;
  }
  const t = s.tables;
  const warn = (text: string) => log.warn(`${request0.queueId}: ${text}`);
  try {
    const reply = await processMessage(s, t, request0, original, scan, warn);
    // A local submission that a check or a milter rejects for good is returned to its sender
    // (Postfix's pickup asks cleanup to bounce: there is no SMTP client to tell).
    // With soft_bounce there is no bounce (Postfix's bounce_append with BOUNCE_FLAG_CLEAN fails,
    // cleanup_bounce.c sets the write error): pickup keeps the maildrop file and tries again.
    if (!reply.ok && reply.code >= 500 && request0.origin === 'pickup') return s.softBounce ? WRITE_ERROR : await bounceLocal(s, request0, original, reply);
    return reply;
  } catch (err) {
    if (err instanceof MappingFailure) {
      warn(err.log);
      return { ok: false, code: err.code, dsn: err.dsn, text: err.text };
    }
    if ((err as Error).name === 'TableError') {
      warn(`table lookup problem -- message not accepted, try again later: ${(err as Error).message}`);
      return WRITE_ERROR;
    }
    throw err;
  }
}

/** The stages after the header section was read, in Postfix's order; a refusal ends them. */
async function processMessage(s: State, t: Tables, request0: CleanupRequest, original: Uint8Array, scan: HeaderScan, warn: (text: string) => void): Promise<CleanupReply> {
  const mapOK = !s.noAddressMappings;
  const checksOK = !s.noHeaderBodyChecks && request0.origin !== 'bounce';

  // 1-2. Canonical mapping and masquerading of the envelope; then the DSN original recipient
  // where the client gave none.
  let request = dsnOriginals(mapOK ? await rewriteEnvelope(t.mappings, request0, warn) : request0, utf8Addresses(s.smtputf8, request0));

  // The header section: the headers cleanup adds, header_checks, Bcc removal, header rewriting.
  const localClient = isLocalClient(s, request);
  const added = addedHeaders(s, request, original, scan, localClient);
  const verdict = newVerdict(request);
  const headers = await headerSection(s, t, request, verdict, original, scan, added, { mapOK, checksOK, localClient }, warn);
  if ('ok' in headers) return headers;

  // The body, MIME part by MIME part: part headers and body_checks.
  const body = await bodyChecks(s, t, request, verdict, headers.content, scan.eol, checksOK);
  if ('ok' in body) return body;
  let content = body.content;

  // non_smtpd_milters (local submissions), then milter_header_checks.
  const milter = await milterInspect(s.milters, request, verdict, content);
  if ('reply' in milter) return milter.reply;
  ({ request, content } = milter);
  const milterReject = await milterHeaderChecks(s, t, request, verdict, warn);
  if (milterReject) return milterReject;

  // 3-4. Automatic BCC, BCC actions, virtual aliases, REDIRECT, duplicates; then the queue.
  const recipients = await outRecipients(t.mappings, request, verdict, mapOK, (a) => bccAddress(s, t.mappings, a, mapOK, warn));
  return writeMessage(s, { request, recipients, verdict, content, messageId: added.messageId, localClient });
}
