// serstream view: the page. Messages arrive as Server-Sent Events from /events (a backlog of
// the last minutes first, after a "reset"); uPlot (vendored, /static/vendor/uplot) draws them.
"use strict";
(() => {
  const COLORS = { neutral: "#7f8c8d", calm: "#16a085", happy: "#e2b203", sad: "#2b6cb0", angry: "#c53030",
                   fear: "#805ad5", disgust: "#2f855a", surprise: "#dd6b20" };
  const SPARE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const KEEP_SEGMENTS = 2000, KEEP_LEVELS = 2000, TABLE_ROWS = 10;
  const $ = (id) => document.getElementById(id);
  const state = { labels: [], segments: new Map(), levels: new Map(), sources: new Map(), status: null, filter: "" };
  window.serstreamView = state;  // for a look from the browser's console
  let timeline = null, levels = null, pending = false;

  const color = (label, i) => COLORS[label] || SPARE[i % SPARE.length];
  const pct = (x) => (x == null ? "–" : `${Math.round(x * 100)}%`);
  const clock = (t) => new Date(t * 1000).toLocaleTimeString();
  const shown = (source) => !state.filter || source === state.filter;

  function reset() {
    state.segments.clear(); state.levels.clear(); state.sources.clear(); state.status = null;
    const pick = $("source");
    while (pick.options.length > 1) pick.remove(1);
    schedule();
  }

  function onEmotion(ev) {
    const labels = Object.keys(ev.probabilities);
    if (labels.join() !== state.labels.join()) { state.labels = labels; makeTimeline(); }
    const key = `${ev.session}/${ev.source}/${ev.segment}`;
    state.segments.delete(key);  // re-insert: the map stays in order of the latest message
    state.segments.set(key, ev);
    if (state.segments.size > KEEP_SEGMENTS) state.segments.delete(state.segments.keys().next().value);
    knowSource(ev.source);
    schedule();
  }

  function onStats(ev) {
    knowSource(ev.source).stats = ev;
    let row = state.levels.get(ev.source);
    if (!row) state.levels.set(ev.source, (row = []));
    row.push([ev.published_at, ev.level_rms_dbfs, ev.level_peak_dbfs]);
    if (row.length > KEEP_LEVELS) row.shift();
    schedule();
  }

  function knowSource(source) {
    let s = state.sources.get(source);
    if (!s) {
      state.sources.set(source, (s = { stats: null }));
      const opt = document.createElement("option");
      opt.value = opt.textContent = source;
      $("source").appendChild(opt);
    }
    s.seen = Date.now() / 1000;
    return s;
  }

  function schedule() {
    if (!pending) { pending = true; setTimeout(render, 50); }
  }

  // ------------------------------------------------------------------ drawing
  function chartWidth(el) { return Math.max(300, el.clientWidth); }

  function makeTimeline() {
    const el = $("timeline");
    if (timeline) timeline.destroy();
    const series = [{}, ...state.labels.map((label, i) => ({
      label, stroke: color(label, i), width: 2, points: { show: true, size: 7, fill: color(label, i) },
      value: (u, v) => (v == null ? "–" : v.toFixed(2)),
    }))];
    timeline = new uPlot({
      width: chartWidth(el), height: 300, series,
      scales: { x: { time: true }, y: { range: [0, 1] } },
      axes: [{}, { label: "probability", values: (u, ticks) => ticks.map((t) => t.toFixed(1)) }],
      hooks: { draw: [shadePartials] },
    }, [[], ...state.labels.map(() => [])], el);
  }

  function shadePartials(u) {
    // a segment still in progress: shaded over its span until its final event settles it
    const ctx = u.ctx, { top, height } = u.bbox;
    ctx.save();
    ctx.fillStyle = "rgba(29, 39, 51, 0.08)";
    for (const ev of state.segments.values()) {
      if (ev.final || !shown(ev.source)) continue;
      const x0 = u.valToPos(ev.wall_start, "x", true), x1 = u.valToPos(ev.wall_end, "x", true);
      ctx.fillRect(x0, top, Math.max(4, x1 - x0), height);
    }
    ctx.restore();
  }

  function makeLevels() {
    const el = $("levels");
    levels = new uPlot({
      width: chartWidth(el), height: 160,
      series: [{}, { label: "RMS", stroke: "#2b6cb0", width: 2, fill: "rgba(43,108,176,.08)" },
               { label: "peak", stroke: "#a0aec0", width: 1, dash: [4, 4] }],
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(-60, Math.floor((min ?? -60) / 10) * 10), 0] } },
      axes: [{}, { label: "dBFS" }],
    }, [[], [], []], el);
  }

  function render() {
    pending = false;
    const segs = [...state.segments.values()].filter((ev) => shown(ev.source));
    renderCurrent(segs[segs.length - 1]);
    renderSources();
    renderTimeline(segs);
    renderLevels();
    renderTable(segs);
  }

  function renderCurrent(ev) {
    const label = $("current-label");
    if (!ev) { label.textContent = "–"; label.dataset.final = ""; return; }
    label.textContent = ev.label;
    label.dataset.final = String(ev.final);
    label.style.color = color(ev.label, state.labels.indexOf(ev.label));
    $("current-bar").style.width = pct(ev.confidence);
    $("current-bar").style.background = label.style.color;
    $("current-detail").textContent = `${pct(ev.confidence)} confident · ${ev.final ? "final" : "partial, still speaking"}` +
      ` · ${ev.source} #${ev.segment} · ${clock(ev.wall_end)}` + (ev.voice ? ` · voice ${ev.voice}` : "");
    document.title = `${ev.label} ${pct(ev.confidence)} · serstream view`;
  }

  function renderSources() {
    const body = $("sources").tBodies[0];
    body.replaceChildren(...[...state.sources.entries()].map(([source, s]) => {
      const st = s.stats || {};
      const level = st.level_rms_dbfs == null ? "–" : `${st.level_rms_dbfs.toFixed(1)} / ${st.level_peak_dbfs.toFixed(1)} dBFS`;
      const device = st.device ? (st.device_name ? `${st.device} (${st.device_name})` : st.device) : "–";
      const ago = Math.max(0, Date.now() / 1000 - s.seen);
      return row([source, device, level, st.in_speech ? "speaking" : "–", `${ago.toFixed(0)} s ago`], ["", st.device || ""]);
    }));
    const st = state.status, lost = $("lost");
    if (!st) return;
    const per = Object.entries(st.lost_by_session).filter(([, n]) => n > 0).map(([s, n]) => `${n} from session ${s}`);
    lost.textContent = st.lost ? `${st.lost} messages lost in ${st.gaps} gaps (${per.join(", ")})`
                               : `no messages lost (${st.received} received)`;
    lost.classList.toggle("some", st.lost > 0);
  }

  function renderTimeline(segs) {
    if (!timeline) return;
    const sorted = [...segs].sort((a, b) => a.wall_start - b.wall_start);
    const data = [sorted.map((ev) => ev.wall_start),
                  ...state.labels.map((label) => sorted.map((ev) => ev.probabilities[label]))];
    timeline.setData(data);
  }

  function renderLevels() {
    if (!levels) makeLevels();
    const source = state.filter || [...state.levels.keys()].pop();
    const rows = state.levels.get(source) || [];
    levels.setData([rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2])]);
  }

  function renderTable(segs) {
    const body = $("segments").tBodies[0];
    const recent = [...segs].sort((a, b) => b.wall_start - a.wall_start).slice(0, TABLE_ROWS);
    body.replaceChildren(...recent.map((ev) => {
      const tr = row([clock(ev.wall_start), ev.source, ev.segment, ev.final ? "final" : "partial", ev.label, pct(ev.confidence)]);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = color(ev.label, state.labels.indexOf(ev.label));
      tr.cells[4].prepend(swatch);
      tr.className = ev.final ? "final" : "partial";
      return tr;
    }));
  }

  function row(cells, classes = []) {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const td = tr.insertCell();
      td.textContent = text;
      if (classes[i]) td.className = classes[i];
    });
    return tr;
  }

  // ------------------------------------------------------------------ the stream
  function connect() {
    const conn = $("conn");
    const source = new EventSource("/events");
    source.onopen = () => { conn.textContent = "connected"; conn.className = "conn on"; };
    source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn off"; };
    source.addEventListener("reset", reset);
    source.addEventListener("emotion", (e) => onEmotion(JSON.parse(e.data)));
    source.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
    source.addEventListener("status", (e) => { state.status = JSON.parse(e.data); schedule(); });
  }

  $("source").addEventListener("change", (e) => { state.filter = e.target.value; schedule(); });
  window.addEventListener("resize", () => {
    if (timeline) timeline.setSize({ width: chartWidth($("timeline")), height: 300 });
    if (levels) levels.setSize({ width: chartWidth($("levels")), height: 160 });
  });
  connect();
  setInterval(schedule, 1000);  // "last message N s ago" keeps counting
})();
