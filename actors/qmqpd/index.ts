/**
 * qmqpd: Postfix's QMQP server (qmqpd(8)), for mailing-list software that hands a message with
 * many recipients to a relay in one go (http://cr.yp.to/proto/qmqp.html). One message per
 * connection: the client sends one netstring holding three parts — the message, the sender and
 * the recipients, each itself a netstring — and gets one reply, a netstring starting with K
 * (queued), Z (try again) or D (refused for good).
 *
 * Only clients in qmqpd_authorized_clients may use it; the default (empty) lets nobody in, and
 * everyone else gets "D Error: NAME[ADDR] is not authorized to use this service" before anything
 * is read. The message goes to cleanup as smtpd's do (origin 'qmqpd', with qmqpd's own Received
 * header "with QMQP"); K is answered only once cleanup's transaction is on disk. Every negative
 * reply waits qmqpd_error_delay first, which slows a run-away client down; each read waits at
 * most qmqpd_timeout. Log lines and reply texts are Postfix's.
 *
 * Each thread of the inet service listens on the service's addresses with SO_REUSEPORT, as the
 * smtpd threads do.
 */
import * as net from 'node:net';
import { maillog } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import { defineService, type Params, type ServiceContext } from '../../src/runtime/service.js';
import meta from './meta.js';
import { ServiceError } from '../../src/runtime/wire.js';
import { cleanupService, type CleanupReply, type CleanupRequest } from '../protocol.js';
import type { ListenAddress } from '../../src/net/listen.js';
import { AuthorizedClients } from './clients.js';
import { qmqpReceivedHeader, queueContent } from './content.js';
import { verifiedPeerName } from './peer.js';
import { FAILURE_TEXT, netstring, NetstringError, NetstringReader } from './netstring.js';
import { SOFT_BOUNCE_PARAMS } from '../../src/delivery/soft-bounce.js';

const log = maillog('qmqpd');

/** QMQP reply codes. */
type Status = 'K' | 'Z' | 'D';

interface Settings {
  clients: AuthorizedClients;
  timeout: number;
  errorDelay: number;
  /** soft_bounce: a hard error ('D') is sent as one to retry ('Z'). */
  softBounce: boolean;
  portLogging: boolean;
  sizeLimit: number;
  lineLimit: number;
  myhostname: string;
  mailName: string;
  contentFilter: string;
  inFlowDelay: number;
}

/** One QMQP session: Postfix's QMQPD_STATE. */
class Session {
  private queueId: string | null = null;
  private where = 'initializing client connection';
  private readonly reader: NetstringReader;

  constructor(
    private readonly s: Settings,
    private readonly socket: net.Socket,
    private readonly name: string,
    private readonly addr: string,
    private readonly namaddr: string,
    private readonly submit: (r: CleanupRequest, contentOf: () => Uint8Array) => Promise<CleanupReply>,
  ) {
    this.reader = new NetstringReader(socket, s.timeout);
  }

  async run(): Promise<void> {
    try {
      let authorized: boolean | null;
      try {
        authorized = this.s.clients.error ? null : await this.s.clients.match(this.name, this.addr);
      } catch (err) {
        log.warn(`qmqpd_authorized_clients: ${(err as Error).message}`);
        authorized = null;
      }
      if (authorized) await this.receive();
      else if (authorized === false) await this.reply('D', `Error: ${this.namaddr} is not authorized to use this service`, false);
      else await this.reply('Z', 'Error: server configuration error', false);
    } catch (err) {
      if (!(err instanceof NetstringError)) throw err;
      const reason = FAILURE_TEXT[err.kind];
      // A malformed or oversized part is answered; a lost or silent client is not.
      if (err.kind === 'format' || err.kind === 'size') await this.reply('D', `${reason} while ${this.where}`, false).catch(() => undefined);
      log.info(`${this.queueId ?? 'NOQUEUE'}: ${this.namaddr}: ${reason} while ${this.where}`);
    }
  }

