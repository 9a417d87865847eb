// Provenance and audit: a project's analyses; for one DAID its lineage drawn as a graph,
// its contributors and its PROV-JSON; the newest signed checkpoint, and the project's
// audit bundle checked in this browser against it (WebCrypto Ed25519).

import { api } from "./api.js";
import { clear, h, saveBlob, svg, when } from "./dom.js";
import { verifyBundle } from "./verify.js";

export function daidLink(daid, text) {
  return h("a", { href: `#/daid/${encodeURIComponent(daid)}`, class: "daid", title: daid }, text ?? shortDaid(daid));
}

export function shortDaid(daid) {
  const parts = String(daid).split(":");
  return parts.length > 5 ? `${parts[parts.length - 3]} …${parts[parts.length - 1].slice(-6)}` : String(daid);
}

export function mountProvenance(root, projectId, { say }) {
  const base = `/api/projects/${encodeURIComponent(projectId)}`;
  const analyses = h("ul", { class: "analyses" });
  const audit = h("section", { class: "audit" });
  root.append(h("div", { class: "provenance" },
    h("section", {}, h("h3", {}, "Analyses"), analyses),
    audit));

  api(`${base}/analyses?limit=100`).then(({ analyses: items }) => {
    analyses.replaceChildren(...items.map((a) => h("li", { class: "analysis" },
      h("strong", {}, a.type), ` of version ${a.target?.version ?? "?"} by ${a.tool?.agent_id ?? a.actor}`,
      a.tool?.model ? ` (model ${a.tool.model}${a.tool.ai_involved ? ", AI" : ""})` : "",
      ` — ${when(a.recorded_at)} `, daidLink(a.daid, "lineage"),
      h("pre", { class: "results" }, JSON.stringify(a.results, null, 1)))));
    if (!items.length) analyses.append(h("li", { class: "hint" }, "No analyses yet."));
  }).catch((error) => say(error.message, "error"));

  mountAudit(audit, projectId, { say });
}

export function mountAudit(root, projectId, { say }) {
  const result = h("div", { class: "verify-result" });
  const body = h("div", {});
  root.append(h("h3", {}, "Signed audit log"), body, result);
  api("/api/audit/checkpoint?format=json").then((checkpoint) => {
    body.append(
      h("dl", { class: "checkpoint" },
        h("dt", {}, "Events sealed"), h("dd", { class: "tree-size" }, String(checkpoint.tree_size)),
        h("dt", {}, "Root"), h("dd", {}, h("code", {}, checkpoint.root)),
        h("dt", {}, "Signed"), h("dd", {}, when(checkpoint.signed_at)),
        h("dt", {}, "Origin"), h("dd", {}, h("code", {}, checkpoint.origin ?? "(signed before checkpoints were signed notes)")),
        h("dt", {}, "Verifier key"), h("dd", {}, h("code", {}, checkpoint.verifier_key), ` (id ${checkpoint.key_id})`)),
      projectId ? h("button", { class: "verify", onclick: () => check(checkpoint) },
        "Verify this project's record in the browser") : "");
  }).catch((error) => {
    body.append(h("p", { class: "hint" }, `No checkpoint: ${error.message}`));
  });

  async function check(checkpoint) {
    result.replaceChildren(h("p", {}, "Checking…"));
    try {
      // as text: the hashes cover Python's spelling of numbers (126.0), which a parsed
      // object loses
      const response = await api(`/api/projects/${encodeURIComponent(projectId)}/audit-bundle`, { raw: true });
      const bundle = await response.text();
      const report = await verifyBundle(bundle, checkpoint.public_key);
      result.replaceChildren(h("p", { class: report.ok ? "ok" : "broken" },
        report.ok
          ? `OK: ${report.proven} of ${report.events} events proven in the log signed at tree size ${report.treeSize}, with the key above`
          : `BROKEN: ${report.problems.join("; ")}`),
        report.ok && report.proven < report.events
          ? h("p", { class: "hint" }, "Events newer than the newest checkpoint are not provable yet.") : "");
    } catch (error) {
      result.replaceChildren(h("p", { class: "broken" }, error.message));
      say(error.message, "error");
    }
  }
}

