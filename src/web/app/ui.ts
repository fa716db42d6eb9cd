/// <reference lib="dom" />
import { ApiError } from './api.js';
import { h, uid, type Child } from './dom.js';
import type { LiveEvents } from './events.js';
import { notify } from './notify.js';
import type { Me } from './types.js';

/** What every screen gets from the shell. */
export interface App {
  me: Me;
  events: LiveEvents;
  navigate(path: string): void;
  refreshMe(): Promise<void>;
}

/** A mounted screen; `dispose` stops its timers and subscriptions. */
export interface Screen {
  title: string;
  el: HTMLElement;
  dispose?(): void;
}

/** The screen heading; focus lands here after navigation so screen readers announce it. */
export function heading(text: string, ...extra: Child[]): HTMLElement {
  return h('div', { class: 'screen-head' }, h('h1', { tabindex: -1 }, text), ...extra);
}

export function button(label: string, onClick: () => unknown, opts: { kind?: 'primary' | 'secondary' | 'danger' | 'link'; attrs?: Record<string, string> } = {}): HTMLButtonElement {
  const b = h('button', { type: 'button', class: `btn btn-${opts.kind ?? 'secondary'}`, ...(opts.attrs ?? {}) }, label);
  b.addEventListener('click', () => void onClick());
  return b;
}

/**
 * Runs an action with its button disabled (no double submits); an API refusal becomes an
 * in-page error notice unless `onError` takes it.
 */
export async function busy<T>(btn: HTMLButtonElement | null, fn: () => Promise<T>, onError?: (e: ApiError) => boolean): Promise<T | undefined> {
  if (btn) {
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
  }
  try {
    return await fn();
  } catch (e) {
    const err = e instanceof ApiError ? e : new ApiError(0, 'INTERNAL', (e as Error).message);
    if (!onError?.(err)) notify(err.message, { kind: 'error' });
    return undefined;
  } finally {
    if (btn) {
      btn.disabled = false;
      btn.removeAttribute('aria-busy');
    }
  }
}

/** A labelled control with an optional hint and an error slot wired by aria-describedby. */
type Control = HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;

export interface Field<C extends Control = Control> {
  el: HTMLElement;
  control: C;
  setError(message: string | undefined): void;
}

export function field<C extends Control>(label: string, control: C, opts: { hint?: string; required?: boolean } = {}): Field<C> {
  const id = control.id || uid('f');
  control.id = id;
  const hintId = `${id}-hint`;
  const errId = `${id}-error`;
  const err = h('p', { class: 'field-error', id: errId, hidden: true });
  const described = [opts.hint ? hintId : '', errId].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', described);
  if (opts.required) control.required = true;
  const clear = (): void => {
    err.textContent = '';
    err.hidden = true;
    control.removeAttribute('aria-invalid');
  };
  // An error is about the value that was sent; once the user edits it, it no longer applies.
  control.addEventListener('input', clear);
  const el = h(
    'div',
    { class: 'field' },
    h('label', { for: id }, label, opts.required ? h('span', { class: 'req', 'aria-hidden': 'true' }, ' *') : null),
    control,
    opts.hint ? h('p', { class: 'hint', id: hintId }, opts.hint) : null,
    err,
  );
  return {
    el,
    control,
    setError(message) {
      if (!message) return clear();
      err.textContent = message;
      err.hidden = false;
      control.setAttribute('aria-invalid', 'true');
    },
  };
}

export function input(attrs: Record<string, string | number | boolean> = {}): HTMLInputElement {
  return h('input', { type: 'text', ...attrs });
}

/** An empty-state or loading paragraph. */
export function note(text: string): HTMLElement {
  return h('p', { class: 'muted' }, text);
}

/** Schedules `fn` once after a burst of calls (live events often arrive in pairs). */
export function debounce(fn: () => void, ms: number): () => void {
  let t: number | undefined;
  return () => {
    if (t !== undefined) window.clearTimeout(t);
    t = window.setTimeout(() => {
      t = undefined;
      fn();
    }, ms);
  };
}

/** A list keyed by id that keeps existing DOM nodes (and whatever the user typed in them) across reloads. */
export class KeyedList<T> {
  private readonly nodes = new Map<string, { el: HTMLElement; sig: string }>();

  constructor(
    readonly el: HTMLElement,
    private readonly key: (item: T) => string,
    private readonly sig: (item: T) => string,
    private readonly build: (item: T) => HTMLElement,
  ) {}

  /** Returns the keys that were not shown before. */
  update(items: readonly T[]): string[] {
    const added: string[] = [];
    const seen = new Set<string>();
    const order: HTMLElement[] = [];
    for (const item of items) {
      const k = this.key(item);
      seen.add(k);
      const sig = this.sig(item);
      let cur = this.nodes.get(k);
      if (!cur) added.push(k);
      if (!cur || cur.sig !== sig) {
        const had = cur?.el.contains(document.activeElement) ?? false;
        const el = this.build(item);
        cur?.el.replaceWith(el);
        cur = { el, sig };
        this.nodes.set(k, cur);
        // Keep keyboard users where they were: on the rebuilt item's first control.
        if (had) (el.querySelector<HTMLElement>('button, input, textarea, select, a[href]') ?? el).focus();
      }
      order.push(cur.el);
    }
    for (const [k, v] of this.nodes) {
      if (!seen.has(k)) {
        v.el.remove();
        this.nodes.delete(k);
      }
    }
    order.forEach((el, i) => {
      if (this.el.children[i] !== el) this.el.insertBefore(el, this.el.children[i] ?? null);
    });
    return added;
  }
}
