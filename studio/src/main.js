// The studio's shell: sign-in, the project list, and one page per project (live editor,
// history, provenance), one for a DAID's lineage and one for the audit log. Routes live
// in the URL's fragment, so the server serves one page and a token in a link
// (#token=…) never reaches a server log.

import { api, claims, signIn, signOut, token } from "./api.js";
import { clear, h, when } from "./dom.js";
import { colorOf, mountEditor } from "./editor.js";
import { mountHistory } from "./history.js";
import { exportButtons, forkButton, importForm } from "./interchange.js";
import { connect, docFromJson } from "./live.js";
import { mountAudit, mountDaid, mountProvenance } from "./provenance.js";

const app = document.getElementById("app");
const messages = h("div", { class: "messages", role: "status", "aria-live": "polite" });
const connection = h("div", { class: "connection", role: "status", "aria-live": "polite", dataset: { state: "none" } });
let cleanup = () => {};
// the position of this page's last write, so that the next read waits for it
let written = 0;

function say(message, kind = "info") {
  const item = h("div", { class: `message ${kind}` }, message,
    h("button", { class: "dismiss", title: "dismiss", onclick: () => item.remove() }, "×"));
  messages.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
  while (messages.children.length > 4) messages.firstChild.remove();
}

window.addEventListener("unhandledrejection", (event) => {
  say(event.reason?.message ?? String(event.reason), "error");
});

function me() {
  const c = claims();
  return c && typeof c.sub === "string" ? c.sub : null;
}

function shell(title, ...content) {
  const c = claims() ?? {};
  const roles = Array.isArray(c.roles) ? c.roles : [];
  clear(app).append(
    h("header", { class: "top" },
      h("a", { href: "#/", class: "brand" }, "collab studio"),
      h("nav", {}, h("a", { href: "#/" }, "Projects"), h("a", { href: "#/audit" }, "Audit")),
      connection,
      h("span", { class: "user" }, `${c.sub ?? "?"}${roles.length ? ` (${roles.join(", ")})` : ""}`,
        c.agent_id ? ` — agent ${c.agent_id}` : ""),
      h("button", { class: "sign-out", onclick: () => { closeProject(); signOut(); location.hash = "#/"; route(); } }, "Sign out")),
    messages,
    h("main", {}, title ? h("h1", {}, title) : "", ...content),
  );
}

function setConnection(state, message, retry) {
  connection.dataset.state = state;
  connection.replaceChildren(h("span", { class: "dot" }), h("span", { class: "text" }, message),
    state === "refused" && retry ? h("button", { class: "retry", onclick: retry }, "Try again") : "");
}

// -- sign in ---------------------------------------------------------------------------

function signInPage(problem) {
  setConnection("none", "");
  const field = h("textarea", { class: "token", rows: 4, placeholder: "eyJhbGciOi…", "aria-label": "token" });
  clear(app).append(h("main", { class: "sign-in" },
    h("h1", {}, "collab studio"),
    h("p", {}, "Sign in with a token. On this machine, `collab serve` prints a link that signs you in; ",
      "other tokens come from `collab token create --user NAME`."),
    problem ? h("p", { class: "message error" }, problem) : "",
    h("form", { onsubmit: (e) => {
      e.preventDefault();
      if (!field.value.trim()) return;
      signIn(field.value);
      route();
    } }, field, h("button", { type: "submit", class: "sign-in-button" }, "Sign in"))));
}

// -- projects --------------------------------------------------------------------------

async function projectsPage(current) {
  const list = h("tbody", {});
  const more = h("button", { class: "more-projects", hidden: true }, "More projects");
  const table = h("table", { class: "projects" },
    h("thead", {}, h("tr", {}, ["Name", "Owner", "Tracks", "Tempo", "Version", "Updated"].map((t) => h("th", {}, t)))),
    list);
  const name = h("input", { class: "new-name", placeholder: "project name", required: true, maxlength: 200 });
  const tempo = h("input", { class: "new-tempo", type: "number", value: 120, min: 20, max: 400 });
  shell("Projects",
    h("form", { class: "create", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const created = await api("/api/projects", { method: "POST",
          body: { name: name.value.trim(), tempo: Number(tempo.value) } });
        written = Math.max(written, created.position ?? 0);
        location.hash = `#/p/${created.id}`;
      } catch (error) {
        say(error.message, "error");
      }
    } }, name, h("label", {}, " Tempo ", tempo), h("button", { type: "submit" }, "Create project")),
    importForm(say, openCreated),
    table, more);
  let cursor = null;
  const load = async () => {
    more.disabled = true;
    const params = new URLSearchParams({ limit: "100", min_position: String(written) });
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/api/projects?${params}`);
    if (!current()) return;
    for (const p of page.projects) {
      list.append(h("tr", { class: "project", dataset: { project: p.id } },
        h("td", {}, h("a", { href: `#/p/${p.id}` }, p.name)), h("td", {}, p.owner),
        h("td", {}, String(p.track_count)), h("td", {}, String(p.tempo ?? "")),
        h("td", {}, String(p.version)), h("td", {}, when(p.updated_at))));
    }
    if (!list.children.length) list.append(h("tr", {}, h("td", { colspan: 6, class: "hint" }, "No projects you may see yet: create one.")));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    more.disabled = false;
    table.dataset.loaded = "true";
  };
  more.addEventListener("click", () => load().catch((error) => say(error.message, "error")));
  await load();
}

// -- one project -----------------------------------------------------------------------

/** Go to a project this page just made (created, forked, imported): its reads wait for
 * the write. */
function openCreated(created) {
  written = Math.max(written, created.position ?? 0);
  location.hash = `#/p/${created.id}`;
}