  /** Reads the packet (message, sender, recipients), queues it, answers. */
  private async receive(): Promise<void> {
    const arrival = Date.now();
    // The queue ID first, as Postfix opens the queue file before reading: every log line has it.
    const queueId = (this.queueId = newQueueId());
    log.info(`${queueId}: client=${this.namaddr}`);
    this.where = 'receiving QMQP packet header';
    await this.reader.length(); // the over-all length is not needed: its ',' ends the recipients
    this.where = 'receiving message content';
    const message = await this.reader.get(this.s.sizeLimit);
    this.where = 'receiving sender address';
    const sender = (await this.reader.get(this.s.lineLimit)).toString('utf8');
    this.where = 'receiving recipient address';
    const recipients: string[] = [];
    while ((await this.reader.peek()) !== 0x2c) recipients.push((await this.reader.get(this.s.lineLimit)).toString('utf8'));
    await this.reader.byte();
    this.socket.pause();

    this.where = 'sending completion status';
    // prefix@origin-@[] asks for VERP delivery, which Postactor does not do: refused rather
    // than delivered with one sender for all.
    if (/^.+@.+-@\[\]$/.test(sender)) return this.reply('D', 'Error: 5.5.4 VERP delivery is not supported by Postactor', true);
    if (recipients.length === 0) return this.reply('D', 'Error: no recipients specified', true);
    // Made again for a retry: the first one is transferred to cleanup, BUSY or not.
    const contentOf = () => queueContent(qmqpReceivedHeader({
      clientName: this.name, clientAddr: this.addr, myhostname: this.s.myhostname, mailName: this.s.mailName,
      queueId, recipients, arrival,
    }), message);
    const content = contentOf();
    const reply = await this.submit({
      queueId,
      sender,
      recipients: recipients.map((address) => ({ address })),
      content,
      client: { name: this.name, addr: this.addr, port: this.socket.remotePort ?? 0, helo: '', protocol: 'QMQP' },
      arrival,
      origin: 'qmqpd',
      ...(this.s.contentFilter ? { contentFilter: this.s.contentFilter } : {}),
    }, contentOf);
    if (reply.ok) return this.reply('K', `Ok: queued as ${reply.queueId}`, false);
    // Cleanup's own texts ("Error: too many hops", "Error: queue file write error") as they
    // are; a check's rejection as Postfix words it: "Error: 5.7.1 text".
    const text = reply.text.startsWith('Error: ') ? reply.text : `Error: ${reply.dsn} ${reply.text}`;
    return this.reply(reply.code >= 500 ? 'D' : 'Z', text, true);
  }

  /** Sends the one reply; a negative one is logged (when asked) and delayed by qmqpd_error_delay. */
  private async reply(given: Status, text: string, logIt: boolean): Promise<void> {
    // soft_bounce: a hard error becomes one to retry (qmqpd.c qmqpd_reply).
    const status = given === 'D' && this.s.softBounce ? 'Z' : given;
    if (logIt) {
      const line = `${this.queueId}: ${this.namaddr}: ${text}`;
      if (status === 'K') log.info(line);
      else log.warn(line);
    }
    if (status !== 'K' && this.s.errorDelay > 0) await new Promise((r) => setTimeout(r, this.s.errorDelay));
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => this.socket.write(netstring(`${status}${text}`), () => resolve()));
  }
}

/** What qmqpd reads, once per thread with the registry's types (src/runtime/service.ts). */
const PARAMS = {
  'parent_domain_matches_subdomains': 'list',
  'qmqpd_authorized_clients': 'str',
  'qmqpd_timeout': 'time',
  'qmqpd_error_delay': 'time',
  'qmqpd_client_port_logging': 'bool',
  'message_size_limit': 'size',
  'line_length_limit': 'int',
  'myhostname': 'str',
  'mail_name': 'str',
  'content_filter': 'str',
  'in_flow_delay': 'time',
  ...SOFT_BOUNCE_PARAMS,
} as const;

