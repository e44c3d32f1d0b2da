/**
 * Mutual TLS on the host bus (docs/security.md (Agents and remote emulators)): an `apmatrix agent` or an
 * `apmatrix emulator serve` accepts only a client certificate signed by its client CA (optionally only
 * one with an allowed name: the service's), and the service verifies the host's server certificate
 * against its CA and presents its own client certificate. grpc-js does the handshakes; this module
 * builds its credentials, the name check, and a probe that says why a handshake fails.
 */
import fs from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import * as grpc from '@grpc/grpc-js'
import { certificateNames } from '../auth/mtls.js'

/** The TLS files of a host-bus server (paths), and the client certificate names it accepts (empty: any the CA signed). */
export interface HostBusServerTls {
  cert: string
  key: string
  /** CA of the client certificates; a client without a certificate it signed fails the handshake. */
  ca: string
  clientNames: string[]
}

/** The PEM material a host-bus client (the service) uses: the CA of the hosts' certificates, its own certificate and key. */
export interface HostBusClientTls {
  ca: Buffer
  cert: Buffer
  key: Buffer
}

function read(file: string): Buffer {
  try {
    return fs.readFileSync(file)
  } catch (e) {
    throw new Error(`TLS file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`)
  }
}

/**
 * Server credentials that require a client certificate signed by `tls.ca`. Reads the files now (throws
 * naming the file that does not read). grpc-js cannot swap them later: a new certificate needs a restart.
 */
export function hostBusServerCredentials(t: HostBusServerTls): grpc.ServerCredentials {
  return grpc.ServerCredentials.createSsl(read(t.ca), [{ private_key: read(t.key), cert_chain: read(t.cert) }], true)
}

/**
 * A server interceptor that refuses (PERMISSION_DENIED) every call whose verified client certificate
 * carries none of `names` (subject CN or a SAN entry, as the service's own mTLS reads them). The TLS
 * layer has already refused clients without a certificate of the CA; this narrows the CA's certificates
 * to the service's.
 */
export function clientNameInterceptor(names: readonly string[], log: (line: string) => void = () => undefined): grpc.ServerInterceptor {
  return (method, call) => {
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            const ctx = call.getAuthContext()
            const presented = certificateNames(ctx.transportSecurityType === 'ssl' ? ctx.sslPeerCertificate : null)
            if (presented.some((n) => names.includes(n))) {
              nextMd(metadata)
              return
            }
            const details = `client certificate ${presented.length ? presented.slice(0, 4).join(', ') : '(none)'} is not one this host accepts (its --tls-client-name)`
            log(`${method.path}: refused ${call.getPeer()}: ${details}`)
            call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details, metadata: new grpc.Metadata() })
          },
        })
      },
    })
  }
}

/** Channel credentials of the service towards a host: verify its certificate against `tls.ca`, present ours. */
export function hostBusChannelCredentials(t: HostBusClientTls): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(t.ca, t.key, t.cert)
}

/** What one TLS handshake with a host found. */
export type TlsProbe =
  /** The host accepted the handshake (its first HTTP/2 frame arrived), or said nothing before the wait ended. */
  | { outcome: 'accepted' }
  /** No TCP connection (nothing listening yet, no route): worth waiting for. */
  | { outcome: 'no-connection'; reason: string }
  /** A connection, then a failed handshake: one side does not trust the other (or the host does not speak TLS). Waiting does not help. */
  | { outcome: 'refused'; reason: string }

/**
 * Makes one TLS handshake with the host at `addr` (`host:port`, `[v6]:port`) as the gRPC channel will
 * (same CA, client certificate, server name check, ALPN h2) and says how it went. Never rejects. A host
 * that refuses our client certificate does it after our side of a TLS 1.3 handshake completed, by an
 * alert or by closing; a host that accepted sends its HTTP/2 settings at once: so the handshake counts as
 * accepted only when the first bytes arrive.
 */
export function probeHostTls(addr: string, t: HostBusClientTls, timeoutMs: number): Promise<TlsProbe> {
  const i = addr.lastIndexOf(':')
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '')
  const port = Number(addr.slice(i + 1))
  return new Promise<TlsProbe>((resolve) => {
    let connected = false
    let secured = false
    let settled = false
    const socket = tls.connect({
      host,
      port,
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      ALPNProtocols: ['h2'],
      ...(net.isIP(host) ? {} : { servername: host }),
    })
    const done = (p: TlsProbe): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(p)
    }
    const timer = setTimeout(
      () => done(secured ? { outcome: 'accepted' } : { outcome: 'no-connection', reason: `no TLS handshake within ${timeoutMs} ms` }),
      timeoutMs,
    )
    socket.once('connect', () => void (connected = true))
    socket.once('secureConnect', () => void (secured = true))
    socket.once('data', () => done({ outcome: 'accepted' }))
    socket.on('error', (e: NodeJS.ErrnoException) => {
      const reason = `${e.code ? `${e.code}: ` : ''}${e.message.split('\n')[0]!.slice(0, 300)}`
      if (!connected) done({ outcome: 'no-connection', reason })
      else if (secured) done({ outcome: 'refused', reason: `the host refused our client certificate (${reason})` })
      else done({ outcome: 'refused', reason: `the host's certificate is not trusted or the host does not speak TLS (${reason})` })
    })
    socket.once('close', () => {
      if (secured) done({ outcome: 'refused', reason: 'the host closed the connection after the handshake: it does not accept our client certificate' })
      else if (connected) done({ outcome: 'refused', reason: 'the host closed the connection during the TLS handshake' })
      else done({ outcome: 'no-connection', reason: 'connection closed' })
    })
  })
}

/** How a host-bus server is secured, for its start-up log line. */
export function tlsSummary(t: HostBusServerTls | undefined): string {
  if (!t) return 'plaintext (no TLS)'
  return `mutual TLS (client certificates of ${t.ca}${t.clientNames.length ? ` named ${t.clientNames.join(', ')}` : ''})`
}
