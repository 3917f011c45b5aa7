import type { Api } from './api.ts';
import type { Cleanup } from './components.ts';
import type { WhoAmI } from './types.ts';

/** What every dashboard page gets: the API with the signed-in key, who that key is, and where to draw. */
export interface PageContext {
  api: Api;
  me: WhoAmI;
  /** True if the key has the scope (admin has every scope): the UI hides what the API would refuse. */
  can(scope: 'read' | 'billing' | 'admin' | 'ingest'): boolean;
  main: HTMLElement;
  /** Sets the document title and announces the page to screen readers. */
  title(text: string): void;
}

export type Page = (ctx: PageContext, params: string[]) => Cleanup | void;
