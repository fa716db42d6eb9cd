import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../../src/core/errors.js';
import type { Role, WorkflowSettings } from '../../../src/core/model.js';
import {
  canConfigureWorkflow,
  describeSettings,
  eligibleApprovers,
  validateSettings,
  type SettingsContext,
} from '../../../src/workflow/settings.js';

const teams = new Map([
  ['dba', ['bob', 'dave']],
  ['sec', ['frank', 'grace']],
  ['outsiders', ['mallory']],
]);
const ctx: SettingsContext = { owner: 'olga', access: [{ team: 'dba' }, { team: 'sec' }, { user: 'alice' }], teams };

const limit = { timezone: 'Europe/Berlin', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '17:00' }], maxDurationMinutes: 120 };

function fieldOf(input: unknown, c: SettingsContext = ctx): string {
  try {
    validateSettings(input, c);
  } catch (e) {
    expect(e).toBeInstanceOf(ValidationError);
    const v = e as ValidationError;
    expect(v.code).toBe('VALIDATION');
    expect(v.message.startsWith(`${v.field}: `)).toBe(true);
    return v.field;
  }
  throw new Error('expected a ValidationError');
}

const withApproval = (a: Record<string, unknown>) => ({ limitAccessTime: limit, requireApproval: { approvals: 1, ...a } });
const withRange = (r: Record<string, unknown>) => ({ limitAccessTime: { ...limit, schedule: [r] } });

