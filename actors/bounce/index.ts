/**
 * bounce: Postfix's bounce, defer and trace services as one actor (a piscina pool). qmgr keeps
 * the status logs in the queue store (src/queue/store.ts: bounce/defer/trace), asks this actor to
 * render a notice from one of them (./render.ts), and submits the result through cleanup.
 */
import { workerData } from 'piscina';
import { configFromJSON, type ConfigJSON } from '../../src/config/index.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import type { NoticeReply, NoticeRequest } from '../protocol.js';
import { renderNotice, type NoticeSettings } from './render.js';

let settings: NoticeSettings | null = null;

function init(): NoticeSettings {
  const config = configFromJSON((workerData as ActorWorkerData<ConfigJSON>).config);
  return {
    myhostname: config.get('myhostname'),
    mailName: config.get('mail_name'),
    delayWarningTime: config.getTime('delay_warning_time'),
    maximalQueueLifetime: config.getTime('maximal_queue_lifetime'),
  };
}

export default function render(req: NoticeRequest): NoticeReply {
  const content = renderNotice(req, (settings ??= init()));
  return { content: new Uint8Array(content.buffer, content.byteOffset, content.byteLength) };
}
