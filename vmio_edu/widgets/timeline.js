// The swimlane timeline: the recorded trace as lanes of layer x thread, with the current position.
// Top: the whole trace (segments of consecutive entries in one lane). Bottom: a zoom on the events around
// the current position, one box per function entry. A click on either asks the kernel to goto there.
const NS = "http://www.w3.org/2000/svg";
const LABEL_W = 170, LANE_H = 12, DETAIL_LANE_H = 14, PAD = 4;

function svgEl(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "vmio-timeline";
  root.style.fontFamily = "var(--jp-ui-font-family, sans-serif)";
  root.style.fontSize = "10px";
  el.appendChild(root);

  function draw() {
    const data = model.get("data") || {};
    const detail = model.get("detail") || [];
    const index = model.get("index");
    const lanes = data.lanes || [], segs = data.segments || [], length = Math.max(1, data.length || 1);
    const width = Math.max(400, (el.clientWidth || root.clientWidth || 900) - 8);
    const plotW = width - LABEL_W - PAD;
    const overH = lanes.length * LANE_H;
    const detH = lanes.length * DETAIL_LANE_H;
    const height = overH + detH + 3 * PAD + 14;
    root.innerHTML = "";
    const svg = svgEl("svg", { width, height, "class": "vmio-timeline-svg" }, root);
    svg.style.cursor = "pointer";

    // lane labels and stripes, for both strips
    lanes.forEach((ln, k) => {
      for (const [y0, h] of [[k * LANE_H, LANE_H], [overH + 14 + 2 * PAD + k * DETAIL_LANE_H, DETAIL_LANE_H]]) {
        svgEl("rect", { x: LABEL_W, y: y0, width: plotW, height: h - 1, fill: k % 2 ? "#f6f6f6" : "#fcfcfc" }, svg);
        const t = svgEl("text", { x: LABEL_W - 4, y: y0 + h - 2, "text-anchor": "end", fill: ln.colour }, svg);
        t.textContent = ln.layer + " \u00b7 " + ln.thread;
      }
    });

    // overview: one rect per segment
    const xOf = (i) => LABEL_W + (i / length) * plotW;
    for (const [lane, start, end, fn, n] of segs) {
      const r = svgEl("rect", {
        x: xOf(start), y: lane * LANE_H + 2, width: Math.max(1, xOf(end + 1) - xOf(start)),
        height: LANE_H - 5, fill: lanes[lane].colour, "data-index": start,
      }, svg);
      const title = svgEl("title", {}, r);
      title.textContent = `${fn} \u2026 (${n} entries, #${start}-#${end})`;
    }
    // the current position over the whole trace
    if (index >= 0) {
      svgEl("line", { x1: xOf(index), x2: xOf(index), y1: 0, y2: overH, stroke: "#d00", "stroke-width": 2,
                      "class": "vmio-timeline-now" }, svg);
    }

    // detail strip
    const dy = overH + 14 + 2 * PAD;
    const cap = svgEl("text", { x: LABEL_W, y: overH + 12, fill: "#555" }, svg);
    cap.textContent = index >= 0 ? `around #${index} (click a box or the overview to go there)` : "not started";
    if (detail.length) {
      const lo = detail[0][1], hi = detail[detail.length - 1][1];
      const span = Math.max(1, hi - lo + 1);
      const dx = (i) => LABEL_W + ((i - lo) / span) * plotW;
      const boxW = Math.max(3, plotW / span - 1);
      for (const [lane, i, fn, depth] of detail) {
        const g = svgEl("g", { "data-index": i, "class": "vmio-timeline-box" }, svg);
        svgEl("rect", { x: dx(i), y: dy + lane * DETAIL_LANE_H + 1, width: boxW, height: DETAIL_LANE_H - 3,
                        fill: lanes[lane] ? lanes[lane].colour : "#999", opacity: i === index ? 1 : 0.55,
                        stroke: i === index ? "#d00" : "none", "stroke-width": 2, "data-index": i }, g);
        const t = svgEl("title", {}, g);
        t.textContent = `#${i} ${fn} (depth ${depth})`;
      }
      if (index >= lo && index <= hi) {
        svgEl("line", { x1: dx(index) + boxW / 2, x2: dx(index) + boxW / 2, y1: dy, y2: dy + detH,
                        stroke: "#d00", "stroke-width": 1 }, svg);
        const cur = detail.find((d) => d[1] === index);
        if (cur) {
          const right = dx(index) + boxW + 3 < width - 160;  // room on the right of the box, else on its left
          const lbl = svgEl("text", { x: right ? dx(index) + boxW + 3 : dx(index) - 3, y: dy + cur[0] * DETAIL_LANE_H + 11,
                                      "text-anchor": right ? "start" : "end", fill: "#000", "font-weight": "bold" }, svg);
          lbl.textContent = cur[2];
        }
      }
    }

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
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(() => draw()) : null;
  if (ro) ro.observe(el);
  return () => { if (ro) ro.disconnect(); };
}

export default { render };
