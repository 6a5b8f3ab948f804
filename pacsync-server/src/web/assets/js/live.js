// One WebSocket to /api/ws for the whole page (the session cookie
// authenticates it); pages subscribe to its events. It reconnects with a
// growing delay and tells subscribers to reload after a gap.

const listeners = new Set();
let socket = null;
let retry = 0;
let wanted = false;

function setIndicator(on) {
  const el = document.getElementById('live');
  if (!el) return;
  el.textContent = on ? 'live' : 'reconnecting…';
  el.classList.toggle('on', on);
  document.body.dataset.live = on ? 'on' : 'off';
}

function dispatch(msg) {
  for (const fn of listeners) {
    try { fn(msg); } catch (e) { console.error(e); }
  }
}

export function start() {
  wanted = true;
  if (socket) return;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  socket = new WebSocket(`${scheme}://${location.host}/api/ws`);
  let gap = retry > 0;
  socket.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'hello') {
      retry = 0; setIndicator(true);
      // Events may have been missed while disconnected.
      if (gap) { gap = false; dispatch({ type: 'resync' }); }
      return;
    }
    dispatch(msg);
  };
  socket.onclose = () => {
    socket = null; setIndicator(false);
    if (!wanted) return;
    retry += 1;
    setTimeout(start, Math.min(30000, 500 * 2 ** Math.min(retry, 6)));
  };
}

export function stop() {
  wanted = false;
  if (socket) socket.close();
  socket = null;
}

// Returns the function that unsubscribes.
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
