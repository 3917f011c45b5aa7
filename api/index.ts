export * from './app.ts';
export * from './keys.ts';
export * from './portal-tokens.ts';
export * from './accounts.ts';
