/**
 * trivial-rewrite: Postfix's address rewriting and resolving daemon, a piscina pool (master.cf
 * `rewrite unix - - n - 1 trivial-rewrite`). Requests (actors/protocol.ts RewriteRequest):
 *   {op:'rewrite', context, address} → {address}            (rewrite.ts)
 *   {op:'resolve', sender, address} → {class, transport, nexthop, recipient, flags}   (resolve.ts)
 * The logic lives in pure modules; this file only binds them to the worker's configuration.
 */
import { workerData } from 'piscina';
import { configFromJSON, type ConfigJSON } from '../../src/config/index.js';
import type { ActorWorkerData } from '../../src/runtime/wire.js';
import type { RewriteReply, RewriteRequest, ResolveReply } from '../protocol.js';
import { TrivialRewrite } from '../../src/rewrite/settings.js';

let state: TrivialRewrite | null = null;

export default function handle(req: RewriteRequest): RewriteReply | Promise<ResolveReply> {
  state ??= new TrivialRewrite(configFromJSON((workerData as ActorWorkerData<ConfigJSON>).config));
  return state.handle(req);
}
