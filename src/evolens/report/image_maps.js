/* evolens report: the image section. Per analysed sample, each probe word's lens probability at every image
   token, drawn over the image as boxes, one layer at a time (the slider); and the shapes world's
   localisation score per layer with its bootstrap interval. Numbers are summary.json's. */
(function () {
  "use strict";

  const sections = (window.evolensSections = window.evolensSections || []);
  const SVG = "http://www.w3.org/2000/svg";
  const SIDE = 132;

  function heat(value) {
    // 0 -> near white, 1 -> deep magenta (one scale per word: value is p / max over layers and tokens)
    const v = Math.max(0, Math.min(1, value));
    const r = Math.round(252 - 120 * v), g = Math.round(247 - 230 * v), b = Math.round(250 - 130 * v);
    return `rgb(${r},${g},${b})`;
  }

  function wordMap(h, entry, word) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 1 1");
    svg.setAttribute("width", SIDE);
    svg.setAttribute("height", SIDE);
    svg.setAttribute("class", "image-map");
    svg.setAttribute("preserveAspectRatio", "none");
    const rects = entry.boxes.map(([x0, y0, x1, y1]) => {
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", x0); rect.setAttribute("y", y0);
      rect.setAttribute("width", Math.max(0, x1 - x0)); rect.setAttribute("height", Math.max(0, y1 - y0));
      rect.appendChild(document.createElementNS(SVG, "title"));
      svg.appendChild(rect);
      return rect;
    });
    const top = Math.max(1e-12, ...entry.probs[word].flat());
    function show(layer) {
      entry.probs[word][layer].forEach((p, t) => {
        rects[t].setAttribute("fill", heat(p / top));
        rects[t].dataset.p = String(p);
        const first = entry.top1 ? ` · top-1 ${entry.top1[layer][t]}` : "";
        rects[t].firstChild.textContent = `${entry.words[word]}: ${h.fmt(p)}${first}`;
      });
    }
    const cell = h.el("figure", { class: "image-map-cell" });
    cell.append(svg, h.el("figcaption", { text: `${entry.words[word]} (max ${h.fmt(top)})` }));
    return { cell, show };
  }

  function renderMap(h, entry, index) {
    const block = h.el("div", { class: "image-map-block" });
    block.append(h.el("h3", { text: `${entry.sample_id} (${entry.view || "image"} view)` }));
    if (!entry.words.length) {
      block.append(h.el("p", { class: "lead", text: "No probe word: the sample generated no content word." }));
      return block;
    }
    const nLayers = entry.probs[0].length - 1;
    const label = h.el("span", { class: "image-map-layer" });
    const slider = h.el("input", { type: "range", min: "0", max: String(nLayers), value: String(nLayers) });
    slider.id = "image-map-slider-" + index;
    const maps = entry.words.map((_, word) => wordMap(h, entry, word));
    const row = h.el("div", { class: "image-map-row" });
    row.append(...maps.map((m) => m.cell));
    function show() {
      const layer = Number(slider.value);
      label.textContent = `layer ${layer}`;
      maps.forEach((m) => m.show(layer));
    }
    slider.addEventListener("input", show);
    const controls = h.el("div", { class: "image-map-controls" });
    controls.append(slider, label);
    block.append(controls, row);
    show();
    return block;
  }

  function renderLocalisation(h, found, body) {
    if (!found) return;
    const lead = `${found.scored} of ${found.scenes} single-object scenes scored (${found.unscored} lack the ` +
      `colour among their probe words). A hit: ${found.hit}. Band: 95% bootstrap over scenes.`;
    body.append(h.el("p", { class: "lead", id: "localisation-lead", text: lead }));
    if (!found.score.length) return;
    const div = h.el("div", { id: "localisation-plot", class: "effect-plot" });
    body.append(div);
    const x = found.score.map((_, layer) => layer);
    const colour = h.STYLE.series_colors[0];
    Plotly.newPlot(div, [
      { x, y: found.high, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      { x, y: found.low, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: h.tint(colour, 0.18),
        hoverinfo: "skip", showlegend: false },
      { x, y: found.score, mode: "lines+markers", name: "localisation", line: { color: colour, width: 2 },
        hovertemplate: "layer %{x}: %{y:.2f}<extra></extra>" },
    ], {
      title: { text: "Localisation: colour word peaks on the object's cell", font: { size: 14 } },
      margin: { l: 55, r: 15, t: 40, b: 45 }, xaxis: h.layerAxis(), shapes: h.stageShapes(false),
      yaxis: { title: { text: "share of scenes" }, range: [0, 1.03] }, hovermode: "x",
    }, h.PLOT_CONFIG);
  }

  function renderImageMaps(DATA, h) {
    const section = DATA.image_maps;
    if (!section) { h.$("image-maps").hidden = true; return; }
    const body = h.$("image-maps-body");
    renderLocalisation(h, section.localisation, body);
    section.maps.forEach((entry, index) => body.append(renderMap(h, entry, index)));
  }

  sections.push(renderImageMaps);
})();
