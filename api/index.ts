export * from './app.ts';
export * from './keys.ts';
export * from './usage.ts';
export * from './usage-plan.ts';
