// Dragging a machine onto a pool with the pointer (mouse, pen or touch):
// pointer events rather than HTML5 drag and drop, which touch screens lack.
// Drop targets carry `data-drop-pool` (empty for "no pool"). Every place
// that offers dragging also offers a select and a button for keyboards.

import { h } from './dom.js';

export function draggable(handle, name, onDrop) {
  handle.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    handle.setPointerCapture(ev.pointerId);
    const ghost = h('div', { class: 'ghost-drag', 'aria-hidden': 'true' }, name);
    document.body.append(ghost);
    let over = null;
    const move = (e) => {
      ghost.style.left = `${e.clientX + 12}px`;
      ghost.style.top = `${e.clientY + 12}px`;
      const hit = document.elementFromPoint(e.clientX, e.clientY);
      const target = hit ? hit.closest('[data-drop-pool]') : null;
      if (target !== over) {
        if (over) over.classList.remove('drop-ok');
        over = target;
        if (over) over.classList.add('drop-ok');
      }
    };
    const end = (e) => {
      handle.removeEventListener('pointermove', move);
      handle.removeEventListener('pointerup', end);
      handle.removeEventListener('pointercancel', end);
      ghost.remove();
      if (over) over.classList.remove('drop-ok');
      if (over && e.type === 'pointerup') onDrop(over.dataset.dropPool || null);
    };
    handle.addEventListener('pointermove', move);
    handle.addEventListener('pointerup', end);
    handle.addEventListener('pointercancel', end);
    move(ev);
  });
}
