export * from './types.ts';
export * from './store.ts';
export * from './alerts.ts';
export * from './scan-deps.ts';
export * from './scan.ts';
export * from './detect.ts';
export * from './delivery.ts';
