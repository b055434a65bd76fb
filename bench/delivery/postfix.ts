/**
 * Debian's Postfix as the delivery benchmark's peer: bench/postfix-peer.sh with main.cf lines
 * for the workload (POSTFIX_PEER_EXTRA), local, virtual and lmtp in master.cf
 * (POSTFIX_PEER_MASTER_EXTRA, Debian's lines) and the bench's users visible to local(8) as
 * /etc/passwd inside Postfix's own mount namespace (POSTFIX_PEER_PASSWD). Run as root.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PEER_SCRIPT } from '../relay/postfix.js';
import { freePort } from '../relay/mta.js';

const run = promisify(execFile);

const MASTER_EXTRA = [
  'local     unix  -       n       n       -       -       local',
  'virtual   unix  -       n       n       -       -       virtual',
  'lmtp      unix  -       -       n       -       -       lmtp',
].join('\n');

export interface PostfixPeer { port: number; stop(): Promise<void> }

/** Starts Postfix with its configuration in dir/etc, its queue in dir/spool, its log in dir/maillog. */
export async function startPostfixPeer(dir: string, mainCf: string[], passwd: string): Promise<PostfixPeer> {
  const port = await freePort();
  const sink = await freePort(); // relayhost: never used, every bench domain is delivered here
  const stop = async () => {
    await run('sh', [PEER_SCRIPT, 'stop', dir], { timeout: 30_000 }).catch((e: Error) => process.stderr.write(`postfix-peer stop: ${e.message}\n`));
  };
  try {
    await run('sh', [PEER_SCRIPT, 'start', dir, String(port), String(sink)], {
      timeout: 120_000,
      env: { ...process.env, POSTFIX_PEER_EXTRA: mainCf.join('\n'), POSTFIX_PEER_MASTER_EXTRA: MASTER_EXTRA, POSTFIX_PEER_PASSWD: passwd },
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    await stop();
    throw new Error(`postfix peer did not start: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
  return { port, stop };
}
