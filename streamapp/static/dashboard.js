// streamapp dashboard: polls this worker's JSON views and draws plain SVG charts.
// No framework and no chart library, so nothing is fetched from the network at run time.
"use strict";

const POLL_MS = 2000;
const WINDOW_SLOTS = 30; // tumbling windows shown per chart, at most
const MIN_SLOTS = 6; // ... and at least: a short burst is not a sliver at the axis' end
const RECENT_LIMIT = 20;
const SVG_NS = "http://www.w3.org/2000/svg";

// Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
const SENTIMENT_COLOURS = { negative: "#d55e00", neutral: "#999999", positive: "#009e73" };
const PALETTE = ["#cc79a7", "#e69f00", "#0072b2", "#56b4e9", "#f0e442", "#000000"];
const SENTIMENT_ORDER = ["negative", "neutral", "positive"];
// Labels of the hate table that are not categories (see streamapp/pipeline.py).
const MESSAGES = "messages";
const HATEFUL = "hateful";

const state = {
  source: "",
  sources: new Set(),
  term: "", // a tracked term, or "" for all messages
  lang: "", // a language code, or "" for all
  facetOptions: "", // the term and language options last drawn, to redraw only on change
  lastReceived: null, // {at: ms, received: n} for the live rate
  rate: 0,
  seq: 0, // number of the newest refresh started
};

const numberFormat = new Intl.NumberFormat();
const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const shortTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function $(id) {
  return document.getElementById(id);
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
}

function s(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function setNumber(node, value) {
  node.dataset.value = String(value);
  node.textContent = numberFormat.format(value);
}

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}

// -- data access ------------------------------------------------------------------------

class Unreachable extends Error {}

