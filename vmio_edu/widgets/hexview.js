// A hex view with fields overlaid: each region is rows of 16 bytes; bytes that belong to a field are
// coloured, and hovering a byte or a legend entry highlights the whole field with its decoded value.
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "vmio-hexview";
  root.style.fontFamily = "var(--jp-code-font-family, monospace)";
  root.style.fontSize = "12px";
  el.appendChild(root);

  function draw() {
    const regions = model.get("regions") || [];
    root.innerHTML = "";
    for (const reg of regions) {
      const box = document.createElement("div");
      box.style.marginBottom = "8px";
      const h = document.createElement("div");
      h.style.fontWeight = "bold";
      h.textContent = reg.title;
      box.appendChild(h);
      const bytes = [];
      for (let i = 0; i < reg.hex.length; i += 2) bytes.push(reg.hex.substr(i, 2));
      const owner = new Array(bytes.length).fill(-1);
      (reg.fields || []).forEach((f, k) => {
        for (let j = 0; j < f.size; j++) {
          const at = f.offset - reg.base + j;
          if (at >= 0 && at < owner.length) owner[at] = k;
        }
      });
      const cells = [];
      const pre = document.createElement("div");
      const W = reg.width || 16;
      for (let row = 0; row < bytes.length; row += W) {
        const line = document.createElement("div");
        line.style.whiteSpace = "pre";
        const off = document.createElement("span");
        off.style.color = "#888";
        off.textContent = (reg.base + row).toString(16).padStart(5, "0") + "  ";
        line.appendChild(off);
        for (let j = row; j < Math.min(row + W, bytes.length); j++) {
          const c = document.createElement("span");
          c.textContent = bytes[j];
          c.style.padding = "0 2px";
          const k = owner[j];
          if (k >= 0) {
            const f = reg.fields[k];
            c.style.background = f.colour;
            c.title = `${f.name} @${f.offset} (${f.size} bytes) = ${f.value}`;
            c.dataset.field = k;
          }
          cells.push(c);
          line.appendChild(c);
          line.appendChild(document.createTextNode(j % 8 === 7 ? "  " : " "));
        }
        pre.appendChild(line);
      }
      box.appendChild(pre);
      const legend = document.createElement("div");
      legend.className = "vmio-hex-legend";
      (reg.fields || []).forEach((f, k) => {
        const item = document.createElement("span");
        item.style.background = f.colour;
        item.style.margin = "2px 6px 2px 0";
        item.style.padding = "0 4px";
        item.style.display = "inline-block";
        item.textContent = `${f.name} = ${f.value}`;
        item.dataset.field = k;
        legend.appendChild(item);
      });
      box.appendChild(legend);
      const highlight = (k, on) => {
        for (const c of cells) if (c.dataset.field === String(k)) c.style.outline = on ? "2px solid #000" : "";
      };
      box.addEventListener("mouseover", (ev) => { if (ev.target.dataset.field) highlight(ev.target.dataset.field, true); });
      box.addEventListener("mouseout", (ev) => { if (ev.target.dataset.field) highlight(ev.target.dataset.field, false); });
      root.appendChild(box);
    }
  }
  draw();
  model.on("change:regions", draw);
}

export default { render };
