/** An OpenAPI 3.1 document built from the route table, so it cannot drift from what is served. */
export function openApiDocument(routes, version) {
    const paths = {};
    for (const r of routes) {
        const path = r.path.replace(/:([a-zA-Z]+)/g, '{$1}');
        const params = r.keys.map((k) => ({ name: k, in: 'path', required: true, schema: { type: 'string' } }));
        paths[path] ??= {};
        paths[path][r.method.toLowerCase()] = {
            summary: r.summary,
            ...(params.length ? { parameters: params } : {}),
            ...(r.public ? { security: [] } : {}),
            ...(r.method === 'POST' || r.method === 'PUT' ? { requestBody: { content: { 'application/json': { schema: { type: 'object' } } } } } : {}),
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
//# sourceMappingURL=openapi.js.map