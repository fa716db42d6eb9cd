import { describe, expect, it } from 'vitest';
import type { WorkflowSettings } from '../../../src/core/model.js';
import { CliError } from '../../../src/cli/cli-error.js';
import { buildWorkflowSettings, parseWorkflowFlags, type WorkflowFlags } from '../../../src/cli/workflow-flags.js';
import { validateSettings } from '../../../src/workflow/settings.js';

const ctx = { owner: 'olga', access: [{ user: 'bob' }, { team: 'dba' }], teams: new Map([['dba', ['dave', 'erin']]]) };

const current: WorkflowSettings = {
  limitAccessTime: {
    timezone: 'Europe/Berlin',
    schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '17:00' }],
    maxDurationMinutes: 120,
  },
  requireApproval: { approvers: [{ user: 'bob' }], approvals: 1, requireReason: true, requireTicket: false, startOn: 'approval' },
};

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CliError);
    expect((e as CliError).exitCode).toBe(2);
    expect((e as CliError).message).not.toContain('\n');
    return (e as CliError).message;
  }
  throw new Error('expected a usage error');
}

describe('workflow set flags → settings JSON', () => {
  it('builds a complete workflow from nothing, in the form the server validates', () => {
    const flags: WorkflowFlags = {
      timezone: 'America/New_York',
      schedule: ['mon-fri 08:00-17:00', 'sat 22:00-02:00'],
      maxDuration: '1h30m',
      approvals: '2',
      approver: ['bob', 'team:dba'],
      requireReason: true,
      requireTicket: true,
      ticketPattern: '^CHG-\\d+$',
      startOn: 'first-connection',
      singleUser: true,
      mfa: true,
    };
    const settings = buildWorkflowSettings({}, flags);
    expect(settings).toEqual({
      limitAccessTime: {
        timezone: 'America/New_York',
        schedule: [
          { days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '17:00' },
          { days: ['sat'], start: '22:00', end: '02:00' },
        ],
        maxDurationMinutes: 90,
      },
      requireApproval: {
        approvers: [{ user: 'bob' }, { team: 'dba' }],
        approvals: 2,
        requireReason: true,
        requireTicket: true,
        ticketPattern: '^CHG-\\d+$',
        startOn: 'first_connection',
      },
      singleUser: true,
      mfa: true,
    });
    expect(validateSettings(settings, ctx)).toEqual(settings);
  });

  it('merges onto the current settings, changing only what the flags name', () => {
    const settings = buildWorkflowSettings(current, { maxDuration: '4h', approvals: '2', mfa: true });
    expect(settings.limitAccessTime).toEqual({ ...current.limitAccessTime, maxDurationMinutes: 240 });
    expect(settings.requireApproval).toEqual({ ...current.requireApproval, approvals: 2 });
    expect(settings.mfa).toBe(true);
    expect(settings.singleUser).toBeUndefined();
    expect(current.limitAccessTime!.maxDurationMinutes).toBe(120);
  });

  it('replaces the schedule and the approver list rather than appending', () => {
    const settings = buildWorkflowSettings(current, { schedule: ['daily 00:00-24:00'], approver: ['team:dba'] });
    expect(settings.limitAccessTime!.schedule).toEqual([{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }]);
    expect(settings.requireApproval!.approvers).toEqual([{ team: 'dba' }]);
  });

  it('turns settings off with the --no- forms', () => {
    const on = buildWorkflowSettings(current, { singleUser: true, mfa: true, requireTicket: true, ticketPattern: 'X-\\d+' });
    const off = buildWorkflowSettings(on, { singleUser: false, mfa: false, requireReason: false, requireTicket: false });
    expect(off.singleUser).toBeUndefined();
    expect(off.mfa).toBeUndefined();
    expect(off.requireApproval).toEqual({ ...current.requireApproval, requireReason: false, requireTicket: false });
    expect(buildWorkflowSettings(current, { approvals: false }).requireApproval).toBeUndefined();
  });

  it('--clear sends {}, and other flags then apply to nothing', () => {
    expect(buildWorkflowSettings(current, { clear: true })).toEqual({});
    expect(buildWorkflowSettings(current, { clear: true, timezone: 'UTC', schedule: ['sat,sun 10:00-14:00'], maxDuration: '30' })).toEqual({
      limitAccessTime: { timezone: 'UTC', schedule: [{ days: ['sat', 'sun'], start: '10:00', end: '14:00' }], maxDurationMinutes: 30 },
    });
  });

  it('fills the approval defaults when approval is first switched on', () => {
    const settings = buildWorkflowSettings({ limitAccessTime: current.limitAccessTime! }, { requireReason: true });
    expect(settings.requireApproval).toEqual({ approvers: [], approvals: 1, requireReason: true, requireTicket: false, startOn: 'approval' });
  });

  it('refuses malformed flags with one usage line naming the flag', () => {
    expect(usage(() => parseWorkflowFlags({}))).toMatch(/^nothing to change/);
    expect(usage(() => parseWorkflowFlags({ schedule: ['mon-fri 8-17'] }))).toMatch(/^--schedule: /);
    expect(usage(() => parseWorkflowFlags({ schedule: ['funday 08:00-09:00'] }))).toMatch(/^--schedule: unknown day "funday"/);
    expect(usage(() => parseWorkflowFlags({ maxDuration: 'forever' }))).toMatch(/^--max-duration: "forever" is not a duration/);
    expect(usage(() => parseWorkflowFlags({ approvals: '0' }))).toMatch(/^--approvals: /);
    expect(usage(() => parseWorkflowFlags({ approvals: 'two' }))).toMatch(/^--approvals: /);
    expect(usage(() => parseWorkflowFlags({ approver: ['team:'] }))).toMatch(/^--approver: /);
    expect(usage(() => parseWorkflowFlags({ startOn: 'lunch' }))).toMatch(/^--start-on: /);
    expect(usage(() => parseWorkflowFlags({ requireTicket: true, ticketPattern: '(' }))).toMatch(/^--ticket-pattern: not a valid/);
    expect(usage(() => parseWorkflowFlags({ approvals: false, approver: ['bob'] }))).toMatch(/--no-approvals cannot be combined/);
  });

  it('refuses flags that do not fit the current settings', () => {
    expect(usage(() => buildWorkflowSettings({}, { schedule: ['mon 08:00-09:00'] }))).toBe(
      'the resource has no access-time limit yet: also give --timezone and --max-duration',
    );
    expect(usage(() => buildWorkflowSettings(current, { ticketPattern: 'X' }))).toBe('--ticket-pattern needs --require-ticket');
  });
});
