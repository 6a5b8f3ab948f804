// One machine: its status, the plan to its pool's target (the diff), its
// installed packages, its operations with live progress, and the actions
// (sync, revert, set as latest, move, remove).

import { api, all, can } from './api.js';
import { h, clear, badge, when, pager, attempt, field, debounce } from './dom.js';
import { subscribe } from './live.js';

const PER_PAGE = 100;

export async function render(main, id) {
  let m = await api.get(`/api/endpoints/${id}`);
  const pools = await all('/api/pools');
  const headBox = h('div', { id: 'machine-head' });
  const planBox = h('div', { id: 'plan', 'aria-live': 'polite' });
  const opsBox = h('div', { id: 'operations' });
  const stateBox = h('div', { id: 'state' });
  let planKind = 'sync';

  function drawHead() {
    const operate = can.operate();
    const admin = can.admin();
    const act = (text, idAttr, fn, cls) => h('button', { type: 'button', id: idAttr, class: cls, disabled: !operate, onclick: fn }, text);
    const sel = h('select', { id: 'machine-pool', disabled: !admin },
      h('option', { value: '' }, 'No pool'), pools.map((p) => h('option', { value: p.id, selected: p.id === m.pool_id }, p.name)));
    clear(headBox,
      h('dl', { class: 'row' },
        h('dt', {}, 'Status'), h('dd', { id: 'machine-status' }, badge(m.status)),
        h('dt', {}, 'Pool'), h('dd', {}, m.pool_id ? h('a', { href: `#/pools/${m.pool_id}` }, m.pool_name) : 'none'),
        h('dt', {}, 'Last seen'), h('dd', {}, when(m.last_seen_at)),
        h('dt', {}, 'State'), h('dd', { class: 'mono' }, m.state_hash ? m.state_hash.slice(0, 12) : 'not reported')),
      m.last_error ? h('p', { class: 'error-text', role: 'alert' }, `Last error: ${m.last_error}`) : null,
      operate ? h('div', { class: 'row', role: 'group', 'aria-label': 'Actions' },
        act('Sync to target', 'sync', () => request('sync')),
        act('Revert', 'revert', () => request('revert')),
        act('Set as latest', 'set-latest', setLatest, 'ghost')) : null,
      admin ? h('div', { class: 'row' }, field('Pool', sel),
        h('button', { type: 'button', class: 'ghost', id: 'move', onclick: async () => {
          const r = await attempt('Machine moved', () => api.patch(`/api/endpoints/${id}`, { pool_id: sel.value || null }));
          if (r) { m = r; refresh(); }
        } }, 'Move'),
        h('button', { type: 'button', class: 'danger', id: 'remove', onclick: remove }, 'Remove machine')) : null);
  }

  async function request(kind) {
    if (await attempt(`${kind} requested`, () => api.post(`/api/endpoints/${id}/${kind}`))) refresh();
  }

  async function setLatest() {
    const comment = window.prompt(`Make ${m.name}'s current state the pool's new target? Optional comment:`, '');
    if (comment === null) return;
    if (await attempt('New target set', () => api.post(`/api/endpoints/${id}/set-latest`, comment ? { comment } : {}))) refresh();
  }

  async function remove() {
    if (!window.confirm(`Remove ${m.name}? Its credentials stop working.`)) return;
    if (await attempt('Machine removed', () => api.del(`/api/endpoints/${id}`))) location.hash = '#/';
  }

  async function drawPlan() {
    const kinds = h('select', { id: 'plan-kind', onchange: () => { planKind = kinds.value; drawPlan(); } },
      h('option', { value: 'sync', selected: planKind === 'sync' }, 'Sync to target'),
      h('option', { value: 'revert', selected: planKind === 'revert' }, 'Revert'));
    let body;
    try {
      const plan = await api.get(`/api/endpoints/${id}/plan?kind=${planKind}`);
      const s = plan.summary;
      body = [h('p', { id: 'plan-summary' }, plan.steps.length ? `${s.install} install, ${s.upgrade} upgrade, ${s.downgrade} downgrade, ${s.remove} remove, ${s.reason_change} reason change` : 'Nothing to do: the machine matches.'),
        plan.steps.length ? h('div', { class: 'scroll' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Package', 'Installed', 'Target', 'Action'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, plan.steps.map((st) => h('tr', {}, h('td', {}, st.name), h('td', { class: 'mono' }, st.installed || '—'),
            h('td', { class: 'mono' }, st.target || '—'), h('td', {}, st.action + (st.set_reason ? ` (→ ${st.set_reason})` : ''))))))) : null];
    } catch (e) {
      body = h('p', { class: 'muted' }, e.message);
    }
    clear(planBox, h('div', { class: 'row' }, field('Preview', kinds)), body);
  }

  let opsPage = 1;
  async function drawOps() {
    const page = await api.get(`/api/endpoints/${id}/operations?page=${opsPage}&per_page=20`);
    const operate = can.operate();
    clear(opsBox, page.items.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['Kind', 'Status', 'Progress', 'Message', 'Requested by', 'Created', 'Finished', operate ? 'Action' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, page.items.map((o) => h('tr', { dataset: { operation: o.id } },
        h('td', {}, o.kind), h('td', {}, badge(o.status)),
        h('td', {}, h('progress', { max: 100, value: o.progress, 'aria-label': `Progress of ${o.kind}` }), ` ${o.progress}%`),
        h('td', {}, o.message || ''), h('td', {}, o.requested_by), h('td', {}, when(o.created_at)), h('td', {}, when(o.finished_at)),
        operate ? h('td', {}, (o.status === 'queued' || o.status === 'running') ? h('button', { type: 'button', class: 'ghost', onclick: async () => {
          if (await attempt('Operation cancelled', () => api.post(`/api/operations/${o.id}/cancel`))) drawOps();
        } }, 'Cancel') : '') : null))))
      : h('p', { class: 'muted' }, 'No operations yet.'),
    pager(opsPage, 20, page.total, (p) => { opsPage = p; drawOps(); }));
  }

  let packages = null; let statePage = 1; let filter = '';
  async function drawState() {
    if (!packages) {
      try { packages = (await api.get(`/api/endpoints/${id}/state`)).packages; } catch (e) { clear(stateBox, h('p', { class: 'muted' }, e.message)); return; }
    }
    const shown = packages.filter((p) => !filter || p.name.includes(filter));
    const input = h('input', { type: 'search', id: 'state-filter', value: filter });
    input.addEventListener('input', debounce(() => { filter = input.value; statePage = 1; drawState().then(() => stateBox.querySelector('#state-filter').focus()); }, 200));
    clear(stateBox, h('div', { class: 'row' }, field('Filter packages', input), h('span', { class: 'muted' }, `${shown.length} of ${packages.length}`)),
      h('table', {}, h('thead', {}, h('tr', {}, ['Package', 'Version', 'Reason', 'Repository'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, shown.slice((statePage - 1) * PER_PAGE, statePage * PER_PAGE).map((p) => h('tr', {},
          h('td', {}, p.name), h('td', { class: 'mono' }, p.version), h('td', {}, p.reason), h('td', {}, p.origin || 'foreign'))))),
      pager(statePage, PER_PAGE, shown.length, (p) => { statePage = p; drawState(); }));
  }

  async function refresh() {
    m = await api.get(`/api/endpoints/${id}`);
    drawHead(); drawPlan(); drawOps();
  }

  clear(main,
    h('p', {}, h('a', { href: '#/' }, '← Dashboard')),
    h('h1', {}, `Machine ${m.name}`),
    h('section', { class: 'panel', 'aria-label': 'Status and actions' }, headBox),
    h('section', { class: 'panel', 'aria-labelledby': 'plan-h' }, h('h2', { id: 'plan-h' }, 'Difference to the target (plan)'), planBox),
    h('section', { class: 'panel', 'aria-labelledby': 'ops-h' }, h('h2', { id: 'ops-h' }, 'Operations'), opsBox),
    h('section', { class: 'panel', 'aria-labelledby': 'state-h' }, h('h2', { id: 'state-h' }, 'Installed packages'), stateBox));
  drawHead();
  await Promise.all([drawPlan(), drawOps(), drawState()]);
  const later = debounce(() => { packages = null; refresh().then(drawState).catch(() => {}); }, 200);
  return subscribe((msg) => {
    if (msg.type === 'endpoint_status' && msg.endpoint_id === id) {
      m.status = msg.status;
      clear(headBox.querySelector('#machine-status'), badge(msg.status));
      later();
    } else if (msg.type === 'operation_progress' && msg.operation.endpoint_id === id) {
      drawOps();
    } else if (msg.type === 'resync' || (msg.type === 'target_changed' && msg.pool_id === m.pool_id)) {
      later();
    }
  });
}

