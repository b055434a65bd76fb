/**
 * The delivery agents' client: qmgr hands a delivery to a transport's agent (smtp, relay, lmtp,
 * local, virtual, pipe, discard, error, retry, or a custom one): the service is the transport
 * name, so every call names it. Only queue IDs and recipients travel: agents read the content
 * from the queue store.
 */
import { serviceClient } from '../../src/runtime/call.js';
import type { DeliveryReply, DeliveryRequest } from '../protocol.js';

export const deliveryService = serviceClient<DeliveryRequest, DeliveryReply>('smtp');
