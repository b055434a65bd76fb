/**
 * bounce: Postfix's bounce, defer and trace services as one actor (a pool). qmgr keeps
 * the status logs in the queue store (src/queue/store.ts: bounce/defer/trace), asks this actor to
 * render a notice from one of them (./render.ts), and submits the result through cleanup.
 */
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { NoticeReply, NoticeRequest } from '../protocol.js';
import { renderNotice, type NoticeSettings } from './render.js';

export default defineService({
  ...meta,
  params: { 'myhostname': 'str', 'myorigin': 'str', 'mail_name': 'str', 'smtputf8_enable': 'bool', 'delay_warning_time': 'time', 'maximal_queue_lifetime': 'time' },
  setup: ({ params }): NoticeSettings => ({
    myhostname: params.myhostname,
    myorigin: params.myorigin,
    mailName: params.mail_name,
    smtputf8Enable: params.smtputf8_enable,
    delayWarningTime: params.delay_warning_time,
    maximalQueueLifetime: params.maximal_queue_lifetime,
  }),
  handle(settings, req: NoticeRequest): NoticeReply {
    const content = renderNotice(req, settings);
    return { content: new Uint8Array(content.buffer, content.byteOffset, content.byteLength) };
  },
});
