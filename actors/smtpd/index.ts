/**
 * smtpd: the SMTP server actor. Each worker of the `inet` service listens on the same address
 * with SO_REUSEPORT, so the kernel spreads connections over the workers. A session is checked
 * against the smtpd restrictions at RCPT time, and its message goes to cleanup; the client gets
 * "250 2.0.0 Ok: queued as ID" only once cleanup's transaction is on disk.
 */
import { parentPort } from 'node:worker_threads';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { configFromJSON, type Config, type ConfigJSON } from '../../src/config/index.js';
import { configureMaillog, flushMaillog, maillog } from '../../src/log/maillog.js';
import { newQueueId } from '../../src/queue/qid.js';
import { startActor } from '../../src/runtime/endpoint.js';
import { ServiceError } from '../../src/runtime/wire.js';
import type { ClientInfo } from '../../src/queue/types.js';
import type { CleanupReply, CleanupRequest } from '../protocol.js';
import { countersOf, formatCounters, installDialect, type Dialect } from './dialect.js';
import { SmtpdPolicy } from './policy.js';
import { peerName } from './peername.js';

const log = maillog('smtpd');

interface SessionState {
  client: ClientInfo;
  queueId: string | null;
  /** The envelope object the queue ID belongs to (smtp-server makes a new one per transaction). */
  envelope: unknown;
}

const states = new WeakMap<SMTPServerSession, SessionState>();

