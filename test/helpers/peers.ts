/**
 * Comparison peers (Debian's Postfix commands, bsd-mailx) that `.ci/run` installs. On a
 * developer's machine without them a comparison test is skipped with the reason; under CI
 * (CI=true) it runs anyway, so a missing package fails the build instead of hiding the check.
 */
import { existsSync } from 'node:fs';

/** `skip` option for a test that needs `path`: a reason outside CI when it is missing, else false. */
export function needs(path: string, what: string): string | false {
  if (existsSync(path) || process.env['CI']) return false;
  return `${what} (${path}) is not installed; .ci/run installs it`;
}
