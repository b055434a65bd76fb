/**
 * trivial-rewrite: Postfix's address rewriting and resolving daemon, a pool (master.cf
 * `rewrite unix - - n - 1 trivial-rewrite`). Requests (actors/protocol.ts RewriteRequest):
 *   {op:'rewrite', context, address} → {address}            (rewrite.ts)
 *   {op:'resolve', sender, address} → {class, transport, nexthop, recipient, flags}   (resolve.ts)
 * The logic lives in pure modules; this file only binds them to the worker's configuration.
 */
import { defineService } from '../../src/runtime/service.js';
import meta from './meta.js';
import type { RewriteReply, RewriteRequest, ResolveReply } from '../protocol.js';
import { TrivialRewrite, TRIVIAL_REWRITE_PARAMS } from '../../src/rewrite/settings.js';

export default defineService({
  ...meta,
  // Read once per thread; the rewrite and resolve code declares them (src/rewrite/settings.ts).
  params: TRIVIAL_REWRITE_PARAMS,
  setup: (ctx) => new TrivialRewrite(ctx.config, ctx.params),
  handle: async (state, req: RewriteRequest): Promise<RewriteReply | ResolveReply> => state.handle(req),
});
