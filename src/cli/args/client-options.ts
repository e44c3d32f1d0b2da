/**
 * The options every client verb shares (`--server`, `--timeout`, `--host`, `--json`) and the REST
 * client they configure. The server address comes from `--server`, else `$APMATRIX_SERVER`, else
 * http://127.0.0.1:8080 (the default of `apmatrix serve`).
 */
import fs from 'node:fs'
import type { ParseArgsConfig } from 'node:util'
import { RestClient } from '../client/rest-client.js'
import { type CliArgs, type CliIo, UsageError } from '../command.js'
import { parseDuration } from './duration.js'
import { clip } from '../../domain/text.js'

/** The default server address. */
export const DEFAULT_SERVER = 'http://127.0.0.1:8080'
/** The default per-request timeout. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

type Options = NonNullable<ParseArgsConfig['options']>

/** `--server` and `--timeout`: for verbs that take neither `--host` nor `--json`. */
export const SERVER_OPTIONS = {
  server: { type: 'string' },
  timeout: { type: 'string' },
  token: { type: 'string' },
  cacert: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const satisfies Options

/** The usual set: server, timeout, host, json. */
export const CLIENT_OPTIONS = {
  ...SERVER_OPTIONS,
  host: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Options

/** Help lines of {@link CLIENT_OPTIONS} (pass `false` to leave out the lines a verb does not declare). */
export function clientOptionsHelp(opts: { host?: boolean; json?: boolean; timeout?: string } = {}): string {
  const lines = [
    `  --server URL        the apmatrix server (default $APMATRIX_SERVER, else ${DEFAULT_SERVER})`,
    `  --timeout DURATION  ${opts.timeout ?? `timeout of each request (default ${DEFAULT_REQUEST_TIMEOUT_MS / 1000}s; 500ms, 30s, 2m)`}`,
    '  --token TOKEN       bearer token: a static token or a JWT (default $APMATRIX_TOKEN)',
    '  --cacert FILE       PEM CA bundle that signed the server certificate (https://; default $APMATRIX_CACERT)',
    '  --cert FILE         PEM client certificate for mutual TLS (with --key; default $APMATRIX_CERT)',
    '  --key FILE          PEM private key of --cert (default $APMATRIX_KEY)',
  ]
  if (opts.host !== false) lines.push('  --host NAME         the AP host (default local)')
  if (opts.json !== false) lines.push('  --json              print the raw JSON of the API instead of a table')
  lines.push('  -h, --help          show this help')
  return lines.join('\n')
}

/** What a verb needs to talk to the server. */
export interface ClientContext {
  client: RestClient
  host: string
  json: boolean
  /** `/v1/hosts/<host>` (url-encoded). */
  hostPath: string
}

/** The server URL of the arguments and environment; {@link UsageError} when it is not an http(s) URL. */
export function serverUrl(args: CliArgs, io: CliIo): string {
  const raw = typeof args.values.server === 'string' ? args.values.server : io.env.APMATRIX_SERVER || DEFAULT_SERVER
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new UsageError(`--server: '${clip(raw, 80)}' is not a URL (e.g. ${DEFAULT_SERVER})`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--server: '${clip(raw, 80)}' is not an http:// or https:// URL`)
  return u.origin + u.pathname.replace(/\/+$/, '')
}

/**
 * Builds the client of a verb. `requestTimeoutMs` overrides how `--timeout` is read (verbs where
 * `--timeout` means something else, like `apply`, pass their own request timeout).
 */
export function clientContext(args: CliArgs, io: CliIo, requestTimeoutMs?: number): ClientContext {
  const timeoutMs = requestTimeoutMs ?? (typeof args.values.timeout === 'string' ? parseDuration(args.values.timeout, '--timeout') : DEFAULT_REQUEST_TIMEOUT_MS)
  const host = typeof args.values.host === 'string' ? args.values.host : 'local'
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(host)) throw new UsageError(`--host: '${clip(host, 80)}' is not a host name`)
  return {
    client: new RestClient({ server: serverUrl(args, io), timeoutMs, ...credentials(args, io) }),
    host,
    json: args.values.json === true,
    hostPath: `/v1/hosts/${encodeURIComponent(host)}`,
  }
}

/**
 * The credentials of a client verb (docs/security.md (Clients)): `--token` or $APMATRIX_TOKEN, and the TLS
 * files `--cacert`, `--cert`, `--key` (or $APMATRIX_CACERT, $APMATRIX_CERT, $APMATRIX_KEY). UsageError naming
 * the option whose file does not read, or `--cert` without `--key`.
 */
export function credentials(args: CliArgs, io: CliIo): { token?: string; tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer } } {
  const opt = (name: string, env: string): string | undefined => {
    const v = args.values[name]
    return typeof v === 'string' ? v : io.env[env] || undefined
  }
  const token = opt('token', 'APMATRIX_TOKEN')
  if (token !== undefined && !/^[\x21-\x7e]{1,8192}$/.test(token)) throw new UsageError('--token: 1..8192 visible ASCII characters')
  const read = (name: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined
    try {
      return fs.readFileSync(file)
    } catch (e) {
      throw new UsageError(`--${name}: '${clip(file, 200)}' cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
    }
  }
  const cert = opt('cert', 'APMATRIX_CERT')
  const key = opt('key', 'APMATRIX_KEY')
  if (!!cert !== !!key) throw new UsageError(cert ? '--cert needs --key' : '--key needs --cert')
  const ca = read('cacert', opt('cacert', 'APMATRIX_CACERT'))
  const tls = { ...(ca ? { ca } : {}), ...(cert ? { cert: read('cert', cert)! } : {}), ...(key ? { key: read('key', key)! } : {}) }
  return { ...(token !== undefined ? { token } : {}), ...(Object.keys(tls).length ? { tls } : {}) }
}
