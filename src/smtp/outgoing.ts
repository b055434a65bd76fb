/**
 * The content as the smtp and lmtp clients send it (Postfix's smtp_header_rewrite and
 * smtp_body_rewrite): the *_header_checks and *_body_checks first, then *_generic_maps on the
 * address headers. Made once per delivery, when the first server waits for it (after 354), and
 * never written back: the queue keeps the message as cleanup stored it. SIZE= stays the queued
 * size, as Postfix announces it. A table that fails ends the session with LocalDataError:
 * the delivery is deferred with 4.3.0 "local data error while talking to HOST[ADDR]".
 */
import { HbcLookupError, type HeaderBodyChecks } from '../content/header-body-checks.js';
import { TableError } from '../maps/index.js';
import { LocalDataError, type OutgoingContent } from './client.js';
import type { GenericMaps } from './generic.js';

export interface Rewriting {
  /** *_header_checks and friends, when one is set. */
  checks: HeaderBodyChecks | null;
  /** *_generic_maps, when set. */
  generic: GenericMaps | null;
  /** "smtp" or "lmtp": the prefix of the generic maps' parameter name in a warning. */
  prefix: string;
  log: { warn(text: string): void };
}

/** The content itself when nothing rewrites it, else its rewriting on demand. */
export function outgoingContent(r: Rewriting, queueId: string, content: Buffer): Buffer | OutgoingContent {
  const { checks, generic } = r;
  if (!checks && !generic) return content;
  const make = async (): Promise<Buffer> => {
    let body = content;
    try {
      if (checks) body = await checks.content(body, queueId);
      if (generic) body = await generic.content(body);
    } catch (e) {
      if (e instanceof HbcLookupError) throw new LocalDataError(e.message);
      if (!(e instanceof TableError)) throw e;
      r.log.warn(`${r.prefix}_generic_maps: ${e.message}`);
      throw new LocalDataError(e.message);
    }
    return body;
  };
  let made: Promise<Buffer> | null = null;
  return () => (made ??= make());
}
