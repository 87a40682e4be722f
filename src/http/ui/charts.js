// Charts as inline SVG: line charts over time and the queue table's
// sparklines. No library: the page loads nothing from elsewhere.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

// A round upper bound for an axis: 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(ms, withSeconds) {
  const d = new Date(ms);
  const two = n => String(n).padStart(2, "0");
  return two(d.getHours()) + ":" + two(d.getMinutes()) + (withSeconds ? ":" + two(d.getSeconds()) : "");
}

// Draws a line chart into `box`: `t` the times (Unix ms), `series` a list
// of {label, color, values}, `fmt` formats a value (axis and legend).
function lineChart(box, t, series, fmt) {
  const w = Math.max(300, box.clientWidth || 600), h = box.classList.contains("small") ? 120 : 170;
  const left = 58, right = 10, top = 8, bottom = 22;
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const item = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.background = s.color;
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    const b = document.createElement("b");
    b.textContent = last == null ? "–" : fmt(last);
    item.append(sw, document.createTextNode(s.label), b);
    legend.append(item);
  }
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, height: h, class: "timechart", "data-points": t.length });
  const plotW = w - left - right, plotH = h - top - bottom;
  if (t.length < 2) {
    const msg = svgEl("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "nodata" });
    msg.textContent = "collecting samples…";
    svg.append(msg);
    box.replaceChildren(legend, svg);
    return;
  }
  const max = niceMax(Math.max(0, ...series.flatMap(s => s.values)));
  // Grid values are max/4 apart: as many decimals as that step needs.
  const step = max / 4;
  let decimals = 0;
  while (decimals < 3 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-9) decimals++;
  const axis = v => (decimals > 0 ? String(Number(v.toFixed(decimals))) : fmt(v));
  const t0 = t[0], t1 = t[t.length - 1], span = Math.max(1, t1 - t0);
  const x = ms => left + (ms - t0) / span * plotW;
  const y = v => top + plotH - (v / max) * plotH;
  for (let i = 0; i <= 4; i++) {
    const v = max * i / 4, yy = y(v);
    svg.append(svgEl("line", { x1: left, x2: w - right, y1: yy, y2: yy, class: "grid" }));
    const label = svgEl("text", { x: left - 6, y: yy + 3, "text-anchor": "end", class: "axis" });
    label.textContent = axis(v);
    svg.append(label);
  }
  const ticks = Math.max(1, Math.min(5, Math.floor(span / 1000))), withSeconds = span < 10 * 60 * 1000;
  for (let i = 0; i <= ticks; i++) {
    const ms = t0 + span * i / ticks;
    const label = svgEl("text", {
      x: x(ms), y: h - 6, class: "axis",
      "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle",
    });
    label.textContent = timeLabel(ms, withSeconds);
    svg.append(label);
  }
  for (const s of series) {
    const pts = s.values.map((v, i) => `${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    const line = svgEl("polyline", { points: pts, stroke: s.color, "data-series": s.label });
    svg.append(line);
  }
  box.replaceChildren(legend, svg);
}

// The queue table's sparkline of recent depths.
function sparkline(values) {
  const w = 160, h = 28, pad = 2;
  const svg = svgEl("svg", {
    class: "sparkline", width: w, height: h, viewBox: `0 0 ${w} ${h}`, "data-values": values.join(","),
  });
  const vs = values.length > 1 ? values : [values[0] || 0, values[0] || 0];
  const max = Math.max(1, ...vs);
  const step = (w - 2 * pad) / (vs.length - 1);
  const pts = vs.map((v, i) =>
    `${(pad + i * step).toFixed(1)},${(h - pad - (v / max) * (h - 2 * pad)).toFixed(1)}`);
  svg.append(
    svgEl("polygon", { points: `${pad},${h - pad} ${pts.join(" ")} ${w - pad},${h - pad}` }),
    svgEl("polyline", { points: pts.join(" ") }),
  );
  const title = svgEl("title");
  title.textContent = `max ${Math.max(...vs)}, now ${vs[vs.length - 1]}`;
  svg.append(title);
  return svg;
}
