/**
 * verify: Postfix's address verification server (verify(8)), a singleton long-lived actor
 * (master.cf `verify unix - - n - 1 verify`). It keeps the cache of which addresses are known
 * deliverable or undeliverable (cache.ts, in the queue store), answers smtpd's queries and
 * qmgr's probe outcomes (service.ts), and sends the probes (probe.ts). One thread, as Postfix's
 * verify is one process: a query's read, probe and write happen in one turn, so two queries
 * for an unknown address send one probe.
 *
 * address_verify_cache_cleanup_interval runs the cache cleanup (expired entries without an
 * outstanding probe are dropped), and logs "cache NAME full cleanup: retained=N dropped=M
 * entries" as Postfix's dict_cache does.
 */
import { parentPort } from 'node:worker_threads';
import { configFromJSON, queueDirectory, type Config, type ConfigJSON } from '../../src/config/index.js';
import { configureMaillog, flushMaillog, maillog } from '../../src/log/maillog.js';
import { QueueStore } from '../../src/queue/store.js';
import { startActor } from '../../src/runtime/endpoint.js';
import type { CleanupReply, VerifyReply, VerifyRequest } from '../protocol.js';
import { VerifyCache } from '../../src/verify/cache.js';
import { probeSender } from './probe.js';
import { VerifySender } from '../../src/verify/sender.js';
import { VerifyService } from './service.js';

const log = maillog('verify');

async function main(): Promise<void> {
  let service: VerifyService | null = null;
  const actor = await startActor<VerifyRequest, VerifyReply>({
    onRequest: async (req) => {
      if (!service) throw new Error('verify: not ready');
      switch (req.op) {
        case 'query': return { op: 'query', ...service.query(req.address) };
        case 'update':
          await service.update(req.address, req.status, req.text);
          return { op: 'update' };
        default:
          log.warn(`unrecognized request: "${String((req as { op?: unknown }).op)}", ignored`);
          throw new Error('unrecognized request');
      }
    },
    control: { status: () => ({ running: service !== null }) },
  });
  const config: Config = configFromJSON(actor.data.config as ConfigJSON);
  configureMaillog({ file: config.get('maillog_file'), hostname: config.get('myhostname'), syslogName: config.get('syslog_name') });
  const store = QueueStore.open(queueDirectory(config));
  const cache = new VerifyCache(config, store);
  const sender = new VerifySender(config);
  const probe = probeSender(sender, (r) => actor.request<CleanupReply>('cleanup', r), log);
  service = new VerifyService(cache, {
    positiveExpire: config.getTime('address_verify_positive_expire_time') * 1000,
    positiveRefresh: config.getTime('address_verify_positive_refresh_time') * 1000,
    negativeExpire: config.getTime('address_verify_negative_expire_time') * 1000,
    negativeRefresh: config.getTime('address_verify_negative_refresh_time') * 1000,
    negativeCache: config.getBool('address_verify_negative_cache'),
  }, probe, (text) => log.warn(text));

  const interval = config.getTime('address_verify_cache_cleanup_interval');
  const name = cache.volatile ? 'internal:verify' : `${config.get('address_verify_map').trim()} (queue store database "verify")`;
  let cleaning = false;
  const timer = interval > 0 ? setInterval(() => {
    if (cleaning) return;
    cleaning = true;
    const now = Date.now();
    cache.cleanup((e) => service!.keep(e, now))
      .then((s) => log.info(`cache ${name} full cleanup: retained=${s.retained} dropped=${s.dropped} entries`))
      .catch((err: Error) => log.warn(`cache ${name} cleanup: ${err.message}`))
      .finally(() => { cleaning = false; });
  }, interval * 1000) : null;

  parentPort!.on('message', (msg: { type?: string }) => {
    if (msg?.type !== 'postactor:stop') return;
    if (timer) clearInterval(timer);
    // Writes in flight finish before the thread ends (the store resolves them once on disk).
    void store.flushed().catch(() => undefined).finally(() => {
      flushMaillog();
      process.exit(0);
    });
  });
  parentPort!.postMessage({ type: 'postactor:ready' });
}

main().catch((err: Error) => {
  log.fatal(`verify: ${err.stack ?? err.message}`);
  flushMaillog();
  process.exit(1);
});
