/**
 * sendmail -bs: a stand-alone SMTP dialogue on standard input and output. Postfix runs
 * `smtpd -S` for this, which queues through postdrop; here the dialogue is handled in-process
 * and each accepted message becomes one maildrop file (so -bs also works while the server is
 * down). Replies use Postfix smtpd's texts. No relay or other access control applies: the
 * submitter is a local user, as with Postfix stand-alone mode run by a non-mail_owner user.
 */
import type { Readable, Writable } from 'node:stream';
import { parseAddressList } from './address.js';
import type { MaildropEnvelope, NotifyKeyword } from './format.js';
import { etrnSyntax } from '../flush/destination.js';

export interface StandaloneOptions {
  myhostname: string;
  mailName: string;
  sizeLimit: number;
  /** Writes one message; returns its maildrop name (the "queued as" ID). */
  submit(envelope: Omit<MaildropEnvelope, 'size' | 'arrival' | 'uid' | 'user' | 'rewriteContext' | 'fullName'>, parts: Buffer[]): string;
}

interface Txn {
  sender: string;
  recipients: string[];
  notify?: NotifyKeyword[];
  ret?: 'FULL' | 'HDRS';
  envId?: string;
  bodyType?: '7BIT' | '8BITMIME';
}

/** "<addr> PARAM=x ..." → address and ESMTP parameters; null when malformed. */
function parsePath(arg: string): { addr: string; params: Map<string, string> } | null {
  const m = /^\s*<([^>]*)>\s*(.*)$/.exec(arg) ?? /^\s*(\S+)\s*(.*)$/.exec(arg);
  if (!m) return null;
  const params = new Map<string, string>();
  for (const p of m[2]!.split(/\s+/).filter(Boolean)) {
    const eq = p.indexOf('=');
    params.set((eq < 0 ? p : p.slice(0, eq)).toUpperCase(), eq < 0 ? '' : p.slice(eq + 1));
  }
  const inner = m[1]!.trim();
  const addr = inner === '' ? '' : (parseAddressList(inner)[0] ?? inner);
  return { addr, params };
}

