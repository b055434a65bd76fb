/**
 * The verify service's client (Postfix's verify_clnt.c), shared by its two users: smtpd asks
 * `query` for reject_unverified_recipient / _sender, qmgr tells `update` with each probe
 * outcome. The transport is the caller's (an actor's request to the service named
 * address_verify_service_name); any failure of it is a service failure, which the caller turns
 * into Postfix's "address verification problem" (smtpd) or a warning (qmgr).
 */
import type { VerifyReply, VerifyRequest, VerifyStatus } from './protocol.js';

export type { VerifyStatus } from './protocol.js';

/** How a client reaches a service: (service name, request body) → reply. */
export type ServiceRequester = (service: string, body: unknown) => Promise<unknown>;

export class VerifyServiceError extends Error {}

export class VerifyClient {
  constructor(private readonly request: ServiceRequester, readonly service: string) {}

  /** verify_clnt_query: the address's status and its explanation. */
  async query(address: string): Promise<{ status: VerifyStatus; text: string }> {
    const reply = await this.call({ op: 'query', address });
    if (reply.op !== 'query') throw new VerifyServiceError(`${this.service}: unexpected reply to query`);
    return { status: reply.status, text: reply.text };
  }

  /** verify_clnt_update: a probe's outcome for the address. */
  async update(address: string, status: Exclude<VerifyStatus, 'todo'>, text: string): Promise<void> {
    await this.call({ op: 'update', address, status, text });
  }

  private async call(body: VerifyRequest): Promise<VerifyReply> {
    try {
      return (await this.request(this.service, body)) as VerifyReply;
    } catch (err) {
      throw new VerifyServiceError(`${this.service}: ${(err as Error)?.message ?? err}`);
    }
  }
}
