/* evolens report: the image-effect and probe sections. They register here and report.js draws them with its
   helpers ($, el, fmt, tint, escapeHtml, layerAxis, stageShapes, PLOT_CONFIG, STYLE); the numbers are
   summary.json's, as the analysis wrote them. */
(function () {
  "use strict";

  const sections = (window.evolensSections = window.evolensSections || []);

  function colour(h, index) {
    const colours = h.STYLE.series_colors;
    return colours[index % colours.length];
  }

  function bandTraces(h, x, entry, name, index, hover) {
    const group = "g" + index;
    return [
      { x, y: entry.high, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false, legendgroup: group },
      { x, y: entry.low, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: h.tint(colour(h, index), 0.18),
        hoverinfo: "skip", showlegend: false, legendgroup: group },
      { x, y: entry.mean ?? entry.accuracy, mode: "lines+markers", marker: { size: 4 }, name: h.escapeHtml(name),
        line: { color: colour(h, index), width: 2 }, legendgroup: group, meta: h.escapeHtml(name), hovertemplate: hover },
    ];
  }

  function notComputed(h, body, reason) {
    body.append(h.el("p", { class: "lead not-computed", text: `Not computed: ${reason}` }));
  }

  function renderImageEffect(DATA, h) {
    const effect = DATA.image_effect;
    if (!effect) { h.$("image-effect").hidden = true; return; }
    const grid = h.$("image-effect-grid");
    if (effect.reason) { notComputed(h, grid, effect.reason); return; }
    const counts = effect.conditions.map((c) => `${c.name}: ${c.n_images} images, ${c.n_tokens} tokens`).join("; ");
    h.$("image-effect-lead").textContent = `Bands: ${effect.band}; resampled: ${effect.resampled}. ${counts}.`;
    // every grid cell first, then the plots (a plot drawn while its grid is filling takes the wrong width)
    const divs = effect.metrics.map((metric) => h.el("div", { id: "effect-" + metric.key, class: "effect-plot" }));
    grid.append(...divs);
    effect.metrics.forEach((metric, m) => {
      const traces = metric.curves.flatMap((curve, index) =>
        bandTraces(h, metric.layers, curve, `real − ${curve.condition}`, index,
                   "%{meta}<br>layer %{x}: %{y:.4f}<extra></extra>"));
      const zero = { type: "line", xref: "paper", yref: "y", x0: 0, x1: 1, y0: 0, y1: 0, line: { color: "#444", width: 1, dash: "dash" } };
      Plotly.newPlot(divs[m], traces, {
        title: { text: "Δ " + h.escapeHtml(metric.label), font: { size: 14 } }, margin: { l: 55, r: 15, t: 40, b: 45 },
        xaxis: h.layerAxis(), shapes: [...h.stageShapes(false), zero], hovermode: "x",
        showlegend: true, legend: { orientation: "h", y: -0.25 },
      }, h.PLOT_CONFIG);
    });
  }

  function renderProbes(DATA, h) {
    const probes = DATA.probes;
    if (!probes) { h.$("probes").hidden = true; return; }
    const grid = h.$("probe-grid");
    if (probes.reason) { notComputed(h, grid, probes.reason); return; }
    h.$("probes-lead").textContent = `State: ${probes.state}. Cross-validation: ${probes.cross_validation}. ` +
      `Intervals: ${probes.interval}.`;
    const cells = probes.prompts.map((entry) => {
      const cell = h.el("div", { class: "probe-cell" });
      const asked = entry.asked ? `asked: ${entry.asked}, control: ${entry.control}` : "asks no attribute";
      cell.append(h.el("h3", { text: `“${entry.prompt}” (${asked})` }));
      if (entry.reason) { notComputed(h, cell, entry.reason); return [cell, null, entry]; }
      const skipped = entry.attributes.filter((a) => a.reason).map((a) => `${a.name}: ${a.reason}`);
      const plot = h.el("div", { class: "probe-plot" });
      cell.append(plot);
      if (skipped.length) cell.append(h.el("p", { class: "muted", text: "Not probed: " + skipped.join("; ") }));
      return [cell, plot, entry];
    });
    grid.append(...cells.map(([cell]) => cell));
    for (const [, plot, entry] of cells) {
      if (!plot) continue;
      const traces = [];
      entry.attributes.forEach((probe, index) => {
        if (probe.reason) return;
        const name = `${probe.name} (${probe.role})`;
        const drawn = bandTraces(h, probe.layers, probe, name, index, "%{meta}<br>layer %{x}: %{y:.3f}<extra></extra>");
        drawn[2].line.width = probe.role === "asked" ? 3 : 1.8;
        if (probe.role === "not asked") drawn[2].line.dash = "dash";
        const ends = [probe.layers[0], probe.layers[probe.layers.length - 1]];
        traces.push(...drawn, { x: ends, y: [probe.chance, probe.chance], mode: "lines", legendgroup: "g" + index,
          line: { color: colour(h, index), width: 1, dash: "dot" }, showlegend: false, meta: h.escapeHtml(probe.name),
          hovertemplate: "chance (%{meta}): %{y:.3f}<extra></extra>" });
      });
      Plotly.newPlot(plot, traces, {
        margin: { l: 55, r: 15, t: 10, b: 45 }, xaxis: h.layerAxis(),
        yaxis: { title: { text: "held-out accuracy" }, range: [0, 1.03] }, shapes: h.stageShapes(false),
        showlegend: true, legend: { orientation: "h", y: -0.25 }, hovermode: "closest",
      }, h.PLOT_CONFIG);
    }
  }

  sections.push((DATA, helpers) => { renderImageEffect(DATA, helpers); renderProbes(DATA, helpers); });
})();
