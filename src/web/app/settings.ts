/// <reference lib="dom" />
import { api, seg } from './api.js';
import { h, render } from './dom.js';
import { jitSection } from './jit-section.js';
import { notify } from './notify.js';
import { settingsForm } from './settings-form.js';
import type { JitView, ResourceView, WorkflowView } from './types.js';
import { busy, heading, note, type App, type Screen } from './ui.js';

/**
 * The workflow settings editor. Shown only to users allowed by
 * ALLOW_CONFIGURE_WORKFLOW_SETTINGS; the API checks again on every save.
 */
export function settingsScreen(app: App, resource?: string): Screen {
  const body = h('div', { class: 'settings-body' });
  const screen: Screen = { title: 'Workflow settings', el: h('section', { class: 'screen settings' }, heading('Workflow settings'), body) };
  if (!app.me.canConfigureWorkflow) {
    render(body, h('p', { class: 'notice-inline' },
      'Changing workflow settings needs a role with the ALLOW_CONFIGURE_WORKFLOW_SETTINGS enforcement. Ask an administrator if you need it.'));
    return screen;
  }
  render(body, note('Loading…'));
  void (resource ? editor(resource, body) : picker(body));
  return screen;
}

async function picker(body: HTMLElement): Promise<void> {
  const list = await api<ResourceView[]>('GET', '/resources').catch((e: Error) => e);
  if (list instanceof Error) return render(body, note(`Could not load resources: ${list.message}`));
  if (list.length === 0) return render(body, note('No resources yet.'));
  render(body, h('p', null, 'Choose a resource:'), h('ul', { class: 'picker' }, list.map((r) => h('li', null,
    h('a', { href: `/settings/${seg(r.name)}`, 'data-link': '' }, r.name), ' ', h('span', { class: 'muted' }, `${r.type} · ${r.protocol}`)))));
}

async function editor(name: string, body: HTMLElement): Promise<void> {
  let r: ResourceView;
  let wf: WorkflowView;
  let jit: JitView;
  try {
    [r, wf, jit] = await Promise.all([
      api<ResourceView>('GET', `/resources/${seg(name)}`), api<WorkflowView>('GET', `/resources/${seg(name)}/workflow`), api<JitView>('GET', `/resources/${seg(name)}/jit`),
    ]);
  } catch (e) {
    render(body, note(`Could not load ${name}: ${(e as Error).message}`));
    return;
  }
  const summary = h('div', { class: 'current' });
  const showSummary = (lines: string[]): void =>
    render(summary, h('h2', null, 'Current workflow'), lines.length ? h('ul', null, lines.map((l) => h('li', null, l))) : note('No workflow: access is open to the access list.'));
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'settings-form', novalidate: true, 'aria-label': `Workflow settings of ${name}` });
  const build = (view: WorkflowView): void => {
    const fields = settingsForm(r, view.settings);
    const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save settings');
    const clear = h('button', { type: 'button', class: 'btn btn-link' }, 'Clear all settings');
    const submit = (payload: Record<string, unknown>, btn: HTMLButtonElement): void => {
      fields.clearErrors();
      formError.hidden = true;
      void busy(btn, async () => {
        const next = await api<WorkflowView>('PUT', `/resources/${seg(name)}/workflow`, payload);
        notify(`Saved the workflow of ${name}.`, { kind: 'success' });
        showSummary(next.lines);
        build(next);
        form.querySelector<HTMLElement>('button[type="submit"]')?.focus();
      }, (e) => {
        const message = e.field ? e.message.replace(new RegExp(`^${escapeRe(e.field)}: `), '') : e.message;
        if (e.field && fields.showError(e.field, message)) return true;
        formError.textContent = e.message;
        formError.hidden = false;
        formError.setAttribute('tabindex', '-1');
        formError.focus();
        return true;
      });
    };
    form.onsubmit = (ev) => {
      ev.preventDefault();
      submit(fields.read(), save);
    };
    clear.onclick = () => submit({}, clear);
    render(form, formError, fields.el, h('div', { class: 'form-actions' }, save, clear));
  };
  build(wf);
  showSummary(wf.lines);
  render(body,
    h('p', { class: 'lede' }, h('strong', null, name), ` · ${r.type} · ${r.protocol} · owner ${r.owner} · `, h('a', { href: '/settings', 'data-link': '' }, 'other resources')),
    summary, form, jitSection(name, jit));
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
