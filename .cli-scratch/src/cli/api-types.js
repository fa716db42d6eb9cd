export {};
//# sourceMappingURL=api-types.js.map