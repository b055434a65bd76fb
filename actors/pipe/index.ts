/**
 * pipe: Postfix's pipe(8), delivery to an external command, a pool. The master.cf line
 * names the command and how to feed it:
 *
 *   filter unix - n n - 10 pipe flags=Rq user=filter argv=/usr/bin/filter -f ${sender} -- ${recipient}
 *
 * Each pool thread runs one command at a time, so maxproc is the number of commands running at
 * once, as in Postfix (maxproc 1 runs them one after another).
 *
 * One task is one delivery: the command runs once with all the request's recipients
 * (<transport>_destination_recipient_limit = 1 for one run per recipient, which flags D and O
 * require). Its exit status decides every recipient's fate (see command.ts). The time limit is
 * <transport>_time_limit, default $command_time_limit. On success the log says
 * "relay=<transport>, … status=sent (delivered via <transport> service)", followed by the first 100
 * characters of what the command printed, if anything: "(delivered via filter service (stored))".
 *
 * user= is required and may not be root or $mail_owner. Running as root, the command runs with
 * that user's uid and gid (or user=name:group). Not running as root, we cannot switch: the
 * command runs as our own user, and a warning says so once per service.
 */
import { parseTime, queueDirectory } from '../../src/config/index.js';
import type { DeliveryReply, DeliveryRequest, RecipientOutcome } from '../protocol.js';
import { every, report, type AgentContext } from '../../src/delivery/agent.js';
import { expandArgv } from './argv.js';
import { parseAttributes, type PipeAttributes } from './attributes.js';
import { runCommand } from '../../src/delivery/command.js';
import { mailCopy, setEnableOriginalRecipient } from '../../src/delivery/copy.js';
import { defineService, type Params } from '../../src/runtime/service.js';
import meta from './meta.js';
import { agentContent, corruptReply } from '../../src/delivery/content.js';

/**
 * What pipe reads, once per thread with the registry's types. <transport>_time_limit is read by
 * its computed name (the transport is this service's name), as Postfix's pipe does.
 */
const PARAMS = {
  'mail_owner': 'str',
  'command_time_limit': 'time',
  'export_environment': 'list',
  'recipient_delimiter': 'str',
  'enable_original_recipient': 'bool',
} as const;

interface State {
  ctx: AgentContext;
  recipientDelimiter: string;
  attrs: PipeAttributes | string;
  timeLimitMs: number;
  env: Record<string, string>;
  cwd: string;
  switchUser: boolean;
}

function init(ctx: AgentContext & { params: Params<typeof PARAMS> }): State {
  const { config, service, line, params: p } = ctx;
  setEnableOriginalRecipient(p.enable_original_recipient);
  const attrs = line ? parseAttributes(line.args, p.mail_owner) : `no master.cf service named ${service}`;
  if (typeof attrs === 'string') ctx.log.warn(`${service}: ${attrs} (${line ? `${line.file}:${line.line}` : 'master.cf'}); deliveries are deferred`);
  // <transport>_time_limit, default $command_time_limit.
  const own = `${service}_time_limit`;
  let seconds = p.command_time_limit;
  const ownValue = (() => { try { return config.get(own); } catch { return null; } })(); // unset: unknown name
  if (ownValue !== null) {
    const t = parseTime(ownValue, 's');
    if (t === null) ctx.log.warn(`${own}: bad time value "${ownValue}"; using $command_time_limit`);
    else seconds = t;
  }
  const env: Record<string, string> = { PATH: '/usr/bin:/bin' };
  for (const name of p.export_environment) {
    const v = process.env[name];
    if (v !== undefined) env[name] = v;
  }
  const switchUser = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!switchUser && typeof attrs !== 'string') {
    ctx.log.warn(`${service}: not running as root: user=${attrs.user} is not applied, the command runs as uid ${process.getuid?.()}`);
  }
  return { ctx, recipientDelimiter: p.recipient_delimiter, attrs, timeLimitMs: seconds * 1000, env, cwd: queueDirectory(config), switchUser };
}

