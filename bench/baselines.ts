/**
 * Bare servers the benchmarks compare the service with, in the same process and the same run: a fastify
 * route and a grpc-js `GetMdev` handler that answer a fixed reply with nothing behind them. Over TLS when
 * given a certificate, so a secured service is compared with a baseline that pays for TLS too.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { loadApiProto } from '../src/transport/grpc/proto.js'

/** A server certificate and its key (PEM). */
export interface ServerTls {
  cert: Buffer
  key: Buffer
}

/** A running bare server: where it listens (`http(s)://127.0.0.1:port`, or `127.0.0.1:port` for gRPC) and how to close it. */
export interface BareServer {
  base: string
  close(): Promise<void>
}

/** A fastify server answering GET `route` (a fastify route pattern) with `payload`; https with `tls`. */
export async function startBareRoute(route: string, payload: unknown, tls?: ServerTls): Promise<BareServer> {
  // One type for both: the https server's fastify type differs from the http one's only in the server object.
  const app = (tls ? Fastify({ logger: false, https: { cert: tls.cert, key: tls.key } }) : Fastify({ logger: false })) as ReturnType<typeof Fastify>
  app.get(route, async () => payload)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (!addr || typeof addr === 'string') throw new Error('bare route: no address')
  return { base: `${tls ? 'https' : 'http'}://127.0.0.1:${addr.port}`, close: () => app.close() }
}

/** Full method path of `MdevService.GetMdev`. */
export const GET_MDEV_PATH = '/apmatrix.v1.MdevService/GetMdev'

interface MethodCodec {
  requestSerialize(v: unknown): Buffer
  responseDeserialize(b: Buffer): unknown
}

/** The proto codec of `MdevService.GetMdev` (request encoder, reply decoder). */
export function getMdevCodec(): MethodCodec {
  const { definition } = loadApiProto()
  return (definition['apmatrix.v1.MdevService'] as unknown as Record<string, MethodCodec>).GetMdev!
}

/** A grpc-js server of `MdevService` whose `GetMdev` answers `reply` (decoded) to every call; TLS with `tls`. */
export async function startBareGetMdev(reply: Buffer, tls?: ServerTls): Promise<BareServer> {
  const fixed = getMdevCodec().responseDeserialize(reply)
  const server = new grpc.Server()
  server.addService(loadApiProto().v1.MdevService.service, {
    GetMdev: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, fixed),
  } as unknown as grpc.UntypedServiceImplementation)
  const creds = tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure()
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (e, p) => (e ? reject(e) : resolve(p))))
  return {
    base: `127.0.0.1:${port}`,
    close: async () => {
      server.forceShutdown()
    },
  }
}
