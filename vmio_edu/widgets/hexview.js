// A hex view with fields overlaid: each region is rows of bytes; bytes that belong to a field are
// coloured, bytes that changed since the previous stop are marked (class vmio-changed), and hovering a
// byte or a legend entry highlights the whole field with its decoded value. In a region with a `source`
// (disk, qiov, io_buffer, pio) a click on a byte asks the kernel for its journey:
// {event: "byte", source, offset} (offset: the region's base + the byte's position).
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "vmio-hexview";
  root.style.fontFamily = "var(--jp-code-font-family, monospace)";
  root.style.fontSize = "11px";
  el.appendChild(root);

  function draw() {
    const regions = model.get("regions") || [];
    root.innerHTML = "";
    for (const reg of regions) {
      const box = document.createElement("div");
      box.className = "vmio-hex-region";
      box.style.marginBottom = "6px";
      if (reg.source) box.dataset.source = reg.source;
      const h = document.createElement("div");
      h.style.fontWeight = "bold";
      h.textContent = reg.title + (reg.source ? "  (click a byte to follow its journey)" : "");
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
      const changed = new Set(reg.changed || []);
      const cells = [];
      const pre = document.createElement("div");
      const W = reg.width || 16;
      for (let row = 0; row < bytes.length; row += W) {
        const line = document.createElement("div");
        line.style.whiteSpace = "pre";
        const off = document.createElement("span");
        off.style.color = "var(--jp-ui-font-color2, #888)";
        off.textContent = (reg.base + row).toString(16).padStart(reg.addr_digits || 5, "0") + "  ";
        line.appendChild(off);
        for (let j = row; j < Math.min(row + W, bytes.length); j++) {
          const c = document.createElement("span");
          c.textContent = bytes[j];
          c.className = "vmio-byte";
          c.style.padding = "0 1px";
          c.dataset.offset = String(reg.base + j);
          if (changed.has(j)) c.classList.add("vmio-changed");
          const k = owner[j];
          if (k >= 0) {
            const f = reg.fields[k];
            c.style.background = f.colour;
            c.style.color = "#000";
            c.title = `${f.name} @${f.offset} (${f.size} bytes) = ${f.value}`;
            c.dataset.field = k;
          } else {
            c.title = `offset ${reg.base + j} (0x${(reg.base + j).toString(16)})`;
          }
          if (reg.source) c.style.cursor = "pointer";
          cells.push(c);
          line.appendChild(c);
          line.appendChild(document.createTextNode(j % 8 === 7 ? "  " : " "));
        }
        pre.appendChild(line);
      }
      box.appendChild(pre);
      if (reg.more) {
        const more = document.createElement("div");
        more.style.color = "var(--jp-ui-font-color2, #888)";
        more.textContent = reg.more;
        box.appendChild(more);
      }
      const legend = document.createElement("div");
      legend.className = "vmio-hex-legend";
      (reg.fields || []).forEach((f, k) => {
        const item = document.createElement("span");
        item.style.background = f.colour;
        item.style.color = "#000";
        item.style.margin = "2px 6px 2px 0";
        item.style.padding = "0 4px";
        item.style.display = "inline-block";
        item.textContent = `${f.name} = ${f.value}`;
        if (f.changed) item.classList.add("vmio-changed");
        item.dataset.field = k;
        legend.appendChild(item);
      });
      box.appendChild(legend);
      const highlight = (k, on) => {
        for (const c of cells) if (c.dataset.field === String(k)) c.style.outline = on ? "2px solid var(--jp-ui-font-color0, #000)" : "";
      };
      box.addEventListener("mouseover", (ev) => { if (ev.target.dataset.field) highlight(ev.target.dataset.field, true); });
      box.addEventListener("mouseout", (ev) => { if (ev.target.dataset.field) highlight(ev.target.dataset.field, false); });
      if (reg.source) {
        box.addEventListener("click", (ev) => {
          const c = ev.target.closest ? ev.target.closest(".vmio-byte") : null;
          if (!c) return;
          for (const x of box.querySelectorAll(".vmio-byte.vmio-picked")) x.classList.remove("vmio-picked");
          c.classList.add("vmio-picked");
          model.send({ event: "byte", source: reg.source, offset: parseInt(c.dataset.offset, 10) });
        });
      }
      root.appendChild(box);
    }
  }
  draw();
  model.on("change:regions", draw);
}

export default { render };
