/**
 * Blocks the calling thread for `ms` milliseconds (Atomics.wait on a private word nobody
 * notifies). For the few places that must wait inside synchronous code: a store file another
 * thread is creating (src/queue/integrity.ts), another process's writer claim
 * (src/queue/writer-lock.ts). Never on a path that serves a request.
 */
const WORD = new Int32Array(new SharedArrayBuffer(4));

export function sleepSync(ms: number): void {
  Atomics.wait(WORD, 0, 0, ms);
}
