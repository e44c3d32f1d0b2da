/**
 * TLS certificate files of the service (docs/security.md (TLS)), read at start and again on reload
 * (SIGHUP). REST swaps them with node's `server.setSecureContext`; gRPC gets them through a grpc-js
 * certificate provider, which updates the secure context of its listening server. Either way new
 * handshakes use the new files and established connections stay open.
 */
import fs from 'node:fs'
import tls from 'node:tls'
import type { experimental } from '@grpc/grpc-js'

type CertificateProvider = experimental.CertificateProvider
type CaListener = experimental.CaCertificateUpdateListener
type IdentityListener = experimental.IdentityCertificateUpdateListener

/** The PEM contents. */
export interface TlsMaterial {
  cert: Buffer
  key: Buffer
  ca: Buffer | undefined
}

/** TLS files that can be re-read; a grpc-js certificate provider of both identity and CA. */
export class TlsFiles implements CertificateProvider {
  private material: TlsMaterial
  private readonly caListeners = new Set<CaListener>()
  private readonly identityListeners = new Set<IdentityListener>()

  /** Reads the files now (throws naming the file that does not read, or saying why they do not make a TLS context). */
  constructor(readonly paths: { cert: string; key: string; ca: string | undefined }) {
    this.material = TlsFiles.read(paths)
  }

  /**
   * The files' contents, checked the way node will use them: PEM that parses, a key that matches the
   * certificate. Checked here because grpc-js, handed a context it cannot build, refuses every new
   * connection instead of keeping the old certificate.
   */
  private static read(paths: { cert: string; key: string; ca: string | undefined }): TlsMaterial {
    const r = (f: string) => {
      try {
        return fs.readFileSync(f)
      } catch (e) {
        throw new Error(`TLS file ${f} cannot be read (${(e as Error).message})`)
      }
    }
    const m = { cert: r(paths.cert), key: r(paths.key), ca: paths.ca ? r(paths.ca) : undefined }
    try {
      tls.createSecureContext({ cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) })
    } catch (e) {
      throw new Error(`TLS files ${paths.cert}, ${paths.key}${paths.ca ? `, ${paths.ca}` : ''} do not make a TLS context (${(e as Error).message})`)
    }
    return m
  }

  /** The current contents. */
  get current(): TlsMaterial {
    return this.material
  }

  /** True when client certificates are required (a client CA is configured). */
  get mutual(): boolean {
    return this.paths.ca !== undefined
  }

  /** Node `tls` options of the current files (https server, setSecureContext). */
  secureContextOptions(): { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean; rejectUnauthorized: boolean } {
    const m = this.material
    return { cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}), requestCert: this.mutual, rejectUnauthorized: this.mutual }
  }

  /** Re-reads the files and tells the gRPC listeners; throws (keeping the old material, telling no one) when one does not read or they do not fit together. */
  reload(): void {
    this.material = TlsFiles.read(this.paths)
    for (const l of this.identityListeners) l({ certificate: this.material.cert, privateKey: this.material.key })
    if (this.material.ca) for (const l of this.caListeners) l({ caCertificate: this.material.ca })
  }

  // The first call of a new listener comes on the next tick, as grpc-js's own file-watcher provider does
  // it: grpc-js registers its listeners before the server's watcher of them, so a synchronous first call
  // would reach no one and the server would refuse every connection until the next reload.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener)
    process.nextTick(() => {
      if (this.caListeners.has(listener) && this.material.ca) listener({ caCertificate: this.material.ca })
    })
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener)
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener)
    process.nextTick(() => {
      if (this.identityListeners.has(listener)) listener({ certificate: this.material.cert, privateKey: this.material.key })
    })
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener)
  }
}
