// The gRPC transport's public surface, for the composition root (serve command) and clients in tests.
export { startGrpcServer, type GrpcServer, type GrpcServerOptions, type Readiness } from './server.js'
export { loadApiProto, API_SERVICES, PROTO_ROOT, type ApiProto } from './proto.js'
export { GRPC_STATUS, toGrpcError } from './errors.js'
export type { GrpcLogger } from './interceptors.js'
