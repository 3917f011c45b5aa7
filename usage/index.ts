export * from './store.ts';
export * from './plan.ts';
export * from './time-zones.ts';
export * from './query.ts';
export * from './cutoff.ts';
export * from './reconcile.ts';
export * from './repair.ts';
