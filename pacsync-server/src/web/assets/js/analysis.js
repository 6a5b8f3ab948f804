// A pool's repository analysis: the package × machine availability matrix
// (rows and columns paged, rows filtered, so a pool of thousands of
// machines and packages stays quick), the excluded packages with their
// reason, version conflicts, and the admins' include/exclude overrides.

import { api, can } from './api.js';
import { h, clear, pager, attempt, field, debounce, label, appendInSlices } from './dom.js';

const ROWS = 100;
const COLS = 20;

export async function render(main, id) {
  const pool = await api.get(`/api/pools/${id}`);
  const head = [h('p', {}, h('a', { href: `#/pools/${id}` }, `← Pool ${pool.name}`)), h('h1', {}, `Repository analysis of ${pool.name}`)];
  let a;
  try {
    a = await api.get(`/api/repositories/analyze?pool=${id}`);
  } catch (e) {
    clear(main, head, h('p', { class: 'muted', id: 'analysis-unavailable' }, e.message));
    return null;
  }
  const view = { text: '', show: 'all', row: 1, col: 1 };
  const matrixBox = h('div', { id: 'matrix' });
  const overridesBox = h('div', { id: 'overrides' });

  async function setOverride(name, how) {
    const o = { include: [...(a.overrides.include || [])], exclude: [...(a.overrides.exclude || [])] };
    o.include = o.include.filter((n) => n !== name);
    o.exclude = o.exclude.filter((n) => n !== name);
    if (how) o[how].push(name);
    if (await attempt(how ? `${name}: ${how}d by hand` : `${name}: back to automatic`,
      () => api.patch(`/api/pools/${id}`, { repository_overrides: o }))) {
      a = await api.get(`/api/repositories/analyze?pool=${id}`);
      draw();
    }
  }

  function reason(p) {
    if (p.force_included) return 'included by hand';
    return p.excluded ? label(p.excluded) : '';
  }

  function drawMatrix() {
    const text = view.text.toLowerCase();
    const rows = a.packages.filter((p) => (!text || p.name.includes(text))
      && (view.show === 'all' || (view.show === 'excluded' && p.excluded) || (view.show === 'conflicts' && p.version_conflict)
        || (view.show === p.availability)));
    view.row = Math.min(view.row, Math.max(1, Math.ceil(rows.length / ROWS)));
    const c0 = (view.col - 1) * COLS;
    const cols = a.columns.slice(c0, c0 + COLS);
    const admin = can.admin();
    const colName = (c, i) => `${c.machines.slice(0, 3).join(', ')}${c.machines.length > 3 ? ` +${c.machines.length - 3}` : ''}` || `group ${c0 + i + 1}`;
    const body = h('tbody', {});
    const table = h('table', { class: 'matrix', id: 'matrix-table' },
      h('caption', { class: 'muted' }, 'Each column is one repository setup shared by the machines it names; a cell shows the repository and version a machine would get.'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Package'), h('th', { scope: 'col' }, 'Target'), h('th', { scope: 'col' }, 'Availability'),
        cols.map((c, i) => h('th', { scope: 'col', class: 'col', title: c.machines.join(', ') }, `${colName(c, i)} (${c.machines.length})`)),
        h('th', { scope: 'col' }, 'Excluded'), admin ? h('th', { scope: 'col' }, 'Override') : null)),
      body);
    const row = (p) => h('tr', { dataset: { package: p.name } },
        h('th', { scope: 'row' }, p.name, p.version_conflict ? h('span', { class: 'badge s-behind', title: 'Repositories offer different versions' }, ' conflict') : null),
        h('td', { class: 'mono' }, p.target_version),
        h('td', {}, h('span', { class: `badge s-${p.availability === 'everywhere' ? 'in_sync' : p.availability === 'partial' ? 'behind' : 'error'}` }, p.availability)),
        cols.map((_, i) => {
          const cell = p.cells[c0 + i];
          return cell ? h('td', { class: 'mono', title: cell.exact ? 'exact version' : 'other version' }, `${cell.repo} ${cell.version}${cell.exact ? '' : ' ≠'}`)
            : h('td', { class: 'muted' }, '—');
        }),
        h('td', {}, reason(p)),
        admin ? h('td', {},
          h('button', { type: 'button', class: 'ghost', 'aria-label': `Exclude ${p.name}`, disabled: a.overrides.exclude?.includes(p.name), onclick: () => setOverride(p.name, 'exclude') }, 'Exclude'),
          h('button', { type: 'button', class: 'ghost', 'aria-label': `Include ${p.name}`, disabled: a.overrides.include?.includes(p.name), onclick: () => setOverride(p.name, 'include') }, 'Include')) : null);
    clear(matrixBox,
      h('div', { class: 'scroll' }, table),
      h('div', { class: 'row' }, h('span', {}, 'Packages:'), pager(view.row, ROWS, rows.length, (pg) => { view.row = pg; drawMatrix(); })),
      a.columns.length > COLS ? h('div', { class: 'row' }, h('span', {}, 'Machine groups:'), pager(view.col, COLS, a.columns.length, (pg) => { view.col = pg; drawMatrix(); })) : null);
    // 100 rows of up to 20 columns are a few thousand cells: drawn 20 rows
    // a frame, the page never freezes while they appear.
    appendInSlices(body, rows.slice((view.row - 1) * ROWS, view.row * ROWS), row, 20);
  }

  function drawOverrides() {
    const list = (names, how) => (names || []).length
      ? h('ul', {}, names.map((n) => h('li', {}, n, ' ', can.admin() ? h('button', { type: 'button', class: 'ghost', onclick: () => setOverride(n, null) }, `Undo ${how}`) : null)))
      : h('p', { class: 'muted' }, 'none');
    const excluded = a.packages.filter((p) => p.excluded);
    const conflicts = a.packages.filter((p) => p.version_conflict);
    clear(overridesBox,
      h('h3', {}, `Excluded packages (${excluded.length})`),
      excluded.length ? h('ul', { id: 'excluded-list' }, excluded.map((p) => h('li', {}, `${p.name} — ${reason(p)}`))) : h('p', { class: 'muted' }, 'none'),
      h('h3', {}, `Version conflicts (${conflicts.length})`),
      conflicts.length ? h('ul', {}, conflicts.map((p) => h('li', {}, `${p.name}: ${[...new Set(p.cells.filter(Boolean).map((c) => c.version))].join(', ')}`))) : h('p', { class: 'muted' }, 'none'),
      h('h3', {}, 'Included by hand'), list(a.overrides.include, 'include'),
      h('h3', {}, 'Excluded by hand'), list(a.overrides.exclude, 'exclude'));
  }

  function draw() { drawMatrix(); drawOverrides(); }

  const s = a.summary;
  const text = h('input', { type: 'search', id: 'package-filter' });
  text.addEventListener('input', debounce(() => { view.text = text.value.toLowerCase(); view.row = 1; drawMatrix(); }, 150));
  const show = h('select', { id: 'package-show', onchange: () => { view.show = show.value; view.row = 1; drawMatrix(); } },
    ['all', 'everywhere', 'partial', 'nowhere', 'excluded', 'conflicts'].map((v) => h('option', { value: v }, v)));
  clear(main, head,
    h('section', { class: 'panel', 'aria-labelledby': 'sum-h' }, h('h2', { id: 'sum-h' }, 'Summary'),
      h('p', { id: 'analysis-summary' }, `${s.packages} target packages: ${s.everywhere} everywhere, ${s.partial} in some repositories, ${s.nowhere} in none; ${s.version_conflicts} version conflicts; ${a.columns.length} repository setups.`)),
    h('section', { class: 'panel', 'aria-labelledby': 'matrix-h' }, h('h2', { id: 'matrix-h' }, 'Availability matrix'),
      h('div', { class: 'row' }, field('Package', text), field('Show', show)), matrixBox),
    h('section', { class: 'panel', 'aria-labelledby': 'excl-h' }, h('h2', { id: 'excl-h' }, 'Exclusions and overrides'), overridesBox));
  draw();
  return null;
}