async function deliver(s: State, req: DeliveryRequest): Promise<DeliveryReply> {
  const { ctx } = s;
  const started = Date.now();
  const relay = ctx.service;
  const fail = (dsn: string, reason: string): DeliveryReply =>
    report(ctx, req, every(req, { status: dsn.startsWith('4') ? 'deferred' : 'bounced', dsn, reason, relay }), started);
  const attrs = s.attrs;
  if (typeof attrs === 'string') return fail('4.3.5', 'mail system configuration error');
  for (const flag of ['D', 'O']) {
    if (attrs.flags.has(flag) && req.recipients.length > 1) {
      ctx.log.warn(`pipe flag \`${flag}' requires ${ctx.service}_destination_recipient_limit = 1`);
      return fail('4.3.5', 'mail system configuration error');
    }
  }
  if (attrs.sizeLimit > 0 && req.size > attrs.sizeLimit) return fail('5.2.3', 'message too large');
  const read = agentContent(ctx.store, req);
  if ('damaged' in read) return corruptReply(req, read.damaged); // nothing goes out: qmgr sets it aside
  const content = 'content' in read ? read.content : undefined;
  if (!content) return fail('4.3.0', 'queue file vanished');
  const first = req.recipients[0]!;
  if (attrs.flags.has('D') && hasDeliveredTo(content, first.address)) return fail('5.4.6', `mail forwarding loop for ${first.address}`);

  const client = ctx.store.get(req.queueId)?.client;
  const argv = expandArgv(attrs.argv, {
    sender: req.sender || attrs.nullSender,
    nexthop: req.nexthop,
    size: req.size,
    queueId: req.queueId,
    client: { address: client?.addr ?? '', hostname: client?.name ?? '', port: client?.port !== undefined ? String(client.port) : '', helo: client?.helo ?? '', protocol: client?.protocol ?? '' },
  }, req.recipients.map((r) => ({ address: r.address, original: r.original ?? r.address })), attrs.flags, s.recipientDelimiter);
  if (typeof argv === 'string') {
    ctx.log.warn(`${ctx.service}: ${argv}`);
    return fail('4.3.5', 'mail system configuration error');
  }
  // sendmail -bv: Postfix's pipe reports what it would do and runs nothing.
  if (req.verify) return report(ctx, req, every(req, { status: 'sent', dsn: '2.0.0', reason: `delivers to command: ${argv[0]}`, relay }), started);
  const input = mailCopy(content, {
    flags: attrs.flags, eol: attrs.eol, sender: req.sender, originalRecipient: first.original ?? first.address, deliveredTo: first.address, now: new Date(),
  });
  const result = await runCommand({
    argv, input, timeLimitMs: s.timeLimitMs, env: s.env, cwd: attrs.directory ?? s.cwd,
    ...(s.switchUser ? { uid: attrs.uid, gid: attrs.gid } : {}),
  });
  const transmit = Date.now() - started;
  const outcomes: RecipientOutcome[] = result.ok
    ? every(req, { status: 'sent', dsn: '2.0.0', reason: `delivered via ${ctx.service} service${result.output ? ` (${result.output.slice(0, 100)})` : ''}`, relay })
    : every(req, { status: result.dsn.startsWith('4') ? 'deferred' : 'bounced', dsn: result.dsn, reason: result.text, relay });
  return report(ctx, req, outcomes, started, { connect: 0, transmit });
}

/** Flag D's loop check: a Delivered-To: header with this recipient already in the message. */
function hasDeliveredTo(content: Uint8Array, address: string): boolean {
  const buf = Buffer.from(content.buffer, content.byteOffset, content.byteLength);
  const end = buf.indexOf('\r\n\r\n');
  const headers = buf.subarray(0, end < 0 ? buf.length : end).toString('latin1');
  const want = address.toLowerCase();
  return headers.split(/\r?\n/).some((l) => /^delivered-to:/i.test(l) && l.slice(13).trim().toLowerCase() === want);
}

export default defineService({
  ...meta,
  params: PARAMS,
  setup: init,
  handle: deliver,
});
