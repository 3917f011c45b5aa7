import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import meterline from './eslint/boundaries.js';

export default tseslint.config(
  { ignores: ['node_modules/**', '.meterline/**', 'bench/results/**', 'web/dist/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', { selector: 'TSEnumDeclaration', message: 'Use an `as const` object and a derived union instead of enum.' }],
    },
  },
  {
    // Component boundaries and no import cycles (eslint/boundaries.js; layers in docs/architecture.md).
    files: ['**/*.ts'],
    plugins: { meterline },
    rules: { 'meterline/layers': 'error', 'meterline/no-cycle': 'error' },
  },
  {
    // The dashboard and portal run in the browser (bundled by api/ui.ts, type-checked by web/tsconfig.json).
    files: ['web/**/*.ts'],
    languageOptions: {
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', history: 'readonly', navigator: 'readonly', sessionStorage: 'readonly', fetch: 'readonly', Intl: 'readonly', URLSearchParams: 'readonly', ResizeObserver: 'readonly', HTMLElement: 'readonly', Node: 'readonly', Event: 'readonly' },
    },
  },
);
