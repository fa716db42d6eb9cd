/**
 * Every failure Gatehouse reports has a stable code. Callers branch on `code`, never on
 * the message text. `status` is the HTTP status the API maps the error to.
 */
export const ErrorCodes = {
  VALIDATION: { status: 400 },
  BAD_REQUEST: { status: 400 },
  UNAUTHENTICATED: { status: 401 },
  FORBIDDEN: { status: 403 },
  NOT_FOUND: { status: 404 },
  CONFLICT: { status: 409 },
  PAYLOAD_TOO_LARGE: { status: 413 },
  RATE_LIMITED: { status: 429 },
  LOCKED: { status: 423 },
  INVALID_STATE: { status: 409 },
  CHECKED_OUT: { status: 409 },
  MFA_REQUIRED: { status: 401 },
  MFA_INVALID: { status: 401 },
  MFA_REPLAY: { status: 401 },
  TICKET_INVALID: { status: 401 },
  POLICY_INVALID: { status: 400 },
  STORE_FAILURE: { status: 503 },
  JIT_FAILED: { status: 502 },
  CONFIG_INVALID: { status: 500 },
  INTERNAL: { status: 500 },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class GatehouseError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'GatehouseError';
    this.code = code;
    if (details) this.details = details;
  }

  get status(): number {
    return ErrorCodes[this.code].status;
  }
}

export class ValidationError extends GatehouseError {
  /** Dotted path of the offending field, e.g. `requireApproval.approvals`. */
  readonly field: string;
  constructor(field: string, message: string) {
    super('VALIDATION', `${field}: ${message}`, { field });
    this.name = 'ValidationError';
    this.field = field;
  }
}

export class NotFoundError extends GatehouseError {
  constructor(kind: string, name: string) {
    super('NOT_FOUND', `${kind} '${name}' does not exist`, { kind, name });
    this.name = 'NotFoundError';
  }
}

export class ForbiddenError extends GatehouseError {
  constructor(message: string) {
    super('FORBIDDEN', message);
    this.name = 'ForbiddenError';
  }
}

export class InvalidStateError extends GatehouseError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('INVALID_STATE', message, details);
    this.name = 'InvalidStateError';
  }
}

export class StoreError extends GatehouseError {
  constructor(message: string, cause?: unknown) {
    super('STORE_FAILURE', message);
    this.name = 'StoreError';
    if (cause !== undefined) this.cause = cause;
  }
}

export function isGatehouseError(e: unknown): e is GatehouseError {
  return e instanceof GatehouseError;
}
