// Usage charts as SVG: a row's 30-day sparkline and the detail panel's
// stacked bars of valid and refused verifications. Refused bars are hatched
// as well as coloured, so the two read apart without colour; every bar has
// a <title> with its counts, and the numbers are in data attributes.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attributes = {}) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  return node;
}

function title(text) {
  const t = el("title");
  t.textContent = text;
  return t;
}

/** A tiny bar chart of daily counts (`values`, oldest first), `width`×`height` px. */
export function sparkline(values, { width = 90, height = 18, label = "" } = {}) {
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "sparkline", role: "img" });
  svg.setAttribute("aria-label", label);
  const max = Math.max(1, ...values);
  const step = width / Math.max(1, values.length);
  values.forEach((value, i) => {
    const h = value === 0 ? 1 : Math.max(2, Math.round((value / max) * (height - 1)));
    const bar = el("rect", { x: (i * step).toFixed(2), y: height - h, width: Math.max(1, step - 1).toFixed(2), height: h });
    bar.setAttribute("class", value === 0 ? "spark-empty" : "spark-bar");
    svg.append(bar);
  });
  return svg;
}

function niceMax(value) {
  if (value <= 4) return 4;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const steps = [1, 2, 2.5, 5, 10].map((s) => s * magnitude);
  return steps.find((s) => s >= value) || 10 * magnitude;
}

/**
 * Stacked bars: `buckets` = [{ start, valid, refused }], labelled below by
 * `tick(start, index)` (an empty string skips a label). Returns a <figure>
 * with the chart and its legend.
 */
export function stackedBars(buckets, { tick, caption, width = 640, height = 200 } = {}) {
  const figure = document.createElement("figure");
  figure.className = "usage-chart";
  const left = 44, bottom = 22, top = 8, right = 8;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.valid + b.refused)));
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "bars" });
  svg.setAttribute("aria-label", caption || "Verifications");
  const defs = el("defs");
  const hatch = el("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  hatch.append(el("rect", { width: 6, height: 6, class: "refused-fill" }), el("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }));
  defs.append(hatch);
  svg.append(defs);
  // Value axis: 0, half and the top, with grid lines.
  for (const fraction of [0, 0.5, 1]) {
    const y = top + plotH - fraction * plotH;
    svg.append(el("line", { x1: left, x2: width - right, y1: y, y2: y, class: fraction === 0 ? "axis" : "grid" }));
    const label = el("text", { x: left - 6, y: y + 4, class: "tick", "text-anchor": "end" });
    label.textContent = String(Math.round(fraction * max));
    svg.append(label);
  }
  const step = plotW / Math.max(1, buckets.length);
  buckets.forEach((bucket, i) => {
    const x = left + i * step + step * 0.12;
    const w = Math.max(1, step * 0.76);
    const group = el("g", { class: "bucket", "data-start": bucket.start, "data-valid": bucket.valid, "data-refused": bucket.refused });
    group.append(title(`${tick ? tick(bucket.start, i, true) : bucket.start}: ${bucket.valid} valid, ${bucket.refused} refused`));
    const validH = (bucket.valid / max) * plotH;
    const refusedH = (bucket.refused / max) * plotH;
    const base = top + plotH;
    if (bucket.valid > 0) group.append(el("rect", { x, y: base - validH, width: w, height: validH, class: "valid" }));
    if (bucket.refused > 0) {
      group.append(el("rect", { x, y: base - validH - refusedH, width: w, height: refusedH, class: "refused", fill: "url(#hatch)" }));
    }
    svg.append(group);
    const text = tick ? tick(bucket.start, i, false) : "";
    if (text) {
      const label = el("text", { x: x + w / 2, y: height - 6, class: "tick", "text-anchor": "middle" });
      label.textContent = text;
      svg.append(label);
    }
  });
  figure.append(svg);
  const legend = document.createElement("figcaption");
  legend.className = "legend";
  for (const [className, text] of [["valid", "Valid"], ["refused", "Refused (hatched)"]]) {
    const item = document.createElement("span");
    const swatch = el("svg", { width: 14, height: 14, "aria-hidden": "true" });
    swatch.append(el("rect", { width: 14, height: 14, class: className, fill: className === "refused" ? "url(#hatch)" : "" }));
    item.append(swatch, ` ${text}`);
    legend.append(item);
  }
  figure.append(legend);
  return figure;
}
