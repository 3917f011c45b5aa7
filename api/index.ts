export * from './app.ts';
export * from './keys.ts';
export * from './usage.ts';
export * from './usage-plan.ts';
export * from './portal-tokens.ts';
export * from './accounts.ts';
