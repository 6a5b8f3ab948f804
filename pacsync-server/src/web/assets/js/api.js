// The JSON API with the browser session: the cookie travels by itself,
// and every request that changes something carries the CSRF token.

let csrf = null;
export let me = null;

const RANK = { viewer: 0, operator: 1, admin: 2 };
export const can = {
  operate: () => !!me && RANK[me.role] >= RANK.operator,
  admin: () => !!me && me.role === 'admin',
};

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
  }
}

async function send(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const r = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (!r.ok) {
    if (r.status === 401 && me) {
      me = null; csrf = null;
      window.dispatchEvent(new Event('pacsync:logged-out'));
    }
    throw new ApiError(r.status, json);
  }
  return json;
}

export const api = {
  get: (p) => send('GET', p),
  post: (p, b) => send('POST', p, b ?? {}),
  patch: (p, b) => send('PATCH', p, b),
  del: (p) => send('DELETE', p),
};

export async function loadSession() {
  try {
    const s = await send('GET', '/ui/session');
    me = s.user; csrf = s.csrf;
  } catch (e) {
    if (e.status !== 401) throw e;
    me = null; csrf = null;
  }
  return me;
}

export async function login(username, password) {
  const s = await send('POST', '/ui/login', { username, password });
  me = s.user; csrf = s.csrf;
  return me;
}

export async function logout() {
  try { await send('POST', '/ui/logout', {}); } finally { me = null; csrf = null; }
}

// Every item of a paginated list (500 per request).
export async function all(path) {
  const sep = path.includes('?') ? '&' : '?';
  let page = 1; const items = [];
  for (;;) {
    const r = await api.get(`${path}${sep}page=${page}&per_page=500`);
    items.push(...r.items);
    if (items.length >= r.total || r.items.length === 0) return items;
    page += 1;
  }
}

export const q = encodeURIComponent;
