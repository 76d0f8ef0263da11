// store.js — where the browser client keeps what must survive a reload: the position of
// each room it was asked to persist, and its outbox (writes not answered yet, with their
// ids). One port, two adapters:
//
//   import { openStore } from "/client/store.js";
//   const rt = new RoomlogClient({ token, store: openStore("roomlog") });
//
// The port (what RoomlogClient calls; every method returns a Promise):
//   get(key)            -> the value, or undefined
//   set(key, value)     -> stores a structured-clonable value under key
//   delete(key)         -> removes key (no error when it is missing)
//   entries(prefix)     -> [[key, value], ...] of every key starting with prefix, in key order
// Writes are applied in the order they were made; a value read after `set` resolved is
// that value. A store never throws for a missing key; an adapter that fails (quota, a
// browser that drops IndexedDB) rejects, and the client carries on in memory.
//
// Adapters: IndexedDbStore (browsers: one database, one object store) and MemoryStore
// (Node, React Native, private modes without IndexedDB: nothing survives the process).
// `openStore` picks IndexedDB when it opens, else memory.

/** A store in memory: the fallback, and what tests use. */
export class MemoryStore {
  constructor() {
    this.kind = "memory";
    this._map = new Map();
  }

  async get(key) {
    return structuredCopy(this._map.get(key));
  }

  async set(key, value) {
    this._map.set(key, structuredCopy(value));
  }

  async delete(key) {
    this._map.delete(key);
  }

  async entries(prefix = "") {
    return [...this._map.keys()].filter((k) => k.startsWith(prefix)).sort()
      .map((k) => [k, structuredCopy(this._map.get(k))]);
  }
}

function structuredCopy(value) {
  if (value === undefined) return undefined;
  return typeof structuredClone === "function" ? structuredClone(value)
    : JSON.parse(JSON.stringify(value));
}

const OBJECTS = "kv";

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** A store in one IndexedDB database (`name`), one object store of key -> value. */
export class IndexedDbStore {
  /** Open (and create) the database; rejects when IndexedDB is missing or refuses. */
  static async open(name = "roomlog", indexedDB = globalThis.indexedDB) {
    if (!indexedDB) throw new Error("no IndexedDB here");
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(OBJECTS)) {
        request.result.createObjectStore(OBJECTS);
      }
    };
    const db = await done(request);
    return new IndexedDbStore(db);
  }

  constructor(db) {
    this.kind = "indexeddb";
    this._db = db;
    // Another tab upgrading the schema: let it, this page reopens on its next load.
    db.onversionchange = () => db.close();
  }

  _objects(mode) {
    return this._db.transaction(OBJECTS, mode).objectStore(OBJECTS);
  }

  get(key) {
    return done(this._objects("readonly").get(key));
  }

  set(key, value) {
    return done(this._objects("readwrite").put(value, key)).then(() => undefined);
  }

  delete(key) {
    return done(this._objects("readwrite").delete(key)).then(() => undefined);
  }

  async entries(prefix = "") {
    const objects = this._objects("readonly");
    const range = IDBKeyRange.bound(prefix, `${prefix}\uffff`);
    const [keys, values] = await Promise.all([done(objects.getAllKeys(range)),
      done(objects.getAll(range))]);
    return keys.map((k, i) => [k, values[i]]);
  }
}

/**
 * The best store this runtime has: IndexedDB (database `name`), or memory when IndexedDB
 * is missing or refuses to open (some private modes). `store.kind` says which.
 */
export async function openStore(name = "roomlog", { indexedDB = globalThis.indexedDB } = {}) {
  if (indexedDB) {
    try {
      return await IndexedDbStore.open(name, indexedDB);
    } catch (err) {
      if (typeof console !== "undefined") {
        console.warn("roomlog: IndexedDB unavailable, nothing will survive a reload", err);
      }
    }
  }
  return new MemoryStore();
}

export default openStore;
