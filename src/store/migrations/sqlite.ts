/**
 * SQLite schema migrations, applied in order by SqliteStore.open. Kept as TypeScript strings
 * so they ship inside dist/ without a copy step. Never edit a released migration: append a
 * new one with the next version number.
 *
 * Times are ISO-8601 UTC strings (Date#toISOString), which sort and compare correctly as
 * text. Arrays and nested objects are JSON text. There are deliberately no foreign keys to
 * users or resources: requests, leases, sessions and audit entries are history and must
 * outlive the records they name.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const init = `
CREATE TABLE users (
  name               TEXT PRIMARY KEY,
  id                 TEXT NOT NULL,
  admin              INTEGER NOT NULL CHECK (admin IN (0, 1)),
  disabled           INTEGER NOT NULL CHECK (disabled IN (0, 1)),
  teams              TEXT NOT NULL,
  password_hash      TEXT,
  totp_secret_sealed TEXT,
  totp_confirmed     INTEGER NOT NULL CHECK (totp_confirmed IN (0, 1)),
  ssh_keys           TEXT NOT NULL,
  created_at         TEXT NOT NULL
);

CREATE TABLE teams (
  name       TEXT PRIMARY KEY,
  created_at TEXT NOT NULL
);

CREATE TABLE roles (
  name         TEXT PRIMARY KEY,
  enforcements TEXT NOT NULL,
  members      TEXT NOT NULL
);

CREATE TABLE resources (
  name               TEXT PRIMARY KEY,
  id                 TEXT NOT NULL,
  type               TEXT NOT NULL,
  protocol           TEXT NOT NULL,
  host               TEXT NOT NULL,
  port               INTEGER NOT NULL,
  database           TEXT,
  owner              TEXT NOT NULL,
  access             TEXT NOT NULL,
  credentials_sealed TEXT,
  settings           TEXT NOT NULL,
  options            TEXT NOT NULL,
  host_key_pin       TEXT,
  source             TEXT NOT NULL,
  created_at         TEXT NOT NULL
);

CREATE TABLE requests (
  id               TEXT PRIMARY KEY,
  resource         TEXT NOT NULL,
  requester        TEXT NOT NULL,
  reason           TEXT,
  ticket           TEXT,
  state            TEXT NOT NULL,
  stage            INTEGER NOT NULL,
  reviews          TEXT NOT NULL,
  created_at       TEXT NOT NULL,
  pending_until    TEXT NOT NULL,
  decided_at       TEXT,
  grant_start      TEXT,
  grant_end        TEXT,
  use_by           TEXT,
  last_reminded_at TEXT,
  escalated_at TEXT,
  ended_at         TEXT,
  end_reason       TEXT,
  version          INTEGER NOT NULL
);
CREATE INDEX requests_resource ON requests (resource, created_at);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_state ON requests (state);

CREATE TABLE leases (
  id          TEXT PRIMARY KEY,
  resource    TEXT NOT NULL,
  holder      TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('held', 'checked_in', 'expired', 'force_checked_in')),
  request_id  TEXT,
  started_at  TEXT NOT NULL,
  expires_at  TEXT NOT NULL,
  ended_at    TEXT,
  ended_by    TEXT,
  end_reason  TEXT
);
-- The single-user guarantee: the database itself refuses a second held lease.
CREATE UNIQUE INDEX leases_one_held ON leases (resource) WHERE state = 'held';
CREATE INDEX leases_resource ON leases (resource, started_at);
CREATE INDEX leases_holder ON leases (holder, started_at);

CREATE TABLE delegations (
  id        TEXT PRIMARY KEY,
  from_user TEXT NOT NULL,
  to_user   TEXT NOT NULL,
  resource  TEXT,
  start_at  TEXT NOT NULL,
  end_at    TEXT NOT NULL
);
CREATE INDEX delegations_to ON delegations (to_user);
CREATE INDEX delegations_from ON delegations (from_user);

-- A TOTP step is accepted once per user: the primary key makes a replay a conflict.
CREATE TABLE totp_steps (
  user    TEXT NOT NULL,
  step    INTEGER NOT NULL,
  used_at TEXT NOT NULL,
  PRIMARY KEY (user, step)
) WITHOUT ROWID;
CREATE INDEX totp_steps_used_at ON totp_steps (used_at);

CREATE TABLE tickets (
  hash       TEXT PRIMARY KEY,
  user       TEXT NOT NULL,
  resource   TEXT NOT NULL,
  mfa        INTEGER NOT NULL CHECK (mfa IN (0, 1)),
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  used_at    TEXT
);

CREATE TABLE tokens (
  id         TEXT PRIMARY KEY,
  user       TEXT NOT NULL,
  hash       TEXT NOT NULL UNIQUE,
  kind       TEXT NOT NULL CHECK (kind IN ('session', 'api')),
  label      TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX tokens_user ON tokens (user, created_at);

CREATE TABLE sessions (
  id          TEXT PRIMARY KEY,
  user        TEXT NOT NULL,
  resource    TEXT NOT NULL,
  protocol    TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('provisional', 'live', 'ended')),
  client      TEXT NOT NULL,
  started_at  TEXT NOT NULL,
  deadline    TEXT,
  ended_at    TEXT,
  end_reason  TEXT,
  end_message TEXT,
  bytes_in    INTEGER NOT NULL,
  bytes_out   INTEGER NOT NULL,
  node        TEXT NOT NULL
);
CREATE INDEX sessions_state ON sessions (state, started_at);

CREATE TABLE audit (
  seq     INTEGER PRIMARY KEY,
  at      TEXT NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  subject TEXT NOT NULL,
  data    TEXT NOT NULL,
  prev    TEXT NOT NULL,
  mac     TEXT NOT NULL
);

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

/** Ephemeral accounts and elevation (issue 17): the settings on resources, the account on sessions, and one row per account. */
const jit = `
ALTER TABLE resources ADD COLUMN jit TEXT;
ALTER TABLE sessions ADD COLUMN account TEXT;

CREATE TABLE jit_accounts (
  id                 TEXT PRIMARY KEY,
  resource           TEXT NOT NULL,
  kind               TEXT NOT NULL CHECK (kind IN ('ephemeral', 'elevation')),
  grant_key          TEXT NOT NULL,
  user               TEXT NOT NULL,
  request_id         TEXT,
  lease_id           TEXT,
  session_id         TEXT,
  account            TEXT NOT NULL,
  grants             TEXT NOT NULL,
  state              TEXT NOT NULL CHECK (state IN ('planned', 'provisioning', 'active', 'revoking', 'gone', 'failed')),
  credentials_sealed TEXT,
  resource_snapshot  TEXT NOT NULL,
  node               TEXT NOT NULL,
  created_at         TEXT NOT NULL,
  updated_at         TEXT NOT NULL,
  deadline           TEXT,
  attempts           INTEGER NOT NULL,
  error              TEXT,
  gone_at            TEXT,
  version            INTEGER NOT NULL
);
-- One live account (or elevation) per grant: a second first connection shares the first one's.
CREATE UNIQUE INDEX jit_accounts_one_live ON jit_accounts (grant_key, kind) WHERE state IN ('planned', 'provisioning', 'active', 'revoking');
CREATE INDEX jit_accounts_state ON jit_accounts (state, resource);
`;

export const sqliteMigrations: readonly Migration[] = [
  { version: 1, name: 'init', sql: init },
  { version: 2, name: 'jit', sql: jit },
];
