export * from './catalog.ts';
export * from './periods.ts';
export * from './invoice-types.ts';
export * from './invoice-builder.ts';
export * from './billing.ts';
export * from './invoice-sync.ts';
