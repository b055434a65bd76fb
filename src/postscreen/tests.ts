/**
 * Which tests a client needs (Postfix's postscreen_tests.c): five tests, each with an expiry
 * time, kept in the cache as "pregreet;dnsbl;pipelining;nonsmtp;barelf" (seconds since the
 * epoch). 0 = never passed; 1 = never passed while the test was disabled (so that turning it
 * on later does not make every client "NEW"). A test is to do when it is enabled and its time
 * has passed; a client is "OLD" only when no enabled test is to do.
 */
import type { PostscreenSettings } from './settings.js';

export const PREGR = 0, DNSBL = 1, PIPEL = 2, NSMTP = 3, BARLF = 4;
export const TEST_COUNT = 5;
export const STAMP_NEW = 0;
export const STAMP_DISABLED = 1;

/** Per-session test state (the PSC_STATE_FLAG_* bits, one array per kind). */
export interface TestState {
  expire: number[];
  todo: boolean[];
  pass: boolean[];
  fail: boolean[];
  done: boolean[];
  skip: boolean[];
  /** Some test was never passed (PASS NEW rather than OLD). */
  isNew: boolean;
  /** Failures that are no test of their own: the permanent denylist, and a veto by postscreen_allowlist_interfaces. */
  denylisted: boolean;
  vetoed: boolean;
}

export function enabled(s: PostscreenSettings, i: number): boolean {
  switch (i) {
    case PREGR: return s.greetBanner !== '';
    case DNSBL: return s.dnsblSites.length > 0;
    case PIPEL: return s.pipelining.enable;
    case NSMTP: return s.nonSmtp.enable;
    default: return s.bareNewline.enable;
  }
}

export function newState(): TestState {
  const f = () => Array<boolean>(TEST_COUNT).fill(false);
  return { expire: Array<number>(TEST_COUNT).fill(STAMP_NEW), todo: f(), pass: f(), fail: f(), done: f(), skip: f(), isNew: false, denylisted: false, vetoed: false };
}

/** psc_todo_tests: which tests are due at `now` (seconds). */
export function todoTests(s: PostscreenSettings, st: TestState, now: number): void {
  st.isNew = st.expire.some((e) => e === STAMP_NEW);
  for (let i = 0; i < TEST_COUNT; i++) st.todo[i] = enabled(s, i) && now > st.expire[i]!;
}

/** psc_parse_tests: a cache entry into expiry times (a bad entry counts as never passed). */
export function parseTests(s: PostscreenSettings, st: TestState, entry: string, now: number): void {
  const parts = entry.split(';');
  for (let i = 0; i < TEST_COUNT; i++) {
    const n = Number(parts[i]);
    st.expire[i] = Number.isInteger(n) && n >= 0 ? n : STAMP_NEW;
  }
  todoTests(s, st, now);
}

/** psc_print_tests: the cache entry for this session's results. */
export function printTests(s: PostscreenSettings, st: TestState): string {
  return st.expire.map((e, i) => (!enabled(s, i) && e === STAMP_NEW ? STAMP_DISABLED : e)).join(';');
}

export const anyFail = (st: TestState): boolean => st.fail.some(Boolean) || st.denylisted || st.vetoed;
export const anyPass = (st: TestState): boolean => st.pass.some(Boolean);
/** Every test to do has passed. */
export const allTodoPassed = (st: TestState): boolean => st.todo.every((t, i) => !t || st.pass[i]);
/** The early (before-220) tests still to do, or the deep (after-220) ones. */
export const earlyTodo = (st: TestState): boolean => st.todo[PREGR]! || st.todo[DNSBL]!;
export const deepTodo = (st: TestState): boolean => st.todo[PIPEL]! || st.todo[NSMTP]! || st.todo[BARLF]!;
/** Deep tests still to pass (todo and neither passed nor skipped). */
export const deepPending = (st: TestState): boolean => [PIPEL, NSMTP, BARLF].some((i) => st.todo[i] && !st.pass[i]);
