/** trivial-rewrite's messages, declared beside the resolver (actors/protocol.ts re-exports them). */

/**
 * → rewrite (trivial-rewrite, request/reply): canonicalize or resolve one address. A resolve
 * carries the envelope sender ('' for the null sender), as Postfix's resolve_clnt_query_from():
 * sender_dependent_relayhost_maps and sender_dependent_default_transport_maps are looked up by it.
 * `verify`: an address verification probe, resolved with the address_verify_* overrides
 * (Postfix's resolve_clnt_verify_from()).
 */
export type RewriteRequest =
  | { op: 'rewrite'; context: 'local' | 'remote'; address: string }
  | { op: 'resolve'; sender: string; address: string; verify?: boolean };

export interface RewriteReply {
  address: string;
}

/** Postfix's address classes (resolve.c): which default transport an address gets. */
export type AddressClass = 'local' | 'virtual-alias' | 'virtual-mailbox' | 'relay' | 'default';

export interface ResolveReply {
  class: AddressClass;
  transport: string;
  nexthop: string;
  /** The recipient to deliver to (source routes and sender-specified routing undone). */
  recipient: string;
  flags: {
    /** The recipient cannot be delivered: 5xx bounce, 4xx deferral (4.3.0: a broken table). */
    error?: { code: number; dsn: string; text: string };
    /** Sender-specified routing (user%dom@us, "u@dom"@us, dom!u@us) in a non-final class. */
    routed?: boolean;
    /** For the caller's log: what broke (a TableError "file:line: …"). */
    warning?: string;
  };
}
