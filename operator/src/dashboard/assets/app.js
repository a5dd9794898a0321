// The EOL dashboard: polls `api/state` (relative, so it works behind the API
// server's service proxy as well as a port-forward) and redraws. Every value
// from the cluster is inserted as text, never as markup.
'use strict';

const POLL_MS = 2000;
const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function condition(status, type) {
  return ((status && status.conditions) || []).find((c) => c.type === type);
}

function conditionText(c) {
  if (!c) return el('span', { class: 'unknown' }, '—');
  const cls = c.status === 'True' ? 'true' : c.status === 'False' ? 'false' : 'unknown';
  return el('span', { class: cls, title: c.message || '' }, `${c.reason || c.status}`);
}

function usd(n) {
  if (n === undefined || n === null) return '—';
  return n < 0.01 && n > 0 ? `$${n.toFixed(6)}` : `$${n.toFixed(2)}`;
}

function ago(time) {
  if (!time) return '—';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  if (seconds < 90) return `${seconds}s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

function took(start, end) {
  if (!start) return '—';
  const ms = (end ? Date.parse(end) : Date.now()) - Date.parse(start);
  return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)}s${end ? '' : '…'}`;
}

// A line chart of `value(point)` over the feature's history.
function chart(kind, title, points, value, format) {
  const W = 240, H = 70, P = 4;
  const values = points.map((p) => [p.at, value(p)]).filter(([, v]) => v !== null && v !== undefined);
  const box = svg('svg', { viewBox: `0 0 ${W} ${H}`, 'data-chart': kind, 'data-points': values.length, role: 'img' });
  let caption = `${title}: no data yet`;
  if (values.length > 0) {
    const t0 = points[0].at, t1 = points[points.length - 1].at;
    const max = Math.max(...values.map(([, v]) => v)) || 1;
    const x = (t) => (t1 === t0 ? W / 2 : P + ((t - t0) / (t1 - t0)) * (W - 2 * P));
    const y = (v) => H - P - (v / max) * (H - 2 * P - 10);
    const coords = values.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    box.append(svg('polyline', { points: coords.join(' ') }));
    const [lt, lv] = values[values.length - 1];
    box.append(svg('circle', { cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 2 }));
    box.append(svg('text', { x: P, y: 10 }, `max ${format(max)}`));
    caption = `${title}: ${format(lv)}`;
  }
  box.append(svg('title', {}, caption));
  return el('figure', { class: 'chart' }, el('figcaption', { 'data-caption': kind }, caption), box);
}

function operations(status) {
  const phases = (status && status.operationPhases) || {};
  const names = Object.keys(phases).sort();
  if (names.length === 0) return '—';
  return names.map((op) => el('span', { class: 'chip', 'data-operation': op, 'data-phase': phases[op] }, `${op}: ${phases[op]}`));
}

function switchText(status) {
  const parts = [];
  const c = condition(status, 'PhaseSwitch');
  if (c) parts.push(conditionText(c), ' ', c.message || '');
  const shadow = status && status.shadow;
  if (shadow) {
    parts.push(el('div', { 'data-field': 'shadow' },
      `shadow ${shadow.state} of ${shadow.candidate}: agreement ${shadow.agreement || '—'}`,
      (shadow.operations || []).map((o) => ` · ${o.name} ${o.agree}/${o.samples}`).join(''),
      shadow.canary ? ` · canary step ${shadow.canary.step} at ${shadow.canary.weight}% ${shadow.canary.progress || ''}` : ''));
  }
  return parts.length ? parts : '—';
}

function usageText(feature) {
  const usage = feature.status && feature.status.usage;
  if (!usage) return '—';
  const h = usage.lastHour || {}, d = usage.lastDay || {};
  const text = `last hour ${usd(h.cost)} · ${h.requests || 0} requests · ${(h.inputTokens || 0) + (h.outputTokens || 0)} tokens; last day ${usd(d.cost)}`;
  const budget = usage.budget ? ` · budget: ${usage.budget.summary}` : '';
  return `${text}${budget}`;
}

