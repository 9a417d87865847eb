// The live editor: transport, tracks with their mixer strip and clip lane, the piano
// roll of the selected clip, and who else is here. It reads and writes the Yjs document
// directly, so every other client (pycrdt, y-websocket, another page) co-edits with it.
// Redrawing is per track and once per animation frame: a remote edit of one track
// rebuilds that track's row only.

import { clear, h } from "./dom.js";
import { newClip, newId, newNote, newTrack } from "./live.js";

const BEAT = 24; // pixels per beat in the lanes
const ROLL_BEAT = 48; // pixels per beat in the piano roll
const STEP = 0.25; // grid of moves, resizes and notes, in beats
const LOW = 36; // lowest pitch the piano roll shows (C2)
const HIGH = 84; // highest (C6)
const NOTE_H = 9;
const KINDS = ["audio", "midi", "drums", "bus"];
const SIGNATURES = ["4/4", "3/4", "2/4", "5/4", "6/8", "7/8", "12/8"];
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

export function colorOf(name) {
  let hash = 0;
  for (const c of String(name)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 65% 45%)`;
}

const snap = (value) => Math.max(0, Math.round(value / STEP) * STEP);
const num = (value, fallback = 0) => (typeof value === "number" && Number.isFinite(value) ? value : fallback);

/** Mount the editor of ``doc`` in ``root``; returns a function that unmounts it.
 * ``readOnly``: a viewer's page or a past version (every control disabled). */
export function mountEditor(root, doc, { readOnly = false, awareness = null, me = null } = {}) {
  const meta = doc.getMap("meta");
  const tracks = doc.getMap("tracks");
  const order = doc.getArray("track_order");
  const rows = new Map();
  const state = { track: null, clip: null, playhead: 0, playing: null };
  const dirty = { all: true, meta: true, roll: true, presence: true, tracks: new Set() };
  let frame = 0;

  const transport = h("div", { class: "transport" });
  const lanes = h("div", { class: "lanes" });
  const heads = h("div", { class: "playheads" });
  const roll = h("section", { class: "roll" });
  const people = h("ul", { class: "presence", "aria-label": "who is here" });
  const addButton = h(
    "button",
    { class: "add-track", disabled: readOnly, onclick: () => addTrack() },
    "+ Track",
  );
  root.append(
    h(
      "div",
      { class: `editor${readOnly ? " read-only" : ""}` },
      h("div", { class: "editor-main" }, transport, h("div", { class: "toolbar" }, addButton),
        h("div", { class: "arrange" }, lanes, heads), roll),
      h("aside", { class: "people" }, h("h3", {}, "Here now"), people),
    ),
  );

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(render);
  };
  const onTracks = (events) => {
    for (const event of events) {
      if (event.target === tracks) {
        dirty.all = true;
        // a track replaced under its id must be redrawn, not reused
        for (const key of event.keysChanged) dirty.tracks.add(key);
      } else {
        dirty.tracks.add(String(event.path[0]));
      }
    }
    dirty.roll = true;
    schedule();
  };
  const onOrder = () => {
    dirty.all = true;
    schedule();
  };
  const onMeta = () => {
    dirty.meta = true;
    schedule();
  };
  const onAwareness = () => {
    dirty.presence = true;
    schedule();
  };
  tracks.observeDeep(onTracks);
  order.observe(onOrder);
  meta.observe(onMeta);
  awareness?.on("change", onAwareness);
  publish();

  function publish() {
    if (!awareness || !me) return;
    awareness.setLocalState({
      user: { name: me, color: colorOf(me) },
      track: state.track,
      playhead: Math.round(state.playhead * 100) / 100,
    });
  }

  function edit(change) {
    if (!readOnly) doc.transact(change);
  }

  function render() {
    frame = 0;
    if (dirty.meta) renderTransport();
    if (dirty.all) {
      const ids = orderedIds();
      for (const id of [...rows.keys()]) if (!tracks.has(id)) rows.delete(id);
      lanes.replaceChildren(
        ...ids.map((id) => {
          if (!rows.has(id) || dirty.tracks.has(id)) rows.set(id, trackRow(id));
          return rows.get(id);
        }),
      );
    } else {
      for (const id of dirty.tracks) {
        const old = rows.get(id);
        if (old && tracks.has(id)) {
          const focus = rememberFocus(old);
          const row = trackRow(id);
          old.replaceWith(row);
          rows.set(id, row);
          focus?.(row);
        }
      }
    }
    if (dirty.roll) renderRoll();
    if (dirty.presence || dirty.all || dirty.tracks.size) renderPresence();
    dirty.all = dirty.meta = dirty.roll = dirty.presence = false;
    dirty.tracks.clear();
  }

  function orderedIds() {
    const seen = new Set();
    const ids = [];
    for (const id of order.toArray()) {
      if (typeof id === "string" && tracks.has(id) && !seen.has(id)) {
        seen.add(id);
        ids.push(id);
      }
    }
    // a track some client added without ordering it still shows, last
    for (const id of [...tracks.keys()].sort()) if (!seen.has(id)) ids.push(id);
    return ids;
  }

  // -- transport -------------------------------------------------------------------

  const controls = {
    name: h("input", {
      class: "project-name", disabled: readOnly, "aria-label": "project name",
      onchange: (e) => edit(() => meta.set("name", e.target.value.trim() || "Untitled")),
    }),
    tempo: h("input", {
      class: "tempo", type: "number", min: 20, max: 400, step: 1, disabled: readOnly,
      "aria-label": "tempo",
      onchange: (e) => {
        const value = Number(e.target.value);
        if (Number.isFinite(value) && value >= 20 && value <= 400) edit(() => meta.set("tempo", value));
        else e.target.value = num(meta.get("tempo"), 120);
      },
    }),
    signature: h("select", {
      class: "time-signature", disabled: readOnly, "aria-label": "time signature",
      onchange: (e) => edit(() => meta.set("time_signature", e.target.value)),
    }, SIGNATURES.map((s) => h("option", { value: s }, s))),
    play: h("button", { class: "play", onclick: () => togglePlay() }, "▶ Play"),
    beat: h("input", {
      class: "playhead", type: "number", min: 0, step: 1, "aria-label": "playhead beat",
      onchange: (e) => setPlayhead(Number(e.target.value)),
    }),
  };
  transport.append(
    h("label", {}, "Project ", controls.name),
    h("label", {}, "Tempo ", controls.tempo),
    h("label", {}, "Time ", controls.signature),
    controls.play,
    h("label", {}, "Beat ", controls.beat),
  );

  // Values change in place and a control being edited keeps its value and focus: the
  // transport is redrawn four times a second while playing.
  function renderTransport() {
    const set = (el, value) => {
      if (document.activeElement !== el && el.value !== String(value)) el.value = String(value);
    };
    set(controls.name, String(meta.get("name") ?? ""));
    set(controls.tempo, num(meta.get("tempo"), 120));
    const signature = String(meta.get("time_signature") ?? "4/4");
    if (![...controls.signature.options].some((o) => o.value === signature))
      controls.signature.append(h("option", { value: signature }, signature));
    set(controls.signature, signature);
    controls.play.textContent = state.playing ? "■ Stop" : "▶ Play";
    set(controls.beat, state.playhead.toFixed(2));
  }

  function togglePlay() {
    if (state.playing) {
      clearInterval(state.playing);
      state.playing = null;
    } else {
      let last = performance.now();
      state.playing = setInterval(() => {
        const now = performance.now();
        const tempo = num(meta.get("tempo"), 120);
        setPlayhead(state.playhead + ((now - last) / 60000) * tempo);
        last = now;
      }, 250);
    }
    dirty.meta = true;
    schedule();
  }

  function setPlayhead(beat) {
    state.playhead = Number.isFinite(beat) && beat >= 0 ? beat : 0;
    publish();
    dirty.meta = true;
    schedule();
  }

  // -- tracks ----------------------------------------------------------------------

  function addTrack() {
    const id = newId("t");
    const count = tracks.size + 1;
    edit(() => {
      tracks.set(id, newTrack({ name: `Track ${count}`, color: "#4f8cc9" }));
      order.push([id]);
    });
    selectTrack(id);
  }

  function removeTrack(id) {
    edit(() => {
      tracks.delete(id);
      const ids = order.toArray();
      for (let i = ids.length - 1; i >= 0; i--) if (ids[i] === id) order.delete(i, 1);
    });
    if (state.track === id) selectTrack(null);
  }

  function confirmRemove(button, id) {
    // one click arms it, a second within 3 s removes the track and its clips for everyone
    if (button.dataset.armed) {
      removeTrack(id);
      return;
    }
    button.dataset.armed = "true";
    button.textContent = "Remove?";
    button.classList.add("danger");
    setTimeout(() => {
      delete button.dataset.armed;
      button.textContent = "✕";
      button.classList.remove("danger");
    }, 3000);
  }

  function moveTrack(id, by) {
    const ids = order.toArray();
    const from = ids.indexOf(id);
    const to = from + by;
    if (from < 0 || to < 0 || to >= ids.length) return;
    edit(() => {
      order.delete(from, 1);
      order.insert(to, [id]);
    });
  }

  function selectTrack(id) {
    const before = state.track;
    state.track = id;
    publish();
    for (const changed of [before, id]) if (changed) dirty.tracks.add(changed);
    schedule();
  }

  function trackRow(id) {
    const track = tracks.get(id);
    if (!track || typeof track.get !== "function") {
      return h("div", { class: "track broken", dataset: { track: id } }, `${id}: not a track`);
    }
    const set = (key, value) => edit(() => track.set(key, value));
    const name = String(track.get("name") ?? id);
    const color = /^#[0-9a-fA-F]{6}$/.test(track.get("color")) ? track.get("color") : "#888888";
    const volume = num(track.get("volume_db"));
    const pan = num(track.get("pan"));
    const kind = String(track.get("kind") ?? "midi");
    const here = others().filter((s) => s.track === id);
    const selected = state.track === id;
    return h(
      "div",
      {
        class: `track${selected ? " selected" : ""}`,
        dataset: { track: id },
        style: { borderLeftColor: color },
        onpointerdown: (e) => {
          if (!e.target.closest("button, input, select") && state.track !== id) selectTrack(id);
        },
      },
      h("div", { class: "head" },
        h("div", { class: "line" },
          h("input", { class: "color", type: "color", value: color, disabled: readOnly,
            title: "colour", onchange: (e) => set("color", e.target.value) }),
          h("input", { class: "name", value: name, disabled: readOnly, "aria-label": "track name",
            onchange: (e) => set("name", e.target.value.trim() || "Track") }),
          h("select", { class: "kind", disabled: readOnly, "aria-label": "kind",
            onchange: (e) => set("kind", e.target.value) },
            [...new Set([kind, ...KINDS])].map((k) => h("option", { value: k, selected: k === kind }, k))),
        ),
        h("div", { class: "line mixer" },
          h("label", { title: `volume ${volume} dB` }, "Vol",
            h("input", { class: "volume", type: "range", min: -60, max: 6, step: 0.5, value: volume,
              disabled: readOnly, onchange: (e) => set("volume_db", Number(e.target.value)) })),
          h("label", { title: `pan ${pan}` }, "Pan",
            h("input", { class: "pan", type: "range", min: -1, max: 1, step: 0.05, value: pan,
              disabled: readOnly, onchange: (e) => set("pan", Number(e.target.value)) })),
          h("button", { class: "mute", "aria-pressed": String(track.get("mute") === true),
            disabled: readOnly, title: "mute", onclick: () => set("mute", track.get("mute") !== true) }, "M"),
          h("button", { class: "solo", "aria-pressed": String(track.get("solo") === true),
            disabled: readOnly, title: "solo", onclick: () => set("solo", track.get("solo") !== true) }, "S"),
          h("button", { class: "up", disabled: readOnly, title: "move up", onclick: () => moveTrack(id, -1) }, "↑"),
          h("button", { class: "down", disabled: readOnly, title: "move down", onclick: () => moveTrack(id, 1) }, "↓"),
          h("button", { class: "remove", disabled: readOnly, title: "remove track", onclick: (e) => confirmRemove(e.currentTarget, id) }, "✕"),
        ),
        h("div", { class: "line who" },
          here.map((s) => h("span", { class: "tag", style: { background: s.color } }, s.name)),
          h("button", { class: "add-clip", disabled: readOnly, onclick: () => addClip(id) }, "+ Clip"),
        ),
      ),
      lane(id, track),
    );
  }

  // -- clips -----------------------------------------------------------------------

  function clipsOf(track) {
    const clips = track.get("clips");
    return clips && typeof clips.entries === "function" ? clips : null;
  }

  function addClip(trackId) {
    const track = tracks.get(trackId);
    const clips = track && clipsOf(track);
    if (!clips) return;
    let end = 0;
    for (const clip of clips.values()) {
      if (clip && typeof clip.get === "function")
        end = Math.max(end, num(clip.get("start_beats")) + num(clip.get("length_beats")));
    }
    const id = newId("c");
    edit(() => clips.set(id, newClip({ name: `Clip ${clips.size + 1}`, start_beats: end, length_beats: 4 })));
    selectClip(trackId, id);
  }

  function selectClip(trackId, clipId) {
    const before = state.clip?.track;
    state.clip = clipId ? { track: trackId, clip: clipId } : null;
    if (before) dirty.tracks.add(before);
    if (trackId) dirty.tracks.add(trackId);
    dirty.roll = true;
    if (trackId && state.track !== trackId) selectTrack(trackId);
    schedule();
  }

  function lane(trackId, track) {
    const clips = clipsOf(track);
    let width = 64;
    const blocks = [];
    for (const [clipId, clip] of clips ? clips.entries() : []) {
      if (!clip || typeof clip.get !== "function") continue;
      const start = num(clip.get("start_beats"));
      const length = Math.max(STEP, num(clip.get("length_beats"), 1));
      width = Math.max(width, start + length + 8);
      const selected = state.clip?.track === trackId && state.clip?.clip === clipId;
      const block = h(
        "div",
        {
          class: `clip${selected ? " selected" : ""}`,
          dataset: { clip: clipId },
          style: { left: `${start * BEAT}px`, width: `${length * BEAT}px` },
          title: `${clip.get("name") ?? clipId}: beat ${start}, ${length} beats`,
          role: "button",
          tabindex: 0,
          "aria-pressed": String(selected),
          "aria-label": `clip ${clip.get("name") ?? clipId}, beat ${start}, ${length} beats`
            + (readOnly ? "" : "; arrows move it, shift and arrows resize it"),
          onkeydown: (e) => clipKey(e, trackId, clipId, clip, start, length),
        },
        h("span", { class: "clip-name" }, String(clip.get("name") ?? clipId)),
        h("span", { class: "resize", title: "drag to resize" }),
      );
      block.addEventListener("pointerdown", (e) => dragClip(e, block, trackId, clipId, clip, start, length));
      blocks.push(block);
    }
    return h("div", { class: "lane", style: { width: `${width * BEAT}px` } }, blocks);
  }

  function clipKey(event, trackId, clipId, clip, start, length) {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      selectClip(trackId, clipId);
      return;
    }
    const by = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (by === undefined || readOnly) return;
    event.preventDefault();
    if (event.shiftKey) edit(() => clip.set("length_beats", Math.max(STEP, length + by)));
    else edit(() => clip.set("start_beats", Math.max(0, start + by)));
  }

  function dragClip(event, block, trackId, clipId, clip, start, length) {
    event.preventDefault();
    const resizing = event.target.classList.contains("resize");
    const x0 = event.clientX;
    let moved = false;
    let next = resizing ? length : start;
    const move = (e) => {
      if (readOnly) return;
      const delta = (e.clientX - x0) / BEAT;
      if (Math.abs(e.clientX - x0) > 3) moved = true;
      if (resizing) {
        next = Math.max(STEP, snap(length + delta));
        block.style.width = `${next * BEAT}px`;
      } else {
        next = snap(start + delta);
        block.style.left = `${next * BEAT}px`;
      }
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      if (!moved) selectClip(trackId, clipId);
      else if (resizing && next !== length) edit(() => clip.set("length_beats", next));
      else if (!resizing && next !== start) edit(() => clip.set("start_beats", next));
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }

  // -- piano roll ------------------------------------------------------------------

  function selectedClip() {
    if (!state.clip) return null;
    const track = tracks.get(state.clip.track);
    const clip = track && clipsOf(track)?.get(state.clip.clip);
    return clip && typeof clip.get === "function" ? clip : null;
  }

  function renderRoll() {
    clear(roll);
    const clip = selectedClip();
    if (!clip) {
      roll.append(h("p", { class: "hint" }, "Select a clip to see its notes."));
      return;
    }
    const notes = clip.get("notes");
    const length = Math.max(1, num(clip.get("length_beats"), 4));
    const height = (HIGH - LOW + 1) * NOTE_H;
    const keys = [];
    for (let pitch = HIGH; pitch >= LOW; pitch--) {
      const black = NAMES[pitch % 12].includes("#");
      keys.push(h("div", { class: `key${black ? " black" : ""}`, style: { height: `${NOTE_H}px` } },
        pitch % 12 === 0 ? `C${pitch / 12 - 1}` : ""));
    }
    const grid = h("div", {
      class: "grid",
      style: { width: `${length * ROLL_BEAT}px`, height: `${height}px`,
        backgroundSize: `${ROLL_BEAT}px ${NOTE_H}px` },
      onclick: (e) => {
        if (readOnly || e.target !== grid || !notes || typeof notes.push !== "function") return;
        const box = grid.getBoundingClientRect();
        const start = Math.floor((e.clientX - box.left) / ROLL_BEAT / STEP) * STEP;
        const pitch = HIGH - Math.floor((e.clientY - box.top) / NOTE_H);
        if (pitch < LOW || pitch > HIGH || start >= length) return;
        edit(() => notes.push([newNote({ id: newId("n"), pitch, start, duration: 0.5, velocity: 100 })]));
      },
    });
    if (notes && typeof notes.toArray === "function") {
      notes.toArray().forEach((note) => {
        if (!note || typeof note.get !== "function") return;
        const pitch = num(note.get("pitch"), -1);
        if (pitch < LOW || pitch > HIGH) return;
        const start = num(note.get("start"));
        const duration = Math.max(0.05, num(note.get("duration"), 0.25));
        const label = `${NAMES[pitch % 12]}${Math.floor(pitch / 12) - 1} at ${start}, ${duration} beats`;
        const remove = () => edit(() => {
          // by identity: a remote edit may have moved it since this was drawn
          const at = notes.toArray().indexOf(note);
          if (at >= 0) notes.delete(at, 1);
        });
        grid.append(h("div", {
          class: "note",
          dataset: { pitch, start },
          role: "button",
          tabindex: 0,
          "aria-label": readOnly ? `note ${label}` : `note ${label}; Delete removes it`,
          onkeydown: (e) => {
            if (e.key === "Delete" || e.key === "Backspace" || e.key === "Enter") {
              e.preventDefault();
              remove();
            }
          },
          title: readOnly ? label : `${label} (click to remove)`,
          style: { left: `${start * ROLL_BEAT}px`, top: `${(HIGH - pitch) * NOTE_H}px`,
            width: `${duration * ROLL_BEAT - 1}px`, height: `${NOTE_H - 1}px` },
          onclick: remove,
        }));
      });
    }
    const track = tracks.get(state.clip.track);
    roll.append(
      h("h3", {}, `Notes of ${clip.get("name") ?? state.clip.clip} on ${track?.get("name") ?? state.clip.track}`,
        readOnly ? "" : h("span", { class: "hint" }, " — click the grid to add a note, a note to remove it")),
      h("div", { class: "roll-body" }, h("div", { class: "keys" }, keys), grid),
    );
  }

  // -- presence --------------------------------------------------------------------

  function others() {
    if (!awareness) return [];
    const list = [];
    for (const [client, value] of awareness.getStates()) {
      if (client === awareness.clientID || !value || typeof value !== "object") continue;
      const user = value.user && typeof value.user === "object" ? value.user : {};
      const name = typeof user.name === "string" ? user.name : `client ${client}`;
      list.push({
        client,
        name,
        color: typeof user.color === "string" ? user.color : colorOf(name),
        track: typeof value.track === "string" ? value.track : null,
        playhead: typeof value.playhead === "number" ? value.playhead : null,
      });
    }
    return list;
  }

  function renderPresence() {
    const list = others();
    const trackName = (id) => tracks.get(id)?.get?.("name") ?? id;
    const mine = me ? [h("li", { class: "me" }, h("span", { class: "dot", style: { background: colorOf(me) } }),
      `${me} (you)`)] : [];
    people.replaceChildren(...mine, ...list.map((s) =>
      h("li", { dataset: { client: s.client } },
        h("span", { class: "dot", style: { background: s.color } }),
        h("span", { class: "who-name" }, s.name),
        s.track ? h("span", { class: "where" }, ` on ${trackName(s.track)}`) : "",
        s.playhead !== null ? h("span", { class: "where" }, ` at beat ${s.playhead.toFixed(1)}`) : "")));
    heads.replaceChildren(...[...list, ...(me ? [{ name: me, color: colorOf(me), playhead: state.playhead }] : [])]
      .filter((s) => s.playhead !== null)
      .map((s) => h("div", { class: "head-line", title: s.name,
        style: { left: `${s.playhead * BEAT}px`, background: s.color } })));
    // the tags on the track rows
    const byTrack = new Map();
    for (const s of list) if (s.track) byTrack.set(s.track, [...(byTrack.get(s.track) ?? []), s]);
    for (const [id, row] of rows) {
      const who = row.querySelector(".who");
      if (!who) continue;
      for (const tag of who.querySelectorAll(".tag")) tag.remove();
      who.prepend(...(byTrack.get(id) ?? []).map((s) => h("span", { class: "tag", style: { background: s.color } }, s.name)));
    }
  }

  render();
  return () => {
    if (frame) cancelAnimationFrame(frame);
    if (state.playing) clearInterval(state.playing);
    tracks.unobserveDeep(onTracks);
    order.unobserve(onOrder);
    meta.unobserve(onMeta);
    awareness?.off("change", onAwareness);
    root.replaceChildren();
  };
}

function rememberFocus(row) {
  const active = document.activeElement;
  if (!active || !row.contains(active) || !active.className) return null;
  const selector = active.dataset.clip
    ? `.clip[data-clip="${CSS.escape(active.dataset.clip)}"]`
    : `.${String(active.className).split(" ")[0]}`;
  // what is being typed stays; a slider or a list shows the document's value
  const typed = active.tagName === "INPUT" && active.type === "text" ? active.value : null;
  return (next) => {
    const target = next.querySelector(selector);
    if (!target) return;
    if (typed !== null && "value" in target) target.value = typed;
    target.focus();
  };
}
