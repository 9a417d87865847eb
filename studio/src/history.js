// History: versions newest first in words, grouped by who made them; preview a version,
// compare two, tag a snapshot, roll back (every open editor sees it at once: a rollback
// is a document update like any other).

import { api } from "./api.js";
import { clear, h, when } from "./dom.js";

/** ``preview(version)`` shows a past version; ``say(message, kind)`` reports;
 * ``forkAt(version)``, when given, makes the button that forks a version. */
export function mountHistory(root, projectId, { canEdit, preview, say, forkAt = null }) {
  const base = `/api/projects/${encodeURIComponent(projectId)}`;
  const list = h("ol", { class: "versions" });
  const diff = h("section", { class: "diff" });
  const snapshots = h("ul", { class: "snapshots" });
  const more = h("button", { class: "more", hidden: true }, "Older versions");
  const grouped = h("input", { type: "checkbox", checked: true, class: "grouped" });
  const compare = new Set();
  const compareButton = h("button", { class: "compare", disabled: true, onclick: showDiff }, "Compare the two chosen");
  let cursor = null;
  let since = 0; // the position of this page's last write: reads wait for it
  let loads = 0; // a load answered after a newer one started is dropped
  let closed = false;

  root.append(
    h("div", { class: "history" },
      h("div", { class: "history-main" },
        h("div", { class: "toolbar" },
          h("label", {}, grouped, " Group by person or agent"), compareButton),
        list, more, diff),
      h("aside", {},
        h("h3", {}, "Snapshots"),
        canEdit ? snapshotForm() : h("p", { class: "hint" }, "Viewers cannot tag snapshots."),
        snapshots)),
  );
  grouped.addEventListener("change", () => reload());
  more.addEventListener("click", () => load());

  function snapshotForm() {
    const name = h("input", { class: "snapshot-name", placeholder: "name, e.g. mix v1", maxlength: 200, required: true });
    const description = h("input", { class: "snapshot-description", placeholder: "description (optional)", maxlength: 2000 });
    return h("form", {
      class: "snapshot-form",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const tagged = await api(`${base}/snapshots`, { method: "POST", body: { name: name.value.trim(), description: description.value } });
          say(`snapshot “${name.value.trim()}” tagged`, "ok");
          name.value = description.value = "";
          // read your own write: the list waits for the read models to reach it
          await loadSnapshots(tagged.position);
        } catch (error) {
          say(error.message, "error");
        }
      },
    }, name, description, h("button", { type: "submit" }, "Tag the current version"));
  }

  async function loadSnapshots(position = 0) {
    const { snapshots: items } = await api(`${base}/snapshots?min_position=${position}`);
    snapshots.replaceChildren(...items.map((s) => h("li", { class: "snapshot" },
      h("strong", {}, s.name), ` — version ${s.version}`, s.description ? h("div", { class: "hint" }, s.description) : "",
      h("div", {},
        h("button", { onclick: () => preview(s.version) }, "Preview"),
        canEdit ? rollbackButton({ snapshot: s.name }, `snapshot “${s.name}”`) : ""))));
    if (!items.length) snapshots.append(h("li", { class: "hint" }, "No snapshots yet."));
  }

  async function reload(position = 0) {
    delete list.dataset.loaded;
    since = position;
    cursor = null;
    compare.clear();
    compareButton.disabled = true;
    clear(list);
    clear(diff);
    await load();
  }

  async function load() {
    const mine = ++loads;
    more.disabled = true;
    const params = new URLSearchParams({ limit: "50", min_position: String(since) });
    if (grouped.checked) {
      params.set("group", "actor");
      params.set("window", "2m");
    }
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await api(`${base}/history?${params}`);
      if (mine !== loads || closed) return;
      for (const entry of page.entries) list.append(entryItem(entry));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      list.dataset.loaded = grouped.checked ? "grouped" : "every";
    } catch (error) {
      if (mine === loads && !closed) say(error.message, "error");
    } finally {
      if (mine === loads) more.disabled = false;
    }
  }

  function entryItem(entry) {
    const who = entry.agent_id && entry.agent_id !== "collab-server" && entry.agent_id !== entry.actor
      ? `${entry.actor} via ${entry.agent_id}` : entry.actor;
    const group = entry.grouped;
    const versions = group ? `versions ${group.from_version}–${entry.version}` : `version ${entry.version}`;
    const pick = h("input", {
      type: "checkbox", class: "pick", title: "choose for comparing",
      onchange: (e) => {
        if (e.target.checked) compare.add(entry.version);
        else compare.delete(entry.version);
        compareButton.disabled = compare.size !== 2;
      },
    });
    const sentences = entry.summary ?? [];
    return h("li", { class: "version", dataset: { version: entry.version } },
      h("div", { class: "version-head" },
        pick,
        h("strong", {}, who),
        h("span", { class: "hint" }, ` ${versions}, ${when(group ? group.started_at : entry.recorded_at)}`
          + (group ? ` to ${when(entry.recorded_at)} (${group.count} changes)` : "")),
      ),
      h("ul", { class: "sentences" },
        sentences.slice(0, 12).map((s) => h("li", {}, s)),
        sentences.length > 12 ? h("li", { class: "hint" }, `and ${sentences.length - 12} more`) : ""),
      h("div", { class: "actions" },
        h("button", { class: "preview", onclick: () => preview(entry.version) }, "Preview"),
        forkAt ? forkAt(entry.version) : "",
        canEdit && entry.event_type !== "project.created"
          ? rollbackButton({ version: entry.version }, `version ${entry.version}`) : "",
        entry.daid ? h("a", { href: `#/daid/${encodeURIComponent(entry.daid)}`, class: "lineage-link" }, "Lineage") : ""));
  }

  function rollbackButton(target, label) {
    const holder = h("span", { class: "rollback-holder" });
    const ask = h("button", { class: "rollback", onclick: () => {
      holder.replaceChildren(
        h("span", { class: "confirm" }, `Roll the project back to ${label}? Everyone editing sees it at once. `),
        h("button", { class: "confirm-rollback danger", onclick: async () => {
          try {
            const result = await api(`${base}/rollback`, { method: "POST", body: target });
            say(`rolled back to ${label} (now version ${result.version ?? "?"})`, "ok");
            await reload(result.position ?? 0);
          } catch (error) {
            say(error.message, "error");
            holder.replaceChildren(ask);
          }
        } }, "Roll back"),
        h("button", { class: "cancel", onclick: () => holder.replaceChildren(ask) }, "Cancel"));
    } }, "Roll back…");
    holder.append(ask);
    return holder;
  }

  async function showDiff() {
    const [from, to] = [...compare].sort((a, b) => a - b);
    try {
      const result = await api(`${base}/diff?from=${from}&to=${to}`);
      const row = (kind, item) => h("li", { class: kind },
        h("code", {}, item.path.join(" › ")), " ",
        kind === "changed"
          ? [h("span", { class: "old" }, short(item.old ?? item.from)), " → ", h("span", { class: "new" }, short(item.new ?? item.to))]
          : h("span", {}, short(item.value)));
      diff.replaceChildren(
        h("h3", {}, `From version ${from} to ${to}`),
        h("ul", {},
          result.added.map((i) => row("added", i)),
          result.removed.map((i) => row("removed", i)),
          result.changed.map((i) => row("changed", i))),
        result.added.length + result.removed.length + result.changed.length === 0
          ? h("p", { class: "hint" }, "No difference.") : "");
      diff.scrollIntoView({ block: "nearest" });
    } catch (error) {
      say(error.message, "error");
    }
  }

  reload();
  loadSnapshots().catch((error) => say(error.message, "error"));
  return {
    reload,
    close() {
      closed = true;
    },
  };
}

function short(value) {
  const text = JSON.stringify(value);
  return text === undefined ? "" : text.length > 120 ? `${text.slice(0, 117)}…` : text;
}
