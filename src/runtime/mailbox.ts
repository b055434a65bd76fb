/**
 * Named mailboxes of singleton actors (qmgr, …), reachable from any thread of the process without
 * a hop through the master: a BroadcastChannel per service. A sender in a pool thread (cleanup)
 * can so tell qmgr "queued" directly. Notifications are small and fire-and-forget; anything that
 * needs a reply or back-pressure goes through the router instead.
 */
import { BroadcastChannel } from 'node:worker_threads';

const senders = new Map<string, BroadcastChannel>();

function channelName(instance: string, service: string): string {
  return `postactor:${instance}:${service}`;
}

/** Sends a one-way message to the mailbox of `service`. */
export function tell(instance: string, service: string, message: unknown): void {
  const name = channelName(instance, service);
  let channel = senders.get(name);
  if (!channel) {
    channel = new BroadcastChannel(name);
    channel.unref();
    senders.set(name, channel);
  }
  channel.postMessage(message);
}

/** Receives the messages sent to `service`'s mailbox. Returns a function that stops receiving. */
export function receive(instance: string, service: string, handler: (message: unknown) => void): () => void {
  const channel = new BroadcastChannel(channelName(instance, service));
  channel.onmessage = (event) => handler((event as MessageEvent).data);
  return () => channel.close();
}
