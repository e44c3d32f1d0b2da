// A throw-away client process for emulator-process.test.ts: a plain grpc-js client of hostbus.proto and
// emulator.proto (no apmatrix code) that opens an event stream, changes the emulated kernel, prints
// `done`, and then waits to be killed (SIGKILL: a crash, not a clean close).
// Without arguments it does nothing (a runner that executes every file of this folder).
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

const [addr, hostBusProto, emulatorProto] = process.argv.slice(2)
if (!addr || !hostBusProto || !emulatorProto) process.exit(0)
const opts = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }
const { HostBus } = grpc.loadPackageDefinition(protoLoader.loadSync(hostBusProto, opts)).apmatrix.hostbus.v1
const { EmulatorControl } = grpc.loadPackageDefinition(protoLoader.loadSync(emulatorProto, opts)).apmatrix.emulator.v1
const bus = new HostBus(addr, grpc.credentials.createInsecure())
const control = new EmulatorControl(addr, grpc.credentials.createInsecure())
const call = (c, m, req) => new Promise((res, rej) => c[m](req, { deadline: Date.now() + 5000 }, (e, r) => (e ? rej(e) : res(r))))
const TYPE = '/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough'
const M1 = '11111111-2222-4333-8444-555555555555'

const stream = bus.Events({ since_seq: '0' })
stream.on('data', () => undefined)
stream.on('error', () => undefined)
await call(bus, 'Write', { path: '/sys/bus/ap/apmask', value: '-5\n' })
await call(bus, 'Write', { path: `${TYPE}/create`, value: `${M1}\n` })
await call(bus, 'Write', { path: `/sys/devices/vfio_ap/matrix/${M1}/assign_adapter`, value: '5\n' })
await call(bus, 'Write', { path: `/sys/devices/vfio_ap/matrix/${M1}/assign_domain`, value: '4\n' })
await call(control, 'GuestOpen', { uuid: M1, guest: 'vm1' })
await call(control, 'Advance', { ms: 25 })
process.stdout.write('done\n')
setInterval(() => undefined, 1000)
