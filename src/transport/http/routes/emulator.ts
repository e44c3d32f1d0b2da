/** Emulator controls of emulated hosts (docs/api.md (REST) `/v1/hosts/{host}/emulator/...`); 409 FAILED_PRECONDITION on a host that is not emulated. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { ApmatrixService } from '../../../service/index.js'
import { callContext } from '../call-context.js'
import * as S from '../schemas.js'

export const emulatorRoutes: FastifyPluginAsyncTypebox<{ service: ApmatrixService }> = async (app, { service }) => {
  const base = '/hosts/:host/emulator'
  const tags = ['emulator']

  app.get(
    `${base}/sysfs`,
    {
      schema: {
        tags,
        summary: 'Read a sysfs attribute as root would (text/plain)',
        params: S.HostParams,
        querystring: S.SysfsQuery,
        response: S.responses({ 200: { type: 'string' } as never }),
      },
    },
    async (req, reply) => {
      const text = await service.readSysfs(req.params.host, req.query.path)
      return reply.type('text/plain; charset=utf-8').send(text)
    },
  )

  app.post(
    `${base}/sysfs`,
    {
      schema: {
        tags,
        summary: 'Write a sysfs attribute as root would',
        params: S.HostParams,
        body: S.SysfsWriteIn,
        response: S.responses({ 204: S.NoContent }),
      },
    },
    async (req, reply) => {
      await service.writeSysfs(req.params.host, req.body.path, req.body.value, callContext(req))
      return reply.code(204).send()
    },
  )

  app.post(
    `${base}/hardware`,
    { schema: { tags, summary: 'A hardware event', params: S.HostParams, body: S.HardwareIn, response: S.responses({ 204: S.NoContent }) } },
    async (req, reply) => {
      await service.hardware(req.params.host, req.body, callContext(req))
      return reply.code(204).send()
    },
  )

  app.get(`${base}/guests`, { schema: { tags, params: S.HostParams, response: S.responses({ 200: S.GuestsOut }) } }, async (req) =>
    service.listGuests(req.params.host),
  )

  app.post(
    `${base}/guests`,
    { schema: { tags, summary: 'A guest opens a matrix device', params: S.HostParams, body: S.GuestOpenIn, response: S.responses({ 204: S.NoContent }) } },
    async (req, reply) => {
      await service.openGuest(req.params.host, req.body.uuid, req.body.guest, callContext(req))
      return reply.code(204).send()
    },
  )

  app.delete(
    `${base}/guests/:guest`,
    { schema: { tags, summary: 'The guest closes its matrix device', params: S.GuestParams, response: S.responses({ 204: S.NoContent }) } },
    async (req, reply) => {
      await service.closeGuest(req.params.host, req.params.guest, callContext(req))
      return reply.code(204).send()
    },
  )

  app.post(
    `${base}/requests`,
    { schema: { tags, summary: 'Put crypto requests on a queue', params: S.HostParams, body: S.RequestsIn, response: S.responses({ 200: S.AcceptedOut }) } },
    async (req) => service.submitRequests(req.params.host, req.body.apqn, req.body.count),
  )

  app.put(
    `${base}/workload`,
    {
      schema: {
        tags,
        summary: 'A steady workload on a queue (perSecond 0 stops it)',
        params: S.HostParams,
        body: S.WorkloadIn,
        response: S.responses({ 204: S.NoContent }),
      },
    },
    async (req, reply) => {
      await service.setWorkload(req.params.host, req.body.apqn, req.body.perSecond)
      return reply.code(204).send()
    },
  )

  app.post(
    `${base}/reboot`,
    { schema: { tags, summary: 'Reboot the emulated host (kernel state is lost)', params: S.HostParams, response: S.responses({ 200: S.HostOut }) } },
    async (req) => service.reboot(req.params.host, callContext(req)),
  )

  app.get(
    `${base}/faults`,
    { schema: { tags, summary: 'The injected write faults in force, with their counts', params: S.HostParams, response: S.responses({ 200: S.FaultsOut }) } },
    async (req) => service.faults(req.params.host),
  )

  app.put(
    `${base}/faults`,
    {
      schema: {
        tags,
        summary: 'Replace the injected write faults (EIO, EBUSY or delay per path and rate)',
        params: S.HostParams,
        body: S.FaultsIn,
        response: S.responses({ 200: S.FaultsOut }),
      },
    },
    async (req) => service.setFaults(req.params.host, req.body, callContext(req)),
  )

  app.delete(
    `${base}/faults`,
    { schema: { tags, summary: 'Remove every injected write fault', params: S.HostParams, response: S.responses({ 200: S.FaultsOut }) } },
    async (req) => service.clearFaults(req.params.host, callContext(req)),
  )
}
