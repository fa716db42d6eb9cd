/**
 * PostgreSQL schema migrations, applied in order by PostgresStore.open under an advisory
 * lock. The same tables and columns as the SQLite schema (so one row mapping serves both),
 * in PostgreSQL's own types. Never edit a released migration: append a new one.
 *
 * - Times are timestamptz. Gatehouse writes millisecond Dates and PostgreSQL keeps
 *   microseconds, so every Date reads back exactly.
 * - Structured columns are jsonb, except audit.data: jsonb reorders object keys, and the
 *   audit MAC is computed over the entry's JSON as written, so a verifier reading it back
 *   must see the same key order. `json` keeps the text verbatim.
 * - Keys that listings sort by use the "C" collation so the order is bytewise, the same as
 *   SQLite's and independent of the cluster's locale.
 * - `user` is a reserved word here and is always quoted.
 * - No foreign keys to users or resources, for the same reason as in SQLite: history
 *   outlives the records it names.
 */
import type { Migration } from './sqlite.js';

const init = `
CREATE TABLE users (
  name               TEXT COLLATE "C" PRIMARY KEY,
  id                 TEXT NOT NULL,
  admin              BOOLEAN NOT NULL,
  disabled           BOOLEAN NOT NULL,
  teams              JSONB NOT NULL,
  password_hash      TEXT,
  totp_secret_sealed TEXT,
  totp_confirmed     BOOLEAN NOT NULL,
  ssh_keys           JSONB NOT NULL,
  created_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE teams (
  name       TEXT COLLATE "C" PRIMARY KEY,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE roles (
  name         TEXT COLLATE "C" PRIMARY KEY,
  enforcements JSONB NOT NULL,
  members      JSONB NOT NULL
);

CREATE TABLE resources (
  name               TEXT COLLATE "C" PRIMARY KEY,
  id                 TEXT NOT NULL,
  type               TEXT NOT NULL,
  protocol           TEXT NOT NULL,
  host               TEXT NOT NULL,
  port               INTEGER NOT NULL,
  database           TEXT,
  owner              TEXT NOT NULL,
  access             JSONB NOT NULL,
  credentials_sealed TEXT,
  settings           JSONB NOT NULL,
  options            JSONB NOT NULL,
  host_key_pin       TEXT,
  source             TEXT NOT NULL,
  created_at         TIMESTAMPTZ NOT NULL
);

CREATE TABLE requests (
  id               TEXT COLLATE "C" PRIMARY KEY,
  resource         TEXT NOT NULL,
  requester        TEXT NOT NULL,
  reason           TEXT,
  ticket           TEXT,
  state            TEXT NOT NULL,
  stage            INTEGER NOT NULL,
  reviews          JSONB NOT NULL,
  created_at       TIMESTAMPTZ NOT NULL,
  pending_until    TIMESTAMPTZ NOT NULL,
  decided_at       TIMESTAMPTZ,
  grant_start      TIMESTAMPTZ,
  grant_end        TIMESTAMPTZ,
  use_by           TIMESTAMPTZ,
  last_reminded_at TIMESTAMPTZ,
  escalated_at     TIMESTAMPTZ,
  ended_at         TIMESTAMPTZ,
  end_reason       TEXT,
  version          INTEGER NOT NULL
);
CREATE INDEX requests_resource ON requests (resource, created_at);
CREATE INDEX requests_requester ON requests (requester, created_at);
CREATE INDEX requests_state ON requests (state);

CREATE TABLE leases (
  id          TEXT COLLATE "C" PRIMARY KEY,
  resource    TEXT NOT NULL,
  holder      TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('held', 'checked_in', 'expired', 'force_checked_in')),
  request_id  TEXT,
  started_at  TIMESTAMPTZ NOT NULL,
  expires_at  TIMESTAMPTZ NOT NULL,
  ended_at    TIMESTAMPTZ,
  ended_by    TEXT,
  end_reason  TEXT
);
-- The single-user guarantee: the database itself refuses a second held lease, whichever
-- gateway node tries. PostgresStore maps a violation of this index (by name) to CHECKED_OUT.
CREATE UNIQUE INDEX leases_one_held ON leases (resource) WHERE state = 'held';
CREATE INDEX leases_resource ON leases (resource, started_at);
CREATE INDEX leases_holder ON leases (holder, started_at);

CREATE TABLE delegations (
  id        TEXT COLLATE "C" PRIMARY KEY,
  from_user TEXT NOT NULL,
  to_user   TEXT NOT NULL,
  resource  TEXT,
  start_at  TIMESTAMPTZ NOT NULL,
  end_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX delegations_to ON delegations (to_user);
CREATE INDEX delegations_from ON delegations (from_user);

-- A TOTP step is accepted once per user: the primary key makes a replay a conflict.
CREATE TABLE totp_steps (
  "user"  TEXT NOT NULL,
  step    BIGINT NOT NULL,
  used_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY ("user", step)
);
CREATE INDEX totp_steps_used_at ON totp_steps (used_at);

CREATE TABLE tickets (
  hash       TEXT PRIMARY KEY,
  "user"     TEXT NOT NULL,
  resource   TEXT NOT NULL,
  mfa        BOOLEAN NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL,
  used_at    TIMESTAMPTZ
);

CREATE TABLE tokens (
  id         TEXT COLLATE "C" PRIMARY KEY,
  "user"     TEXT NOT NULL,
  hash       TEXT NOT NULL UNIQUE,
  kind       TEXT NOT NULL CHECK (kind IN ('session', 'api')),
  label      TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  expires_at TIMESTAMPTZ
);
CREATE INDEX tokens_user ON tokens ("user", created_at);

CREATE TABLE sessions (
  id          TEXT COLLATE "C" PRIMARY KEY,
  "user"      TEXT NOT NULL,
  resource    TEXT NOT NULL,
  protocol    TEXT NOT NULL,
  state       TEXT NOT NULL CHECK (state IN ('provisional', 'live', 'ended')),
  client      TEXT NOT NULL,
  started_at  TIMESTAMPTZ NOT NULL,
  deadline    TIMESTAMPTZ,
  ended_at    TIMESTAMPTZ,
  end_reason  TEXT,
  end_message TEXT,
  bytes_in    BIGINT NOT NULL,
  bytes_out   BIGINT NOT NULL,
  node        TEXT NOT NULL
);
CREATE INDEX sessions_state ON sessions (state, started_at);

CREATE TABLE audit (
  seq     BIGINT PRIMARY KEY,
  at      TIMESTAMPTZ NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  subject TEXT NOT NULL,
  data    JSON NOT NULL,
  prev    TEXT NOT NULL,
  mac     TEXT NOT NULL
);

CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

/** Ephemeral accounts and elevation (issue 17), as in the SQLite schema. */
const jit = `
ALTER TABLE resources ADD COLUMN jit JSONB;
ALTER TABLE sessions ADD COLUMN account TEXT;

