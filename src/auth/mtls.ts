/**
 * Client certificate identities (docs/security.md (Mutual TLS)): the names of a verified peer
 * certificate, from node's `tls` peer certificate (fastify: `request.socket.getPeerCertificate()`) or
 * grpc-js's `call.getAuthContext().sslPeerCertificate`, which has the same shape.
 */

/** The part of node's PeerCertificate this needs. */
export interface PeerCertLike {
  subject?: { CN?: string | string[] } | null
  subjectaltname?: string
}

/** The names of a certificate: its subject CN first, then its SAN entries without their type (`DNS:`, `URI:`, `email:`, `IP Address:`). */
export function certificateNames(cert: PeerCertLike | null | undefined): string[] {
  if (!cert) return []
  const out: string[] = []
  const cn = cert.subject?.CN
  for (const c of Array.isArray(cn) ? cn : cn ? [cn] : []) out.push(c)
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const i = part.indexOf(':')
    const v = i > 0 ? part.slice(i + 1).trim() : ''
    if (v && v.length <= 256 && !out.includes(v)) out.push(v)
  }
  return out.slice(0, 32)
}
