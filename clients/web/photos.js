// Repair photos on the pages: read from the hub with the token in a header (never in
// the image's URL, where it would reach logs and history) and shown as blob URLs.

import { photoSource } from "./repair-model.js";

/** A loader: `src(room, photo)` is the image's URL once loaded (null until then);
 * `changed()` is called when one arrives. Failed reads are tried again at the next draw. */
export function photos(client, changed) {
  const loaded = new Map(); // hub path -> object URL (null while loading)
  return {
    src(room, photo) {
      const source = photoSource(room, photo);
      if (source.local) return source.local;
      if (!source.upload) return source.url || null;
      if (!loaded.has(source.upload)) {
        loaded.set(source.upload, null);
        client.request("GET", source.upload, undefined, { as: "blob" }).then((blob) => {
          loaded.set(source.upload, URL.createObjectURL(blob));
          changed();
        }, () => loaded.delete(source.upload));
      }
      return loaded.get(source.upload);
    },
  };
}