async function main(): Promise<void> {
  await installDialect();
  let server: SMTPServer | null = null;
  const actor = await startActor({
    maxInFlight: 2048,
    control: {
      status: () => ({ connections: (server as unknown as { connections: Set<unknown> } | null)?.connections.size ?? 0 }),
    },
  });
  const config: Config = configFromJSON(actor.data.config as ConfigJSON);
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  const listen = actor.data.extra as { host: string | null; port: number };
  const policy = new SmtpdPolicy(config);
  const hostname = config.get('myhostname');
  const sizeLimit = config.getSize('message_size_limit');
  const inFlowDelay = config.getTime('in_flow_delay') * 1000;
  const dialect: Dialect = {
    hostname,
    banner: config.get('smtpd_banner'),
    vrfyDisabled: config.getBool('disable_vrfy_command'),
    sizeLimit,
    ehloKeywords: [
      'PIPELINING',
      ...(sizeLimit > 0 ? [`SIZE ${sizeLimit}`] : ['SIZE']),
      ...(config.getBool('disable_vrfy_command') ? [] : ['VRFY']),
      'ENHANCEDSTATUSCODES',
      '8BITMIME',
      ...(config.getBool('smtputf8_enable') ? ['SMTPUTF8'] : []),
    ],
  };

  const refuse = (code: number, text: string) => Object.assign(new Error(text), { responseCode: code });

  server = new SMTPServer({
    name: hostname,
    heloResponse: '%s',
    logger: false,
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    hideDSN: true,
    hideENHANCEDSTATUSCODES: true,
    hideSMTPUTF8: !config.getBool('smtputf8_enable'),
    disableReverseLookup: true,
    size: sizeLimit > 0 ? sizeLimit : undefined,
    maxRecipients: config.getInt('smtpd_recipient_limit'),
    socketTimeout: config.getTime('smtpd_timeout') * 1000,
    closeTimeout: 5000,
    ...({ postactorDialect: dialect } as object),

    onConnect(session, callback) {
      void peerName(session.remoteAddress, config.getBool('smtpd_peername_lookup')).then((name) => {
        const client: ClientInfo = { name, addr: session.remoteAddress, port: session.remotePort, helo: '', protocol: 'SMTP' };
        states.set(session, { client, queueId: null, envelope: null });
        log.info(`connect from ${name}[${session.remoteAddress}]`);
        callback();
      });
    },

    onMailFrom(_address, _session, callback) {
      callback();
    },

    onRcptTo(address: SMTPServerAddress, session, callback) {
      const state = states.get(session)!;
      const sender = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
      const helo = session.hostNameAppearsAs ?? '';
      const verdict = policy.check({ clientAddr: state.client.addr, clientName: state.client.name, helo, sender, recipient: address.address });
      if (!verdict.ok) {
        log.info(`NOQUEUE: reject: RCPT from ${state.client.name}[${state.client.addr}]: ${verdict.code} ${verdict.text}; from=<${sender}> to=<${address.address}> proto=${session.transmissionType === 'SMTP' ? 'SMTP' : 'ESMTP'} helo=<${helo}>`);
        return callback(refuse(verdict.code, verdict.text));
      }
      if (state.envelope !== session.envelope) {
        state.envelope = session.envelope;
        state.queueId = newQueueId();
        log.info(`${state.queueId}: client=${state.client.name}[${state.client.addr}]`);
      }
      callback();
    },

    onData(stream: SMTPServerDataStream, session, callback) {
      const state = states.get(session)!;
      const chunks: Buffer[] = [];
      let total = 0;
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (sizeLimit <= 0 || total <= sizeLimit) chunks.push(chunk);
      });
      stream.on('error', () => { /* the client went away; nothing was acknowledged */ });
      stream.on('end', () => {
        if (stream.sizeExceeded || (sizeLimit > 0 && total > sizeLimit)) {
          log.info(`${state.queueId}: reject: END-OF-MESSAGE from ${state.client.name}[${state.client.addr}]: 552 5.3.4 Message size exceeds fixed limit; proto=ESMTP helo=<${session.hostNameAppearsAs}>`);
          return callback(refuse(552, '5.3.4 Message size exceeds fixed limit'));
        }
        // An owned ArrayBuffer, so it can be transferred to cleanup instead of copied.
        const content = new Uint8Array(total);
        let offset = 0;
        for (const c of chunks) {
          content.set(c, offset);
          offset += c.length;
        }
        const client: ClientInfo = { ...state.client, helo: session.hostNameAppearsAs ?? '', protocol: session.transmissionType === 'SMTP' ? 'SMTP' : 'ESMTP' };
        const request: CleanupRequest = {
          queueId: state.queueId!,
          sender: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          recipients: session.envelope.rcptTo.map((r) => ({ address: r.address })),
          content,
          client,
          arrival: Date.now(),
          origin: 'smtpd',
        };
        void submit(request).then((reply) => {
          if (reply.ok) return callback(null, `2.0.0 Ok: queued as ${reply.queueId}`);
          log.warn(`${request.queueId}: cleanup: ${reply.code} ${reply.dsn} ${reply.text}`);
          callback(refuse(reply.code, `${reply.dsn} ${reply.text}`));
        });
      });
    },

    onClose(session) {
      const state = states.get(session);
      if (!state) return;
      log.info(`disconnect from ${state.client.name}[${state.client.addr}] ${formatCounters(countersOf(session))}`);
    },
  });

  /** Hands a message to cleanup; when its mailbox is full, waits in_flow_delay once (push back). */
  async function submit(request: CleanupRequest): Promise<CleanupReply> {
    for (let attempt = 0; ; attempt++) {
      try {
        const transfer = attempt === 0 ? [request.content.buffer as ArrayBuffer] : [];
        const copy = attempt === 0 ? request : { ...request, content: request.content.slice() };
        return await actor.request<CleanupReply>('cleanup', copy, transfer);
      } catch (err) {
        if (err instanceof ServiceError && err.code === 'BUSY' && attempt === 0) {
          await new Promise((r) => setTimeout(r, inFlowDelay || 1000));
          continue;
        }
        return { ok: false, code: 451, dsn: '4.3.0', text: 'Error: queue file write error' };
      }
    }
  }

  server.on('error', (err) => log.warn(`smtpd: ${err.message}`));
  await new Promise<void>((resolve, reject) => {
    const s = server!.server as import('node:net').Server;
    s.once('error', reject);
    s.listen({ host: listen.host ?? undefined, port: listen.port, reusePort: true, backlog: 1024 }, () => resolve());
  });
  // Stop (postactor stop, reload): accept no more connections, let the sessions in progress
  // finish (as an old Postfix smtpd does after a reload), and only after a grace period tell the
  // remaining ones "421 … shutting down".
  parentPort!.on('message', (msg: { type?: string }) => {
    if (msg?.type !== 'postactor:stop') return;
    const listener = server!.server as import('node:net').Server;
    listener.close();
    const connections = (server as unknown as { connections: Set<unknown> }).connections;
    const deadline = Date.now() + 10_000;
    const exit = () => {
      flushMaillog();
      process.exit(0);
    };
    const poll = () => {
      if (connections.size === 0) return exit();
      if (Date.now() < deadline) return void setTimeout(poll, 50);
      server!.close(exit);
      setTimeout(exit, 6000).unref();
    };
    poll();
  });
  parentPort!.postMessage({ type: 'postactor:ready' });
}

main().catch((err: Error) => {
  log.fatal(`smtpd: ${err.message}`);
  flushMaillog();
  process.exit(1);
});