function featureCard(f, sampleSeconds) {
  const s = f.status || {};
  const key = `${f.namespace}/${f.name}`;
  const history = f.history || [];
  return el('article', { class: 'feature', 'data-feature': key },
    el('h3', {}, f.name, ' ', el('span', { class: 'ns' }, f.namespace)),
    el('dl', { class: 'facts' },
      el('dt', {}, 'Phase'), el('dd', { 'data-field': 'phase' }, s.phase || '—'),
      el('dt', {}, 'Desired'), el('dd', { 'data-field': 'desired-phase' }, s.desiredPhase || f.specPhase || '—'),
      el('dt', {}, 'Operations'), el('dd', { 'data-field': 'operations' }, operations(s)),
      el('dt', {}, 'Replicas'), el('dd', { 'data-field': 'replicas' }, `${s.readyReplicas || 0}/${f.specReplicas} ready`),
      el('dt', {}, 'Ready'), el('dd', { 'data-field': 'ready' }, conditionText(condition(s, 'Ready'))),
      el('dt', {}, 'Switch'), el('dd', { 'data-field': 'switch' }, switchText(s)),
      el('dt', {}, 'Usage'), el('dd', { 'data-field': 'usage' }, usageText(f))),
    el('div', { class: 'charts' },
      chart('latency', 'mean latency', history, (p) => p.latencyMs, (v) => `${v.toFixed(v < 10 ? 2 : 0)} ms`),
      chart('cost', `model cost per ${sampleSeconds} s`, history, (p) => p.costUsd, usd),
      chart('cache-hit-rate', 'cache hit rate', history, (p) => p.cacheHitRate, (v) => `${Math.round(v * 100)}%`)));
}

function runRow(r) {
  const s = r.status || {};
  const summary = s.summary || {};
  let result = '';
  if (summary.output !== undefined) result = JSON.stringify(summary.output);
  else if (summary.testsPassed !== undefined) result = `${summary.testsPassed} passed, ${summary.testsFailed || 0} failed`;
  if (result.length > 200) result = `${result.slice(0, 200)}…`;
  const extra = [summary.tokens ? `${summary.tokens} tokens` : '', summary.cost ? usd(summary.cost) : ''].filter(Boolean).join(' · ');
  return el('tr', { 'data-run': `${r.namespace}/${r.name}` },
    el('td', {}, r.name, ' ', el('span', { class: 'ns' }, r.namespace)),
    el('td', {}, r.feature),
    el('td', {}, r.tests ? 'tests' : (r.operation || '—')),
    el('td', {}, s.phase || '—'),
    el('td', { 'data-field': 'state' }, conditionText(condition(s, 'Succeeded'))),
    el('td', {}, ago(s.startTime || r.created)),
    el('td', {}, took(s.startTime, s.completionTime)),
    el('td', { class: 'result', 'data-field': 'result' }, result, extra ? el('div', {}, extra) : null));
}

// What the charts span: `samplesKept` points, one every `sampleSeconds`.
function chartSpanText(samplesKept, sampleSeconds) {
  const seconds = samplesKept * sampleSeconds;
  const span = seconds >= 120 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
  return `charts: the last ${span}, a point every ${sampleSeconds} s`;
}

function render(state) {
  document.getElementById('features').replaceChildren(...state.features.map((f) => featureCard(f, state.sampleSeconds)));
  document.getElementById('feature-count').textContent = `(${state.features.length})`;
  document.getElementById('chart-span').textContent = chartSpanText(state.samplesKept, state.sampleSeconds);
  document.querySelector('#runs tbody').replaceChildren(...state.runs.map(runRow));
  document.getElementById('run-count').textContent =
    state.runsTotal > state.runs.length ? `(newest ${state.runs.length} of ${state.runsTotal})` : `(${state.runs.length})`;
  document.body.dataset.generatedAt = state.generatedAt;
}

function setStatus(kind, text) {
  const status = document.getElementById('status');
  status.dataset.state = kind;
  status.textContent = text;
}

async function refresh() {
  try {
    const response = await fetch('api/state', { cache: 'no-store', credentials: 'same-origin' });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    render(body);
    setStatus('ok', `updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    setStatus('error', `not updated: ${error.message}`);
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
