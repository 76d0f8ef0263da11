// Types of store.js: where the browser client keeps what must survive a reload.

import type { Store } from "./roomlog.js";

export type { Store };

/** Keeps nothing beyond the process (Node, React Native, private modes). */
export declare class MemoryStore implements Store {
  constructor();
  readonly kind: "memory";
  get(key: string): Promise<any>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  entries(prefix?: string): Promise<Array<[string, any]>>;
}

/** One IndexedDB database with one object store (`kv`). */
export declare class IndexedDbStore implements Store {
  static open(name?: string, indexedDB?: IDBFactory): Promise<IndexedDbStore>;
  readonly kind: "indexeddb";
  get(key: string): Promise<any>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<void>;
  entries(prefix?: string): Promise<Array<[string, any]>>;
}

/** IndexedDB when it opens, else memory; `kind` says which. */
export declare function openStore(name?: string, options?: { indexedDB?: IDBFactory | null }):
  Promise<MemoryStore | IndexedDbStore>;

export default openStore;
