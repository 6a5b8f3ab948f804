// The package archive: what it holds and may hold, and per pool how much
// of its current target a machine could be synced to from the archive
// alone (archived, damaged, missing) and what that takes on disk. Admins
// verify every file, collect what nothing references, and fill a pool's
// target from its mirrors.

import { api, can } from './api.js';
import { h, clear, when, attempt, table } from './dom.js';

function bytes(n) {
  if (n === null || n === undefined) return 'no limit';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export async function render(main) {
  const box = h('div', { id: 'storage' });
  // What the last verification or collection found; kept across redraws.
  const report = h('div', { id: 'archive-report' });

  async function draw() {
    const s = await api.get('/api/archive');
    const used = s.limit_bytes
      ? h('progress', { max: s.limit_bytes, value: s.bytes, 'aria-label': 'Space used' })
      : null;
    const lastFill = (p) => s.fills.find((f) => f.pool_id === p.pool_id);
    const actions = can.admin() ? h('div', { class: 'row' },
      h('button', { type: 'button', id: 'archive-verify', onclick: async () => {
        const r = await attempt('Every file re-hashed', () => api.post('/api/archive/verify'));
        if (!r) return;
        await draw();
        clear(report, r.damaged.length
          ? h('p', { class: 'error-text', role: 'alert' }, `Damaged: ${r.damaged.join('; ')}`)
          : h('p', { role: 'status' }, 'Every file has its recorded hash.'));
      } }, 'Verify every file'),
      h('button', { type: 'button', class: 'ghost', id: 'archive-gc', onclick: async () => {
        const r = await attempt('Unreferenced files collected', () => api.post('/api/archive/gc'));
        if (r) { await draw(); clear(report, h('p', { role: 'status' }, `Removed ${r.removed.length} file(s), ${bytes(r.freed_bytes)} freed; ${r.kept} kept.`)); }
      } }, 'Collect unreferenced files'))
      : null;
    clear(box,
      h('section', { class: 'panel', 'aria-labelledby': 'archive-totals' },
        h('h2', { id: 'archive-totals' }, 'Archive'),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Files'), h('dd', { id: 'archive-files' }, String(s.files)),
          h('dt', {}, 'Used'), h('dd', { id: 'archive-bytes' }, bytes(s.bytes), used ? [' ', used] : null),
          h('dt', {}, 'Limit'), h('dd', {}, bytes(s.limit_bytes)),
          h('dt', {}, 'Damaged'), h('dd', { id: 'archive-damaged', class: s.damaged ? 'error-text' : '' }, String(s.damaged)),
          h('dt', {}, 'Directory'), h('dd', { class: 'mono' }, s.path)),
        actions, report),
      h('section', { class: 'panel', 'aria-labelledby': 'archive-pools' },
        h('h2', { id: 'archive-pools' }, 'By pool (current target)'),
        s.pools.length ? table(null, [
          { title: 'Pool', cell: (p) => h('a', { href: `#/pools/${p.pool_id}` }, p.name) },
          { title: 'Packages', cell: (p) => (p.target_id ? String(p.packages) : 'no target') },
          { title: 'Archived', cell: (p) => String(p.archived) },
          { title: 'Damaged', cell: (p) => h('span', { class: p.damaged ? 'error-text' : '' }, String(p.damaged)) },
          { title: 'Missing', cell: (p) => String(p.missing) },
          { title: 'Size', cell: (p) => bytes(p.bytes) },
          { title: 'Last fill', cell: (p) => {
            const f = lastFill(p);
            if (!f) return '—';
            if (!f.finished_at) return 'running';
            return [when(new Date(f.finished_at).toISOString()), `: ${f.stored.length} stored, ${f.failed.length} failed`];
          } },
          { title: '', cell: (p) => (can.admin() && p.target_id ? h('button', { type: 'button', class: 'ghost', 'aria-label': `Fill ${p.name} from its mirrors`, onclick: () => attempt(`Fill of ${p.name} started`, () => api.post('/api/archive/fill', { pool: p.pool_id })) }, 'Fill from mirrors') : '') },
        ], s.pools, (p) => ({ dataset: { pool: p.name } }))
          : h('p', { class: 'muted' }, 'No pools yet.')));
  }

  clear(main, h('h1', {}, 'Storage'), box);
  await draw();
}
