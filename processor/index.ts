export * from './dedup.ts';
export * from './dead-letter.ts';
export * from './processor.ts';
export * from './backfill.ts';
export * from './ownership.ts';
