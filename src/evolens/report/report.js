/* evolens report: renders the JSON in #report-data with plotly.js (inlined above). No network access. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const L = DATA.n_layers;
  const LAYERS = Array.from({ length: L + 1 }, (_, i) => i);
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  const STAGE_COLORS = ["rgba(253,174,107,0.22)", "rgba(107,174,214,0.20)", "rgba(231,41,138,0.14)", "rgba(120,120,120,0.12)"];
  const PURPLES = [[0, "#fcfbfd"], [0.125, "#efedf5"], [0.25, "#dadaeb"], [0.375, "#bcbddc"], [0.5, "#9e9ac8"],
                   [0.625, "#807dba"], [0.75, "#6a51a3"], [0.875, "#54278f"], [1, "#3f007d"]];
  const SERIES_COLORS = ["#6a51a3", "#e6550d", "#31a354", "#3182bd", "#d6616b", "#8c6d31"];
  const METRICS = {
    jsd_next: { label: "JSD to the previous layer (nats)", first: 1, zmin: 0, zmax: null, digits: 3 },
    prob: { label: "probability of the emitted token", first: 0, zmin: 0, zmax: 1, digits: 2 },
    entropy: { label: "entropy (nats)", first: 0, zmin: 0, zmax: null, digits: 2 },
    jsd_last: { label: "JSD to the last layer (nats)", first: 0, zmin: 0, zmax: null, digits: 3 },
    rank: { label: "rank of the emitted token (log10(1 + rank))", first: 0, zmin: 0, zmax: null, digits: 1,
            transform: (r) => Math.log10(1 + r) },
  };
  const state = { sample: 0, step: 0, layer: L, metric: "jsd_next", scale: "none", values: false, visible: [] };

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const fmt = (value, digits) => {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
    return value.toFixed(digits ?? 4);
  };
  const showToken = (text) => (text === "" ? "∅" : text.replace(/\n/g, "⏎").replace(/\t/g, "⇥"));
  const label = (text) => showToken(text).trim() || showToken(text).replace(/ /g, "␣");
  const vocab = (id) => (id in DATA.vocab ? DATA.vocab[id] : "#" + id);

  /* ---------- stages: shared shapes for every layer axis ---------- */
  function stageShapes(withKeyLayers) {
    const shapes = [];
    const stages = DATA.stages;
    if (!stages) return shapes;
    (stages.stages || []).forEach((stage, i) => {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: stage.start - 0.5, x1: stage.end + 0.5, y0: 0, y1: 1,
                    fillcolor: STAGE_COLORS[i % STAGE_COLORS.length], line: { width: 0 }, layer: "below" });
    });
    if (withKeyLayers) {
      for (const [key, color] of [["critical", "#2b8cbe"], ["mutation", "#c51b7d"]]) {
        const value = stages[key + "_layer"];
        const ci = stages[key + "_ci"];
        if (ci) shapes.push({ type: "rect", xref: "x", yref: "paper", x0: ci[0], x1: ci[1], y0: 0, y1: 1,
                              fillcolor: color, opacity: 0.1, line: { width: 0 }, layer: "below" });
        if (value !== null && value !== undefined) shapes.push({ type: "line", xref: "x", yref: "paper", x0: value, x1: value,
                                                  y0: 0, y1: 1, line: { color, width: 2, dash: "dash" } });
      }
    }
    return shapes;
  }

  function layerAxis(title) {
    return { title: { text: title || "layer" }, range: [-0.5, L + 0.5], dtick: L > 40 ? 5 : L > 16 ? 2 : 1, zeroline: false };
  }

  /* ---------- summary ---------- */
  function renderSummary() {
    const run = DATA.run;
    $("title").textContent = DATA.title;
    document.title = DATA.title;
    const box = (title, ...children) => el("div", { class: "summary-box" }, el("h3", { text: title }), ...children);
    const kv = (entries) => {
      const dl = el("dl", { class: "kv" });
      for (const [key, value] of entries) {
        if (value === null || value === undefined || value === "") continue;
        dl.append(el("dt", { text: key }), el("dd", { text: typeof value === "object" ? JSON.stringify(value) : fmt(value) }));
      }
      return dl;
    };
    const numbers = el("div", { class: "big-numbers" });
    for (const [name, value, bad] of [["samples", run.n_samples], ["tokens", run.n_tokens], ["layers", run.n_layers],
                                      ["failed", run.n_failed, run.n_failed > 0]]) {
      numbers.append(el("div", {}, el("b", { text: fmt(value), class: bad ? "bad" : "" }), el("span", { class: "muted", text: name })));
    }
    $("summary-body").append(
      box("Model", kv([["model", run.model], ["revision", run.revision], ["decoder layers", run.n_layers],
                       ["vocabulary", run.vocab_size]])),
      box("Data", numbers, kv([["source", run.data], ["created", run.created]])),
      box("Settings", kv(Object.entries(run.settings || {}))),
      box("Versions", kv(Object.entries(run.versions || {}))),
    );
    if (run.config) {
      $("summary").append(el("details", { class: "config" }, el("summary", { text: "Resolved configuration (config.yaml)" }),
                              el("pre", { text: run.config })));
    }
  }

  /* ---------- stages and dataset curves ---------- */
  function renderStages() {
    const stages = DATA.stages;
    const chips = $("stage-chips");
    if (stages) {
      const ci = (v) => (v ? ` (95% CI ${fmt(v[0], 1)}–${fmt(v[1], 1)})` : "");
      if (stages.critical_layer !== null) chips.append(el("span", { class: "chip key", text: `critical layer ${fmt(stages.critical_layer, 1)}${ci(stages.critical_ci)}` }));
      if (stages.mutation_layer !== null) chips.append(el("span", { class: "chip key", text: `mutation layer ${fmt(stages.mutation_layer, 1)}${ci(stages.mutation_ci)}` }));
      (stages.stages || []).forEach((stage, i) => {
        const chip = el("span", { class: "chip", text: `${stage.name.replace(/_/g, " ")}: layers ${stage.start}–${stage.end}` });
        chip.style.background = STAGE_COLORS[i % STAGE_COLORS.length];
        chips.append(chip);
      });
    } else {
      chips.append(el("span", { class: "chip", text: "no stage analysis in this run" }));
    }
    // every grid cell first, then the plots: a plot drawn while its grid is still filling takes the wrong width
    const divs = DATA.curves.map((curve) => el("div", { id: "curve-" + curve.key }));
    $("curves").append(...divs);
    DATA.curves.forEach((curve, index) => {
      const div = divs[index];
      const band = [
        { x: curve.layers, y: curve.high, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
        { x: curve.layers, y: curve.low, mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(106,81,163,0.22)",
          hoverinfo: "skip", name: "95% CI" },
        { x: curve.layers, y: curve.mean, mode: "lines+markers", marker: { size: 4 }, line: { color: "#54278f", width: 2 },
          name: "mean", hovertemplate: "layer %{x}<br>mean %{y:.4f}<extra></extra>" },
      ];
      Plotly.newPlot(div, band, {
        title: { text: curve.label, font: { size: 14 } }, margin: { l: 55, r: 15, t: 40, b: 45 }, showlegend: false,
        xaxis: layerAxis(), yaxis: { rangemode: "tozero" }, shapes: stageShapes(true), hovermode: "x",
      }, PLOT_CONFIG);
    });
  }

  /* ---------- sample explorer ---------- */
  function sampleLabel(sample, index) {
    const prompt = sample.prompt.length > 48 ? sample.prompt.slice(0, 47) + "…" : sample.prompt;
    const name = sample.image_name ? sample.image_name.replace(/\.[^.]+$/, "") : sample.id;
    return `${index + 1}. ${name} — ${prompt}`;
  }

  function renderPicker() {
    const select = $("sample-select");
    const filter = $("sample-filter").value.trim().toLowerCase();
    state.visible = DATA.samples.map((s, i) => i).filter((i) => {
      const s = DATA.samples[i];
      return !filter || (s.id + " " + s.prompt + " " + s.text).toLowerCase().includes(filter);
    });
    select.replaceChildren(...state.visible.map((i) => el("option", { value: String(i), text: sampleLabel(DATA.samples[i], i) })));
    if (state.visible.includes(state.sample)) select.value = String(state.sample);
    const shown = DATA.samples.length < DATA.n_samples_total ? ` (first ${DATA.samples.length} of ${DATA.n_samples_total} embedded)` : "";
    $("sample-count").textContent = `${state.visible.length} of ${DATA.samples.length} samples${shown}`;
  }

  function choose(index) {
    state.sample = index;
    state.step = 0;
    state.layer = L;
    $("sample-select").value = String(index);
    renderSample();
  }

  function step(delta) {
    if (!state.visible.length) return;
    const at = state.visible.indexOf(state.sample);
    const next = state.visible[(Math.max(at, 0) + delta + state.visible.length) % state.visible.length];
    choose(next);
  }

  function renderSample() {
    const sample = DATA.samples[state.sample];
    const image = $("sample-image");
    image.hidden = !sample.image;
    if (sample.image) { image.src = sample.image; image.title = sample.image_name || ""; }
    $("sample-prompt").textContent = sample.prompt;
    const strip = $("token-strip");
    strip.replaceChildren(...sample.tokens.map((token, i) => {
      const chip = el("span", { class: "tok", "data-step": String(i), text: showToken(token),
                                title: `step ${i} · top-1 from layer ${sample.settle_layer[i]} on` });
      chip.style.background = `rgba(106,81,163,${(0.05 + 0.45 * sample.settle_layer[i] / L).toFixed(3)})`;
      chip.addEventListener("click", () => selectToken(i, state.layer));
      return chip;
    }));
    renderHeatmap();
    selectToken(0, L);
  }

  function columnValues(sample, metric) {
    const info = METRICS[metric];
    let rows = sample.metrics[metric].map((row) => row.map((v) => (v === null ? null : info.transform ? info.transform(v) : v)));
    if (state.scale === "per-layer" && rows.length) {
      const maxima = rows[0].map((_, j) => Math.max(...rows.map((row) => row[j] ?? 0)) || 1);
      rows = rows.map((row) => row.map((v, j) => (v === null ? null : v / maxima[j])));
    }
    return rows;
  }

  function topkText(sample, stepIndex, layer) {
    const ids = sample.topk_ids[stepIndex][layer];
    const probs = sample.topk_probs[stepIndex][layer];
    return ids.map((id, i) => `${label(vocab(id))}  ${fmt(probs[i], 3)}`).join("<br>");
  }

  function renderHeatmap() {
    const sample = DATA.samples[state.sample];
    const info = METRICS[state.metric];
    const z = columnValues(sample, state.metric);
    const x = z.length ? z[0].map((_, j) => j + info.first) : [];
    const hover = sample.tokens.map((token, i) => x.map((layer, j) => {
      const raw = sample.metrics[state.metric][i][j];
      const change = state.metric === "jsd_next" ? `JSD(layer ${layer - 1}, layer ${layer})` : METRICS[state.metric].label;
      return `<b>${escapeHtml(label(token))}</b> · step ${i} · layer ${layer}<br>${change}: ${fmt(raw, 4)}` +
             `<br><i>top-${sample.topk_ids[i][layer].length} at layer ${layer}:</i><br>${escapeHtml(topkText(sample, i, layer)).replace(/&lt;br&gt;/g, "<br>")}`;
    }));
    const rows = sample.tokens.length;
    const trace = {
      type: "heatmap", z, x, y: sample.tokens.map((_, i) => i), text: hover, hovertemplate: "%{text}<extra></extra>",
      colorscale: PURPLES, zmin: info.zmin, zmax: state.scale === "per-layer" ? 1 : info.zmax ?? undefined, xgap: 1, ygap: 1,
      colorbar: { thickness: 12, len: Math.min(1, 420 / (rows * 20 + 90)), y: 1, yanchor: "top" },
      texttemplate: state.values ? `%{z:.${info.digits}f}` : "", textfont: { size: 9 },
    };
    const layout = {
      height: Math.max(320, rows * 20 + 90), margin: { l: 110, r: 10, t: 10, b: 60 },
      xaxis: { title: { text: "layer" }, dtick: L > 40 ? 5 : L > 16 ? 2 : 1, side: "bottom", fixedrange: true },
      yaxis: { autorange: "reversed", tickmode: "array", tickvals: sample.tokens.map((_, i) => i),
               ticktext: sample.tokens.map((t) => label(t).slice(0, 14)), fixedrange: true, automargin: true },
      shapes: [],
    };
    const div = $("heatmap");
    Plotly.react(div, [trace], layout, PLOT_CONFIG);
    if (!div._evolensBound) {
      div.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        if (point) selectToken(Number(point.y), Number(point.x));
      });
      div._evolensBound = true;
    }
  }

  function selectToken(stepIndex, layer) {
    const sample = DATA.samples[state.sample];
    if (!sample || stepIndex < 0 || stepIndex >= sample.tokens.length) return;
    state.step = stepIndex;
    state.layer = Math.max(0, Math.min(L, layer));
    for (const chip of document.querySelectorAll("#token-strip .tok")) {
      chip.classList.toggle("selected", Number(chip.dataset.step) === stepIndex);
    }
    const chip = document.querySelector(`#token-strip .tok[data-step="${stepIndex}"]`);
    if (chip && chip.scrollIntoView) chip.scrollIntoView({ block: "nearest" });
    const first = METRICS[state.metric].first;
    Plotly.relayout($("heatmap"), { shapes: [
      { type: "rect", xref: "paper", yref: "y", x0: 0, x1: 1, y0: stepIndex - 0.5, y1: stepIndex + 0.5, line: { color: "#e6550d", width: 2 } },
      { type: "rect", xref: "x", yref: "y", x0: Math.max(state.layer, first) - 0.5, x1: Math.max(state.layer, first) + 0.5,
        y0: stepIndex - 0.5, y1: stepIndex + 0.5, line: { color: "#111", width: 2 } },
    ] });
    renderProbChart();
    renderTopk();
  }

  function candidates(sample, stepIndex) {
    /* tokens the late layers (second half) favour besides the emitted one, strongest first, at most 4 */
    const emitted = sample.token_ids[stepIndex];
    const best = new Map();
    for (let layer = Math.floor(L / 2); layer <= L; layer++) {
      const ids = sample.topk_ids[stepIndex][layer];
      const probs = sample.topk_probs[stepIndex][layer];
      for (let i = 0; i < Math.min(2, ids.length); i++) {
        if (ids[i] !== emitted) best.set(ids[i], Math.max(best.get(ids[i]) || 0, probs[i]));
      }
    }
    return [...best.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([id]) => id);
  }

  function renderProbChart() {
    const sample = DATA.samples[state.sample];
    const s = state.step;
    const token = sample.tokens[s];
    $("prob-title").textContent = `Step ${s}: “${label(token)}” across layers`;
    const series = [{ id: sample.token_ids[s], name: `${label(token)} (emitted)`, y: sample.metrics.prob[s] }];
    for (const id of candidates(sample, s)) {
      const y = LAYERS.map((layer) => {
        const at = sample.topk_ids[s][layer].indexOf(id);
        return at >= 0 ? sample.topk_probs[s][layer][at] : null;
      });
      series.push({ id, name: label(vocab(id)), y });
    }
    const traces = series.map((entry, i) => ({
      x: LAYERS, y: entry.y, name: entry.name, mode: "lines", fill: "tozeroy", connectgaps: false,
      line: { color: SERIES_COLORS[i % SERIES_COLORS.length], width: i === 0 ? 2.5 : 1.5 },
      hovertemplate: `${escapeHtml(entry.name)}<br>layer %{x}: %{y:.3f}<extra></extra>`,
    }));
    const shapes = stageShapes(false);
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: state.layer, x1: state.layer, y0: 0, y1: 1,
                  line: { color: "#111", width: 1, dash: "dot" } });
    const div = $("prob-chart");
    const highest = Math.max(...series.flatMap((entry) => entry.y.filter((v) => v !== null)), 0);
    const top = highest < 0.5 ? Math.max(highest * 1.15, 1e-6) : 1.02;  // small probabilities stay visible
    Plotly.react(div, traces, {
      margin: { l: 55, r: 10, t: 10, b: 45 }, xaxis: layerAxis(), yaxis: { title: { text: "probability" }, range: [0, top] },
      legend: { orientation: "h", y: -0.22 }, shapes, hovermode: "closest",
    }, PLOT_CONFIG);
    if (!div._evolensBound) {
      div.on("plotly_click", (event) => {
        const point = event.points && event.points[0];
        if (point) { state.layer = Number(point.x); renderProbChart(); renderTopk(); }
      });
      div._evolensBound = true;
    }
    div.dataset.step = String(s);
    div.dataset.token = token;
  }

  function renderTopk() {
    const sample = DATA.samples[state.sample];
    const s = state.step;
    const layer = state.layer;
    $("topk-title").textContent = `Top tokens at layer ${layer} (step ${s})`;
    const ids = sample.topk_ids[s][layer];
    const probs = sample.topk_probs[s][layer];
    const body = [el("tr", {}, el("th", { text: "token" }), el("th", { text: "probability" }))];
    ids.forEach((id, i) => {
      const bar = el("span", { class: "bar" });
      bar.style.width = `${Math.round(140 * probs[i])}px`;
      const row = el("tr", { class: id === sample.token_ids[s] ? "emitted" : "" },
        el("td", { text: showToken(vocab(id)) }), el("td", { class: "num" }, bar, fmt(probs[i], 4)));
      body.push(row);
    });
    const p = sample.metrics.prob[s][layer];
    const rank = sample.metrics.rank[s][layer];
    body.push(el("tr", {}, el("td", { class: "muted", text: "emitted token" }),
                 el("td", { class: "num", text: `p = ${fmt(p, 4)}, rank ${fmt(rank)}` })));
    $("topk-table").replaceChildren(...body);
  }

  function escapeHtml(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function renderExplorer() {
    if (!DATA.samples.length) { $("explore").hidden = true; return; }
    const metricSelect = $("metric-select");
    for (const [key, info] of Object.entries(METRICS)) metricSelect.append(el("option", { value: key, text: info.label }));
    metricSelect.value = state.metric;
    metricSelect.addEventListener("change", () => { state.metric = metricSelect.value; renderHeatmap(); selectToken(state.step, state.layer); });
    $("scale-select").addEventListener("change", (e) => { state.scale = e.target.value; renderHeatmap(); selectToken(state.step, state.layer); });
    $("values-toggle").addEventListener("change", (e) => { state.values = e.target.checked; renderHeatmap(); selectToken(state.step, state.layer); });
    $("sample-select").addEventListener("change", (e) => choose(Number(e.target.value)));
    $("sample-filter").addEventListener("input", () => { renderPicker(); if (state.visible.length && !state.visible.includes(state.sample)) choose(state.visible[0]); });
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
      if (e.key === "ArrowLeft") step(-1);
      if (e.key === "ArrowRight") step(1);
    });
    renderPicker();
    choose(0);
  }

  /* ---------- feature views, tables, figures, failures ---------- */
  function renderFeatures() {
    if (!DATA.features.length) { $("features").hidden = true; return; }
    const divs = DATA.features.map(() => el("div"));
    $("feature-grid").append(...divs);
    DATA.features.forEach((view, index) => {
      const div = divs[index];
      const groups = [...new Set(view.group || [""])];
      const symbols = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon", "hexagon", "triangle-down"];
      const traces = groups.map((group, g) => {
        const idx = view.x.map((_, i) => i).filter((i) => !view.group || view.group[i] === group);
        return {
          type: "scatter", mode: "markers", name: String(group), x: idx.map((i) => view.x[i]), y: idx.map((i) => view.y[i]),
          text: idx.map((i) => (view.text ? view.text[i] : "")),
          marker: { size: 7, symbol: symbols[g % symbols.length], color: idx.map((i) => view.color[i]), colorscale: "Viridis",
                    cmin: view.cmin ?? 0, cmax: view.cmax ?? L, line: { width: 0.5, color: "#333" },
                    showscale: g === 0, colorbar: { title: { text: view.color_label || "layer" }, thickness: 12 } },
          hovertemplate: "%{text}<extra></extra>",
        };
      });
      Plotly.newPlot(div, traces, {
        title: { text: view.title, font: { size: 14 } }, margin: { l: 40, r: 10, t: 40, b: 30 }, height: 420,
        showlegend: groups.length > 1 && groups.length <= 16, legend: { orientation: "h", y: -0.08 },
        xaxis: { showticklabels: false, zeroline: false }, yaxis: { showticklabels: false, zeroline: false },
      }, PLOT_CONFIG);
    });
  }

  function htmlTable(columns, rows) {
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: c })));
    const body = rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) }))));
    return el("div", { class: "table-wrap" }, el("table", {}, head, ...body));
  }

  function renderTables() {
    if (!DATA.tables.length) { $("experiments").hidden = true; return; }
    for (const table of DATA.tables) {
      $("tables").append(el("h3", { class: "table-title", text: table.title }), htmlTable(table.columns, table.rows));
    }
  }

  function renderFigures() {
    if (!DATA.figures.length) { $("figures").hidden = true; return; }
    for (const figure of DATA.figures) {
      const img = el("img", { src: figure.src, alt: figure.title });
      img.addEventListener("click", () => img.classList.toggle("zoomed"));
      $("figure-grid").append(el("figure", {}, img, el("figcaption", { text: figure.name })));
    }
  }

  function renderFailures() {
    if (!DATA.failures.length) { $("failures").hidden = true; return; }
    $("failure-table").append(htmlTable(["sample", "image", "error"],
      DATA.failures.map((f) => [f.sample_id ?? "", f.image ?? "", f.error ?? ""])));
  }

  function renderNav() {
    for (const section of document.querySelectorAll("main > section")) {
      if (section.hidden) continue;
      const link = el("a", { href: "#" + section.id, text: section.querySelector("h2").textContent.split(" ")[0] });
      $("nav").append(link);
    }
  }

  renderSummary();
  renderStages();
  renderExplorer();
  renderFeatures();
  renderTables();
  renderFigures();
  renderFailures();
  renderNav();
  window.evolensReport = { state, selectToken, choose, data: DATA };
  document.body.dataset.ready = "true";
})();
