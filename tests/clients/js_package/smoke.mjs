// Run by tests/clients/test_js_package.py in a scratch project where the packed
// roomlog-client is installed like any npm package, with `ws` as its WebSocket (the way
// a server-side or React Native user runs it). Prints one JSON line per step.
//   HUB=http://127.0.0.1:8000 TOKEN=... ROOM=queue:x node smoke.mjs

import WebSocket from "ws";
import { RoomlogClient, tokenClaims } from "roomlog-client";
import { MemoryStore } from "roomlog-client/store";

const say = (step, data = {}) => console.log(JSON.stringify({ step, ...data }));
const room = process.env.ROOM;
const rt = new RoomlogClient({ url: process.env.HUB, token: process.env.TOKEN, WebSocket,
  store: new MemoryStore() });
rt.on("state", ({ state }) => say("state", { state }));

let started;
const subscribed = new Promise((resolve) => { started = resolve; });
const submitted = new Promise((resolve) => {
  rt.subscribe(room, {
    onState: (state) => {
      say("state-of-room", { open: state.open });
      started();
    },
    onMessage: (m) => {
      if (m.data.event === "request.submitted") resolve(m.data.request);
    },
  });
});
await subscribed; // the room's state first: what happens next arrives as events
const ack = await rt.command(room, "request.submit",
  { song_id: "song:abba--waterloo", title: "Waterloo", artist: "ABBA" }, { id: "node-1" });
say("ack", { seq: ack.seq, request_id: ack.result.request_id, duplicate: ack.duplicate });
const again = await rt.command(room, "request.submit",
  { song_id: "song:abba--waterloo", title: "Waterloo", artist: "ABBA" }, { id: "node-1" });
say("again", { duplicate: again.duplicate, request_id: again.result.request_id });
const request = await submitted;
say("event", { title: request.title, user: request.user });
try {
  await rt.command(room, "request.submit",
    { song_id: "song:abba--waterloo", title: "Waterloo", artist: "ABBA" });
} catch (err) {
  say("refused", { code: err.code, name: err.name });
}
say("whoami", { user: rt.user, claims: tokenClaims(rt.token).sub, transport: rt.transport });
rt.close();
