import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'src/web/dist/', 'coverage/', '.cli-scratch/'] },
  js.configs.recommended,
  { files: ['**/*.js', '**/*.mjs'], languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', SharedArrayBuffer: 'readonly', Atomics: 'readonly' } } },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Use the injected Clock.' },
      ],
    },
  },
  {
    // A door reaches the core only through its GatewayPort (src/broker/port.ts): never the
    // engine, the store, the audit log or the secrets, so no door can bypass the login path.
    files: ['protocols/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['**/src/workflow/*', '**/src/store/*', '**/src/store/**', '**/src/audit/*', '**/src/secrets/*', '**/src/api/*', '**/src/events/*'], message: 'Doors use the GatewayPort (src/broker/port.ts), not the core directly.' },
          { group: ['**/src/broker/broker.js', '**/src/broker/login.js', '**/src/broker/password-cache.js'], message: 'Doors use the GatewayPort (src/broker/port.ts), not the broker itself.' },
        ],
      }],
    },
  },
  {
    // The registry's type-only view of the core is fine; it is data and lazy loaders.
    files: ['protocols/registry.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['test/**', 'bench/**', 'src/core/clock.ts', 'src/cli/**'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    // Tests read loosely typed JSON from real servers.
    files: ['test/**', 'bench/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