describe('validateSettings: structure', () => {
  it('accepts empty settings and fills approval defaults', () => {
    expect(validateSettings({}, ctx)).toEqual({});
    expect(validateSettings(undefined, ctx)).toEqual({});
    const s = validateSettings(withApproval({}), ctx);
    expect(s.requireApproval).toEqual({ approvers: [], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval' });
  });

  it('keeps explicit values', () => {
    const s = validateSettings(withApproval({ startOn: 'first_connection', requireReason: true }), ctx);
    expect(s.requireApproval?.startOn).toBe('first_connection');
    expect(s.requireApproval?.requireReason).toBe(true);
  });

  it('rejects unknown keys at every level, naming the key', () => {
    expect(fieldOf({ foo: 1 })).toBe('foo');
    expect(fieldOf({ limitAccessTime: { ...limit, zone: 'x' } })).toBe('limitAccessTime.zone');
    expect(fieldOf(withApproval({ approver: [] }))).toBe('requireApproval.approver');
    expect(fieldOf(withRange({ days: ['mon'], start: '08:00', end: '09:00', tz: 1 }))).toBe('limitAccessTime.schedule[0].tz');
  });

  it('rejects wrong types and bad principals', () => {
    expect(fieldOf({ mfa: 'yes' })).toBe('mfa');
    expect(fieldOf(withApproval({ approvers: [{ user: 'alice', team: 'dba' }] }))).toBe('requireApproval.approvers[0]');
    expect(fieldOf(withApproval({ approvers: [{ group: 'dba' }] }))).toBe('requireApproval.approvers[0]');
    expect(fieldOf(withApproval({ startOn: 'later' }))).toBe('requireApproval.startOn');
    expect(fieldOf(withRange({ days: ['monday'], start: '08:00', end: '09:00' }))).toBe('limitAccessTime.schedule[0].days[0]');
  });
});

describe('validateSettings: limitAccessTime', () => {
  it('is required whenever approval, single-user or MFA is on', () => {
    for (const s of [{ requireApproval: { approvals: 1 } }, { singleUser: true }, { mfa: true }]) {
      expect(() => validateSettings(s, ctx)).toThrow('limitAccessTime: required when requireApproval, singleUser or mfa is on');
      expect(fieldOf(s)).toBe('limitAccessTime');
    }
    expect(validateSettings({ singleUser: false, mfa: false }, ctx)).toEqual({ singleUser: false, mfa: false });
    expect(validateSettings({ limitAccessTime: limit, singleUser: true, mfa: true }, ctx).mfa).toBe(true);
  });

  it('needs a real IANA time zone', () => {
    expect(fieldOf({ limitAccessTime: { ...limit, timezone: 'Mars/Olympus' } })).toBe('limitAccessTime.timezone');
    expect(fieldOf({ limitAccessTime: { ...limit, timezone: '' } })).toBe('limitAccessTime.timezone');
    expect(validateSettings({ limitAccessTime: { ...limit, timezone: 'America/New_York' } }, ctx).limitAccessTime?.timezone).toBe('America/New_York');
  });

  it('needs a non-empty schedule and non-empty days', () => {
    expect(fieldOf({ limitAccessTime: { ...limit, schedule: [] } })).toBe('limitAccessTime.schedule');
    expect(fieldOf(withRange({ days: [], start: '08:00', end: '09:00' }))).toBe('limitAccessTime.schedule[0].days');
  });

  it('checks HH:MM times, 24:00 only as an end', () => {
    expect(fieldOf(withRange({ days: ['mon'], start: '8:00', end: '09:00' }))).toBe('limitAccessTime.schedule[0].start');
    expect(fieldOf(withRange({ days: ['mon'], start: '08:60', end: '09:00' }))).toBe('limitAccessTime.schedule[0].start');
    expect(fieldOf(withRange({ days: ['mon'], start: '24:00', end: '09:00' }))).toBe('limitAccessTime.schedule[0].start');
    expect(fieldOf(withRange({ days: ['mon'], start: '08:00', end: '25:00' }))).toBe('limitAccessTime.schedule[0].end');
    expect(fieldOf(withRange({ days: ['mon'], start: '08:00', end: '24:30' }))).toBe('limitAccessTime.schedule[0].end');
    const second = { limitAccessTime: { ...limit, schedule: [limit.schedule[0], { days: ['sat'], start: '10:00', end: 'noon' }] } };
    expect(fieldOf(second)).toBe('limitAccessTime.schedule[1].end');
    expect(validateSettings(withRange({ days: ['mon'], start: '08:00', end: '24:00' }), ctx).limitAccessTime?.schedule[0]?.end).toBe('24:00');
    // end <= start crosses midnight, which is allowed.
    expect(validateSettings(withRange({ days: ['fri'], start: '22:00', end: '06:00' }), ctx).limitAccessTime?.schedule).toHaveLength(1);
  });

  it('refuses an empty range (start = end) but allows 00:00-24:00', () => {
    expect(fieldOf(withRange({ days: ['mon'], start: '08:00', end: '08:00' }))).toBe('limitAccessTime.schedule[0].end');
    expect(fieldOf(withRange({ days: ['mon'], start: '00:00', end: '00:00' }))).toBe('limitAccessTime.schedule[0].end');
    expect(validateSettings(withRange({ days: ['mon'], start: '00:00', end: '24:00' }), ctx).limitAccessTime).toBeDefined();
  });

  it('bounds maxDurationMinutes to 1..43200', () => {
    for (const bad of [0, -5, 43201, 1.5]) {
      expect(fieldOf({ limitAccessTime: { ...limit, maxDurationMinutes: bad } })).toBe('limitAccessTime.maxDurationMinutes');
    }
    for (const ok of [1, 43200]) {
      expect(validateSettings({ limitAccessTime: { ...limit, maxDurationMinutes: ok } }, ctx).limitAccessTime?.maxDurationMinutes).toBe(ok);
    }
  });
});

describe('validateSettings: requireApproval', () => {
  it('takes approvers from the access list only (users directly or via a team, teams listed)', () => {
    const ok = validateSettings(withApproval({ approvers: [{ user: 'alice' }, { user: 'bob' }, { team: 'sec' }, { user: 'olga' }] }), ctx);
    expect(ok.requireApproval?.approvers).toHaveLength(4);
    expect(fieldOf(withApproval({ approvers: [{ user: 'alice' }, { user: 'mallory' }] }))).toBe('requireApproval.approvers[1]');
    expect(fieldOf(withApproval({ approvers: [{ team: 'outsiders' }] }))).toBe('requireApproval.approvers[0]');
    expect(() => validateSettings(withApproval({ approvers: [{ team: 'outsiders' }] }), ctx)).toThrow(/team:outsiders is not on the resource's access list/);
  });

  it('bounds approvals by the distinct eligible users, owner included', () => {
    // owner olga + alice + dba{bob,dave} (bob listed twice) = 4
    const approvers = [{ user: 'alice' }, { team: 'dba' }, { user: 'bob' }];
    expect(validateSettings(withApproval({ approvers, approvals: 4 }), ctx).requireApproval?.approvals).toBe(4);
    expect(fieldOf(withApproval({ approvers, approvals: 5 }))).toBe('requireApproval.approvals');
    expect(() => validateSettings(withApproval({ approvers, approvals: 5 }), ctx)).toThrow('requireApproval.approvals: must be between 1 and 4');
    expect(fieldOf(withApproval({ approvals: 0 }))).toBe('requireApproval.approvals');
    expect(fieldOf(withApproval({ approvals: 2 }))).toBe('requireApproval.approvals');
  });

  it('checks the second stage against its own approvers, without the owner', () => {
    const secondStage = { approvers: [{ team: 'sec' }], approvals: 2 };
    expect(validateSettings(withApproval({ secondStage }), ctx).requireApproval?.secondStage).toEqual(secondStage);
    expect(fieldOf(withApproval({ secondStage: { ...secondStage, approvals: 3 } }))).toBe('requireApproval.secondStage.approvals');
    expect(fieldOf(withApproval({ secondStage: { approvers: [{ user: 'olga' }, { user: 'mallory' }], approvals: 1 } }))).toBe(
      'requireApproval.secondStage.approvers[1]',
    );
    expect(fieldOf(withApproval({ secondStage: { approvers: [], approvals: 1 } }))).toBe('requireApproval.secondStage.approvers');
  });

  it('checks escalation and the pending TTL', () => {
    const escalation = { afterMinutes: 30, approvers: [{ team: 'sec' }] };
    expect(validateSettings(withApproval({ escalation }), ctx).requireApproval?.escalation).toEqual(escalation);
    expect(fieldOf(withApproval({ escalation: { ...escalation, afterMinutes: 0 } }))).toBe('requireApproval.escalation.afterMinutes');
    expect(fieldOf(withApproval({ escalation: { ...escalation, approvers: [{ user: 'mallory' }] } }))).toBe(
      'requireApproval.escalation.approvers[0]',
    );
    expect(fieldOf(withApproval({ pendingTtlMinutes: 0 }))).toBe('requireApproval.pendingTtlMinutes');
    expect(fieldOf(withApproval({ pendingTtlMinutes: 10081 }))).toBe('requireApproval.pendingTtlMinutes');
    expect(validateSettings(withApproval({ pendingTtlMinutes: 10080 }), ctx).requireApproval?.pendingTtlMinutes).toBe(10080);
  });

  it('allows a ticket pattern only with requireTicket, compiling, and at most 200 chars', () => {
    const ok = validateSettings(withApproval({ requireTicket: true, ticketPattern: '^OPS-[0-9]+$' }), ctx);
    expect(ok.requireApproval?.ticketPattern).toBe('^OPS-[0-9]+$');
    expect(fieldOf(withApproval({ ticketPattern: '^OPS-' }))).toBe('requireApproval.ticketPattern');
    expect(fieldOf(withApproval({ requireTicket: true, ticketPattern: '^(OPS' }))).toBe('requireApproval.ticketPattern');
    expect(fieldOf(withApproval({ requireTicket: true, ticketPattern: 'a'.repeat(201) }))).toBe('requireApproval.ticketPattern');
    expect(validateSettings(withApproval({ requireTicket: true, ticketPattern: 'a'.repeat(200) }), ctx).requireApproval?.requireTicket).toBe(true);
  });
});

describe('eligibleApprovers', () => {
  const resource = { owner: 'olga', access: ctx.access };
  const settings = validateSettings(
    withApproval({
      approvers: [{ team: 'dba' }],
      secondStage: { approvers: [{ team: 'sec' }], approvals: 1 },
      escalation: { afterMinutes: 30, approvers: [{ user: 'alice' }] },
    }),
    ctx,
  );

  it('stage 0: owner and approvers, plus escalation approvers once escalated', () => {
    expect([...eligibleApprovers(settings, resource, teams, 0, false)].sort()).toEqual(['bob', 'dave', 'olga']);
    expect([...eligibleApprovers(settings, resource, teams, 0, true)].sort()).toEqual(['alice', 'bob', 'dave', 'olga']);
  });

  it('stage 1: the second-stage approvers only; unknown stages: nobody', () => {
    expect([...eligibleApprovers(settings, resource, teams, 1, false)].sort()).toEqual(['frank', 'grace']);
    expect(eligibleApprovers(settings, resource, teams, 2, false).size).toBe(0);
  });

  it('drops approvers who left the access list since the settings were saved', () => {
    const shrunk = { owner: 'olga', access: [{ user: 'alice' }] };
    expect([...eligibleApprovers(settings, shrunk, teams, 0, true)].sort()).toEqual(['alice', 'olga']);
    expect(eligibleApprovers(settings, shrunk, teams, 1, false).size).toBe(0);
  });

  it('without requireApproval the owner alone approves', () => {
    expect([...eligibleApprovers({}, resource, teams, 0, false)]).toEqual(['olga']);
    expect(eligibleApprovers({}, resource, teams, 1, false).size).toBe(0);
  });
});

describe('describeSettings', () => {
  it('renders every setting in one line each', () => {
    const s: WorkflowSettings = validateSettings(
      {
        limitAccessTime: { ...limit, schedule: [...limit.schedule, { days: ['sat', 'sun'], start: '10:00', end: '14:00' }] },
        requireApproval: {
          approvers: [{ team: 'dba' }, { user: 'alice' }],
          approvals: 2,
          requireReason: true,
          requireTicket: true,
          ticketPattern: '^OPS-[0-9]+$',
          secondStage: { approvers: [{ team: 'sec' }], approvals: 1 },
          escalation: { afterMinutes: 90, approvers: [{ user: 'bob' }] },
          pendingTtlMinutes: 1440,
        },
        singleUser: true,
        mfa: true,
      },
      ctx,
    );
    expect(describeSettings(s)).toEqual([
      'Limit access time: mon-fri 08:00-17:00, sat,sun 10:00-14:00 (Europe/Berlin), at most 2h',
      'Require approval: 2 of owner, team:dba, alice; reason required; ticket required (matching ^OPS-[0-9]+$); timer starts upon approval',
      '  then a second stage: 1 of team:sec',
      '  escalation: after 1h30m also bob',
      '  pending requests expire after 1d',
      'Single-user mode: on (check-out / check-in)',
      'MFA: required before each connection',
    ]);
  });

  it('says so when there is no workflow', () => {
    expect(describeSettings({})).toEqual(['No workflow: anyone on the access list may connect at any time']);
  });
});

describe('canConfigureWorkflow', () => {
  const roles: Role[] = [
    { name: 'workflow-admins', enforcements: { ALLOW_CONFIGURE_WORKFLOW_SETTINGS: true }, members: ['carol'] },
    { name: 'viewers', enforcements: { ALLOW_CONFIGURE_WORKFLOW_SETTINGS: false }, members: ['dave'] },
    { name: 'empty', enforcements: {}, members: ['erin'] },
  ];

  it('allows admins and members of an enabling role only', () => {
    expect(canConfigureWorkflow({ admin: true, name: 'root' }, [])).toBe(true);
    expect(canConfigureWorkflow({ admin: false, name: 'carol' }, roles)).toBe(true);
    expect(canConfigureWorkflow({ admin: false, name: 'dave' }, roles)).toBe(false);
    expect(canConfigureWorkflow({ admin: false, name: 'erin' }, roles)).toBe(false);
    expect(canConfigureWorkflow({ admin: false, name: 'zoe' }, roles)).toBe(false);
  });
});
