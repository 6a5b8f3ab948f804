// Small DOM helpers: elements from data (text never parsed as HTML),
// tables, pagers, status badges and notices.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const STATUSES = ['in_sync', 'behind', 'ahead', 'diverged', 'syncing', 'error', 'offline', 'no_target', 'unassigned'];

// Sorts by name the way people read them; one collator for all, since
// String.localeCompare makes a new one per call (a thousand machines'
// sort took tens of milliseconds).
const collator = new Intl.Collator();
export const byName = (a, b) => collator.compare(a.name, b.name);

export function label(s) {
  return String(s || '').replace(/_/g, ' ');
}

export function badge(status) {
  return h('span', { class: `badge s-${status}`, dataset: { status } }, label(status));
}

export function when(t) {
  if (!t) return h('span', { class: 'muted' }, 'never');
  const d = new Date(t);
  return h('time', { datetime: t, title: d.toISOString() }, d.toLocaleString());
}

// columns: [{title, cell: row => node|text}]
export function table(caption, columns, rows, rowAttrs) {
  return h('table', {},
    caption ? h('caption', { class: 'muted' }, caption) : null,
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.title)))),
    h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h('td', {}, c.cell(r)))))));
}

export function pager(page, perPage, total, go) {
  const pages = Math.max(1, Math.ceil(total / perPage));
  return h('div', { class: 'pager', role: 'navigation', 'aria-label': 'Pages' },
    h('button', { type: 'button', class: 'ghost', disabled: page <= 1, onclick: () => go(page - 1) }, 'Previous'),
    h('span', {}, `Page ${page} of ${pages} (${total})`),
    h('button', { type: 'button', class: 'ghost', disabled: page >= pages, onclick: () => go(page + 1) }, 'Next'));
}

export function toast(message, kind) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind || ''}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

// Runs an action, tells the user how it went; returns its result or null.
export async function attempt(what, fn) {
  try {
    const r = await fn();
    toast(what);
    return r ?? true;
  } catch (e) {
    toast(`${e.message}`, 'error');
    return null;
  }
}

export function field(text, input) {
  return h('label', {}, h('span', {}, text), input);
}

// Appends make(item) for every item to parent, `size` at a time: the
// first slice at once, each next one after the browser drew a frame, so a
// big table never holds the page for long. A newer call for the same
// parent stops an older one's remaining slices.
const slicing = new WeakMap();
export function appendInSlices(parent, items, make, size) {
  const run = {};
  slicing.set(parent, run);
  let at = 0;
  const next = () => {
    if (slicing.get(parent) !== run) return;
    parent.append(...items.slice(at, at + size).map(make));
    at += size;
    if (at < items.length) requestAnimationFrame(() => setTimeout(next, 0));
    else parent.dataset.complete = 'true';
  };
  delete parent.dataset.complete;
  next();
}

// Debounces reloads triggered by bursts of live events.
export function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}
