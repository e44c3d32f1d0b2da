/**
 * The TLS settings of a host-bus server, the same for `apmatrix agent` (APMATRIX_AGENT_TLS_*) and
 * `apmatrix emulator serve` (APMATRIX_EMULATOR_TLS_*): flags and environment variables, validated once at
 * start (docs/security.md (Agents and remote emulators)). Secure by default, like the service: a server
 * that listens beyond loopback without TLS refuses to start unless told `--insecure-no-tls`.
 */
import { ConfigError, isLoopback, readable } from '../settings.js'
import { clip } from '../domain/text.js'
import type { HostBusServerTls } from './tls.js'

/** The settings table of one server kind: env name, flag, default, help. */
function tlsSettings<P extends string>(prefix: P) {
  return {
    tlsCert: {
      env: `${prefix}_TLS_CERT`,
      flag: 'tls-cert',
      def: '',
      help: 'PEM server certificate (chain) naming the address the service dials; with --tls-key and --tls-ca turns mutual TLS on',
    },
    tlsKey: { env: `${prefix}_TLS_KEY`, flag: 'tls-key', def: '', help: 'PEM private key of --tls-cert' },
    tlsCa: {
      env: `${prefix}_TLS_CA`,
      flag: 'tls-ca',
      def: '',
      help: "PEM CA of client certificates: only a client presenting a certificate it signed (the service's) gets a connection",
    },
    tlsClientName: {
      env: `${prefix}_TLS_CLIENT_NAME`,
      flag: 'tls-client-name',
      def: '',
      help: "comma-separated names (subject CN or SAN) of the client certificates accepted, e.g. the service's; empty: any the CA signed",
    },
    insecureNoTls: {
      env: `${prefix}_INSECURE_NO_TLS`,
      flag: 'insecure-no-tls',
      def: '',
      help: 'allow a non-loopback listen address without TLS (whoever reaches it drives this host); 1 or true',
    },
  } as const
}

/** The TLS settings of `apmatrix agent` (part of its settings table). */
export const AGENT_TLS_SETTINGS = tlsSettings('APMATRIX_AGENT')
/** The TLS settings of `apmatrix emulator serve`. */
export const EMULATOR_TLS_SETTINGS = tlsSettings('APMATRIX_EMULATOR')

export type TlsSettingName = keyof typeof AGENT_TLS_SETTINGS

/** The validated TLS settings of a host-bus server. */
export interface ServerTlsConfig {
  /** Undefined: plaintext (allowed on loopback, or with insecureNoTls). */
  tls: HostBusServerTls | undefined
  insecureNoTls: boolean
}

/**
 * Validates the TLS settings of a server listening on `listenHost`. ConfigError naming the setting: a
 * certificate, key or CA without the other two (TLS here is always mutual: the point is to accept only
 * the service), a file that does not read, a client name list without TLS or with a bad name, a
 * non-loopback address without TLS and without `--insecure-no-tls`.
 */
export function loadServerTls(get: (k: TlsSettingName) => string, label: (k: TlsSettingName) => string, listenHost: string): ServerTlsConfig {
  const fileSettings = ['tlsCert', 'tlsKey', 'tlsCa'] as const
  const given = fileSettings.filter((k) => get(k) !== '')
  if (given.length > 0 && given.length < 3) {
    const missing = fileSettings.filter((k) => !given.includes(k))
    throw new ConfigError(
      `${missing.map(label).join(', ')}: required with ${given.map(label).join(', ')} (TLS here is mutual: a server certificate and key, and the CA of the service's client certificate)`,
    )
  }
  const nameText = get('tlsClientName')
  const clientNames = nameText
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean)
  if (clientNames.length > 32 || clientNames.some((n) => n.length > 256))
    throw new ConfigError(`${label('tlsClientName')}: at most 32 names of at most 256 characters each`)
  if (clientNames.length && given.length === 0)
    throw new ConfigError(`${label('tlsClientName')}: needs mutual TLS (${label('tlsCert')}, ${label('tlsKey')}, ${label('tlsCa')})`)
  const insecure = get('insecureNoTls')
  if (!['', '0', '1', 'true', 'false'].includes(insecure))
    throw new ConfigError(`${label('insecureNoTls')}: '${clip(insecure, 20)}' is not 1, true, 0 or false`)
  const insecureNoTls = insecure === '1' || insecure === 'true'
  const tls =
    given.length === 3
      ? {
          cert: readable(label('tlsCert'), get('tlsCert')),
          key: readable(label('tlsKey'), get('tlsKey')),
          ca: readable(label('tlsCa'), get('tlsCa')),
          clientNames,
        }
      : undefined
  const host = listenHost.replace(/^\[|\]$/g, '')
  if (!tls && !insecureNoTls && !isLoopback(host))
    throw new ConfigError(
      `refusing to listen on ${clip(host, 100)} without TLS: set ${label('tlsCert')}, ${label('tlsKey')} and ${label('tlsCa')} (the CA of the service's client certificate), listen on a loopback address, or pass --insecure-no-tls`,
    )
  return { tls, insecureNoTls }
}