export function mountDaid(root, daid, { say }) {
  const graph = h("div", { class: "graph" });
  const contributors = h("section", { class: "contributors" });
  const node = h("section", { class: "node" });
  root.append(h("div", { class: "lineage" },
    h("h2", {}, "Lineage of ", h("code", { class: "daid-full" }, daid)),
    h("div", { class: "toolbar" },
      h("button", { class: "prov", onclick: download }, "Download PROV-JSON")),
    node, graph, contributors));
  const path = `/api/daids/${encodeURIComponent(daid)}`;

  api(path).then((item) => {
    node.append(h("p", {}, `${item.event_type} (${item.entity_type}) by ${item.actor}`,
      item.agent_id && item.agent_id !== item.actor ? ` via ${item.agent_id}` : "",
      ` at ${when(item.time)}, position ${item.position}`,
      item.project_id ? [" in ", h("a", { href: `#/p/${item.project_id}` }, "its project")] : ""));
    if (item.integrity) node.append(h("p", { class: "hint" }, `integrity: ${JSON.stringify(item.integrity)}`));
  }).catch((error) => say(error.message, "error"));

  Promise.all([
    api(`${path}/lineage?direction=ancestors&depth=20&max_nodes=200`),
    api(`${path}/lineage?direction=descendants&depth=20&max_nodes=200`),
  ]).then(([up, down]) => draw(graph, daid, up, down)).catch((error) => say(error.message, "error"));

  api(`${path}/contributors`).then((c) => {
    const group = (title, items) => h("div", {}, h("h4", {}, title),
      h("ul", {}, items.length ? items.map((p) => h("li", { class: "contributor" },
        h("strong", {}, p.name), ` — ${p.contributions} contribution${p.contributions === 1 ? "" : "s"}, ${when(p.first)} to ${when(p.last)}`))
        : h("li", { class: "hint" }, "none")));
    contributors.append(h("h3", {}, "Contributors"),
      group("People", c.people ?? []), group("Services", c.services ?? []), group("AI models", c.ai_models ?? []));
  }).catch((error) => say(error.message, "error"));

  async function download() {
    try {
      const prov = await api(`${path}/prov`);
      saveBlob(new Blob([JSON.stringify(prov, null, 2)], { type: "application/json" }),
        `${daid.replace(/[^A-Za-z0-9._-]+/g, "_")}.prov.json`);
    } catch (error) {
      say(error.message, "error");
    }
  }
}

/** Ancestors to the left, descendants to the right, one column per depth. */
function draw(holder, daid, up, down) {
  const W = 190;
  const H = 52;
  const GAP_X = 60;
  const GAP_Y = 16;
  const nodes = new Map();
  for (const [lineage, sign] of [[up, -1], [down, 1]]) {
    for (const n of lineage.nodes) {
      const column = n.daid === daid ? 0 : sign * n.depth;
      if (!nodes.has(n.daid) || Math.abs(column) < Math.abs(nodes.get(n.daid).column)) nodes.set(n.daid, { ...n, column });
    }
  }
  const edges = [...up.edges, ...down.edges];
  const columns = new Map();
  for (const n of nodes.values()) {
    if (!columns.has(n.column)) columns.set(n.column, []);
    columns.get(n.column).push(n);
  }
  const keys = [...columns.keys()].sort((a, b) => a - b);
  const rowsMax = Math.max(1, ...[...columns.values()].map((c) => c.length));
  const width = keys.length * (W + GAP_X);
  const height = rowsMax * (H + GAP_Y) + GAP_Y;
  keys.forEach((key, x) => {
    columns.get(key).sort((a, b) => (a.position ?? 0) - (b.position ?? 0))
      .forEach((n, y) => Object.assign(n, { x: x * (W + GAP_X) + 10, y: y * (H + GAP_Y) + GAP_Y }));
  });
  const lines = edges.filter((e) => nodes.has(e.child) && nodes.has(e.parent)).map((e) => {
    const p = nodes.get(e.parent);
    const c = nodes.get(e.child);
    const x1 = p.x + W;
    const y1 = p.y + H / 2;
    const x2 = c.x;
    const y2 = c.y + H / 2;
    return svg("g", { class: "edge" },
      svg("path", { d: `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }),
      svg("title", {}, e.relation));
  });
  const boxes = [...nodes.values()].map((n) => {
    const label = `${n.entity_type ?? n.event_type ?? "?"}${n.version ? ` v${n.version}` : ""}`;
    const by = `${n.actor ?? "?"}${n.agent_id && n.agent_id !== "collab-server" && n.agent_id !== n.actor ? ` / ${n.agent_id}` : ""}`;
    const link = svg("a", { href: `#/daid/${encodeURIComponent(n.daid)}`, class: `node-box${n.daid === daid ? " root" : ""}` },
      svg("rect", { x: n.x, y: n.y, width: W, height: H, rx: 6 }),
      svg("text", { x: n.x + 8, y: n.y + 20 }, document.createTextNode(label)),
      svg("text", { x: n.x + 8, y: n.y + 38, class: "sub" }, document.createTextNode(by)),
      svg("title", {}, document.createTextNode(n.daid)));
    link.dataset.daid = n.daid;
    return link;
  });
  clear(holder).append(
    h("h3", {}, `Graph: ${nodes.size} nodes, ${edges.length} links`,
      up.truncated || down.truncated ? " (truncated)" : ""),
    svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "lineage-graph", role: "img" },
      svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z" }))),
      ...lines, ...boxes));
}
