/* evolens report: renders the JSON in #report-data with plotly.js (inlined above). No network access. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const L = DATA.n_layers;
  const LAYERS = Array.from({ length: L + 1 }, (_, i) => i);
  const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
  const STYLE = DATA.style;  // the figures' own colours (evolens.plots.style), so the page and the PNGs agree
  const OTHER_STAGE = "#7f7f7f";
  const PURPLES = [[0, "#fcfbfd"], [0.125, "#efedf5"], [0.25, "#dadaeb"], [0.375, "#bcbddc"], [0.5, "#9e9ac8"],
                   [0.625, "#807dba"], [0.75, "#6a51a3"], [0.875, "#54278f"], [1, "#3f007d"]];
  const SERIES_COLORS = ["#6a51a3", "#e6550d", "#31a354", "#3182bd", "#d6616b", "#8c6d31"];
  /* how the explorer draws each metric; names, labels and first layers come with the data (evolens.vocabulary) */
  const DRAWN = {
    jsd_next: { zmin: 0, zmax: null, digits: 3 },
    prob: { zmin: 0, zmax: 1, digits: 2 },
    entropy: { zmin: 0, zmax: null, digits: 2 },
    jsd_last: { zmin: 0, zmax: null, digits: 3 },
    rank: { zmin: 0, zmax: null, digits: 1, shown: "log10(1 + rank)", transform: (r) => Math.log10(1 + r) },
  };
  const METRICS = Object.fromEntries(DATA.metrics.map((metric) => {
    const drawn = DRAWN[metric.key] || { zmin: 0, zmax: null, digits: 3 };
    const label = drawn.shown ? `${metric.label} (${drawn.shown})` : metric.label;
    return [metric.key, { ...drawn, label, first: metric.first }];
  }));
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
  /* a token with every whitespace character visible, as the figures write it (evolens.plots.style.visible_token) */
  const INVISIBLE = /[\p{C}\p{Z}\s]/u;
  const showToken = (text) => {
    let shown = "";
    for (const ch of String(text)) {
      if (ch in STYLE.whitespace) shown += STYLE.whitespace[ch];
      else if (INVISIBLE.test(ch)) shown += "\\u" + ch.codePointAt(0).toString(16).padStart(4, "0");
      else shown += ch;
    }
    return shown || "∅";
  };
  const label = showToken;
  const stageColor = (name) => STYLE.stage_colors[name] || OTHER_STAGE;
  const tint = (hex, alpha) => {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${(n >> 16) & 255},${(n >> 8) & 255},${n & 255},${alpha})`;
  };
  const naturalOrder = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" }).compare;
  const vocab = (id) => (id in DATA.vocab ? DATA.vocab[id] : "#" + id);

  function duration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(seconds - 60 * minutes)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  /* ---------- stages: shared shapes for every layer axis ---------- */
  function stageShapes(withKeyLayers) {
    const shapes = [];
    const stages = DATA.stages;
    if (!stages) return shapes;
    (stages.stages || []).forEach((stage) => {
      shapes.push({ type: "rect", xref: "x", yref: "paper", x0: stage.start - 0.5, x1: stage.end + 0.5, y0: 0, y1: 1,
                    fillcolor: tint(stageColor(stage.name), STYLE.stage_alpha), line: { width: 0 }, layer: "below" });
    });
    if (withKeyLayers) {
      for (const [key, color] of Object.entries(STYLE.key_layer_colors)) {
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
    if ((run.timings || []).length) {
      const total = run.timings.reduce((sum, t) => sum + t.seconds, 0);
      const rows = run.timings.map((t) => [t.stage, duration(t.seconds)]);
      rows.push(["total", duration(total)]);
      $("summary-body").append(box("Stage timings", kv(rows)));
    }
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
      (stages.stages || []).forEach((stage) => {
        const chip = el("span", { class: "chip stage", text: stage.label });
        chip.style.background = tint(stageColor(stage.name), 2 * STYLE.stage_alpha);
        chip.style.borderColor = stageColor(stage.name);
        chips.append(chip);
      });
      if ((stages.verdicts || []).length) {
        const list = el("ul", { class: "verdicts", id: "stage-verdicts" });
        stages.verdicts.forEach((line) => list.append(el("li", { text: line })));
        chips.after(list);
        if (stages.method) list.after(el("p", { class: "note", text: `How: ${stages.method}.` }));
      }
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
      // the layer axis sits on top: a long sample scrolls inside its box, and a bottom axis would be out of sight
      height: Math.max(320, rows * 20 + 90), margin: { l: 110, r: 10, t: 60, b: 10 },
      xaxis: { title: { text: "layer", standoff: 6 }, dtick: L > 40 ? 5 : L > 16 ? 2 : 1, side: "top", fixedrange: true },
      yaxis: { autorange: "reversed", tickmode: "array", tickvals: sample.tokens.map((_, i) => i),
               ticktext: sample.tokens.map((t) => escapeHtml([...label(t)].slice(0, 14).join(""))), fixedrange: true, automargin: true },
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
    const series = [{ id: sample.token_ids[s], name: `${escapeHtml(label(token))} (emitted)`, y: sample.metrics.prob[s] }];
    for (const id of candidates(sample, s)) {
      const y = LAYERS.map((layer) => {
        const at = sample.topk_ids[s][layer].indexOf(id);
        return at >= 0 ? sample.topk_probs[s][layer][at] : null;
      });
      series.push({ id, name: escapeHtml(label(vocab(id))), y });
    }
    const traces = series.map((entry, i) => ({
      x: LAYERS, y: entry.y, name: entry.name, mode: "lines", fill: "tozeroy", connectgaps: false,
      line: { color: SERIES_COLORS[i % SERIES_COLORS.length], width: i === 0 ? 2.5 : 1.5 },
      meta: entry.name, hovertemplate: "%{meta}<br>layer %{x}: %{y:.3f}<extra></extra>",
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

  /* ---------- feature views ---------- */
  const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "cross", "x", "star", "pentagon", "hexagon", "triangle-down",
                   "triangle-left", "triangle-right", "hourglass", "bowtie", "star-diamond", "circle-open", "square-open", "diamond-open"];
  const GROUP_COLORS = STYLE.series_colors;
  const NO_GROUP = "(no group)";

  function featureTraces(view, colorBy) {
    const points = view.x.map((_, i) => i);
    const key = view.sample_group ? (i) => view.sample_group[i] ?? NO_GROUP : view.group ? (i) => view.group[i] : () => "";
    const names = [...new Set(points.map(key))].sort(naturalOrder);
    const traces = [];
    if (view.answer && view.group) {  // each image's path from shallow to deep
      for (const image of [...new Set(view.group)].sort(naturalOrder)) {
        const idx = points.filter((i) => view.group[i] === image).sort((a, b) => view.color[a] - view.color[b]);
        traces.push({ type: "scatter", mode: "lines", x: idx.map((i) => view.x[i]), y: idx.map((i) => view.y[i]),
                      line: { color: "rgba(110,110,110,0.35)", width: 1 }, hoverinfo: "skip", showlegend: false });
      }
    }
    names.forEach((name, g) => {
      const idx = points.filter((i) => key(i) === name);
      const byGroup = colorBy === "group";
      const marker = byGroup
        ? { color: GROUP_COLORS[g % GROUP_COLORS.length] }
        : { color: idx.map((i) => view.color[i]), colorscale: "Viridis", cmin: 0, cmax: L, showscale: g === 0,
            colorbar: { title: { text: view.color_label || "layer" }, thickness: 12 } };
      const describe = (i) => [view.text[i], view.answer ? `answer: ${view.answer[i]}` : null,
                               view.sample_group ? `group: ${view.sample_group[i] ?? NO_GROUP}` : null].filter(Boolean).join(" · ");
      const answer = view.answer && !view.sample_group ? `: ${view.answer[idx[0]]}` : "";  // "img2: red"
      traces.push({
        type: "scatter", mode: "markers", name: escapeHtml(name + answer), x: idx.map((i) => view.x[i]), y: idx.map((i) => view.y[i]),
        text: idx.map((i) => escapeHtml(describe(i))), hovertemplate: "%{text}<extra></extra>",
        marker: { size: 7, symbol: SYMBOLS[g % SYMBOLS.length], line: { width: 0.5, color: "#333" }, ...marker },
      });
    });
    return { traces, n_names: names.length };
  }

  function drawFeature(div, view, colorBy) {
    const { traces, n_names } = featureTraces(view, colorBy);
    const tsne = view.method === "t-SNE";
    const axis = (title) => ({ title: { text: title }, showticklabels: !tsne, zeroline: false });
    Plotly.react(div, traces, {
      title: { text: escapeHtml(view.title), font: { size: 14 } }, margin: { l: 55, r: 10, t: 40, b: 45 }, height: 460,
      showlegend: n_names > 1 && n_names <= 24, legend: { orientation: "h", y: -0.16, yanchor: "top" },
      xaxis: axis(view.axis_titles[0]), yaxis: axis(view.axis_titles[1]),
    }, PLOT_CONFIG);
  }

  function renderFeatures() {
    if (!DATA.features.length) { $("features").hidden = true; return; }
    const cells = DATA.features.map((view) => {
      const plot = el("div", { class: "feature-plot" });
      const cell = el("div", { class: "feature-cell" });
      if (view.sample_group) {
        const select = el("select", { "aria-label": "colour points by" },
                          el("option", { value: "layer", text: "layer" }), el("option", { value: "group", text: "sample group" }));
        select.addEventListener("change", () => drawFeature(plot, view, select.value));
        cell.append(el("label", { class: "feature-controls" }, "colour by ", select));
      }
      cell.append(plot);
      return [cell, plot];
    });
    // every grid cell first, then the plots (a plot drawn while its grid is filling takes the wrong width)
    $("feature-grid").append(...cells.map(([cell]) => cell));
    DATA.features.forEach((view, index) => drawFeature(cells[index][1], view, "layer"));
  }

  /* ---------- experiments, notes, figures, failures ---------- */
  function htmlTable(columns, rows) {
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: c })));
    const body = rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) }))));
    return el("div", { class: "table-wrap" }, el("table", {}, head, ...body));
  }

  function renderExperiments() {
    if (!DATA.experiments.length) { $("experiments").hidden = true; return; }
    for (const entry of DATA.experiments) {
      const block = el("div", { class: "experiment" },
                       el("h3", {}, entry.title, el("span", { class: "source muted", text: entry.source })));
      for (const line of entry.lines) block.append(el("p", { class: "lead", text: line }));
      for (const table of entry.tables) block.append(el("h4", { class: "table-title", text: table.title }), htmlTable(table.columns, table.rows));
      for (const table of entry.details) {
        block.append(el("details", { class: "more" }, el("summary", { text: `${table.title} (${table.rows.length} rows)` }),
                        htmlTable(table.columns, table.rows)));
      }
      $("tables").append(block);
    }
  }

  function renderNotes() {
    if (!DATA.notes.length) { $("notes").hidden = true; return; }
    $("note-list").append(...DATA.notes.map((note) => el("li", {}, el("span", { class: "label", text: note.source }), note.text)));
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
  /* sections defined in other scripts (findings.js), drawn with this page's helpers */
  const helpers = { $, el, fmt, tint, escapeHtml, layerAxis, stageShapes, PLOT_CONFIG, STYLE };
  (window.evolensSections || []).forEach((render) => render(DATA, helpers));
  renderExplorer();
  renderFeatures();
  renderExperiments();
  renderFigures();
  renderFailures();
  renderNotes();
  renderNav();
  window.evolensReport = { state, selectToken, choose, data: DATA };
  document.body.dataset.ready = "true";
})();
