// One pool: its target and history (diff between any two, rollback), its
// policy, and its members.

import { api, all, can, q } from './api.js';
import { h, clear, badge, when, pager, attempt, field, debounce, byName } from './dom.js';
import { subscribe } from './live.js';

const PER_PAGE = 50;

export async function render(main, id) {
  let pool = await api.get(`/api/pools/${id}`);
  const targetBox = h('div', { id: 'targets' });
  const diffBox = h('div', { id: 'diff', 'aria-live': 'polite' });
  const policyBox = h('div', { id: 'policy' });
  const membersBox = h('div', { id: 'members' });
  let memberPage = 1;

  async function drawTargets() {
    const hist = await all(`/api/pools/${id}/targets`);
    if (!hist.length) { clear(targetBox, h('p', { class: 'muted' }, 'No target yet: set one from a machine ("Set as latest").')); return; }
    const admin = can.admin();
    const rows = hist.map((t) => h('tr', { dataset: { target: t.id } },
      h('td', {}, `#${t.seq}`, t.id === pool.current_target_id ? h('strong', {}, ' (current)') : null),
      h('td', {}, t.kind), h('td', {}, t.created_by),
      h('td', {}, t.from_endpoint_id ? h('a', { href: `#/machines/${t.from_endpoint_id}` }, t.from_endpoint_name || t.from_endpoint_id) : '—'),
      h('td', {}, when(t.created_at)), h('td', {}, t.comment || ''),
      h('td', {}, h('input', { type: 'radio', name: 'diff-a', value: t.id, 'aria-label': `Compare from #${t.seq}` })),
      h('td', {}, h('input', { type: 'radio', name: 'diff-b', value: t.id, 'aria-label': `Compare to #${t.seq}` })),
      admin ? h('td', {}, t.id === pool.current_target_id ? '' : h('button', { type: 'button', class: 'ghost', onclick: () => rollback(t) }, `Roll back to #${t.seq}`)) : null));
    const form = h('form', { id: 'diff-form' },
      h('table', {}, h('thead', {}, h('tr', {}, ['Target', 'Kind', 'Set by', 'From machine', 'When', 'Comment', 'From', 'To', admin ? 'Rollback' : null]
        .filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, rows)),
      h('div', { class: 'row' }, h('button', { type: 'submit', disabled: hist.length < 2 }, 'Compare the two selected targets')));
    const radios = (n) => form.querySelectorAll(`input[name="${n}"]`);
    if (hist.length >= 2) { radios('diff-a')[1].checked = true; radios('diff-b')[0].checked = true; }
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const a = form.querySelector('input[name="diff-a"]:checked');
      const b = form.querySelector('input[name="diff-b"]:checked');
      if (a && b) diff(a.value, b.value, hist);
    });
    clear(targetBox, form);
  }

  async function diff(a, b, hist) {
    const [ta, tb] = await Promise.all([api.get(`/api/pools/${id}/targets/${a}`), api.get(`/api/pools/${id}/targets/${b}`)]);
    const seq = (x) => hist.find((t) => t.id === x)?.seq;
    const names = [...new Set([...Object.keys(ta.packages), ...Object.keys(tb.packages)])].sort();
    const changes = names.map((n) => {
      const va = ta.packages[n]?.version; const vb = tb.packages[n]?.version;
      const kind = !va ? 'added' : !vb ? 'removed' : va !== vb ? 'changed' : null;
      return kind && { n, va, vb, kind };
    }).filter(Boolean);
    clear(diffBox, h('h3', {}, `Target #${seq(a)} → #${seq(b)}: ${changes.length} difference${changes.length === 1 ? '' : 's'}`),
      changes.length ? h('div', { class: 'scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Package', `#${seq(a)}`, `#${seq(b)}`, 'Change'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, changes.map((c) => h('tr', {}, h('td', {}, c.n), h('td', { class: 'mono' }, c.va || '—'),
          h('td', { class: 'mono' }, c.vb || '—'), h('td', { class: c.kind }, c.kind)))))) : h('p', {}, 'The two targets are the same.'));
  }

  async function rollback(t) {
    const comment = window.prompt(`Roll the pool back to target #${t.seq}? Optional comment:`, '');
    if (comment === null) return;
    const r = await attempt(`Rolled back to #${t.seq}`, () => api.post(`/api/pools/${id}/rollback`,
      { target_id: t.id, comment: comment || undefined, expected_target: pool.current_target_id }));
    if (r) { pool = await api.get(`/api/pools/${id}`); drawTargets(); }
  }

  function drawPolicy() {
    const admin = can.admin();
    const desc = h('input', { id: 'pool-description', value: pool.description || '', maxlength: 2000 });
    const excl = h('textarea', { id: 'pool-exclusions', rows: 4, cols: 40 });
    excl.value = (pool.exclusions || []).join('\n');
    const extras = h('input', { type: 'checkbox', id: 'pool-keep-extras', checked: pool.keep_extras });
    const auto = h('input', { type: 'checkbox', id: 'pool-auto-sync', checked: pool.auto_sync });
    const grace = h('input', { type: 'number', id: 'pool-grace', min: 60, max: 31536000, value: pool.offline_grace_secs });
    const form = h('form', { class: 'stack', id: 'policy-form' },
      h('fieldset', { disabled: !admin },
        h('legend', {}, admin ? 'Policy' : 'Policy (read only)'),
        h('label', { for: 'pool-description' }, 'Description', desc),
        h('label', { for: 'pool-exclusions' }, 'Exclusion patterns (globs, one per line)', excl),
        h('label', { class: 'check', for: 'pool-keep-extras' }, extras, 'Keep extra packages (machines may have more than the target)'),
        h('label', { class: 'check', for: 'pool-auto-sync' }, auto, 'Sync machines automatically when the target changes'),
        h('label', { for: 'pool-grace' }, 'Offline after (seconds without a report)', grace),
        admin ? h('button', { type: 'submit' }, 'Save policy') : null));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const body = {
        description: desc.value, keep_extras: extras.checked, auto_sync: auto.checked,
        offline_grace_secs: Number(grace.value),
        exclusions: excl.value.split('\n').map((s) => s.trim()).filter(Boolean),
      };
      const r = await attempt('Policy saved', () => api.patch(`/api/pools/${id}`, body));
      if (r) pool = r;
    });
    clear(policyBox, form);
  }

  async function drawMembers() {
    const page = await api.get(`/api/endpoints?pool_id=${q(id)}&page=${memberPage}&per_page=${PER_PAGE}`);
    const admin = can.admin();
    let adder = null;
    if (admin) {
      const others = (await all('/api/endpoints')).filter((m) => m.pool_id !== id).sort(byName);
      const sel = h('select', { id: 'add-member' }, others.map((m) => h('option', { value: m.id }, `${m.name}${m.pool_name ? ` (in ${m.pool_name})` : ''}`)));
      adder = h('form', { class: 'row', id: 'add-member-form' }, field('Add machine', sel),
        h('button', { type: 'submit', disabled: !others.length }, 'Add to pool'));
      adder.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        if (await attempt('Machine added', () => api.patch(`/api/endpoints/${sel.value}`, { pool_id: id }))) drawMembers();
      });
    }
    const rows = page.items.map((m) => h('tr', { dataset: { machine: m.id } },
      h('td', {}, h('a', { href: `#/machines/${m.id}` }, m.name)), h('td', { class: 'status' }, badge(m.status)),
      h('td', {}, when(m.last_seen_at)),
      admin ? h('td', {}, h('button', { type: 'button', class: 'ghost', onclick: async () => {
        if (await attempt(`${m.name} left the pool`, () => api.patch(`/api/endpoints/${m.id}`, { pool_id: null }))) drawMembers();
      } }, 'Remove from pool')) : null));
    clear(membersBox, adder,
      h('table', {}, h('thead', {}, h('tr', {}, ['Machine', 'Status', 'Last seen', admin ? 'Action' : null].filter(Boolean).map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows)),
      pager(memberPage, PER_PAGE, page.total, (p) => { memberPage = p; drawMembers(); }));
  }

  const del = can.admin() ? h('button', { type: 'button', class: 'danger', onclick: async () => {
    if (!window.confirm(`Delete pool ${pool.name}? Its machines become unassigned and its target history goes.`)) return;
    if (await attempt('Pool deleted', () => api.del(`/api/pools/${id}`))) location.hash = '#/';
  } }, 'Delete pool') : null;

  clear(main,
    h('p', {}, h('a', { href: '#/' }, '← Dashboard')),
    h('h1', {}, `Pool ${pool.name}`),
    h('div', { class: 'row' }, h('a', { class: 'button', href: `#/pools/${id}/analysis`, id: 'open-analysis' }, 'Repository analysis'), del),
    h('section', { class: 'panel', 'aria-labelledby': 'members-h' }, h('h2', { id: 'members-h' }, 'Members'), membersBox),
    h('section', { class: 'panel', 'aria-labelledby': 'target-h' }, h('h2', { id: 'target-h' }, 'Target and history'), targetBox, diffBox),
    h('section', { class: 'panel', 'aria-labelledby': 'policy-h' }, h('h2', { id: 'policy-h' }, 'Policy'), policyBox));
  drawPolicy();
  await Promise.all([drawTargets(), drawMembers()]);
  const members = debounce(() => drawMembers().catch(() => {}), 200);
  return subscribe(async (msg) => {
    if (msg.type === 'endpoint_status' && msg.pool_id === id) {
      const cell = membersBox.querySelector(`tr[data-machine="${msg.endpoint_id}"] td.status`);
      if (cell) clear(cell, badge(msg.status)); else members();
    } else if ((msg.type === 'target_changed' && msg.pool_id === id) || msg.type === 'resync') {
      pool = await api.get(`/api/pools/${id}`);
      drawTargets();
      members();
    }
  });
}
