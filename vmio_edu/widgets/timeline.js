// The timeline: one lane per thread (the guest's own lane first), coloured by layer, and the current
// position. Top: the whole recorded trace. Bottom: a zoom on the events around the position, one box per
// function entry. A click on either asks the kernel to go there ({event: "goto", index}).
// Colours of text and stripes come from JupyterLab's CSS variables, so the light and dark themes both work.
const NS = "http://www.w3.org/2000/svg";
const LABEL_W = 130, LANE_H = 13, DETAIL_LANE_H = 15, PAD = 4, CAP_H = 13;

function svgEl(tag, attrs, parent, style) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (style) Object.assign(e.style, style);
  if (parent) parent.appendChild(e);
  return e;
}

// A panel whose kernel restarted (or died) still shows its last state but can no longer act: say so.
function watchKernel(model, el) {
  const wm = model.widget_manager;
  const kernel = wm && wm.kernel;
  if (!kernel || !kernel.statusChanged) return () => {};
  const onStatus = (_k, status) => {
    if (status === "restarting" || status === "autorestarting" || status === "dead") {
      const panel = el.closest(".vmio-panel") || el;
      if (panel.querySelector(".vmio-stale")) return;
      const b = document.createElement("div");
      b.className = "vmio-stale";
      b.textContent = "The kernel behind this panel has restarted, so the panel can no longer step or " +
        "go anywhere: re-run this cell (and the cells before it) to get a live panel.";
      panel.prepend(b);
      panel.classList.add("vmio-panel-stale");
    }
  };
  kernel.statusChanged.connect(onStatus);
  return () => { try { kernel.statusChanged.disconnect(onStatus); } catch (e) { /* gone */ } };
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "vmio-timeline";
  root.style.fontFamily = "var(--jp-ui-font-family, sans-serif)";
  root.style.fontSize = "10px";
  root.style.color = "var(--jp-ui-font-color1, #222)";
  el.appendChild(root);

  function draw() {
    const data = model.get("data") || {};
    const detail = model.get("detail") || [];
    const index = model.get("index");
    const lanes = data.lanes || [], segs = data.segments || [], exits = data.exits || [];
    const length = Math.max(1, data.length || 1);
    const colour = {};
    for (const l of data.layers || []) colour[l.layer] = l.colour;
    const width = Math.max(400, (el.clientWidth || root.clientWidth || 900) - 4);
    const plotW = width - LABEL_W - PAD;
    const overH = lanes.length * LANE_H;
    const dy = overH + CAP_H + PAD;
    const detH = lanes.length * DETAIL_LANE_H;
    const height = dy + detH + 2;
    root.innerHTML = "";
    const svg = svgEl("svg", { width, height, "class": "vmio-timeline-svg" }, root, { cursor: "pointer" });

    lanes.forEach((ln, k) => {
      for (const [y0, h] of [[k * LANE_H, LANE_H], [dy + k * DETAIL_LANE_H, DETAIL_LANE_H]]) {
        svgEl("rect", { x: LABEL_W, y: y0, width: plotW, height: h - 1 }, svg,
              { fill: k % 2 ? "var(--jp-layout-color2, #eee)" : "var(--jp-layout-color1, #fafafa)" });
        const t = svgEl("text", { x: LABEL_W - 4, y: y0 + h - 3, "text-anchor": "end" }, svg,
                        { fill: "var(--jp-ui-font-color1, #222)" });
        t.textContent = ln.label || ln.thread;
      }
    });

    const xOf = (i) => LABEL_W + (i / length) * plotW;
    for (const [lane, start, end, fn, n, layer, go] of segs) {
      const r = svgEl("rect", {
        x: xOf(start), y: lane * LANE_H + 2, width: Math.max(1.5, xOf(end + 1) - xOf(start)),
        height: LANE_H - 4, fill: colour[layer] || "#999", "data-index": go === undefined ? start : go,
        "class": "vmio-seg", "data-layer": layer,
      }, svg);
      svgEl("title", {}, r).textContent = `${layer}: ${fn}${n > 1 ? " \u2026" : ""} (#${start}-#${end})`;
    }
    for (const [i, label] of exits) {  // VM exits: ticks on the guest lane
      const t = svgEl("rect", { x: xOf(i), y: 0, width: 1, height: LANE_H - 1, "data-index": i,
                                "class": "vmio-exit" }, svg, { fill: "var(--jp-ui-font-color2, #666)" });
      svgEl("title", {}, t).textContent = `#${i} ${label}`;
    }
    if (index >= 0) {
      svgEl("line", { x1: xOf(index), x2: xOf(index), y1: 0, y2: overH, "stroke-width": 2,
                      "class": "vmio-timeline-now" }, svg, { stroke: "var(--jp-brand-color1, #1976d2)" });
    }

    const cap = svgEl("text", { x: LABEL_W, y: overH + CAP_H - 2 }, svg, { fill: "var(--jp-ui-font-color2, #666)" });
    cap.textContent = index >= 0 ? `zoom around #${index}: click a box (or the strip above) to go there`
                                 : "not started: click the strip above to go to a moment";
    if (detail.length) {
      const lo = detail[0][1], hi = detail[detail.length - 1][1];
      const span = Math.max(1, hi - lo + 1);
      const dx = (i) => LABEL_W + ((i - lo) / span) * plotW;
      const boxW = Math.max(3, plotW / span - 1);
      for (const [lane, i, fn, depth, layer] of detail) {
        const g = svgEl("g", { "data-index": i, "class": "vmio-timeline-box" }, svg);
        svgEl("rect", { x: dx(i), y: dy + lane * DETAIL_LANE_H + 1, width: boxW, height: DETAIL_LANE_H - 3,
                        fill: colour[layer] || (layer === "guest" ? "#9467bd" : "#999"),
                        opacity: i === index ? 1 : 0.6, "stroke-width": 2, "data-index": i }, g,
              { stroke: i === index ? "var(--jp-ui-font-color0, #000)" : "none" });
        svgEl("title", {}, g).textContent = `#${i} ${fn}` + (layer ? ` [${layer}]` : "");
      }
      const cur = detail.find((d) => d[1] === index);
      if (cur) {
        const right = dx(index) + boxW + 3 < width - 180;
        const lbl = svgEl("text", { x: right ? dx(index) + boxW + 3 : dx(index) - 3,
                                    y: dy + cur[0] * DETAIL_LANE_H + 11, "text-anchor": right ? "start" : "end",
                                    "font-weight": "bold", "class": "vmio-timeline-label" }, svg,
                          { fill: "var(--jp-ui-font-color0, #000)" });
        lbl.textContent = cur[2];
      }
    }

    const legend = document.createElement("div");
    legend.className = "vmio-timeline-legend";
    legend.style.paddingLeft = LABEL_W + "px";
    for (const l of data.layers || []) {
      const it = document.createElement("span");
      it.style.marginRight = "8px";
      it.style.whiteSpace = "nowrap";
      it.innerHTML = `<span style="display:inline-block;width:9px;height:9px;background:${l.colour};` +
                     `margin-right:3px;vertical-align:middle"></span>`;
      it.appendChild(document.createTextNode(l.layer));
      legend.appendChild(it);
    }
    root.appendChild(legend);

    svg.addEventListener("click", (ev) => {
      const hit = ev.target.closest ? ev.target.closest("[data-index]") : null;
      let i = hit ? parseInt(hit.getAttribute("data-index"), 10) : NaN;
      if (isNaN(i)) {
        const box = svg.getBoundingClientRect();
        const x = ev.clientX - box.left;
        if (x < LABEL_W || ev.clientY - box.top > overH) return;
        i = Math.round(((x - LABEL_W) / plotW) * length);
      }
      model.send({ event: "goto", index: Math.max(0, Math.min(length - 1, i)) });
    });
  }

  draw();
  model.on("change:data", draw);
  model.on("change:detail", draw);
  model.on("change:index", draw);
  const unwatch = watchKernel(model, el);
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => draw()) : null;
  if (ro) ro.observe(el);
  return () => { if (ro) ro.disconnect(); unwatch(); };
}

export default { render };
