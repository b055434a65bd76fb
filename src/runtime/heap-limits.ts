/**
 * V8 heap limits for every actor thread (worker_threads `resourceLimits`), and the flags the
 * master's own thread should run with. Each thread is an isolate of its own, and V8's defaults
 * are sized for one big process, not for twenty small ones:
 *
 *  - Young generation. Node 24 lets each isolate's new space grow to 64 MB (two 32 MB
 *    semi-spaces) under allocation churn, and it never gives it back: twenty threads under load
 *    held over a gigabyte that way (issue 17: 1.1 GB in the overload test, 686–934 MB with 20,000
 *    messages deferred). Every isolate of the process gets a 1 MB semi-space: the master's flag
 *    `--max-semi-space-size=1` (MASTER_NODE_FLAGS) sizes its own isolate and, as every V8 flag,
 *    holds for each thread's isolate too, over a Worker's `resourceLimits`; heapLimits gives the
 *    threads the same (3 MB: V8 sizes the young generation as three semi-spaces), so a server
 *    started without the flags gets the same threads. The two must change together (a test
 *    checks it): with a different Worker limit alone nothing changes, as session 18 found out
 *    without knowing (its larger young generation for smtpd measured the flag's 1 MB). Larger
 *    ones were measured in session 20 with the flag lifted (bench/README.md): 24 MB for smtpd,
 *    cleanup and smtp cut smtpd's scavenges from ~750 to ~100 a run of 8,000 messages and the
 *    server's CPU per message by about 5 %, but each scavenge paused 2–3 times longer and the
 *    end-of-DATA → 250 p99 at 500 messages/s, already issue 17's weakest figure, rose by
 *    3–7 ms (12 MB likewise). Without the flag the master's own isolate would take V8's default
 *    sizing.
 *  - Old generation. Not a reservation (V8 grows the old space as needed) but a ceiling: a thread
 *    that leaks or runs away ends alone (ERR_WORKER_OUT_OF_MEMORY, logged; the pool or the
 *    supervisor starts another) instead of growing to V8's default, about 4 GB per isolate on
 *    this 24 GB machine, i.e. 70 GB for the default master.cf's threads. Each ceiling is far above
 *    the service's working set at Postfix's default limits: qmgr holds the active queue
 *    (qmgr_message_active_limit 20,000 messages, qmgr_message_recipient_limit 20,000
 *    recipients; bench/memory saw it under 60 MB with 20,000 deferred), smtpd its sessions and
 *    cleanup the messages in flight (their bodies are Buffers, outside the V8 heap, which these
 *    limits do not count); the other agents hold one delivery's state per request.
 *  - Not `--optimize-for-size` (a V8 flag for every isolate of the process). It was a master
 *    flag until session 19: V8 then grows each heap by a smaller factor before its next full
 *    collection, keeps fewer free pages and trades speed for size in its caches (bench/memory
 *    then measured idle 138 → 129 MB RSS, V8's pages after a 5,000-message burst 147 → 113 MB).
 *    But it costs about a fifth of the server's CPU per message: bench/relay, the same build
 *    started with `--expose-gc` alone and with `--optimize-for-size` alone, 3 + 3 runs
 *    alternating: 1.67 vs 2.01 ms/msg (smtpd 0.64 vs 0.77), delivered 806 vs 713/s; the flags
 *    `--expose-gc` with `--max-semi-space-size=1` measured the same as `--expose-gc` alone
 *    (1.44 vs 1.45). Without it the server idles about 9 MB higher (132 vs
 *    123 MB RSS) and bench/memory's targets still hold (bench/README.md, "Session 19").
 *  - `--expose-gc`: a long-lived thread that worked and went quiet runs one memory-reducing
 *    collection (./idle-gc.ts); V8 gives a quiet isolate no collection of its own.
 *  - Code range: left at V8's default. It is reserved address space, not resident memory (a
 *    16 MB range saved nothing measurable), and a small one risks "out of code space" once
 *    the optimizing compiler has compiled a hot path.
 */
import { availableParallelism } from 'node:os';
import type { ResourceLimits } from 'node:worker_threads';

/** Young generation of every actor thread (MB): a 1 MB semi-space. */
export const YOUNG_GENERATION_MB = 3;

/** Old generation ceilings (MB) by master.cf command; every other command gets DEFAULT_OLD_MB. */
const OLD_GENERATION_MB: Readonly<Record<string, number>> = {
  qmgr: 1024,
  oqmgr: 1024,
  smtpd: 512,
  cleanup: 512,
};
const DEFAULT_OLD_MB = 256;

/** The resourceLimits of a thread running the master.cf command `command`. */
export function heapLimits(command: string): ResourceLimits {
  return { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB, maxOldGenerationSizeMb: OLD_GENERATION_MB[command] ?? DEFAULT_OLD_MB };
}

/**
 * Node flags for the process that runs the master (the main thread's isolate is created before
 * any code runs, so its limits can only come from the command line): the 1 MB semi-space of
 * every isolate of the process (above: it overrides the threads' resourceLimits, which say the
 * same), and `gc` for ./idle-gc.ts. `postactor start` passes them; whoever runs `start-fg`
 * under a supervisor of their own should too (`node --max-semi-space-size=1 --expose-gc
 * …/postactor.js start-fg`), as bin/postactor and package.json's `npm start` do.
 */
export const MASTER_NODE_FLAGS: readonly string[] = [`--max-semi-space-size=${YOUNG_GENERATION_MB / 3}`, '--expose-gc'];

/**
 * Environment of the master's process, read by the C library before any code runs (so, as the
 * flags above, only its parent can set it): glibc's malloc gives each thread that allocates an
 * arena of its own, up to 8 per CPU, and memory freed in one arena serves only that arena's
 * threads; with some twenty threads (actors, libuv's and V8's own) a burst leaves each arena as
 * large as its busiest moment. One arena per CPU is as many as can run at once: bench/memory,
 * 5,000 messages deferred, malloc's arenas 58 → 46 MB. An operator's own MALLOC_ARENA_MAX wins.
 *
 * Even so glibc keeps what a burst freed: it returns memory to the system only from the top of
 * an arena (or through malloc_trim(3), which Node cannot call), and a burst's short-lived
 * allocations (postMessage's serializer, V8's compiler zones, LMDB's commit lists) end up
 * between a few long-lived ones (bench/memory, 20,000 deferred, settled: 30 MB of glibc's arenas
 * were free chunks, still resident). Until session 19 the master ran with jemalloc preloaded
 * where the system had it, which gives such pages back after a delay (settled 211–216 → 197 MB
 * RSS then). It is not preloaded any more: with Postactor's large buffers it cost the server
 * two thirds more CPU per message (bench/relay --size 102400, same run: 5.75 vs 3.42 ms/msg,
 * 3,000–4,000 messages a run; its arena count and decay times changed nothing), and 1 KiB
 * messages gained nothing (2.13 vs 2.10). bench/memory's targets hold with glibc
 * and one arena per CPU (bench/README.md, "Session 19"). An operator who wants jemalloc sets
 * LD_PRELOAD (and MALLOC_CONF) themselves: the master passes both on. The children the server
 * runs (pipe, local commands) get a clean environment (export_environment) either way.
 */
export function masterEnvironment(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, MALLOC_ARENA_MAX: env['MALLOC_ARENA_MAX'] ?? String(arenas()) };
}

const arenas = () => Math.max(2, availableParallelism());
