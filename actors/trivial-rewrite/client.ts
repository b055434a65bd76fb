/**
 * trivial-rewrite's client (Postfix's rewrite_clnt.c and resolve_clnt.c): qmgr resolves
 * recipients behind its cache. The service name is rewrite_service_name (or a -o override).
 */
import { serviceClient } from '../../src/runtime/call.js';
import type { ResolveReply, RewriteReply, RewriteRequest } from '../protocol.js';

export const rewriteService = serviceClient<RewriteRequest & { op: 'rewrite' }, RewriteReply>('rewrite');
export const resolveService = serviceClient<RewriteRequest & { op: 'resolve' }, ResolveReply>('rewrite');
