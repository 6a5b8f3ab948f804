// The page's shell: login, navigation between views by the URL's hash,
// the theme switch and the live channel.

import { loadSession, login, logout, me, can } from './api.js';
import { h, clear, toast } from './dom.js';
import * as live from './live.js';
import * as dashboard from './dashboard.js';
import * as pool from './pool.js';
import * as machine from './machine.js';
import * as analysis from './analysis.js';
import * as logs from './logs.js';
import * as access from './access.js';
import * as storage from './storage.js';

const main = document.getElementById('main');
let cleanup = null;

const ROUTES = [
  [/^#?\/?$/, 'dashboard', () => dashboard.render],
  [/^#\/pools\/([0-9a-f-]+)$/, 'dashboard', () => pool.render],
  [/^#\/pools\/([0-9a-f-]+)\/analysis$/, 'dashboard', () => analysis.render],
  [/^#\/machines\/([0-9a-f-]+)$/, 'dashboard', () => machine.render],
  [/^#\/operations$/, 'operations', () => logs.renderOperations],
  [/^#\/audit$/, 'audit', () => logs.renderAudit],
  [/^#\/access$/, 'access', () => access.render],
  [/^#\/storage$/, 'storage', () => storage.render],
];

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!me) { showLogin(); return; }
  const hash = location.hash || '#/';
  const found = ROUTES.find(([re]) => re.test(hash));
  if (!found) { clear(main, h('h1', {}, 'Not found'), h('a', { href: '#/' }, 'Back to the dashboard')); return; }
  const [re, nav, view] = found;
  const params = hash.match(re).slice(1);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  clear(main, h('p', { class: 'muted', 'aria-busy': 'true' }, 'Loading…'));
  try {
    cleanup = (await view()(main, ...params)) || null;
    // The view is drawn and works: tests and measurements wait for this.
    window.dispatchEvent(new CustomEvent('pacsync:shown', { detail: hash }));
  } catch (e) {
    clear(main, h('h1', {}, 'Something went wrong'), h('p', { class: 'error-text', role: 'alert' }, e.message));
  }
  main.focus({ preventScroll: true });
}

function showLogin() {
  document.querySelector('header.top').hidden = true;
  live.stop();
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const err = h('p', { class: 'error-text', role: 'alert', id: 'login-error' });
  const form = h('form', { class: 'stack panel login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to pacsync'),
    h('label', { for: 'username' }, 'User name', user),
    h('label', { for: 'password' }, 'Password', pass),
    err,
    h('button', { type: 'submit', id: 'login' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    try {
      await login(user.value, pass.value);
      started();
      route();
    } catch (e) {
      err.textContent = e.status === 401 ? 'Wrong user name or password.' : e.message;
      pass.select();
    }
  });
  clear(main, form);
  user.focus();
}

function started() {
  const top = document.querySelector('header.top');
  top.hidden = false;
  document.getElementById('who').textContent = `${me.name} (${me.role})`;
  document.body.dataset.role = me.role;
  for (const a of document.querySelectorAll('[data-admin]')) a.parentElement.hidden = !can.admin();
  live.start();
}

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
  const btn = document.getElementById('theme');
  btn.textContent = `Theme: ${theme || 'system'}`;
}

document.getElementById('theme').addEventListener('click', () => {
  const order = [null, 'light', 'dark'];
  const now = localStorage.getItem('pacsync-theme');
  const next = order[(order.indexOf(now) + 1) % order.length];
  if (next) localStorage.setItem('pacsync-theme', next); else localStorage.removeItem('pacsync-theme');
  applyTheme(next);
});

document.getElementById('logout').addEventListener('click', async () => {
  await logout();
  location.hash = '#/';
  showLogin();
});

window.addEventListener('pacsync:logged-out', () => {
  toast('Your session ended; please sign in again.', 'error');
  showLogin();
});
window.addEventListener('hashchange', route);

applyTheme(localStorage.getItem('pacsync-theme'));
loadSession().then((user) => {
  if (user) started();
  route();
}, (e) => clear(main, h('p', { class: 'error-text', role: 'alert' }, e.message)));
