// Guest page: request a song (title, artist, note), follow "my requests" live with
// their position, upvote what others asked for. ?token=<guest token>&room=queue:<id>

import {
  Optimistic, connectionBadge, createClient, el, fill, followRoom, header, setup, throttled,
  toast,
} from "./app.js";
import { applyEvent, fromState, songId, view } from "./queue-model.js";

const cfg = setup([{ name: "room", label: "Queue", placeholder: "queue:club42-set1" }],
  { hint: "Paste the token you were given and the queue of the event." });
if (cfg) start(cfg);

function queueRoom(name) {
  return name.includes(":") ? name : `queue:${name}`;
}

const STATUS = {
  pending: (r) => (r.position ? `#${r.position} in line` : "waiting"),
  accepted: (r) => (r.position ? `#${r.position} in the queue` : "accepted"),
  playing: () => "playing now",
  played: () => "played",
  vetoed: (r) => (r.reason ? `declined: ${r.reason}` : "declined"),
  cancelled: () => "cancelled",
};

function start({ token, room: rawRoom, claims }) {
  const room = queueRoom(rawRoom);
  const me = claims.sub;
  header("Song requests", `${room} · you are ${me}`);
  const client = createClient(token);
  const badge = connectionBadge(client);
  let model = null;

  // -- layout (the form stays put; the lists are redrawn) --------------------------
  const nowCard = el("section", { class: "card now", "data-testid": "now-playing", hidden: true });
  const closedNote = el("p", { class: "muted", hidden: true, "data-testid": "closed" },
    "The DJ is not taking requests right now.");
  const title = el("input", { name: "title", required: true, maxlength: 200,
    placeholder: "Song title", autocomplete: "off" });
  const artist = el("input", { name: "artist", required: true, maxlength: 200,
    placeholder: "Artist", autocomplete: "off" });
  const note = el("input", { name: "note", maxlength: 280, placeholder: "A note for the DJ (optional)",
    autocomplete: "off" });
  const submit = el("button", { type: "submit", class: "primary" }, "Request it");
  const form = el("form", { class: "card", "data-testid": "request-form" },
    el("h2", {}, "Request a song"), closedNote,
    el("div", { class: "row" }, el("label", {}, "Title", title), el("label", {}, "Artist", artist)),
    el("label", {}, "Note", note), submit);
  const mineList = el("ul", { class: "list", "data-testid": "mine" });
  const mineCount = el("span", { class: "count" });
  const othersList = el("ul", { class: "list", "data-testid": "others" });
  const upNext = el("ol", { class: "list", "data-testid": "up-next" });
  fill(document.querySelector("main"),
    nowCard,
    el("div", { class: "cols" },
      el("div", { style: { display: "grid", gap: "1rem" } }, form,
        el("section", { class: "card" }, el("h2", {}, "My requests", mineCount), mineList)),
      el("div", { style: { display: "grid", gap: "1rem" } },
        el("section", { class: "card" }, el("h2", {}, "Vote for the next songs"), othersList),
        el("section", { class: "card" }, el("h2", {}, "Up next"), upNext))));

  const optimistic = new Optimistic(() => render());
  const render = throttled(draw);

  function draw() {
    badge();
    if (!model) return;
    const v = view(optimistic.overlay(model));
    closedNote.hidden = v.open;
    submit.disabled = !v.open;

    nowCard.hidden = !v.nowPlaying;
    if (v.nowPlaying) {
      fill(nowCard, el("div", { class: "eq" }, "♫"),
        el("div", {}, el("div", { class: "label" }, "Now playing"),
          el("div", { class: "song" }, v.nowPlaying.title),
          el("div", {}, v.nowPlaying.artist)));
    }

    const mine = v.mine.filter((r) => r.status !== "cancelled");
    fill(mineCount, mine.length ? String(mine.length) : "");
    fill(mineList, mine.length ? mine.map((r) => el("li", {
      class: `item${r.sending ? " sending" : ""}`, dataset: { requestId: r.id, status: r.status },
    },
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist, r.votes ? ` · ${r.votes} vote${r.votes > 1 ? "s" : ""}` : "")),
    el("span", { class: `chip ${r.sending ? "sending" : r.status}`, "data-testid": "status" },
      r.sending ? "sending…" : (STATUS[r.status] || (() => r.status))(r)),
    r.status === "pending" && !r.sending
      ? el("button", { class: "small", title: "Cancel this request",
        onclick: () => cancel(r) }, "Cancel") : null))
      : el("li", { class: "empty" }, "Nothing requested yet."));

    const others = v.pending.filter((r) => r.user !== me);
    fill(othersList, others.length ? others.map((r) => el("li", {
      class: "item", dataset: { requestId: r.id } },
    el("span", { class: "pos" }, r.position),
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist, r.note ? ` · “${r.note}”` : "")),
    v.settings.voting === false ? null : el("button", {
      class: "vote", "aria-pressed": String(Boolean(r.voted)), "data-testid": "vote",
      title: r.voted ? "Take your vote back" : "Vote for it", onclick: () => vote(r),
    }, el("span", {}, "▲"), el("small", {}, r.votes))))
      : el("li", { class: "empty" }, "No other requests waiting."));

    fill(upNext, v.queue.length ? v.queue.map((r) => el("li", { class: "item",
      dataset: { requestId: r.id } },
    el("span", { class: "pos" }, r.position),
    el("div", { class: "grow" }, el("div", { class: "song" }, r.title),
      el("div", { class: "sub" }, r.artist))))
      : el("li", { class: "empty" }, "The DJ has not lined anything up yet."));
  }

  // -- commands, optimistic -----------------------------------------------------------
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const args = { song_id: songId(title.value, artist.value), title: title.value.trim(),
      artist: artist.value.trim() };
    if (note.value.trim()) args.note = note.value.trim();
    if (!args.title || !args.artist) return;
    const temp = `tmp-${Date.now()}`;
    form.reset();
    optimistic.run({
      label: `“${args.title}”`,
      apply: (m) => {
        // Once the room has delivered it (the ack may come after the event), or when
        // this song is already requested, the server's row is the one to show.
        const known = Object.values(m.requests).some((r) => r.user === me && !r.sending
          && r.song_id === args.song_id && ["pending", "accepted", "playing"].includes(r.status));
        if (known) return;
        m.requests[temp] = { id: temp, user: me, song_id: args.song_id, title: args.title,
          artist: args.artist, note: args.note || null, status: "pending", votes: 0,
          voted: false, submitted_ms: Date.now(), sending: true };
      },
      send: () => client.command(room, "request.submit", args),
    });
  });

  function cancel(r) {
    optimistic.run({
      label: `Cancel “${r.title}”`,
      apply: (m) => { if (m.requests[r.id]) m.requests[r.id].status = "cancelled"; },
      send: () => client.command(room, "request.cancel", { request_id: r.id }),
    });
  }

  function vote(r) {
    const up = !r.voted;
    optimistic.run({
      label: up ? `Vote for “${r.title}”` : `Unvote “${r.title}”`,
      apply: (m) => {
        const x = m.requests[r.id]; // idempotent: the event may already be in
        if (x && Boolean(x.voted) !== up) Object.assign(x, { votes: x.votes + (up ? 1 : -1), voted: up });
      },
      send: () => client.command(room, up ? "request.vote" : "request.unvote",
        { request_id: r.id }),
    });
  }

  // -- live -------------------------------------------------------------------------
  followRoom(client, room, optimistic, {
    load: (state, seq) => { model = fromState(state, me, seq); },
    apply: (data, m) => applyEvent(model, data, m),
    render,
    what: "Cannot follow the queue",
  });

  // Personal notices (durable: a phone that slept gets them when it comes back).
  const NOTICE = {
    "request.accepted": (d) => `The DJ accepted “${d.title}”${d.position ? ` (#${d.position} in the queue)` : ""}.`,
    "request.vetoed": (d) => `The DJ declined “${d.title}”${d.reason ? `: ${d.reason}` : "."}`,
    "request.playing": (d) => `“${d.title}” is playing now!`,
    "request.next": (d) => `“${d.title}” is next.`,
    "request.moved": (d) => `“${d.title}” moved to #${d.position}.`,
  };
  client.subscribe(`user:${me}`, {
    onMessage(m) {
      const d = m.data || {};
      if (d.room === room && NOTICE[d.notice]) toast(NOTICE[d.notice](d), "ok");
    },
  });
  render();
}
