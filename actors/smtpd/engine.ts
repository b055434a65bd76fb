/**
 * smtp-server, smtpd's SMTP engine, loaded through its CommonJS build. Its ES module build imports
 * nodemailer's shared helpers, whose fetch module imports node:http and node:https as ES modules,
 * and Node makes an ES module facade of a built-in by reading every export: http's lazy `undici`
 * getters then load all of undici (fetch, WebSocket, the proxy agents) into every smtpd thread. A
 * `require` reads no export it is not asked for: 72 vs 108 ms of CPU to load the package in a fresh
 * thread (node: import('smtp-server') against require('smtp-server'), 3 runs each).
 *
 * Everything of the package smtpd uses comes from here, so that dialect.ts and line-reader.ts
 * patch the classes the server really runs (the two builds are two sets of classes).
 */
import { createRequire } from 'node:module';
import type * as Package from 'smtp-server';

const require = createRequire(import.meta.url);

export const { SMTPServer } = require('smtp-server') as typeof Package;
export type SMTPServer = Package.SMTPServer;

/** The prototype of a class of the package that it does not export (lib/FILE.js of its CommonJS build). */
function prototypeOf(file: string, name: string): Record<string, unknown> {
  const mod = require(`smtp-server/lib/${file}.js`) as Record<string, { prototype: Record<string, unknown> }>;
  return mod[name]!.prototype;
}

/** smtp-server's connection class (one per SMTP session), patched by dialect.ts and the other concerns. */
export function smtpConnectionPrototype(): Record<string, unknown> {
  return prototypeOf('smtp-connection', 'SMTPConnection');
}

/** smtp-server's SMTPStream (the command and DATA parser), patched by line-reader.ts. */
export function smtpStreamPrototype(): Record<string, unknown> {
  return prototypeOf('smtp-stream', 'SMTPStream');
}
