// Pools with counts per status, pending operations and every machine,
// kept current by the live channel. Machines move between pools by
// dragging them onto a pool card or with each row's pool select.

import { api, all, can } from './api.js';
import { h, clear, badge, when, pager, attempt, STATUSES, label, debounce, field, byName } from './dom.js';
import { subscribe } from './live.js';
import { draggable } from './drag.js';

const PER_PAGE = 50;

export async function render(main) {
  const view = { pools: [], machines: new Map(), ops: new Map(), page: 1, text: '', status: '', pool: '', choice: new Map() };
  const poolsBox = h('div', { class: 'grid', id: 'pools' });
  const opsBox = h('div', { id: 'pending' });
  const machinesBox = h('div', { id: 'machines' });

  async function load() {
    const [pools, machines, queued, running] = await Promise.all([
      all('/api/pools'), all('/api/endpoints'),
      api.get('/ui/data/operations?status=queued&per_page=100'),
      api.get('/ui/data/operations?status=running&per_page=100'),
    ]);
    view.pools = pools;
    view.machines = new Map(machines.map((m) => [m.id, m]));
    view.ops = new Map([...queued.items, ...running.items].map((o) => [o.id, o]));
    draw();
  }

  function poolName(id) {
    const p = view.pools.find((x) => x.id === id);
    return p ? p.name : null;
  }

  async function move(m, poolId) {
    if ((m.pool_id || null) === (poolId || null)) return;
    const r = await attempt(`${m.name} moved to ${poolName(poolId) || 'no pool'}`,
      () => api.patch(`/api/endpoints/${m.id}`, { pool_id: poolId }));
    if (r) { view.machines.set(m.id, r); draw(); }
  }

  function drawPools() {
    const counts = new Map();
    for (const m of view.machines.values()) {
      const key = m.pool_id || '';
      if (!counts.has(key)) counts.set(key, {});
      const c = counts.get(key);
      c[m.status] = (c[m.status] || 0) + 1;
    }
    const card = (id, name, link) => {
      const c = counts.get(id) || {};
      const total = Object.values(c).reduce((a, b) => a + b, 0);
      return h('article', { class: 'card', dataset: { dropPool: id }, 'aria-label': `Pool ${name}` },
        h('h3', {}, link ? h('a', { href: link }, name) : name),
        h('p', { class: 'muted' }, `${total} machine${total === 1 ? '' : 's'}`),
        h('div', { class: 'counts' }, STATUSES.filter((s) => c[s]).map((s) =>
          h('span', { class: `badge s-${s}`, dataset: { count: s } }, `${label(s)}: ${c[s]}`))));
    };
    clear(poolsBox,
      view.pools.map((p) => card(p.id, p.name, `#/pools/${p.id}`)),
      card('', 'Unassigned', null));
  }

  function drawOps() {
    const ops = [...view.ops.values()].filter((o) => o.status === 'queued' || o.status === 'running');
    if (!ops.length) { clear(opsBox, h('p', { class: 'muted' }, 'No operation is queued or running.')); return; }
    clear(opsBox, h('table', {},
      h('thead', {}, h('tr', {}, ['Machine', 'Kind', 'Status', 'Progress', 'Requested by', 'Since'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, ops.map((o) => h('tr', {},
        h('td', {}, h('a', { href: `#/machines/${o.endpoint_id}` }, view.machines.get(o.endpoint_id)?.name || o.endpoint_id)),
        h('td', {}, o.kind), h('td', {}, badge(o.status)),
        h('td', {}, h('progress', { max: 100, value: o.progress, 'aria-label': `Progress of ${o.kind}` }), ` ${o.progress}%`),
        h('td', {}, o.requested_by), h('td', {}, when(o.created_at)))))));
  }

  function drawMachines() {
    const text = view.text.toLowerCase();
    const list = [...view.machines.values()]
      .filter((m) => (!text || m.name.toLowerCase().includes(text))
        && (!view.status || m.status === view.status)
        && (!view.pool || (view.pool === '-' ? !m.pool_id : m.pool_id === view.pool)))
      .sort(byName);
    const pages = Math.max(1, Math.ceil(list.length / PER_PAGE));
    view.page = Math.min(view.page, pages);
    const shown = list.slice((view.page - 1) * PER_PAGE, view.page * PER_PAGE);
    const pending = new Map([...view.ops.values()].filter((o) => o.status === 'queued' || o.status === 'running').map((o) => [o.endpoint_id, o]));
    const admin = can.admin();
    const rows = shown.map((m) => {
      const handle = admin ? h('span', { class: 'handle', title: 'Drag onto a pool', 'aria-hidden': 'true' }, '⠿') : null;
      if (handle) draggable(handle, m.name, (poolId) => move(m, poolId));
      const op = pending.get(m.id);
      let mover = null;
      if (admin) {
        // A redraw keeps what the user picked and where the focus was.
        const chosen = view.choice.has(m.id) ? view.choice.get(m.id) : (m.pool_id || '');
        const sel = h('select', { 'aria-label': `Pool for ${m.name}`, dataset: { focusKey: `pool:${m.id}` },
          onchange: () => view.choice.set(m.id, sel.value) },
        h('option', { value: '' }, 'No pool'),
        view.pools.map((p) => h('option', { value: p.id, selected: p.id === chosen }, p.name)));
        mover = h('span', {}, sel, ' ', h('button', { type: 'button', class: 'ghost', dataset: { focusKey: `move:${m.id}` },
          onclick: () => { view.choice.delete(m.id); move(m, sel.value || null); } }, 'Move'));
      }
      return h('tr', { dataset: { machine: m.id, name: m.name } },
        h('td', {}, handle, h('a', { href: `#/machines/${m.id}` }, m.name)),
        h('td', { class: 'pool' }, m.pool_id ? h('a', { href: `#/pools/${m.pool_id}` }, poolName(m.pool_id) || m.pool_name) : h('span', { class: 'muted' }, 'none')),
        h('td', { class: 'status' }, badge(m.status)),
        h('td', {}, when(m.last_seen_at)),
        h('td', {}, op ? `${op.kind} ${op.status} ${op.progress}%` : ''),
        admin ? h('td', {}, mover) : null);
    });
    const focused = machinesBox.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    clear(machinesBox,
      h('table', {}, h('thead', {}, h('tr', {}, ['Machine', 'Pool', 'Status', 'Last seen', 'Operation', admin ? 'Move to pool' : null]
        .filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows)),
      pager(view.page, PER_PAGE, list.length, (p) => { view.page = p; drawMachines(); }));
    if (focused) machinesBox.querySelector(`[data-focus-key="${focused}"]`)?.focus();
  }

  function draw() { drawPools(); drawOps(); drawMachines(); }

  const text = h('input', { type: 'search', id: 'machine-filter', oninput: () => { view.text = text.value; view.page = 1; drawMachines(); } });
  const status = h('select', { id: 'status-filter', onchange: () => { view.status = status.value; view.page = 1; drawMachines(); } },
    h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s }, label(s))));

  let create = null;
  if (can.admin()) {
    const name = h('input', { id: 'new-pool-name', required: true, maxlength: 200 });
    create = h('form', { class: 'row', id: 'create-pool' }, field('New pool', name), h('button', { type: 'submit' }, 'Create pool'));
    create.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const p = await attempt(`Pool ${name.value} created`, () => api.post('/api/pools', { name: name.value }));
      if (p) { name.value = ''; view.pools.push(p); draw(); }
    });
  }

  clear(main,
    h('h1', {}, 'Dashboard'),
    h('section', { class: 'panel', 'aria-labelledby': 'pools-h' }, h('h2', { id: 'pools-h' }, 'Pools'),
      can.admin() ? h('p', { class: 'muted' }, 'Drag a machine by its handle onto a pool, or use the pool select in its row.') : null,
      create, poolsBox),
    h('section', { class: 'panel', 'aria-labelledby': 'ops-h' }, h('h2', { id: 'ops-h' }, 'Pending operations'), opsBox),
    h('section', { class: 'panel', 'aria-labelledby': 'machines-h' }, h('h2', { id: 'machines-h' }, 'Machines'),
      h('div', { class: 'row' }, field('Name', text), field('Status', status)), machinesBox));

  await load();
  const reload = debounce(() => load().catch(() => {}), 300);
  const redraw = debounce(draw, 50);
  return subscribe((msg) => {
    if (msg.type === 'endpoint_status') {
      const m = view.machines.get(msg.endpoint_id);
      if (!m) { reload(); return; }
      m.status = msg.status; m.pool_id = msg.pool_id;
      redraw();
    } else if (msg.type === 'operation_progress') {
      view.ops.set(msg.operation.id, msg.operation);
      redraw();
    } else if (msg.type === 'resync' || msg.type === 'target_changed') {
      reload();
    }
  });
}

