// The live connection: the stock y-websocket provider on the server's /ws/{project}
// endpoint, its state told in words, and the document's layout (docs/document.md).

import * as Y from "yjs";
import { WebsocketProvider } from "y-websocket";
import * as authProtocol from "y-protocols/auth";
import { token, wsBase } from "./api.js";

/** What the server's close codes mean to a person (docs/live.md). y-websocket stops
 * reconnecting after a 44xx close by itself; the others are retried. */
const CLOSE_REASONS = {
  4400: "the server refused an update from this page",
  4401: "the token is not valid any more: sign in again",
  4403: "you may not open this project",
  4404: "there is no such project",
  4413: "an update was too large",
  4508: "the connection fell too far behind: catching up",
  4529: "too many messages: slowing down",
  1012: "the server is restarting",
  1013: "the server is overloaded: retrying",
};

export function closeReason(code, reason) {
  const known = CLOSE_REASONS[code];
  if (reason && known) return `${known} (${reason})`;
  return reason || known || `connection closed (code ${code})`;
}

/** Open a project live. ``onState`` hears {state, message, code}: connecting,
 * connected, synced, reconnecting (with why), read-only (the server refused an update:
 * nothing this page changes is stored), refused (with why and the close code; no
 * retry). */
export function connect(projectId, onState) {
  const doc = new Y.Doc();
  // not connected yet: the handlers below must hear the first "connecting"
  const provider = new WebsocketProvider(wsBase(), projectId, doc, {
    params: { token: token() },
    maxBackoffTime: 2500,
    connect: false,
  });
  // The stock handler of y-protocols' auth message logs the socket's URL, token
  // included, to the console; this one says it on the page instead.
  provider.messageHandlers[2] = (_encoder, decoder) => {
    authProtocol.readAuthMessage(decoder, doc, (_doc, reason) => {
      onState({ state: "read-only", message: `read-only: changes are not saved (${reason})` });
    });
  };
  let lastClose = null;
  provider.on("status", ({ status }) => {
    if (status === "connected") onState({ state: "connected", message: "connected" });
    else if (status === "connecting" && lastClose === null)
      onState({ state: "connecting", message: "connecting…" });
  });
  provider.on("sync", (synced) => {
    if (synced) {
      lastClose = null;
      onState({ state: "synced", message: "connected, up to date" });
    }
  });
  provider.on("connection-close", (event) => {
    if (event === null) return;
    lastClose = event;
    onState({
      state: "reconnecting",
      code: event.code,
      message: `reconnecting: ${closeReason(event.code, event.reason)}`,
    });
  });
  provider.on("closed", ({ code, reason }) => {
    onState({ state: "refused", code, message: `refused: ${closeReason(code, reason)}` });
  });
  provider.connect();
  return {
    doc,
    provider,
    awareness: provider.awareness,
    /** Whether every local change has reached the server (synced, not reconnecting). */
    settled() {
      return provider.wsconnected && provider.synced;
    },
    retry() {
      lastClose = null;
      provider.params = { token: token() };
      provider.connect();
    },
    close() {
      provider.destroy();
      doc.destroy();
    },
  };
}

/** A document built from the JSON view (a past version): the same screens show it. */
export function docFromJson(json) {
  const doc = new Y.Doc();
  doc.transact(() => {
    const meta = doc.getMap("meta");
    for (const [key, value] of Object.entries(json.meta ?? {})) meta.set(key, toY(value));
    const tracks = doc.getMap("tracks");
    for (const [key, value] of Object.entries(json.tracks ?? {})) tracks.set(key, toY(value));
    doc.getArray("track_order").push((json.track_order ?? []).map(toY));
    doc.getArray("sections").push((json.sections ?? []).map(toY));
  });
  return doc;
}

function toY(value) {
  if (Array.isArray(value)) {
    const array = new Y.Array();
    array.push(value.map(toY));
    return array;
  }
  if (value !== null && typeof value === "object") {
    const map = new Y.Map();
    for (const [key, inner] of Object.entries(value)) map.set(key, toY(inner));
    return map;
  }
  return value;
}

export function newTrack(fields) {
  const track = new Y.Map();
  const values = {
    name: "Track",
    kind: "midi",
    instrument: "",
    color: "#4f8cc9",
    volume_db: 0,
    pan: 0,
    mute: false,
    solo: false,
    armed: false,
    ...fields,
  };
  for (const [key, value] of Object.entries(values)) track.set(key, value);
  track.set("effects", new Y.Array());
  track.set("clips", new Y.Map());
  track.set("automation", new Y.Map());
  return track;
}

export function newClip(fields) {
  const clip = new Y.Map();
  for (const [key, value] of Object.entries({ name: "Clip", source: "", ...fields }))
    clip.set(key, value);
  clip.set("notes", new Y.Array());
  return clip;
}

export function newNote(fields) {
  const note = new Y.Map();
  for (const [key, value] of Object.entries(fields)) note.set(key, value);
  return note;
}

export function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
