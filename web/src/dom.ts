/** A tiny DOM builder: no framework, real elements (buttons, links, labels) for keyboard and screen readers. */
type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.className = String(v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replace(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

/** A number cell: the exact string, right-aligned, with the raw value in data-value for tests and copy. */
export function num(value: string, shown = value, attrs: Attrs = {}): HTMLTableCellElement {
  return h('td', { class: 'num', 'data-value': value, ...attrs }, shown);
}

export function section(title: string, id: string, ...children: Child[]): HTMLElement {
  return h('section', { class: 'card', 'aria-labelledby': `${id}-h` }, h('h2', { id: `${id}-h` }, title), ...children);
}

export function note(text: string, kind: 'info' | 'error' | 'warn' = 'info'): HTMLElement {
  return h('p', { class: `note note-${kind}`, role: kind === 'error' ? 'alert' : null }, text);
}

export function table(head: (string | HTMLElement)[], rows: HTMLTableRowElement[], attrs: Attrs = {}): HTMLElement {
  // A column of numbers gets a right-aligned header, like its cells.
  const first = rows[0]?.children;
  const ths = head.map((x, i) => (typeof x === 'string' ? h('th', { scope: 'col', class: first?.[i]?.classList.contains('num') ? 'num' : null }, x) : x));
  return h('div', { class: 'table-wrap' }, h('table', attrs, h('thead', {}, h('tr', {}, ths)), h('tbody', {}, rows)));
}

export function badge(text: string, kind: string): HTMLElement {
  return h('span', { class: `badge badge-${kind}` }, text);
}
