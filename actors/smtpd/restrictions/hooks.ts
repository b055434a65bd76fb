/**
 * Policy hooks smtp-server lacks: a check before the reply to HELO/EHLO (smtpd_helo_restrictions
 * with smtpd_delay_reject=no) and before the 354 to DATA (smtpd_data_restrictions). We wrap the
 * handlers of its connection class (pinned to smtp-server 3.x, as dialect.ts): when the hook
 * answers a reply, that reply goes out instead and the command does nothing else.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

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

export async function installPolicyHooks(): Promise<void> {
  if (installed) return;
  installed = true;
  const require = createRequire(import.meta.url);
  const main = require.resolve('smtp-server');
  const esm = join(dirname(dirname(main)), 'esm', 'smtp-connection.js');
  const mod = (await import(pathToFileURL(esm).href)) as { SMTPConnection: { prototype: Record<string, unknown> } };
  const proto = mod.SMTPConnection.prototype;

  for (const cmd of ['HELO', 'EHLO'] as const) {
    const original = proto[`handler_${cmd}`] as Handler;
    proto[`handler_${cmd}`] = function (this: Conn, command: Buffer | string, callback: () => void) {
      const hook = this._server.options.postactorPolicyHooks?.helo;
      const parts = command.toString().trim().split(/\s+/);
      if (!hook || parts.length !== 2) return original.call(this, command, callback);
      hook(this.session, parts[1]!, cmd).then((reply) => {
        if (!reply) return original.call(this, command, callback);
        this.send(reply.code, reply.text);
        callback();
      }, () => {
        this.send(451, '4.3.5 Server configuration error');
        callback();
      });
    } satisfies Handler;
  }

  const data = proto.handler_DATA as Handler;
  proto.handler_DATA = function (this: Conn, command: Buffer | string, callback: () => void) {
    const hook = this._server.options.postactorPolicyHooks?.data;
    if (!hook || this.session.envelope.rcptTo.length === 0) return data.call(this, command, callback);
    hook(this.session).then((reply) => {
      if (!reply) return data.call(this, command, callback);
      this.send(reply.code, reply.text);
      callback();
    }, () => {
      this.send(451, '4.3.5 Server configuration error');
      callback();
    });
  } satisfies Handler;
}
