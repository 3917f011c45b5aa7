export * from './cloudevents.ts';
export * from './publisher.ts';
