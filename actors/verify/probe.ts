/**
 * Probe messages (Postfix's post_mail_fopen_async from verify.c): a message from the probe sender
 * (sender.ts) to the address, with no content of its own, queued through cleanup as internal
 * mail (no content checks, no mail flow token, as Postfix's internal mail) but through the whole
 * routing and rewriting machinery: virtual aliases, transport_maps (or the
 * address_verify_transport_maps qmgr resolves probes with), relayhost. The queue knows it as
 * trace mode `probe` (Postfix's DEL_REQ_FLAG_MTA_VRFY): the delivery agents stop after RCPT TO
 * as for sendmail -bv, and qmgr reports each outcome to this service instead of mailing a report.
 *
 * The recipient carries itself as its original recipient (ORCPT), so that the outcome is filed
 * under the address that was asked about even when a virtual alias expanded it.
 */
import type { Logger } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';
import type { VerifySender } from '../../src/verify/sender.js';

export type CleanupRequester = (request: CleanupRequest) => Promise<CleanupReply>;

export function probeSender(sender: VerifySender, cleanup: CleanupRequester, log: Logger): (address: string) => void {
  return (address) => {
    const request: CleanupRequest = {
      queueId: newQueueId(),
      sender: sender.make(),
      recipients: [{ address, orcpt: `rfc822;${address}` }],
      content: new Uint8Array(0),
      arrival: Date.now(),
      origin: 'bounce',
      trace: 'probe',
    };
    cleanup(request).then(
      (reply) => {
        if (!reply.ok) log.warn(`probe for <${address}> not queued: ${reply.code} ${reply.dsn} ${reply.text}`);
      },
      (err: unknown) => log.warn(`probe for <${address}> not queued: ${(err as Error)?.message ?? err}`),
    );
  };
}