async function getJSON(path) {
  let resp;
  try {
    resp = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  } catch (err) {
    throw new Unreachable(`cannot reach the worker (${err.message})`);
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  return { status: resp.status, body };
}

// The filters of the window views (and of /recent/, which takes the same names).
function sourceQuery() {
  let q = state.source ? `&source=${encodeURIComponent(state.source)}` : "";
  if (state.term) q += `&term=${encodeURIComponent(state.term)}`;
  if (state.lang) q += `&lang=${encodeURIComponent(state.lang)}`;
  return q;
}

// {source: {label: n}} -> {label: n}
function byLabel(counts) {
  const out = {};
  for (const labels of Object.values(counts || {})) {
    for (const [label, n] of Object.entries(labels)) out[label] = (out[label] || 0) + n;
  }
  return out;
}

// The view lists only windows with counts, newest first; charts want a gap-free run of
// windows, oldest first, ending at the current window: from the oldest one with counts, but
// no fewer than MIN_SLOTS and no more than WINDOW_SLOTS.
function slots(report) {
  const size = report.window.size;
  // Keyed to the millisecond: a start computed below may differ from the server's float.
  const key = (t) => t.toFixed(3);
  const byStart = new Map(report.windows.map((w) => [key(w.start), w]));
  const newest = Math.max(report.current.start, ...report.windows.map((w) => w.start));
  const oldest = Math.min(newest, ...report.windows.map((w) => w.start));
  const span = Math.round((newest - oldest) / size) + 1;
  const count = Math.min(WINDOW_SLOTS, Math.max(MIN_SLOTS, span));
  const out = [];
  for (let i = count - 1; i >= 0; i--) {
    const start = newest - i * size;
    const w = byStart.get(key(start));
    out.push({ start, end: start + size, values: w ? byLabel(w.counts) : {} });
  }
  return out;
}

// -- charts -------------------------------------------------------------------------------

function niceStep(x) {
  if (x <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

// Bars per window: stacked (parts of one whole, e.g. sentiment labels) or grouped side by side
// (counts that overlap, e.g. hate categories: a message can carry several).
function drawStacked(figure, { data, keys, colour, yLabel, title, grouped = false }) {
  const W = 640;
  const H = 230;
  const m = { l: 52, r: 30, t: 10, b: 34 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const totals = data.map((d) => sum(keys.map((k) => d.values[k] || 0)));
  const heights = grouped
    ? data.map((d) => Math.max(0, ...keys.map((k) => d.values[k] || 0)))
    : totals;
  const step = niceStep(Math.max(...heights, 1) / 4);
  const top = step * Math.max(1, Math.ceil(Math.max(...heights, 1) / step));
  const y = (v) => m.t + ih - (ih * v) / top;
  const bw = iw / data.length;
  const titleId = `${figure.id}-title`;

  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": titleId });
  svg.append(s("title", { id: titleId }, title));
  const axis = s("g", { class: "axis" });
  for (let v = 0; v <= top; v += step) {
    axis.append(s("line", { class: "grid", x1: m.l, x2: W - m.r, y1: y(v), y2: y(v) }));
    axis.append(
      s("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, numberFormat.format(v)),
    );
  }
  const every = Math.ceil(data.length / 6);
  data.forEach((d, i) => {
    if ((data.length - 1 - i) % every === 0) {
      const x = m.l + i * bw + bw / 2;
      axis.append(
        s("text", { x, y: H - m.b + 14, "text-anchor": "middle" }, shortTime.format(d.start * 1000)),
      );
    }
  });
  axis.append(
    s(
      "text",
      {
        class: "axis-label",
        transform: `translate(12 ${m.t + ih / 2}) rotate(-90)`,
        "text-anchor": "middle",
      },
      yLabel,
    ),
  );
  axis.append(
    s(
      "text",
      { class: "axis-label", x: m.l + iw / 2, y: H - 4, "text-anchor": "middle" },
      "window start (local time)",
    ),
  );
  svg.append(axis);

  const bars = s("g");
  data.forEach((d, i) => {
    let base = 0;
    const slot = grouped ? Math.max((bw - 2) / keys.length, 1) : Math.max(bw - 2, 1);
    keys.forEach((k, j) => {
      const n = d.values[k] || 0;
      if (!n) return;
      const rect = s("rect", {
        x: m.l + i * bw + 1 + (grouped ? j * slot : 0),
        y: y(base + n),
        width: slot,
        height: y(base) - y(base + n),
        fill: colour(k),
        "data-key": k,
      });
      rect.append(s("title", {}, `${timeFormat.format(d.start * 1000)}: ${k} ${n}`));
      bars.append(rect);
      if (!grouped) base += n;
    });
  });
  svg.append(bars);
  if (sum(totals) === 0) {
    svg.append(
      s(
        "text",
        { class: "empty-note", x: m.l + iw / 2, y: m.t + ih / 2, "text-anchor": "middle" },
        "no messages in these windows yet",
      ),
    );
  }

  const legend = h("ul", { class: "legend" });
  for (const k of keys) {
    const total = sum(data.map((d) => d.values[k] || 0));
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    // Through the CSSOM: the page's CSP refuses inline style attributes.
    swatch.style.background = colour(k);
    legend.append(h("li", {}, swatch, `${k} (${numberFormat.format(total)})`));
  }

  // The same figures as a table, for screen readers and for copying.
  const table = h("table", { class: "numbers" });
  table.append(
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "window start"),
        ...keys.map((k) => h("th", { scope: "col" }, k)),
        h("th", { scope: "col" }, "total"),
      ),
    ),
  );
  const body = h("tbody");
  data.forEach((d, i) => {
    if (!totals[i]) return;
    body.append(
      h(
        "tr",
        {},
        h("th", { scope: "row" }, timeFormat.format(d.start * 1000)),
        ...keys.map((k) => h("td", {}, numberFormat.format(d.values[k] || 0))),
        h("td", {}, numberFormat.format(totals[i])),
      ),
    );
  });
  table.append(body);
  const details = h("details", {}, h("summary", {}, "Show data as a table"), table);

  // Keep the open/closed state of the data table across redraws.
  const wasOpen = figure.querySelector("details")?.open;
  details.open = Boolean(wasOpen);
  figure.replaceChildren(svg, legend, details);
}

function paletteColour(keys) {
  return (k) => PALETTE[Math.max(0, keys.indexOf(k)) % PALETTE.length];
}

// -- panels -------------------------------------------------------------------------------

function renderCharts(sentiment, hate) {
  const size = sentiment.window.size;
  const sizeText = size % 60 === 0 ? `${size / 60} min` : `${size} s`;

  const sData = slots(sentiment);
  const sKeys = [
    ...SENTIMENT_ORDER,
    ...[...new Set(sData.flatMap((d) => Object.keys(d.values)))]
      .filter((k) => !SENTIMENT_ORDER.includes(k))
      .sort(),
  ];
  $("sentiment-caption").textContent =
    `Messages per ${sizeText} tumbling window, stacked by sentiment label.`;
  drawStacked($("sentiment-chart"), {
    data: sData,
    keys: sKeys,
    colour: (k) => SENTIMENT_COLOURS[k] || "#0072b2",
    yLabel: "messages",
    title: `Sentiment: messages per ${sizeText} window, stacked by label`,
  });

  const hData = slots(hate);
  const categories = [
    ...new Set(hData.flatMap((d) => Object.keys(d.values))),
    ...Object.keys(byLabel(hate.totals)),
  ]
    .filter((k) => k !== MESSAGES && k !== HATEFUL)
    .filter((k, i, all) => all.indexOf(k) === i)
    .sort();
  // Hateful messages first, then each category beside it: a message can carry several
  // categories, so stacking them would add up to more than the messages flagged.
  const hKeys = [HATEFUL, ...categories];
  $("hate-caption").textContent =
    `Hateful messages and each category per ${sizeText} tumbling window, side by side ` +
    `(a message can carry several categories).`;
  drawStacked($("hate-chart"), {
    data: hData,
    keys: hKeys,
    colour: paletteColour(hKeys),
    yLabel: "messages",
    title: `Hate: hateful messages and categories per ${sizeText} window`,
    grouped: true,
  });

  const tData = hData.map((d) => ({ ...d, values: { [MESSAGES]: d.values[MESSAGES] || 0 } }));
  // The newest full window: the current one is still filling up.
  const full = tData.length > 1 ? tData[tData.length - 2] : tData[0];
  const perSecond = full ? (full.values[MESSAGES] || 0) / size : 0;
  $("throughput-caption").textContent =
    `Messages per ${sizeText} tumbling window; the last full window averaged ` +
    `${perSecond.toFixed(1)} messages/s.`;
  $("throughput-caption").dataset.perSecond = perSecond.toFixed(3);
  drawStacked($("throughput-chart"), {
    data: tData,
    keys: [MESSAGES],
    colour: () => "#0072b2",
    yLabel: "messages / window",
    title: `Throughput: messages per ${sizeText} window`,
  });
}

function renderTotals(sentiment, hate) {
  const sources = [
    ...new Set([...Object.keys(sentiment.totals || {}), ...Object.keys(hate.totals || {})]),
  ].sort();
  const table = $("totals-table");
  const headRow = h("tr", {}, h("th", { scope: "col" }, "Label"));
  for (const src of sources) headRow.append(h("th", { scope: "col" }, src));
  headRow.append(h("th", { scope: "col" }, "all sources"));
  table.tHead.replaceChildren(headRow);

  const body = h("tbody");
  const groups = [
    ["sentiment", sentiment.totals || {}, SENTIMENT_ORDER],
    ["hate", hate.totals || {}, [MESSAGES, HATEFUL]],
  ];
  for (const [view, totals, first] of groups) {
    const all = byLabel(totals);
    const labels = [...first, ...Object.keys(all).filter((l) => !first.includes(l)).sort()];
    body.append(
      h("tr", { class: "group" }, h("th", { scope: "rowgroup", colspan: sources.length + 2 }, `/${view}/`)),
    );
    for (const label of labels) {
      const row = h("tr", {}, h("th", { scope: "row" }, label));
      for (const src of [...sources, ""]) {
        const n = src ? totals[src]?.[label] || 0 : all[label] || 0;
        const cell = h("td", {
          "data-view": view,
          "data-source": src || "*",
          "data-label": label,
        });
        setNumber(cell, n);
        row.append(cell);
      }
      body.append(row);
    }
  }
  table.tBodies[0].replaceWith(body);

  const hateAll = byLabel(hate.totals);
  setNumber($("kpi-messages"), hateAll[MESSAGES] || 0);
  setNumber($("kpi-hateful"), hateAll[HATEFUL] || 0);
  $("kpi-hateful-share").textContent = hateAll[MESSAGES]
    ? `${((100 * (hateAll[HATEFUL] || 0)) / hateAll[MESSAGES]).toFixed(1)} % of messages`
    : "–";
}

function updateSources(sentiment) {
  // Sources are learnt from the unfiltered view; a filtered view only repeats the one chosen.
  if (state.source) return;
  let added = false;
  for (const src of Object.keys(sentiment.totals || {})) {
    if (!state.sources.has(src)) {
      state.sources.add(src);
      added = true;
    }
  }
  if (!added) return;
  const select = $("source-select");
  const options = [h("option", { value: "" }, "All sources")];
  for (const src of [...state.sources].sort()) options.push(h("option", { value: src }, src));
  select.replaceChildren(...options);
  select.value = state.source;
}

// Term and language pickers: the tracked terms from the settings (every view reports them)
// and the languages with counts in the kept windows.
function updateFacets(sentiment) {
  const terms = sentiment.terms || [];
  const langs = [...new Set([...(sentiment.known_languages || []), state.lang])]
    .filter(Boolean)
    .sort();
  const key = JSON.stringify([terms, langs]);
  if (key === state.facetOptions) return;
  state.facetOptions = key;
  const termSelect = $("term-select");
  termSelect.replaceChildren(
    h("option", { value: "" }, "All messages"),
    ...terms.map((t) => h("option", { value: t }, t)),
  );
  termSelect.value = state.term;
  const langSelect = $("lang-select");
  langSelect.replaceChildren(
    h("option", { value: "" }, "All languages"),
    ...langs.map((l) => h("option", { value: l }, l === "und" ? "not known" : l)),
  );
  langSelect.value = state.lang;
}

// One row per tracked term: its messages, negative, positive and hateful counts, and the
// two shares as bars, so terms compare at a glance whatever their volumes.
function renderTerms(sentiment, hate) {
  const terms = sentiment.terms || [];
  const body = h("tbody");
  for (const term of terms) {
    const s = sentiment.term_totals?.[term] || {};
    const hl = hate.term_totals?.[term] || {};
    const messages = hl[MESSAGES] || 0;
    const share = (n) => (messages ? n / messages : 0);
    const bars = h("td", { class: "shares" });
    for (const [kind, n, colour] of [
      ["negative", s.negative || 0, SENTIMENT_COLOURS.negative],
      ["hateful", hl[HATEFUL] || 0, PALETTE[0]],
    ]) {
      const bar = h("span", { class: "share-bar", title: `${kind} ${(100 * share(n)).toFixed(1)} %` });
      bar.style.width = `${(100 * share(n)).toFixed(1)}%`;
      bar.style.background = colour;
      bars.append(h("span", { class: "share", "data-kind": kind }, bar));
    }
    const pick = h("button", { type: "button", class: "link" }, term);
    pick.addEventListener("click", () => selectFacet("term", term));
    const row = h("tr", { "data-term": term }, h("th", { scope: "row" }, pick));
    for (const [kind, n] of [
      ["messages", messages],
      ["negative", s.negative || 0],
      ["positive", s.positive || 0],
      ["hateful", hl[HATEFUL] || 0],
    ]) {
      const cell = h("td", { class: "num", "data-kind": kind });
      setNumber(cell, n);
      if (kind !== "messages" && messages) cell.append(` (${Math.round(100 * share(n))} %)`);
      row.append(cell);
    }
    row.append(bars);
    body.append(row);
  }
  const table = $("terms-table");
  table.tBodies[0].replaceWith(body);
  table.dataset.count = String(terms.length);
  $("terms-empty").hidden = terms.length > 0;
  $("terms-caption").textContent =
    "Tracked terms side by side over the tumbling windows the tables keep, all languages" +
    (state.source ? ` (${state.source})` : "") + "; pick one in Term to chart it alone.";
}

// A term or a language: the tables count per term and per language, not both crossed.
function selectFacet(name, value) {
  state[name] = value;
  $(`${name}-select`).value = value;
  const other = name === "term" ? "lang" : "term";
  if (value && state[other]) {
    state[other] = "";
    $(`${other}-select`).value = "";
  }
  state.lastReceived = null;
  refresh();
}

function revealed() {
  return $("reveal-text").checked;
}

function setupReveal() {
  const box = $("reveal-text");
  box.checked = localStorage.getItem("streamapp.revealText") === "1";
  const apply = () => {
    $("recent-hateful").classList.toggle("masked", !box.checked);
    $("search-results").classList.toggle("masked", !box.checked);
    localStorage.setItem("streamapp.revealText", box.checked ? "1" : "0");
  };
  box.addEventListener("change", apply);
  apply();
}

function renderRecent(result, ids = { table: "recent-hateful", caption: "recent-caption",
                                      empty: "recent-empty" }) {
  const table = $(ids.table);
  const body = h("tbody");
  if (result.status !== 200 || !result.body) {
    $(ids.caption).textContent =
      `Cannot list messages: ${result.body?.error || `HTTP ${result.status}`}.`;
    return;
  }
  const total = result.body.total;
  $(ids.caption).textContent = total && ids.table === "search-results"
    ? `${total.relation === "gte" ? "More than " : ""}${total.value} matching, newest first.`
    : "Newest first, from Elasticsearch (both aliases).";
  for (const item of result.body.items) {
    const tags = h("td");
    for (const c of item.categories) tags.append(h("span", { class: "tag" }, c));
    const processed = item.time ? new Date(item.time) : null;
    body.append(
      h(
        "tr",
        { "data-id": item.id, "data-source": item.source },
        h(
          "td",
          {},
          processed
            ? h("time", { datetime: item.time }, timeFormat.format(processed))
            : "–",
        ),
        h("td", {}, item.source || "–"),
        h("td", {}, item.author || "–"),
        h("td", revealed() ? { class: "text", title: item.text || "" } : { class: "text" },
          item.text || ""),
        tags,
        h("td", { class: "num" }, typeof item.score === "number" ? item.score.toFixed(2) : "–"),
      ),
    );
  }
  table.tBodies[0].replaceWith(body);
  table.dataset.count = String(result.body.items.length);
  $(ids.empty).hidden = result.body.items.length > 0;
}

function renderAlerts(result) {
  if (result.status !== 200 || !result.body) {
    $("alerts-caption").textContent =
      `Cannot list alerts: ${result.body?.error || `HTTP ${result.status}`}.`;
    return;
  }
  $("alerts-caption").textContent = "Hate and negative-sentiment spikes, newest first.";
  const list = h("ul", { id: "alerts-list" });
  for (const a of result.body.items) {
    const start = new Date(a.window_start);
    list.append(
      h(
        "li",
        { "data-id": a.id, "data-kind": a.kind },
        h("time", { datetime: a.window_start }, timeFormat.format(start)),
        ` ${a.kind} on ${a.source}: ${Math.round(a.rate * 100)}% of ${a.volume} messages `
          + `(baseline ${Math.round(a.baseline_rate * 100)}%)`,
      ),
    );
  }
  list.dataset.count = String(result.body.items.length);
  $("alerts-list").replaceWith(list);
  $("alerts-empty").hidden = result.body.items.length > 0;
}

function setupSearch() {
  $("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ limit: String(RECENT_LIMIT) });
    const words = $("search-q").value.trim();
    if (words) params.set("q", words);
    if ($("search-sentiment").value) params.set("sentiment", $("search-sentiment").value);
    if ($("search-hate").checked) params.set("hate", "true");
    if (state.source) params.set("source", state.source);
    if (state.term) params.set("term", state.term);
    if (state.lang) params.set("lang", state.lang);
    let result;
    try {
      result = await getJSON(`../recent/?${params}`);
    } catch (err) {
      result = { status: 0, body: { error: err.message } };
    }
    renderRecent(result, {
      table: "search-results", caption: "search-caption", empty: "search-empty",
    });
  });
}

function renderHealth(health, stats) {
  const badge = $("health-status");
  const status = health.body?.status || (health.status ? `HTTP ${health.status}` : "unknown");
  badge.dataset.status = status;
  badge.textContent = status;
  if (health.body) {
    $("health-detail").textContent = `${status} (app ${health.body.app})`;
    $("health-es").textContent = health.body.elasticsearch_reachable
      ? "reachable"
      : "unreachable";
    $("health-failing").textContent = health.body.failing_pipelines.length
      ? health.body.failing_pipelines.join(", ")
      : "none";
  }
  if (stats.status !== 200 || !stats.body) return;
  const pipelines = stats.body.pipelines || {};
  const body = h("tbody");
  for (const [name, p] of Object.entries(pipelines)) {
    body.append(
      h(
        "tr",
        { "data-pipeline": name },
        h("th", { scope: "row" }, name),
        ...[p.received, p.indexed, p.dead_lettered, p.batches, p.retries].map((n) =>
          h("td", {}, numberFormat.format(n || 0)),
        ),
        h("td", {}, p.last_batch_at ? timeFormat.format(p.last_batch_at * 1000) : "–"),
      ),
    );
  }
  $("pipelines-table").tBodies[0].replaceWith(body);

  const letters = stats.body.dead_letters || {};
  const list = $("dead-letters");
  const items = Object.entries(letters)
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => h("li", { "data-reason": reason }, `${reason}: ${numberFormat.format(n)}`));
  list.replaceChildren(...(items.length ? items : [h("li", { class: "empty" }, "none")]));
  setNumber($("kpi-dead-letters"), sum(Object.values(letters)));

  // Live rate: messages the pipelines received since the previous poll.
  const received = sum(Object.values(pipelines).map((p) => p.received || 0));
  const now = performance.now();
  if (state.lastReceived && received >= state.lastReceived.received) {
    const seconds = (now - state.lastReceived.at) / 1000;
    if (seconds > 0) state.rate = (received - state.lastReceived.received) / seconds;
  }
  state.lastReceived = { at: now, received };
  const rate = $("kpi-rate");
  rate.dataset.value = state.rate.toFixed(3);
  rate.textContent = state.rate.toFixed(1);
}

