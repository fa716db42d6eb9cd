import { z } from 'zod';
import { JitSettingsSchema } from '../workflow/jit-settings.js';
import type { Route } from './http.js';

/** Request bodies with a published schema, by the name a route gives (`route(..., { body: 'JitSettings' })`). */
const BODY_SCHEMAS: Record<string, Record<string, unknown>> = {
  JitSettings: z.toJSONSchema(JitSettingsSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>,
};

/** An OpenAPI 3.1 document built from the route table, so it cannot drift from what is served. */
export function openApiDocument(routes: readonly Route[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([a-zA-Z]+)/g, '{$1}');
    const params = r.keys.map((k) => ({ name: k, in: 'path', required: true, schema: { type: 'string' } }));
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      summary: r.summary,
      ...(params.length ? { parameters: params } : {}),
      ...(r.public ? { security: [] } : {}),
      ...(r.method === 'POST' || r.method === 'PUT'
        ? { requestBody: { content: { 'application/json': { schema: r.body ? { $ref: `#/components/schemas/${r.body}` } : { type: 'object' } } } } }
        : {}),
      responses: {
        '200': { description: 'OK', content: { 'application/json': { schema: {} } } },
        default: { description: 'Error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'Gatehouse API', version, description: 'Just-in-time privileged access: requests, approvals, check-out, MFA, launch, sessions, audit.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        ...bodySchemas(routes),
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, details: { type: 'object' } } } },
        },
      },
    },
    paths,
  };
}

/** The body schemas the routes name; a name without a schema is a programming error, found when the document is built. */
function bodySchemas(routes: readonly Route[]): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    if (!r.body) continue;
    const schema = BODY_SCHEMAS[r.body];
    if (!schema) throw new Error(`route ${r.method} ${r.path} names body schema ${r.body}, which openapi.ts does not publish`);
    out[r.body] = withoutDialect(schema);
  }
  return out;
}

/** OpenAPI 3.1 components are JSON Schema 2020-12 already; the dialect line belongs to the document, not each schema. */
function withoutDialect(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = schema;
  return rest;
}
