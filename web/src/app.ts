import './styles.css';
import { ApiError, createApi, session } from './api.ts';
import type { Page, PageContext } from './context.ts';
import type { Cleanup } from './components.ts';
import { h, note, replace } from './dom.ts';
import { accountsPage } from './pages/accounts.ts';
import { accountPage } from './pages/account.ts';
import { reconciliationPage } from './pages/reconciliation.ts';
import { deadLettersPage } from './pages/dead-letters.ts';
import { catalogPage } from './pages/catalog.ts';
import { unbilledPage } from './pages/unbilled.ts';
import type { WhoAmI } from './types.ts';

/**
 * The dashboard: sign in with an API key (kept in sessionStorage for this tab), then hash
 * routes: #/accounts, #/accounts/<key>, #/reconciliation, #/dead-letters, #/catalog. What a key
 * may change follows its scopes (GET /api/v1/whoami); the API enforces them regardless.
 */
const store = session('meterline.apiKey');
const root = document.getElementById('root')!;
const api = createApi(store, () => signOut('Your key is no longer valid; sign in again.'));

const routes: [RegExp, Page][] = [
  [/^#\/accounts\/(.+)$/, accountPage],
  [/^#\/accounts\/?$/, accountsPage],
  [/^#\/reconciliation\/?$/, reconciliationPage],
  [/^#\/dead-letters\/?$/, deadLettersPage],
  [/^#\/catalog\/?$/, catalogPage],
  [/^#\/unbilled\/?$/, unbilledPage],
];
const NAV = [
  ['#/accounts', 'Accounts'],
  ['#/reconciliation', 'Reconciliation'],
  ['#/dead-letters', 'Dead letters'],
  ['#/catalog', 'Catalog'],
  ['#/unbilled', 'Unbilled usage'],
] as const;

let cleanup: Cleanup | undefined;

function signOut(message?: string): void {
  store.clear();
  cleanup?.();
  cleanup = undefined;
  signInForm(message);
}

function signInForm(message?: string): void {
  document.title = 'Sign in · Meterline';
  const input = h('input', { id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false', 'aria-describedby': 'api-key-hint' });
  const err = h('p', { class: 'note note-error', role: 'alert', hidden: !message }, message ?? '');
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'signin card', 'aria-labelledby': 'signin-h' },
    h('h1', { id: 'signin-h' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '◧'), ' Meterline'),
    h('div', { class: 'field' }, h('label', { for: 'api-key' }, 'API key'), input, h('p', { class: 'hint', id: 'api-key-hint' }, 'An ml_… key (e.g. the first admin key in .meterline/admin-key). It stays in this tab only and is sent to this server’s API.')),
    err,
    button,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    if (key.startsWith('mlp_')) {
      err.hidden = false;
      err.textContent = 'That is a customer-portal token: open the portal at /ui/portal/ instead.';
      return;
    }
    button.disabled = true;
    store.set(key);
    api.get<WhoAmI>('/api/v1/whoami').then(
      (me) => start(me),
      (e: Error) => {
        store.clear();
        button.disabled = false;
        err.hidden = false;
        err.textContent = e instanceof ApiError && e.status === 401 ? 'That key is not valid (revoked or mistyped).' : e.message;
        input.focus();
      },
    );
  });
  replace(root, h('main', { id: 'main', class: 'center' }, form));
  input.focus();
}

function start(me: WhoAmI): void {
  const main = h('main', { id: 'main', tabindex: '-1' });
  const nav = h('nav', { 'aria-label': 'Main' }, h('ul', {}, NAV.map(([href, label]) => h('li', {}, h('a', { href }, label)))));
  const live = h('p', { class: 'sr-only', 'aria-live': 'polite', id: 'route-announcer' });
  const scopes = me.scopes.join(', ');
  replace(
    root,
    h('a', { class: 'skip', href: '#main', onclick: (e: Event) => (e.preventDefault(), main.focus()) }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: '#/accounts' }, h('span', { class: 'logo', 'aria-hidden': 'true' }, '◧'), ' Meterline'),
      nav,
      h('div', { class: 'who' }, h('span', { class: 'small', title: `key ${me.prefix}…` }, me.name, ' ', h('span', { class: 'badge badge-muted', id: 'key-scopes' }, scopes)), h('button', { type: 'button', class: 'btn', onclick: () => signOut() }, 'Sign out')),
    ),
    live,
    main,
  );
  const can = (s: 'read' | 'billing' | 'admin' | 'ingest') => me.scopes.includes('admin') || me.scopes.includes(s);
  const ctx: PageContext = {
    api,
    me,
    can,
    main,
    title: (t) => {
      document.title = `${t} · Meterline`;
      live.textContent = t;
    },
  };
  const route = () => {
    cleanup?.();
    cleanup = undefined;
    const hash = location.hash || '#/accounts';
    for (const a of nav.querySelectorAll('a')) {
      const on = hash === a.getAttribute('href') || (hash.startsWith(a.getAttribute('href')! + '/') && a.getAttribute('href') === '#/accounts');
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    for (const [re, page] of routes) {
      const m = re.exec(hash);
      if (m) {
        cleanup = page(ctx, m.slice(1)) ?? undefined;
        window.scrollTo(0, 0);
        return;
      }
    }
    replace(main, h('h1', {}, 'Not found'), note(`No page ${hash}.`), h('a', { href: '#/accounts' }, 'Back to accounts'));
  };
  window.onhashchange = route;
  route();
}

const saved = store.get();
if (saved) {
  api.get<WhoAmI>('/api/v1/whoami').then(start, () => signOut());
} else signInForm();