CREATE TABLE jit_accounts (
  id                 TEXT PRIMARY KEY,
  resource           TEXT COLLATE "C" NOT NULL,
  kind               TEXT NOT NULL CHECK (kind IN ('ephemeral', 'elevation')),
  grant_key          TEXT NOT NULL,
  "user"             TEXT NOT NULL,
  request_id         TEXT,
  lease_id           TEXT,
  session_id         TEXT,
  account            TEXT NOT NULL,
  grants             JSONB NOT NULL,
  state              TEXT NOT NULL CHECK (state IN ('planned', 'provisioning', 'active', 'revoking', 'gone', 'failed')),
  credentials_sealed TEXT,
  resource_snapshot  TEXT NOT NULL,
  node               TEXT NOT NULL,
  created_at         TIMESTAMPTZ NOT NULL,
  updated_at         TIMESTAMPTZ NOT NULL,
  deadline           TIMESTAMPTZ,
  attempts           INTEGER NOT NULL,
  error              TEXT,
  gone_at            TIMESTAMPTZ,
  version            INTEGER NOT NULL
);
CREATE UNIQUE INDEX jit_accounts_one_live ON jit_accounts (grant_key, kind) WHERE state IN ('planned', 'provisioning', 'active', 'revoking');
CREATE INDEX jit_accounts_state ON jit_accounts (state, resource);
`;

export const postgresMigrations: readonly Migration[] = [
  { version: 1, name: 'init', sql: init },
  { version: 2, name: 'jit', sql: jit },
];
