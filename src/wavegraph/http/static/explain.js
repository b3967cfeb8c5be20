// Draws GET /v1/explain/{node} with Observable Plot: a radial node-link chart (edge width ∝ attention)
// and a bar chart of the attention weights. The API key comes from the URL fragment (#key=...), which
// the browser does not send to the server; `document.body.dataset.status` ends as "ok" or "error".
"use strict";

function params() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  return {
    node: query.get("node") || "",
    hops: query.get("hops") || "1",
    limit: query.get("limit") || "50",
    key: fragment.get("key") || "",
  };
}

function fail(message) {
  document.getElementById("error").textContent = message;
  document.body.dataset.status = "error";
}

function layout(data) {
  const adjacent = new Set();
  for (const e of data.edges) {
    if (e.src === data.node) adjacent.add(e.dst);
    if (e.dst === data.node) adjacent.add(e.src);
  }
  const attention = new Map(data.attn.map((a) => [a.dst, a.weight]));
  const others = data.nodes.filter((n) => n.id !== data.node);
  const hop1 = others.filter((n) => adjacent.has(n.id) || attention.has(n.id));
  const hop2 = others.filter((n) => !(adjacent.has(n.id) || attention.has(n.id)));
  const pos = new Map([[data.node, { x: 0, y: 0, hop: 0 }]]);
  [hop1, hop2].forEach((ring, r) =>
    ring.forEach((n, i) => {
      const angle = (2 * Math.PI * i) / ring.length;
      pos.set(n.id, { x: (r + 1) * Math.sin(angle), y: (r + 1) * Math.cos(angle), hop: r + 1 });
    }),
  );
  const nodes = data.nodes.map((n) => ({ ...n, ...pos.get(n.id) }));
  const links = data.edges
    .filter((e) => pos.has(e.src) && pos.has(e.dst))
    .map((e) => {
      const other = e.src === data.node ? e.dst : e.dst === data.node ? e.src : null;
      const a = pos.get(e.src), b = pos.get(e.dst);
      return { ...e, x1: a.x, y1: a.y, x2: b.x, y2: b.y, attention: other === null ? null : attention.get(other) ?? null };
    });
  return { nodes, links };
}

function draw(data) {
  const { nodes, links } = layout(data);
  const top = Math.max(1e-12, ...data.attn.map((a) => a.weight));
  const graph = Plot.plot({
    width: 640, height: 640, inset: 60, axis: null, aspectRatio: 1,
    x: { domain: [-2.1, 2.1] }, y: { domain: [-2.1, 2.1] },
    marks: [
      Plot.link(links.filter((l) => l.attention === null), {
        x1: "x1", y1: "y1", x2: "x2", y2: "y2", stroke: "#adb5bd", strokeOpacity: 0.6, strokeWidth: 0.7,
      }),
      Plot.link(links.filter((l) => l.attention !== null), {
        x1: "x1", y1: "y1", x2: "x2", y2: "y2", stroke: "#e8590c", strokeOpacity: 0.8,
        strokeWidth: (l) => Math.max(0.5, (10 * l.attention) / top),
        title: (l) => `${l.src} → ${l.dst}: attention ${l.attention.toFixed(4)}`,
      }),
      Plot.dot(nodes, {
        x: "x", y: "y", r: (n) => 3 + 9 * Math.sqrt((n.pagerank || 0) / Math.max(1e-12, ...nodes.map((m) => m.pagerank || 0))),
        fill: (n) => ["#1c7ed6", "#495057", "#ced4da"][n.hop], stroke: "white",
        title: (n) => `${n.id}: PageRank ${n.pagerank}, degree ${n.degree}`,
      }),
      Plot.text(nodes.slice(0, 40), { x: "x", y: "y", text: "id", dy: -12, fontSize: 10 }),
    ],
  });
  graph.setAttribute("id", "graph-plot");
  document.getElementById("graph").replaceChildren(graph);
  const bars = Plot.plot({
    marginLeft: 120, width: 420, height: Math.max(120, 18 * data.attn.length + 40),
    x: { label: "HAA attention →", grid: true }, y: { label: null },
    marks: [
      Plot.barX(data.attn, { x: "weight", y: "dst", sort: { y: "-x" }, fill: "#e8590c" }),
      Plot.ruleX([0]),
    ],
  });
  bars.setAttribute("id", "bars-plot");
  document.getElementById("bars").replaceChildren(bars);
  const shown = data.attn.reduce((s, a) => s + a.weight, 0);
  document.getElementById("summary").textContent =
    `${data.node}: ${data.nodes.length - 1} nodes, ${data.edges.length} relationships; ` +
    `the ${data.attn.length} neighbours shown carry ${(100 * shown).toFixed(1)}% of its attention.`;
  document.body.dataset.status = "ok";
}

async function main() {
  const p = params();
  for (const name of ["node", "hops", "limit", "key"]) document.getElementById(name).value = p[name];
  document.getElementById("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const f = new FormData(event.target);
    const q = new URLSearchParams({ node: f.get("node"), hops: f.get("hops"), limit: f.get("limit") });
    location.assign(`/ui/explain?${q}#key=${encodeURIComponent(f.get("key"))}`);
  });
  if (!p.node || !p.key) {
    document.getElementById("summary").textContent = "Name a node and an API key, then press explain.";
    document.body.dataset.status = "idle";
    return;
  }
  const url = `/v1/explain/${encodeURIComponent(p.node)}?hops=${encodeURIComponent(p.hops)}&limit=${encodeURIComponent(p.limit)}`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${p.key}` } });
  const body = await response.json();
  if (!response.ok) return fail(`${response.status} ${body.error}: ${body.detail}`);
  draw(body);
}

main().catch((err) => fail(String(err)));