function showError(message, unreachable) {
  const banner = $("error-banner");
  const last = $("last-updated").dataset.epoch;
  banner.textContent =
    `${message}. Retrying every ${POLL_MS / 1000} s` +
    (last ? `; the figures below are from ${timeFormat.format(Number(last))}.` : ".");
  banner.hidden = false;
  if (unreachable) {
    const badge = $("health-status");
    badge.dataset.status = "unreachable";
    badge.textContent = "unreachable";
  }
}

function markUpdated() {
  const now = new Date();
  const node = $("last-updated");
  node.dateTime = now.toISOString();
  node.dataset.epoch = String(now.getTime());
  node.textContent = timeFormat.format(now);
  $("error-banner").hidden = true;
}

// One refresh of every panel. A source change starts one immediately, so two can overlap:
// only the newest one started may draw, or a slow answer for the old source would win.
async function refresh() {
  const seq = ++state.seq;
  const q = sourceQuery();
  try {
    const [sentiment, hate, health, stats, recent, alerts] = await Promise.all([
      getJSON(`../sentiment/?window=tumbling&limit=${WINDOW_SLOTS}${q}`),
      getJSON(`../hate/?window=tumbling&limit=${WINDOW_SLOTS}${q}`),
      getJSON("../health/"),
      getJSON("../stats/"),
      getJSON(`../recent/?hate=true&limit=${RECENT_LIMIT}${q}`),
      getJSON("../alerts/?limit=10"),
    ]);
    if (seq !== state.seq) return;
    for (const [name, r] of [
      ["/sentiment/", sentiment],
      ["/hate/", hate],
    ]) {
      if (r.status !== 200 || !r.body) {
        throw new Error(`${name} answered HTTP ${r.status}: ${r.body?.error || "no JSON body"}`);
      }
    }
    updateSources(sentiment.body);
    updateFacets(sentiment.body);
    renderTotals(sentiment.body, hate.body);
    renderTerms(sentiment.body, hate.body);
    renderCharts(sentiment.body, hate.body);
    renderRecent(recent);
    renderAlerts(alerts);
    renderHealth(health, stats);
    markUpdated();
  } catch (err) {
    if (seq !== state.seq) return;
    const unreachable = err instanceof Unreachable;
    showError(
      unreachable ? `Cannot reach the worker at ${location.host}` : err.message,
      unreachable,
    );
    if (!unreachable) console.error(err);
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const select = $("source-select");
  select.addEventListener("change", () => {
    state.source = select.value;
    state.lastReceived = null;
    refresh();
  });
  for (const name of ["term", "lang"]) {
    $(`${name}-select`).addEventListener("change", (e) => selectFacet(name, e.target.value));
  }
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  setupReveal();
  setupSearch();
  loop();
});
