/**
 * Authentication and authorization of gRPC calls (docs/security.md): a server interceptor that
 * authenticates each call from its `authorization: Bearer ...` metadata or its verified TLS client
 * certificate (UNAUTHENTICATED otherwise), and, when the request message arrives, checks the method's
 * permission (permissions.ts) against the message's `host`, before the handler runs (PERMISSION_DENIED;
 * AIP-135). Refusals are audited. Handlers read the principal back with {@link principalOf}.
 */
import * as grpc from '@grpc/grpc-js'
import { type Authenticator, AuthenticationError } from '../../auth/authenticator.js'
import { authorize } from '../../auth/authorize.js'
import { actorOf, type Principal } from '../../auth/identity.js'
import { ApmatrixError } from '../../domain/errors.js'
import type { ApmatrixService } from '../../service/index.js'
import { toGrpcError } from './errors.js'
import { requestIdOf } from './interceptors.js'
import { methodPermission } from './permissions.js'

// The principal of each call, by the call's metadata object (the one grpc-js hands the handler).
const principals = new WeakMap<grpc.Metadata, Principal>()

/** A principal with no roles: what a call that somehow bypassed the interceptor is (it may do nothing). */
const NOBODY: Principal = Object.freeze({ subject: 'unauthenticated', groups: [], roles: [], source: 'local', hosts: null, tenant: null })

/** The principal the interceptor authenticated for a call (a role-less one if it did not run: fail closed). */
export function principalOf(metadata: grpc.Metadata): Principal {
  return principals.get(metadata) ?? NOBODY
}

/** The authentication interceptor; place it after the request id interceptor. */
export function authInterceptor(auth: Authenticator, service: ApmatrixService): grpc.ServerInterceptor {
  return (method, call) => {
    const perm = methodPermission(method.path)
    if (perm === null) return new grpc.ServerInterceptingCall(call)
    let principal: Principal | null = null
    let requestId = ''
    let refused = false
    const refuse = (err: ApmatrixError, actor: string, detail: Record<string, unknown>) => {
      refused = true
      void service.recordRefusal({
        actor,
        action: `grpc.${method.path}`,
        target: method.path,
        outcome: err.code,
        requestId,
        detail: { transport: 'grpc', ...detail },
      })
      const e = toGrpcError(err, requestId)
      call.sendStatus({ code: e.code, details: e.details, metadata: e.metadata })
    }
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMd) {
            requestId = requestIdOf(metadata)
            const ctx = call.getAuthContext()
            const peerCert = ctx.transportSecurityType === 'ssl' && ctx.sslPeerCertificate ? ctx.sslPeerCertificate : null
            const authorization = metadata.get('authorization')[0]
            auth.authenticate({ authorization: typeof authorization === 'string' ? authorization : undefined, peerCert }).then(
              (p) => {
                principal = p
                principals.set(metadata, p)
                nextMd(metadata)
              },
              (e: unknown) => {
                const err = e instanceof ApmatrixError ? e : new ApmatrixError('UNAUTHENTICATED', 'authentication failed')
                refuse(err, `grpc:anonymous:${call.getPeer()}`, { reason: e instanceof AuthenticationError ? e.reason : String(e) })
              },
            )
          },
          onReceiveMessage(message, nextMsg) {
            if (refused || !principal) return
            const host = (message as { host?: unknown } | null)?.host
            const onHost = typeof host === 'string' && host !== '' ? host : undefined
            if (perm === undefined || authorize(principal, perm.verb, perm.resource, onHost !== undefined ? { host: onHost } : {}) !== 'allow') {
              const what = perm === undefined ? method.path : `${perm.verb} ${perm.resource}${onHost !== undefined ? ` on host ${onHost.slice(0, 64)}` : ''}`
              const p = principal
              refuse(new ApmatrixError('PERMISSION_DENIED', `${p.subject.slice(0, 128)} may not ${what}`), actorOf(p, 'grpc'), {
                subject: p.subject,
                roles: [...p.roles],
                auth: p.source,
              })
              return
            }
            nextMsg(message)
          },
          onReceiveHalfClose(nextHc) {
            if (!refused) nextHc()
          },
        })
      },
    })
  }
}