export async function runStandaloneSmtp(input: Readable, output: Writable, opts: StandaloneOptions): Promise<void> {
  const reply = (line: string) => output.write(line + '\r\n');
  reply(`220 ${opts.myhostname} ESMTP ${opts.mailName}`);
  let txn: Txn | null = null;
  let data: Buffer[] | null = null;
  let dataSize = 0;
  let buf: Buffer = Buffer.alloc(0);
  let quit = false;

  const onLine = (raw: Buffer): void => {
    // raw: the line without LF; a trailing CR is removed.
    const line = raw.length && raw[raw.length - 1] === 0x0d ? raw.subarray(0, raw.length - 1) : raw;
    if (data) {
      if (line.length === 1 && line[0] === 0x2e) {
        const parts = data;
        data = null;
        const t = txn!;
        txn = null;
        if (opts.sizeLimit > 0 && dataSize > opts.sizeLimit) return void reply('552 5.3.4 Message size exceeds fixed limit');
        try {
          const id = opts.submit({
            sender: t.sender, recipients: t.recipients,
            ...(t.notify ? { notify: t.notify } : {}), ...(t.ret ? { ret: t.ret } : {}),
            ...(t.envId ? { envId: t.envId } : {}), ...(t.bodyType ? { bodyType: t.bodyType } : {}),
          }, parts);
          reply(`250 2.0.0 Ok: queued as ${id}`);
        } catch (err) {
          reply(`451 4.3.0 Error: queue file write error (${(err as Error).message})`);
        }
        return;
      }
      const body = line.length && line[0] === 0x2e ? line.subarray(1) : line; // dot-unstuffing
      dataSize += body.length + 1;
      if (opts.sizeLimit <= 0 || dataSize <= opts.sizeLimit) data.push(Buffer.from(body), Buffer.from('\n'));
      return;
    }
    const text = line.toString('utf8');
    const sp = text.indexOf(' ');
    const verb = (sp < 0 ? text : text.slice(0, sp)).toUpperCase();
    const arg = sp < 0 ? '' : text.slice(sp + 1);
    switch (verb) {
      case 'HELO':
        if (!arg.trim()) return void reply('501 Syntax: HELO hostname');
        txn = null;
        return void reply(`250 ${opts.myhostname}`);
      case 'EHLO':
        if (!arg.trim()) return void reply('501 Syntax: EHLO hostname');
        txn = null;
        reply(`250-${opts.myhostname}`);
        reply('250-PIPELINING');
        if (opts.sizeLimit > 0) reply(`250-SIZE ${opts.sizeLimit}`);
        reply('250-ENHANCEDSTATUSCODES');
        reply('250-8BITMIME');
        return void reply('250 DSN');
      case 'MAIL': {
        if (txn) return void reply('503 5.5.1 Error: nested MAIL command');
        const m = /^FROM:(.*)$/i.exec(arg);
        const p = m ? parsePath(m[1]!) : null;
        if (!p) return void reply('501 5.5.4 Syntax: MAIL FROM:<address>');
        const t: Txn = { sender: p.addr, recipients: [] };
        const ret = p.params.get('RET')?.toUpperCase();
        if (ret === 'FULL' || ret === 'HDRS') t.ret = ret;
        const envId = p.params.get('ENVID');
        if (envId) t.envId = envId;
        const body = p.params.get('BODY')?.toUpperCase();
        if (body === '7BIT' || body === '8BITMIME') t.bodyType = body;
        const size = Number(p.params.get('SIZE') ?? 0);
        if (opts.sizeLimit > 0 && size > opts.sizeLimit) return void reply('552 5.3.4 Message size exceeds fixed limit');
        txn = t;
        return void reply('250 2.1.0 Ok');
      }
      case 'RCPT': {
        if (!txn) return void reply('503 5.5.1 Error: need MAIL command');
        const m = /^TO:(.*)$/i.exec(arg);
        const p = m ? parsePath(m[1]!) : null;
        if (!p || !p.addr) return void reply('501 5.5.4 Syntax: RCPT TO:<address>');
        const notify = p.params.get('NOTIFY')?.toUpperCase().split(',').filter((n) => ['SUCCESS', 'DELAY', 'FAILURE', 'NEVER'].includes(n)) as NotifyKeyword[] | undefined;
        if (notify?.length) txn.notify = notify; // one NOTIFY per message in the maildrop format
        txn.recipients.push(p.addr);
        return void reply('250 2.1.5 Ok');
      }
      case 'DATA':
        if (!txn) return void reply('503 5.5.1 Error: need RCPT command');
        if (!txn.recipients.length) return void reply('554 5.5.1 Error: no valid recipients');
        data = [];
        dataSize = 0;
        return void reply('354 End data with <CR><LF>.<CR><LF>');
      case 'RSET':
        txn = null;
        return void reply('250 2.0.0 Ok');
      case 'NOOP':
        return void reply('250 2.0.0 Ok');
      case 'VRFY':
        return void reply(arg.trim() ? `252 2.0.0 ${arg.trim()}` : '501 5.5.4 Syntax: VRFY address');
      // Postfix's stand-alone smtpd checks ETRN as usual, then cannot queue: there is no flush
      // service to ask from a local submission.
      case 'ETRN': {
        const r = etrnSyntax(arg.trim().split(/\s+/).filter(Boolean), txn !== null, false);
        return void reply('code' in r ? `${r.code} ${r.text}` : '458 Unable to queue messages');
      }
      case 'QUIT':
        quit = true;
        return void reply('221 2.0.0 Bye');
      default:
        return void reply('502 5.5.2 Error: command not recognized');
    }
  };

  for await (const chunk of input) {
    buf = buf.length ? Buffer.concat([buf, chunk as Buffer]) : (chunk as Buffer);
    let pos = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, pos);
      if (nl < 0) break;
      onLine(buf.subarray(pos, nl));
      pos = nl + 1;
      if (quit) break;
    }
    buf = buf.subarray(pos);
    if (quit) break;
  }
  if (!quit && buf.length) onLine(buf);
  await new Promise<void>((resolve) => output.write('', () => resolve()));
}
