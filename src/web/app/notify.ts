/// <reference lib="dom" />
import { h } from './dom.js';

export type NoticeKind = 'info' | 'success' | 'error';

const SHOW_MS = 8000;

/**
 * An in-page notice in the polite live region (errors use role=alert), and optionally a
 * browser notification when the user allowed them and the page is not in front.
 */
export function notify(text: string, opts: { kind?: NoticeKind; desktop?: boolean } = {}): void {
  const kind = opts.kind ?? 'info';
  const region = document.getElementById('notices');
  if (region) {
    const close = h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss notification' }, '×');
    const item = h('div', { class: `notice notice-${kind}`, ...(kind === 'error' ? { role: 'alert' } : {}) }, h('p', null, text), close);
    close.addEventListener('click', () => item.remove());
    region.append(item);
    window.setTimeout(() => item.remove(), kind === 'error' ? SHOW_MS * 2 : SHOW_MS);
  }
  if (opts.desktop && desktopAllowed() && document.visibilityState !== 'visible') {
    try {
      new Notification('Gatehouse', { body: text, tag: text });
    } catch {
      // Some browsers only allow notifications from a service worker; the in-page one stands.
    }
  }
}

export function desktopSupported(): boolean {
  return typeof window.Notification === 'function';
}

export function desktopAllowed(): boolean {
  return desktopSupported() && Notification.permission === 'granted';
}

export async function askDesktopPermission(): Promise<NotificationPermission> {
  if (!desktopSupported()) return 'denied';
  return Notification.requestPermission();
}
