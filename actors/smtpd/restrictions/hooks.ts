/**
 * Policy hooks smtp-server lacks: a check before the reply to HELO/EHLO (smtpd_helo_restrictions
 * with smtpd_delay_reject=no) and before the 354 to DATA (smtpd_data_restrictions). We wrap the
 * handlers of its connection class (pinned to smtp-server 3.x, as dialect.ts): when the hook
 * answers a reply, that reply goes out instead and the command does nothing else.
 */
import { smtpConnectionPrototype } from '../engine.js';

/** A hook answers null (go on) or the reply to send instead. */
export interface PolicyHooks {
  helo?(session: object, hostname: string, command: 'HELO' | 'EHLO'): Promise<{ code: number; text: string } | null>;
  data?(session: object): Promise<{ code: number; text: string } | null>;
}

type Handler = (this: Conn, command: Buffer | string, callback: () => void) => void;
type Conn = {
  _server: { options: { postactorPolicyHooks?: PolicyHooks } };
  session: { envelope: { rcptTo: unknown[] } } & object;
  send(code: number, text: string, context?: unknown): void;
};

let installed = false;

/** Runs a hook: its reply replaces the command's, none lets the original handler go on. */
function guarded(conn: Conn, hook: Promise<{ code: number; text: string } | null>, proceed: () => void, callback: () => void): void {
  hook.then((reply) => {
    if (!reply) return proceed();
    conn.send(reply.code, reply.text);
    callback();
  }, () => {
    conn.send(451, '4.3.5 Server configuration error');
    callback();
  });
}

export async function installPolicyHooks(): Promise<void> {
  if (installed) return;
  installed = true;
  const proto = smtpConnectionPrototype();

  for (const cmd of ['HELO', 'EHLO'] as const) {
    const original = proto[`handler_${cmd}`] as Handler;
    proto[`handler_${cmd}`] = function (this: Conn, command: Buffer | string, callback: () => void) {
      const hook = this._server.options.postactorPolicyHooks?.helo;
      const parts = command.toString().trim().split(/\s+/);
      if (!hook || parts.length !== 2) return original.call(this, command, callback);
      guarded(this, hook(this.session, parts[1]!, cmd), () => original.call(this, command, callback), callback);
    } satisfies Handler;
  }

  const data = proto.handler_DATA as Handler;
  proto.handler_DATA = function (this: Conn, command: Buffer | string, callback: () => void) {
    const hook = this._server.options.postactorPolicyHooks?.data;
    if (!hook || this.session.envelope.rcptTo.length === 0) return data.call(this, command, callback);
    guarded(this, hook(this.session), () => data.call(this, command, callback), callback);
  } satisfies Handler;
}
