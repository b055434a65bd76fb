// comlink ships this adapter's types as node-adapter.d.ts beside node-adapter.mjs, which
// NodeNext resolution does not pair up; this restates them.
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  export interface NodeEndpoint {
    postMessage(message: unknown, transfer?: unknown[]): void;
    on(type: string, listener: (value: unknown) => void, options?: object): void;
    off(type: string, listener: (value: unknown) => void, options?: object): void;
    start?: () => void;
  }
  export default function nodeEndpoint(nep: unknown): Endpoint;
}
