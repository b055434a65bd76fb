/**
 * Typed clients of services: one `call` (request/reply) and `cast` (one-way) per service,
 * declared beside the service (actors/<service>/client.ts) with the types of actors/protocol.ts,
 * as Postfix's daemons have their *_clnt.c beside them. The runtime still moves opaque payloads
 * (on a direct channel once the master wired one: ./channels.ts); a client says which types go
 * in and out, and which buffers of a request are transferred (a message body is never copied).
 */

/** How a thread reaches services: its Actor (./endpoint.ts). */
export interface Caller {
  request<T>(to: string, body: unknown, transfer?: ArrayBuffer[], affinity?: string): Promise<T>;
  send(to: string, body: unknown): void;
}

export interface ServiceClient<Req, Res> {
  /** Request/reply: the reply, or a ServiceError (BUSY: push back; CRASHED, THROTTLED, NOSERVICE). */
  /** `affinity`: calls with the same key go to the same thread of the service (src/runtime/channels.ts). */
  call(via: Caller, req: Req, service?: string, affinity?: string): Promise<Res>;
  /** One-way: no reply, no back-pressure. */
  cast(via: Caller, req: Req, service?: string): void;
}

/**
 * A client of `service` (a master.cf service name; a caller may name another one, e.g. a
 * transport or a -o rewrite_service_name). `transferOf` names a request's buffers to transfer.
 */
export function serviceClient<Req, Res>(service: string, transferOf?: (req: Req) => ArrayBuffer[]): ServiceClient<Req, Res> {
  return {
    call: (via, req, name = service, affinity) => via.request<Res>(name, req, transferOf?.(req), affinity),
    cast: (via, req, name = service) => via.send(name, req),
  };
}

/**
 * The buffer of a byte view to transfer: only one the view covers whole. A view into a larger
 * buffer (a slice of Node's Buffer pool) is cloned instead, since transferring it would take
 * the rest of that buffer away from its owner.
 */
export function wholeBuffer(view: Uint8Array): ArrayBuffer[] {
  const buffer = view.buffer;
  return buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === buffer.byteLength ? [buffer] : [];
}
