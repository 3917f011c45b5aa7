import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import fastifyStatic from '@fastify/static';
import { AppError } from '../common/errors.ts';

/** The dashboard's sources: `web/public` (HTML, served as is) and `web/src` (TypeScript and CSS, bundled). */
export const WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'web');

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

let bundle: Promise<Map<string, Asset>> | undefined;

/**
 * Bundles the dashboard and the portal (TypeScript + uPlot + CSS) in memory with esbuild, once
 * per process, on the first request for an asset: no build step, nothing written to disk, no
 * network. A few hundred milliseconds at most, then every asset is served from memory.
 */
export function uiBundle(): Promise<Map<string, Asset>> {
  bundle ??= (async () => {
    const esbuild = await import('esbuild');
    const out = await esbuild.build({
      entryPoints: { app: path.join(WEB_DIR, 'src', 'app.ts'), portal: path.join(WEB_DIR, 'src', 'portal.ts') },
      bundle: true,
      format: 'esm',
      target: 'es2020',
      minify: true,
      write: false,
      outdir: path.join(WEB_DIR, 'dist'),
      logLevel: 'silent',
    });
    const assets = new Map<string, Asset>();
    for (const f of out.outputFiles) {
      const name = path.basename(f.path);
      const body = Buffer.from(f.contents);
      assets.set(name, { body, type: name.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8', etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` });
    }
    return assets;
  })();
  bundle.catch(() => (bundle = undefined));
  return bundle;
}

/**
 * The web UI, served by the API process itself under /ui/: the dashboard (`/ui/`) and the
 * customer portal (`/ui/portal/`). Every file here is a public asset with no data in it; the
 * pages fetch everything through the REST API with the key or portal token the user signs in
 * with (kept in sessionStorage), so the API's auth hook guards every number on screen.
 */
export function registerUi(app: FastifyInstance): void {
  // Strict headers on UI responses: scripts only from here, no framing, no referrer.
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.url === '/ui' || req.url.startsWith('/ui/')) {
      void reply.header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
      void reply.header('x-frame-options', 'DENY');
      void reply.header('referrer-policy', 'no-referrer');
      void reply.header('x-content-type-options', 'nosniff');
    }
    return payload;
  });

  void app.register(fastifyStatic, { root: path.join(WEB_DIR, 'public'), prefix: '/ui/', redirect: true, index: ['index.html'], cacheControl: false, schemaHide: true });
  void app.register(async (scoped) => {
    scoped.get<{ Params: { file: string } }>('/ui/assets/:file', { schema: { hide: true } }, async (req, reply) => {
      const asset = (await uiBundle()).get(req.params.file);
      if (!asset) throw new AppError('NOT_FOUND', `no asset ${req.params.file}`);
      void reply.header('cache-control', 'no-cache').header('etag', asset.etag).type(asset.type);
      if (req.headers['if-none-match'] === asset.etag) return reply.status(304).send();
      return reply.send(asset.body);
    });
    scoped.get('/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/'));
    scoped.get('/ui', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui/', 301));
  });
}
