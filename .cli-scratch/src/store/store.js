/** The `prev` of the first audit entry; every Store implementation uses it. */
export const AUDIT_GENESIS = 'genesis';
//# sourceMappingURL=store.js.map