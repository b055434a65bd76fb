/** Runs a command's main function (postmap, postalias, newaliases) in-process, capturing its output. */
import type { postmapMain } from '../../src/maps/cli.js';

export type CliMain = typeof postmapMain;

export function runMain(main: CliMain, args: string[], stdin = ''): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = main(args, { stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, readStdin: () => stdin });
  return { code, out, err };
}
