export * from './dedup.ts';
export * from './dead-letter.ts';
export * from './processor.ts';
export * from './backfill.ts';
export * from './ownership.ts';
export { rejectsTheData } from './writer.ts';
export { storedTimestampNanos } from './pipeline.ts';