function settingsOf(p: Params<typeof PARAMS>): Settings {
  const parentMatches = p.parent_domain_matches_subdomains.includes('qmqpd_authorized_clients');
  return {
    clients: new AuthorizedClients(p.qmqpd_authorized_clients, parentMatches),
    timeout: p.qmqpd_timeout * 1000,
    errorDelay: p.qmqpd_error_delay * 1000,
    portLogging: p.qmqpd_client_port_logging,
    sizeLimit: p.message_size_limit,
    lineLimit: p.line_length_limit,
    myhostname: p.myhostname,
    mailName: p.mail_name,
    contentFilter: p.content_filter.trim(),
    inFlowDelay: p.in_flow_delay * 1000,
    softBounce: p.soft_bounce,
  };
}

interface State {
  sockets: Set<net.Socket>;
  listeners: net.Server[];
}

async function start(ctx: ServiceContext<typeof PARAMS>): Promise<State> {
  const sockets = new Set<net.Socket>();
  const { actor } = ctx;
  const { addresses } = actor.data.extra as { addresses: ListenAddress[] };
  const s = settingsOf(ctx.params);
  if (s.clients.error) log.warn(s.clients.error);

  /**
   * Hands a message to cleanup; when its mailbox is full, waits in_flow_delay once (push back).
   * The content is transferred, so after any answer, BUSY included, its buffer belongs to
   * another thread: a retry sends a new one, made by `contentOf`.
   */
  async function submit(request: CleanupRequest, contentOf: () => Uint8Array): Promise<CleanupReply> {
    for (let attempt = 0; ; attempt++) {
      try {
        const body = attempt === 0 ? request : { ...request, content: contentOf() };
        return await cleanupService.call(actor, body);
      } catch (err) {
        if (err instanceof ServiceError && err.code === 'BUSY' && attempt === 0) {
          await new Promise((r) => setTimeout(r, s.inFlowDelay || 1000));
          continue;
        }
        return { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };
      }
    }
  }

  const serve = async (socket: net.Socket): Promise<void> => {
    sockets.add(socket);
    socket.on('error', () => { /* the reader sees the end */ });
    const raw = socket.remoteAddress ?? '';
    const addr = raw.startsWith('::ffff:') && net.isIPv4(raw.slice(7)) ? raw.slice(7) : raw;
    const name = await verifiedPeerName(addr, (w) => log.warn(w));
    const namaddr = `${name}[${addr}]${s.portLogging ? `:${socket.remotePort}` : ''}`;
    log.info(`connect from ${namaddr}`);
    try {
      await new Session(s, socket, name, addr, namaddr, submit).run();
    } catch (err) {
      log.warn(`${namaddr}: ${(err as Error).message}`);
    }
    log.info(`disconnect from ${namaddr}`);
    // One message per connection. Whatever the client still sends is read and dropped, so
    // closing does not reset the connection before it has read the reply.
    socket.resume();
    socket.end();
    setTimeout(() => socket.destroy(), 5000).unref();
    socket.once('close', () => sockets.delete(socket));
  };

  // allowHalfOpen: a client may close its sending side after the packet and still read the reply.
  const listeners = addresses.map(() => net.createServer({ allowHalfOpen: true }, (socket) => void serve(socket)));
  await Promise.all(addresses.map((a, i) => new Promise<void>((resolve, reject) => {
    const l = listeners[i]!;
    l.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`bind ${a.host} port ${a.port}: ${e.code === 'EADDRINUSE' ? 'Address already in use' : e.message}`)));
    l.listen({ host: a.host, port: a.port, reusePort: true, backlog: 1024, ...(a.ipv6Only ? { ipv6Only: true } : {}) }, () => resolve());
  })));
  return { sockets, listeners };
}

export default defineService({
  ...meta,
  maxInFlight: 2048,
  fatalStack: false,
  params: PARAMS,
  setup: start,
  control: { status: (s) => ({ connections: s?.sockets.size ?? 0 }) },
  // Stop (postactor stop, reload): accept no more connections; sessions in progress finish
  // (their message may be on its way to cleanup), for at most 10 seconds.
  stop: ({ sockets, listeners }) => new Promise<void>((resolve) => {
    for (const l of listeners) l.close();
    const deadline = Date.now() + 10_000;
    const poll = () => {
      if (sockets.size === 0 || Date.now() >= deadline) return resolve();
      setTimeout(poll, 50);
    };
    poll();
  }),
});
