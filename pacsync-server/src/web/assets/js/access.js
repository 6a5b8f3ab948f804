// Users (add, change role, reset password, delete), API tokens and
// enrollment tokens (admins). A new token's secret is shown once, right
// after it is made.

import { api, all } from './api.js';
import { h, clear, when, attempt, field } from './dom.js';

const ROLES = ['viewer', 'operator', 'admin'];

function roleSelect(id) {
  return h('select', { id }, ROLES.map((r) => h('option', { value: r }, r)));
}

function secret(box, what, token) {
  clear(box, h('div', { class: 'secret', role: 'alert' },
    h('strong', {}, `${what} — copy it now, it is shown only once: `),
    h('code', { class: 'mono', dataset: { secret: what } }, token)));
}

export async function render(main) {
  const usersBox = h('div', { id: 'users' });
  const apiBox = h('div', { id: 'api-tokens' });
  const enrollBox = h('div', { id: 'enrollment-tokens' });
  const shown = h('div', { id: 'shown-secret' });
  const pools = await all('/api/pools');

  // A user's role, password and removal; the server keeps the last admin
  // (409 last_admin, shown as the notice).
  function userRow(u) {
    const role = roleSelect(`user-role-${u.id}`);
    role.value = u.role;
    role.setAttribute('aria-label', `Role of ${u.name}`);
    const save = h('button', { type: 'button', class: 'ghost', 'aria-label': `Change the role of ${u.name}`, onclick: async () => {
      if (role.value !== u.role && await attempt(`${u.name} is now ${role.value}`, () => api.patch(`/api/users/${u.id}`, { role: role.value }))) drawUsers();
    } }, 'Change role');
    const pass = h('input', { type: 'password', minlength: 8, autocomplete: 'new-password', 'aria-label': `New password for ${u.name}`, placeholder: 'new password' });
    const reset = h('form', { class: 'row inline', dataset: { resetUser: u.name } }, pass, h('button', { type: 'submit', class: 'ghost' }, 'Reset password'));
    reset.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (await attempt(`Password of ${u.name} reset; their sessions ended`, () => api.patch(`/api/users/${u.id}`, { password: pass.value }))) pass.value = '';
    });
    const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete user ${u.name}`, onclick: async () => {
      if (window.confirm(`Delete user ${u.name}? Their sessions end at once.`) && await attempt(`User ${u.name} deleted`, () => api.del(`/api/users/${u.id}`))) drawUsers();
    } }, 'Delete');
    return h('tr', { dataset: { user: u.name } }, h('th', { scope: 'row' }, u.name), h('td', {}, h('div', { class: 'row inline' }, role, save)),
      h('td', {}, when(u.created_at)), h('td', {}, reset), h('td', {}, del));
  }

  async function drawUsers() {
    const users = await all('/api/users');
    clear(usersBox, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Role', 'Created', 'Password', 'Remove'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, users.map(userRow))));
  }

  async function drawApiTokens() {
    const tokens = await all('/api/api-tokens');
    clear(apiBox, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Role', 'Made by', 'Created', 'Expires', 'Last used', 'State'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, tokens.map((t) => h('tr', {}, h('td', {}, t.name), h('td', {}, t.role), h('td', {}, t.created_by), h('td', {}, when(t.created_at)),
        h('td', {}, t.expires_at ? when(t.expires_at) : 'never'), h('td', {}, when(t.last_used_at)),
        h('td', {}, t.revoked_at ? 'revoked' : h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke API token ${t.name}`, onclick: async () => {
          if (window.confirm(`Revoke API token ${t.name}?`) && await attempt('API token revoked', () => api.del(`/api/api-tokens/${t.id}`))) drawApiTokens();
        } }, 'Revoke')))))));
  }

  async function drawEnrollments() {
    const tokens = await all('/api/enrollment-tokens');
    const poolName = (id) => pools.find((p) => p.id === id)?.name || '—';
    clear(enrollBox, h('table', {}, h('thead', {}, h('tr', {}, ['Pool', 'Made by', 'Created', 'Expires', 'Uses', 'State'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, tokens.map((t) => h('tr', {}, h('td', {}, poolName(t.pool_id)), h('td', {}, t.created_by || ''), h('td', {}, when(t.created_at)),
        h('td', {}, when(t.expires_at)), h('td', {}, String(t.uses ?? '')),
        h('td', {}, t.revoked_at ? 'revoked' : h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (window.confirm('Revoke this enrollment token?') && await attempt('Enrollment token revoked', () => api.del(`/api/enrollment-tokens/${t.id}`))) drawEnrollments();
        } }, 'Revoke')))))));
  }

  const uname = h('input', { id: 'user-name', required: true });
  const upass = h('input', { id: 'user-password', type: 'password', minlength: 8, required: true, autocomplete: 'new-password' });
  const urole = roleSelect('user-role');
  const userForm = h('form', { class: 'row', id: 'user-form' }, field('Name', uname), field('Password', upass), field('Role', urole), h('button', { type: 'submit' }, 'Add user'));
  userForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (await attempt(`User ${uname.value} added`, () => api.post('/api/users', { name: uname.value, password: upass.value, role: urole.value }))) {
      uname.value = ''; upass.value = ''; drawUsers();
    }
  });

  const tname = h('input', { id: 'api-token-name', required: true });
  const trole = roleSelect('api-token-role');
  const tdays = h('input', { id: 'api-token-days', type: 'number', min: 1, max: 3650, placeholder: 'never' });
  const apiForm = h('form', { class: 'row', id: 'api-token-form' }, field('Name', tname), field('Role', trole), field('Expires in days', tdays), h('button', { type: 'submit' }, 'Create API token'));
  apiForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { name: tname.value, role: trole.value };
    if (tdays.value) body.expires_in = Number(tdays.value) * 86400;
    const r = await attempt('API token created', () => api.post('/api/api-tokens', body));
    if (r) { secret(shown, `API token ${r.name}`, r.token); tname.value = ''; drawApiTokens(); }
  });

  const epool = h('select', { id: 'enroll-pool' }, h('option', { value: '' }, 'no pool'), pools.map((p) => h('option', { value: p.id }, p.name)));
  const ehours = h('input', { id: 'enroll-hours', type: 'number', min: 1, max: 8760, value: 24 });
  const enrollForm = h('form', { class: 'row', id: 'enroll-form' }, field('Pool', epool), field('Valid for hours', ehours), h('button', { type: 'submit' }, 'Create enrollment token'));
  enrollForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { expires_in: Number(ehours.value) * 3600 };
    if (epool.value) body.pool = epool.value;
    const r = await attempt('Enrollment token created', () => api.post('/api/enrollment-tokens', body));
    if (r) { secret(shown, 'Enrollment token', r.token); drawEnrollments(); }
  });

  clear(main, h('h1', {}, 'Users and tokens'), shown,
    h('section', { class: 'panel', 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h' }, 'Users'), userForm, usersBox),
    h('section', { class: 'panel', 'aria-labelledby': 'api-h' }, h('h2', { id: 'api-h' }, 'API tokens'), apiForm, apiBox),
    h('section', { class: 'panel', 'aria-labelledby': 'enroll-h' }, h('h2', { id: 'enroll-h' }, 'Enrollment tokens'), enrollForm, enrollBox));
  await Promise.all([drawUsers(), drawApiTokens(), drawEnrollments()]);
  return null;
}
