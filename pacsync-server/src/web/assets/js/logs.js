// The operations log (every machine, live) and the audit log, each
// filtered on the server and paged.

import { api, q } from './api.js';
import { h, clear, badge, when, pager, field, debounce } from './dom.js';
import { subscribe } from './live.js';

const PER_PAGE = 50;

function filtered(main, title, path, filters, columns, liveType) {
  const box = h('div', { id: 'log' });
  let page = 1;
  async function draw() {
    const params = filters.map((f) => f.input.value ? `${f.key}=${q(f.input.value)}` : null).filter(Boolean);
    params.push(`page=${page}`, `per_page=${PER_PAGE}`);
    const r = await api.get(`${path}?${params.join('&')}`);
    clear(box, r.items.length ? h('table', {},
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.title)))),
      h('tbody', {}, r.items.map((it) => h('tr', {}, columns.map((c) => h('td', {}, c.cell(it)))))))
      : h('p', { class: 'muted' }, 'Nothing matches.'),
    pager(page, PER_PAGE, r.total, (p) => { page = p; draw(); }));
  }
  const again = debounce(() => { page = 1; draw(); }, 250);
  for (const f of filters) f.input.addEventListener(f.input.tagName === 'SELECT' ? 'change' : 'input', again);
  clear(main, h('h1', {}, title),
    h('section', { class: 'panel' }, h('form', { class: 'row', role: 'search', onsubmit: (e) => { e.preventDefault(); again(); } },
      filters.map((f) => field(f.label, f.input))), box));
  const live = debounce(() => draw().catch(() => {}), 300);
  return draw().then(() => (liveType ? subscribe((m) => { if (m.type === liveType || m.type === 'resync') live(); }) : null));
}

export function renderOperations(main) {
  const status = h('select', { id: 'op-status' }, h('option', { value: '' }, 'any'),
    ['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => h('option', { value: s }, s)));
  const kind = h('select', { id: 'op-kind' }, h('option', { value: '' }, 'any'),
    ['sync', 'revert', 'set_latest'].map((s) => h('option', { value: s }, s)));
  const machine = h('input', { type: 'search', id: 'op-machine' });
  return filtered(main, 'Operations', '/ui/data/operations', [
    { key: 'status', label: 'Status', input: status },
    { key: 'kind', label: 'Kind', input: kind },
    { key: 'machine', label: 'Machine', input: machine },
  ], [
    { title: 'Machine', cell: (o) => h('a', { href: `#/machines/${o.endpoint_id}` }, o.endpoint_name) },
    { title: 'Kind', cell: (o) => o.kind },
    { title: 'Status', cell: (o) => badge(o.status) },
    { title: 'Progress', cell: (o) => [h('progress', { max: 100, value: o.progress, 'aria-label': 'Progress' }), ` ${o.progress}%`] },
    { title: 'Message', cell: (o) => o.message || '' },
    { title: 'Requested by', cell: (o) => o.requested_by },
    { title: 'Created', cell: (o) => when(o.created_at) },
    { title: 'Finished', cell: (o) => when(o.finished_at) },
  ], 'operation_progress');
}

export function renderAudit(main) {
  const input = (id) => h('input', { type: 'search', id });
  return filtered(main, 'Audit log', '/ui/data/audit', [
    { key: 'actor', label: 'Who', input: input('audit-actor') },
    { key: 'action', label: 'Action', input: input('audit-action') },
    { key: 'subject', label: 'Subject', input: input('audit-subject') },
  ], [
    { title: 'When', cell: (e) => when(e.at) },
    { title: 'Who', cell: (e) => e.actor },
    { title: 'Action', cell: (e) => e.action },
    { title: 'Subject', cell: (e) => h('span', { class: 'mono' }, e.subject) },
    { title: 'Details', cell: (e) => h('span', { class: 'mono' }, e.details === null ? '' : JSON.stringify(e.details)) },
  ], null);
}
