/**
 * The web console (docs/console.md): the static page built from web/console by `npm run build`
 * (scripts/build-web.mjs, into dist/console), served at `/ui/` by the same fastify instance as the
 * API. The page only calls the public REST API; this module adds no route of its own besides the files.
 */
import fs from 'node:fs'
import path from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance } from 'fastify'
import { projectRoot } from '../../paths.js'
import { sendProblem, toProblem } from './problem.js'

/** Where `npm run build` puts the bundled console. */
export const CONSOLE_DIR = path.join(projectRoot, 'dist', 'console')

/**
 * Serves the console from `dir` at `/ui/` (`/ui` redirects there). When the folder has no index.html
 * (the console was not built), `/ui` answers 404 NOT_FOUND naming the build command instead.
 * Files are cached by the browser only after revalidation (ETag), so a rebuilt console shows at once.
 */
export function registerConsole(app: FastifyInstance, dir: string = CONSOLE_DIR): void {
  const built = fs.existsSync(path.join(dir, 'index.html'))
  app.get('/ui', { schema: { hide: true } }, async (req, reply) => {
    if (!built)
      return sendProblem(
        reply,
        toProblem(Object.assign(new Error(`the web console is not built (no ${dir}/index.html): run npm run build`), { statusCode: 404 }), req.id),
      )
    // Relative to /ui, keeping the query (a host chosen in the address).
    const q = req.url.indexOf('?')
    return reply.redirect(`/ui/${q >= 0 ? req.url.slice(q) : ''}`, 302)
  })
  if (!built) return
  app.register(fastifyStatic, {
    root: dir,
    prefix: '/ui/',
    index: ['index.html'],
    cacheControl: true,
    maxAge: 0,
    etag: true,
    lastModified: true,
    // Only the folder's files: no directory listing, no dotfiles.
    dotfiles: 'deny',
    schemaHide: true,
  })
}
