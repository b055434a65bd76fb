/**
 * Debian's Postfix and Postactor side by side, for the tests that compare what each says and
 * does: a throwaway Postfix peer (bench/relay/postfix.ts) and a Postactor test server, each
 * relaying to a sink of its own (or to one shared sink), both with the same main.cf settings.
 */
import { startPostfix } from '../../bench/relay/postfix.js';
import type { MtaHandle } from '../../bench/relay/mta.js';
import { SmtpSink, type SinkProfile } from '../../src/smtp/sink.js';
import { freePort, startServer, type ServerOptions, type TestServer } from './server.js';

export interface SideBySideOptions {
  /** main.cf settings both get. */
  settings: Record<string, string>;
  /** Settings only Postfix gets (after `settings`). */
  postfixOnly?: Record<string, string>;
  /** Settings only Postactor gets (after `settings`). */
  postactorOnly?: Record<string, string>;
  /** The sinks' profile (both the same). */
  sink?: SinkProfile;
  /** One sink for both (tests that only look at replies). */
  sharedSink?: boolean;
  /** The rest of startServer's options. */
  server?: Omit<ServerOptions, 'sinkPort' | 'mainCf'>;
}

export interface SideBySide {
  postfix: MtaHandle;
  server: TestServer;
  /** Where Postfix relays (the same sink as paSink when shared). */
  pfSink: SmtpSink;
  /** Where Postactor relays. */
  paSink: SmtpSink;
  /** Stops both and closes the sinks; safe after a partial start. */
  close(): Promise<void>;
}

const mainCfLines = (settings: Record<string, string>) => Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n');

export async function sideBySide(o: SideBySideOptions): Promise<SideBySide> {
  const pfSink = new SmtpSink(o.sink ?? {});
  const paSink = o.sharedSink ? pfSink : new SmtpSink(o.sink ?? {});
  let postfix: MtaHandle | undefined;
  let server: TestServer | undefined;
  const close = async () => {
    await Promise.all([server?.stop(), postfix?.stop()]);
    await pfSink.close();
    if (paSink !== pfSink) await paSink.close();
  };
  try {
    const pfSinkPort = await pfSink.listen(0);
    const paSinkPort = paSink === pfSink ? pfSinkPort : await paSink.listen(0);
    // Both start at once (each is mostly waiting for its processes); whichever started is
    // stopped again if the other fails.
    const [pf, pa] = await Promise.allSettled([
      startPostfix({ sinkPort: pfSinkPort, port: await freePort(), extraMainCf: mainCfLines({ ...o.settings, ...o.postfixOnly }) }),
      startServer({ ...o.server, sinkPort: paSinkPort, mainCf: { ...o.settings, ...o.postactorOnly } }),
    ]);
    if (pf.status === 'fulfilled') postfix = pf.value;
    if (pa.status === 'fulfilled') server = pa.value;
    if (pf.status === 'rejected') throw pf.reason;
    if (pa.status === 'rejected') throw pa.reason;
  } catch (err) {
    await close();
    throw err;
  }
  return { postfix: postfix!, server: server!, pfSink, paSink, close };
}
