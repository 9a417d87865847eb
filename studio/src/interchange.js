// Projects in and out from the page: a version as a MIDI file or a project file, a fork
// of a version, and a MIDI file or project file imported into a new project
// (docs/interchange.md). Downloads go through fetch, so the token stays in a header.

import { api } from "./api.js";
import { h, saveBlob } from "./dom.js";

function filename(response, fallback) {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
  return match ? match[1] : fallback;
}

async function download(path, fallback, say) {
  try {
    const response = await api(path, { raw: true });
    saveBlob(await response.blob(), filename(response, fallback));
  } catch (error) {
    say(error.message, "error");
  }
}

/** Buttons that download ``version`` (null: the current one). */
export function exportButtons(projectId, version, say) {
  const base = `/api/projects/${encodeURIComponent(projectId)}`;
  const query = version ? `?version=${version}` : "";
  return [
    h("button", { class: "export-midi", title: "a Standard MIDI File of this version",
      onclick: () => download(`${base}/export.mid${query}`, "project.mid", say) }, "Export MIDI"),
    h("button", { class: "export-json", title: "the project file (collab-project/1) of this version",
      onclick: () => download(`${base}/export.json${query}`, "project.collab.json", say) }, "Export file"),
  ];
}

/** A button that forks ``version`` (null: the current one) and calls ``opened(created)``. */
export function forkButton(projectId, version, say, opened) {
  return h("button", {
    class: "fork",
    title: "a new project of yours from this version, linked to it in the lineage",
    onclick: async () => {
      try {
        const body = version ? { version } : {};
        opened(await api(`/api/projects/${encodeURIComponent(projectId)}/fork`, { method: "POST", body }));
      } catch (error) {
        say(error.message, "error");
      }
    },
  }, version ? "Fork from here" : "Fork");
}

function base64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** A file field: a .mid file or a project file becomes a new project; ``opened(created)``
 * hears its id and position. */
export function importForm(say, opened) {
  const field = h("input", { type: "file", class: "import-file", accept: ".mid,.midi,.json,audio/midi,application/json",
    "aria-label": "a MIDI file or a project file to import" });
  field.addEventListener("change", async () => {
    const file = field.files?.[0];
    if (!file) return;
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      const midi = bytes[0] === 0x4d && bytes[1] === 0x54 && bytes[2] === 0x68 && bytes[3] === 0x64; // MThd
      let created;
      if (midi) {
        created = await api("/api/imports/midi", { method: "POST", body: { file: base64(bytes), filename: file.name } });
        created = { ...created, id: created.project_id };
        say(`imported ${created.tracks} tracks, ${created.notes} notes from ${file.name}`, "ok");
      } else {
        let parsed;
        try {
          parsed = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          throw new Error(`${file.name} is neither a MIDI file nor a project file`);
        }
        created = await api("/api/imports/json", { method: "POST", body: parsed });
        say(`imported ${file.name}`, "ok");
      }
      opened(created);
    } catch (error) {
      say(error.message, "error");
    } finally {
      field.value = "";
    }
  });
  return h("label", { class: "import" }, "Import a MIDI file or project file: ", field);
}