// The live session of the project on screen: kept while the page moves between the
// project's tabs (presence stays, nothing resyncs, edits made while reconnecting are
// kept), closed when it leaves the project.
let open = null;

function closeProject() {
  if (open === null) return;
  open.session.close();
  open = null;
  setConnection("none", "");
}

window.addEventListener("beforeunload", (event) => {
  // edits made while the connection is down live only in this page until it is back
  if (open !== null && !open.session.settled()) event.preventDefault();
});

function onConnection(projectId) {
  return ({ state, message, code }) => {
    if (code === 4401) {
      // the token expired or was revoked: sign in again
      closeProject();
      signOut();
      signInPage(message);
      return;
    }
    setConnection(state, message, () => open?.projectId === projectId && open.session.retry());
  };
}

async function projectPage(projectId, tab, current) {
  const info = await api(`/api/projects/${encodeURIComponent(projectId)}?min_position=${written}`);
  if (!current()) return () => {};
  // the server says what this token is to the project, and whether its edits are stored
  const role = info.you?.role ?? "viewer";
  const canEdit = info.you?.may_edit === true;
  if (open?.projectId !== projectId) {
    closeProject();
    open = { projectId, session: connect(projectId, onConnection(projectId)) };
  }
  const { session } = open;
  const body = h("div", { class: "tab-body" });
  const banner = h("div", { class: "banner", hidden: true });
  const tabs = ["editor", "history", "provenance"];
  const meta = session.doc.getMap("meta");
  const title = h("span", { class: "project-title" },
    typeof meta.get("name") === "string" ? meta.get("name") : info.name);
  const rename = () => {
    const value = meta.get("name");
    if (typeof value === "string") title.textContent = value;
  };
  meta.observe(rename);
  shell(null,
    h("div", { class: "project-head" },
      h("h1", {}, title),
      h("span", { class: `role role-${role}` }, canEdit ? `you edit as ${role}` : `read-only (${role})`),
      h("span", { class: "project-actions" }, exportButtons(projectId, null, say),
        role === "auditor" ? "" : forkButton(projectId, null, say, openCreated)),
      h("nav", { class: "tabs" }, tabs.map((t) => h("a", {
        href: `#/p/${projectId}/${t}`, class: t === tab ? "active" : "", dataset: { tab: t },
      }, t[0].toUpperCase() + t.slice(1))))),
    banner, body);

  let unmount = () => {};
  const preview = async (version) => {
    try {
      const past = await api(`/api/projects/${encodeURIComponent(projectId)}/versions/${version}`);
      if (!current()) return;
      unmount();
      const doc = docFromJson(past.document);
      banner.hidden = false;
      banner.replaceChildren(`Previewing version ${version} (read-only). `,
        h("a", { class: "back-live", href: `#/p/${projectId}/editor` }, "Back to the live project"));
      const dispose = mountEditor(body, doc, { readOnly: true });
      unmount = () => { dispose(); doc.destroy(); };
    } catch (error) {
      say(error.message, "error");
    }
  };
  if (tab === "history") {
    const forkAt = role === "auditor" ? null
      : (version) => forkButton(projectId, version, say, openCreated);
    const view = mountHistory(body, projectId, { canEdit, preview, say, forkAt });
    unmount = () => { view.close(); clear(body); };
  } else if (tab === "provenance") {
    mountProvenance(body, projectId, { say });
    unmount = () => clear(body);
  } else {
    unmount = mountEditor(body, session.doc, { readOnly: !canEdit, awareness: session.awareness, me: me() });
  }
  // presence stays on while the page shows the history or provenance of the project
  if (tab !== "editor") session.awareness.setLocalState({ user: { name: me(), color: colorOf(me()) }, track: null, playhead: null });
  return () => {
    meta.unobserve(rename);
    unmount();
  };
}

// -- routing ---------------------------------------------------------------------------

// Every route bumps it: a route still awaiting the server when the hash changes again
// finds itself outdated and leaves the page to the newer one.
let generation = 0;

async function route() {
  const mine = ++generation;
  const current = () => mine === generation;
  cleanup();
  cleanup = () => {};
  const hash = location.hash;
  const fromLink = /^#token=([^&]+)/.exec(hash);
  if (fromLink) {
    signIn(decodeURIComponent(fromLink[1]));
    history.replaceState(null, "", `${location.pathname}#/`);
  }
  const path = location.hash.replace(/^#/, "") || "/";
  const projectRoute = /^\/p\/([^/]+)(?:\/(editor|history|provenance))?$/.exec(path);
  if (!projectRoute || decodeURIComponent(projectRoute[1]) !== open?.projectId) closeProject();
  if (!token()) return signInPage();
  try {
    await api("/api/projects?limit=1");
  } catch (error) {
    if (!current()) return;
    if (error.status === 401) {
      closeProject();
      signOut();
      return signInPage(`That token was refused: ${error.message}`);
    }
    shell("The server answered with an error", h("p", { class: "message error" }, error.message));
    return;
  }
  if (!current()) return;
  try {
    let match;
    if (projectRoute) {
      const dispose = await projectPage(decodeURIComponent(projectRoute[1]), projectRoute[2] ?? "editor", current);
      if (current()) cleanup = dispose;
      else dispose();
    } else if ((match = /^\/daid\/(.+)$/.exec(path))) {
      shell(null);
      mountDaid(app.querySelector("main"), decodeURIComponent(match[1]), { say });
    } else if (path === "/audit") {
      shell("Audit");
      mountAudit(app.querySelector("main"), null, { say });
    } else {
      await projectsPage(current);
    }
  } catch (error) {
    if (!current()) return;
    closeProject();
    shell("Something went wrong", h("p", { class: "message error" }, error.message),
      h("p", {}, h("a", { href: "#/" }, "Back to the projects")));
  }
}

window.addEventListener("hashchange", route);
route();
