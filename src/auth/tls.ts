/**
 * TLS certificate files of the service (docs/security.md (TLS)), read at start and again on reload
 * (SIGHUP). REST swaps them with node's `server.setSecureContext`; gRPC gets them through a grpc-js
 * certificate provider, which updates the secure context of its listening server. Either way new
 * handshakes use the new files and established connections stay open.
 */
import fs from 'node:fs'
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

  /** Reads the files now (throws naming the file that does not read). */
  constructor(readonly paths: { cert: string; key: string; ca: string | undefined }) {
    this.material = TlsFiles.read(paths)
  }

  private static read(paths: { cert: string; key: string; ca: string | undefined }): TlsMaterial {
    const r = (f: string) => {
      try {
        return fs.readFileSync(f)
      } catch (e) {
        throw new Error(`TLS file ${f} cannot be read (${(e as Error).message})`)
      }
    }
    return { cert: r(paths.cert), key: r(paths.key), ca: paths.ca ? r(paths.ca) : undefined }
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

  /** Re-reads the files and tells the gRPC listeners; throws (keeping the old material) when one does not read. */
  reload(): void {
    this.material = TlsFiles.read(this.paths)
    for (const l of this.identityListeners) l({ certificate: this.material.cert, privateKey: this.material.key })
    if (this.material.ca) for (const l of this.caListeners) l({ caCertificate: this.material.ca })
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener)
    if (this.material.ca) listener({ caCertificate: this.material.ca })
  }
  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener)
  }
  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener)
    listener({ certificate: this.material.cert, privateKey: this.material.key })
  }
  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener)
  }
}
