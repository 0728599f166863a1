/* evaluate.py --report: sortable tables, the layer view's model switch, and the pixel inspector.
   Runs from file:// with no server: per-image pixel data comes as <script src="pixels/ID.js"> files that fill
   window.REPORT_PIXELS with PNG data URLs (data URLs keep the canvas readable where file:// images would not),
   and for classification models the top bins of a grid of output pixels (class_views.inspector_grid), drawn on
   the ab plane with the bins of window.REPORT_CLASSES. */
"use strict";
(function () {
  // ---- sortable tables: a click on a header with data-col sorts by that body column (again: reversed)
  function sortKey(row, col, numeric) {
    const cell = row.cells[col];
    const value = cell ? cell.dataset.value : undefined;
    if (!numeric) return value || "";
    return value === undefined || value === "" ? NaN : Number(value);
  }

  function sortBy(th) {
    const table = th.closest("table");
    const body = table.tBodies[0];
    const col = Number(th.dataset.col);
    const numeric = th.dataset.type === "num";
    const dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    table.querySelectorAll("th[data-col]").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    const rows = Array.from(body.rows);
    rows.sort((x, y) => {
      const a = sortKey(x, col, numeric), b = sortKey(y, col, numeric);
      if (numeric) {  // undefined values (NaN, inf) last in both directions
        if (!isFinite(a)) return isFinite(b) ? 1 : 0;
        if (!isFinite(b)) return -1;
        return dir * (a - b);
      }
      return dir * a.localeCompare(b, undefined, {numeric: true});
    });
    rows.forEach((r) => body.appendChild(r));
  }

  document.querySelectorAll("th[data-col]").forEach((th) => {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortBy(th));
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(th); });
  });

  // ---- layer view: one model's layers at a time
  const layerModel = document.getElementById("layer-model");
  if (layerModel) {
    const show = () => document.querySelectorAll(".layer-set").forEach((set) => {
      set.hidden = set.dataset.model !== layerModel.value;
    });
    layerModel.addEventListener("change", show);
    show();
  }

  // ---- colour maths: the same as gan_colorizer/color.py and metrics.delta_e2000_map (scikit-image's)
  function linear(v) {
    v /= 255;
    return v > 0.04045 ? Math.pow((v + 0.055) / 1.055, 2.4) : v / 12.92;
  }

  function rgbToLab(r, g, b) {
    const R = linear(r), G = linear(g), B = linear(b);
    const x = (0.412453 * R + 0.357580 * G + 0.180423 * B) / 0.95047;
    const y = 0.212671 * R + 0.715160 * G + 0.072169 * B;
    const z = (0.019334 * R + 0.119193 * G + 0.950227 * B) / 1.08883;
    const f = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
    const fx = f(x), fy = f(y), fz = f(z);
    return [116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)];
  }

  function hue(b, a) {
    const h = Math.atan2(b, a);
    return h < 0 ? h + 2 * Math.PI : h;
  }

  function ciede2000(lab1, lab2) {
    const [l1, a1, b1] = lab1, [l2, a2, b2] = lab2;
    const twoPi = 2 * Math.PI, rad = Math.PI / 180, p7 = Math.pow(25, 7);
    let cBar = 0.5 * (Math.hypot(a1, b1) + Math.hypot(a2, b2));
    const g = 0.5 * (1 - Math.sqrt(Math.pow(cBar, 7) / (Math.pow(cBar, 7) + p7)));
    const c1 = Math.hypot(a1 * (1 + g), b1), h1 = hue(b1, a1 * (1 + g));
    const c2 = Math.hypot(a2 * (1 + g), b2), h2 = hue(b2, a2 * (1 + g));
    const lBar = 0.5 * (l1 + l2);
    const sl = 1 + 0.015 * (lBar - 50) ** 2 / Math.sqrt(20 + (lBar - 50) ** 2);
    const lTerm = (l2 - l1) / sl;
    cBar = 0.5 * (c1 + c2);
    const cTerm = (c2 - c1) / (1 + 0.045 * cBar);
    const hDiff = h2 - h1, hSum = h1 + h2, cc = c1 * c2;
    let dh = hDiff > Math.PI ? hDiff - twoPi : hDiff < -Math.PI ? hDiff + twoPi : hDiff;
    if (cc === 0) dh = 0;
    const dhTerm = 2 * Math.sqrt(cc) * Math.sin(dh / 2);
    let hBar = cc !== 0 && Math.abs(hDiff) > Math.PI ? (hSum < twoPi ? hSum + twoPi : hSum - twoPi) : hSum;
    hBar = (cc === 0 ? hBar * 2 : hBar) * 0.5;
    const t = 1 - 0.17 * Math.cos(hBar - 30 * rad) + 0.24 * Math.cos(2 * hBar) +
      0.32 * Math.cos(3 * hBar + 6 * rad) - 0.20 * Math.cos(4 * hBar - 63 * rad);
    const hTerm = dhTerm / (1 + 0.015 * cBar * t);
    const rc = 2 * Math.sqrt(Math.pow(cBar, 7) / (Math.pow(cBar, 7) + p7));
    const dTheta = 30 * rad * Math.exp(-(((hBar / rad - 275) / 25) ** 2));
    const rTerm = -Math.sin(2 * dTheta) * rc * cTerm * hTerm;
    return Math.sqrt(Math.max(0, lTerm ** 2 + cTerm ** 2 + hTerm ** 2 + rTerm));
  }

  // ---- pixel inspector
  window.REPORT_PIXELS = window.REPORT_PIXELS || {};
  const pixels = {};  // card id -> "loading" | "failed" | {width, height, truth: RGBA bytes, models: {label: RGBA}}
  const panel = document.getElementById("inspector-body");
  let pointer = null;  // {card, x, y} under the mouse

  function readPng(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => {
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const ctx = canvas.getContext("2d", {willReadFrequently: true});
        ctx.drawImage(img, 0, 0);
        resolve({width: canvas.width, height: canvas.height,
                 data: ctx.getImageData(0, 0, canvas.width, canvas.height).data});
      };
      img.onerror = () => reject(new Error("cannot decode"));
      img.src = url;
    });
  }

  async function decode(id) {
    const entry = window.REPORT_PIXELS[id];
    const truth = await readPng(entry.truth);
    const models = {};
    for (const [label, url] of Object.entries(entry.models)) models[label] = (await readPng(url)).data;
    const dists = {};
    for (const [label, d] of Object.entries(entry.dists || {})) {
      dists[label] = {net: d.net, grid: d.grid, k: d.k, index: words(d.index), prob: words(d.prob)};
    }
    pixels[id] = {width: truth.width, height: truth.height, truth: truth.data, models: models, dists: dists};
    render();
  }

  function words(base64) {  // little-endian uint16 values packed by class_views.inspector_grid
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const view = new DataView(bytes.buffer), out = new Uint16Array(bytes.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
    return out;
  }

  // ---- a classification model's predicted distribution at the pixel: the nearest sampled output pixel
  function distributionAt(dist, x, y, width, height) {
    const [gw, gh] = dist.grid, [nw, nh] = dist.net;
    const i = Math.min(gw - 1, Math.floor((x + 0.5) / width * gw));
    const j = Math.min(gh - 1, Math.floor((y + 0.5) / height * gh));
    const at = (j * gw + i) * dist.k, top = [];
    for (let n = 0; n < dist.k; n++) top.push([dist.index[at + n], dist.prob[at + n] / 65535]);
    return {netX: Math.floor((i + 0.5) * nw / gw), netY: Math.floor((j + 0.5) * nh / gh), top: top};
  }

  const AB_EXTENT = 115, DECADES = 5;  // as inspect/ab_histograms.py draws the ab plane: opacity = log density, 5 decades
  function drawDistribution(canvas, bins, top, truthLab, shownLab) {
    const ctx = canvas.getContext("2d"), s = canvas.width / (2 * AB_EXTENT), cell = 10 * s;
    const px = (a) => (a + AB_EXTENT) * s, py = (b) => (AB_EXTENT - b) * s;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = "#ececec";  // the bin set: the sRGB gamut
    for (const [a, b] of bins.ab) ctx.fillRect(px(a - 5), py(b + 5), cell, cell);
    const peak = top[0][1];
    for (const [q, p] of top) {
      if (!(p > 0)) continue;
      const alpha = Math.max(0, Math.min(1, 1 + Math.log10(p / peak) / DECADES));
      const [r, g, b] = bins.rgb[q], [qa, qb] = bins.ab[q];
      ctx.fillStyle = `rgba(${r},${g},${b},${alpha})`;
      ctx.fillRect(px(qa - 5), py(qb + 5), cell, cell);
    }
    ctx.strokeStyle = "#999";
    ctx.lineWidth = 0.5;
    ctx.beginPath();
    ctx.moveTo(px(0), 0); ctx.lineTo(px(0), canvas.height); ctx.moveTo(0, py(0)); ctx.lineTo(canvas.width, py(0));
    ctx.stroke();
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1.5;
    const [ta, tb] = [px(truthLab[1]), py(truthLab[2])];  // the truth: a cross
    ctx.beginPath();
    ctx.moveTo(ta - 4, tb - 4); ctx.lineTo(ta + 4, tb + 4); ctx.moveTo(ta - 4, tb + 4); ctx.lineTo(ta + 4, tb - 4);
    ctx.stroke();
    ctx.beginPath();  // the model's shown (decoded) ab: a circle
    ctx.arc(px(shownLab[1]), py(shownLab[2]), 4, 0, 2 * Math.PI);
    ctx.stroke();
  }

  function distributionFigure(label, dist, x, y, width, height) {
    const d = distributionAt(dist, x, y, width, height), bins = (window.REPORT_CLASSES || {})[label];
    if (!bins) return {html: "", draw: null};
    const [a, b] = bins.ab[d.top[0][0]], held = d.top.reduce((sum, t) => sum + t[1], 0);
    const html = `<figure class="dist" data-source="${esc(label)}"><canvas width="150" height="150"></canvas>` +
      `<figcaption><b>${esc(label)}</b> at output pixel (<span data-field="net-x">${d.netX}</span>, ` +
      `<span data-field="net-y">${d.netY}</span>): top bin (<span data-field="top-a">${a}</span>, ` +
      `<span data-field="top-b">${b}</span>) p <span data-field="top-p">${d.top[0][1].toFixed(4)}</span>; ` +
      `${d.top.length} bins hold ${(100 * held).toFixed(0)}%; \u00d7 truth, \u25cb shown</figcaption></figure>`;
    return {html: html, draw: (canvas, truthLab, shownLab) => drawDistribution(canvas, bins, d.top, truthLab, shownLab)};
  }

  function load(id) {
    if (pixels[id]) return;
    pixels[id] = "loading";
    const script = document.createElement("script");
    script.src = "pixels/" + id + ".js";
    script.onload = () => decode(id).catch(() => { pixels[id] = "failed"; render(); });
    script.onerror = () => { pixels[id] = "failed"; render(); };
    document.head.appendChild(script);
  }

  const fmt = (v) => (Math.abs(v) < 0.005 ? 0 : v).toFixed(2);  // no "-0.00"
  const esc = (s) => s.replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);

  function render() {
    if (!pointer || !panel) return;
    const {card, x, y} = pointer;
    const id = card.dataset.id, data = pixels[id];
    const head = `<div class="where"><b>${esc(card.dataset.name)}</b> pixel (<span data-field="x">${x}</span>, ` +
      `<span data-field="y">${y}</span>)</div>`;
    if (data === "loading" || data === undefined) { panel.innerHTML = head + "loading pixel data\u2026"; return; }
    if (data === "failed") { panel.innerHTML = head + "pixel data could not be read"; return; }
    const at = 4 * (y * data.width + x);
    const rgb = (bytes) => [bytes[at], bytes[at + 1], bytes[at + 2]];
    const truthRgb = rgb(data.truth), truthLab = rgbToLab(...truthRgb);
    const swatch = (c) => `<span class="swatch" style="background: rgb(${c.join(",")})"></span>`;
    let rows = `<tr data-source="ground truth"><th>${swatch(truthRgb)}ground truth</th>` +
      `<td data-field="a">${fmt(truthLab[1])}</td><td data-field="b">${fmt(truthLab[2])}</td><td>\u2013</td></tr>`;
    const labs = {}, figures = [];
    for (const [label, bytes] of Object.entries(data.models)) {
      const c = rgb(bytes), lab = rgbToLab(...c);
      labs[label] = lab;
      rows += `<tr data-source="${esc(label)}"><th>${swatch(c)}${esc(label)}</th><td data-field="a">${fmt(lab[1])}</td>` +
        `<td data-field="b">${fmt(lab[2])}</td><td data-field="de">${fmt(ciede2000(lab, truthLab))}</td></tr>`;
    }
    for (const [label, dist] of Object.entries(data.dists || {})) {
      figures.push([label, distributionFigure(label, dist, x, y, data.width, data.height)]);
    }
    const dists = figures.map(([, f]) => f.html).join("");
    panel.innerHTML = head + `<div>L (input) <b data-field="L">${fmt(truthLab[0])}</b></div>` +
      `<table><thead><tr><th></th><th>a</th><th>b</th><th>\u0394E00</th></tr></thead><tbody>${rows}</tbody></table>` +
      (dists ? `<div class="dists">${dists}</div>` : "");
    for (const [label, f] of figures) {
      const canvas = panel.querySelector(`figure.dist[data-source="${CSS.escape(label)}"] canvas`);
      if (f.draw && canvas) f.draw(canvas, truthLab, labs[label]);
    }
  }

  function moveMarks(card, x, y, width, height) {
    card.querySelectorAll("img.inspect").forEach((img) => {
      const mark = img.parentElement.querySelector(".mark");
      if (!mark) return;
      mark.hidden = false;
      mark.style.left = ((x + 0.5) / width * img.clientWidth) + "px";
      mark.style.top = ((y + 0.5) / height * img.clientHeight) + "px";
    });
  }

  document.querySelectorAll("img.inspect").forEach((img) => {
    const card = img.closest(".card");
    img.addEventListener("mouseenter", () => load(card.dataset.id));
    img.addEventListener("mousemove", (e) => {
      const box = img.getBoundingClientRect();
      const w = img.naturalWidth, h = img.naturalHeight;
      const x = Math.min(w - 1, Math.max(0, Math.floor((e.clientX - box.left) / box.width * w)));
      const y = Math.min(h - 1, Math.max(0, Math.floor((e.clientY - box.top) / box.height * h)));
      pointer = {card: card, x: x, y: y};
      load(card.dataset.id);
      moveMarks(card, x, y, w, h);
      render();
    });
    img.addEventListener("mouseleave", () => card.querySelectorAll(".mark").forEach((m) => { m.hidden = true; }));
  });
})();
