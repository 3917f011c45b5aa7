import type { ZodTypeAny } from 'zod';
import { zodToJsonSchema } from 'zod-to-json-schema';

/**
 * A route's response schema (OpenAPI, and Fastify's serializer) from a contract of
 * ./contracts.ts. The serializer drops every property its schema does not list, so a schema
 * written by hand beside the contract would silently cut a new field. `required` is left out
 * (the serializer would refuse a body missing one), as in the hand-written schemas before.
 */
export function responseSchema(schema: ZodTypeAny): Record<string, unknown> {
  const { $schema: _s, ...json } = zodToJsonSchema(schema, { target: 'openApi3', $refStrategy: 'none' }) as Record<string, unknown>;
  return withoutRequired(json) as Record<string, unknown>;
}

function withoutRequired(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutRequired);
  if (node === null || typeof node !== 'object') return node;
  return Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === 'required' && Array.isArray(v))).map(([k, v]) => [k, withoutRequired(v)]));
}
