export * from './cloudevents.ts';
export * from './publisher.ts';
export { decodeUtf8Strict, Utf8Error } from '../common/json-text.ts';
