/**
 * docs/kernel-model.md §7 scenario T-57: queue `driver_override` under the v6.19 profile (B-12, B-28, B-33).
 */
import t from 'tap'
import { BUS, DRIVERS, dev, driverOf, echo, errnoOf, newHost, statusOf, tryEcho } from './helpers.js'

t.test('T-57 driver_override is EINVAL while masks are in use; with all-ones masks it steers a rebind to vfio_ap (6.19-override)', async (t) => {
  const host = newHost({ kernel: '6.19-override' })
  const ovr = `${dev('05.0004')}/driver_override`
  t.equal(host.read(ovr), '\n', 'unset reads a bare newline (B-33)')
  echo(host, `${BUS}/aqmask`, '-4')
  t.equal(tryEcho(host, ovr, 'vfio_ap'), 'EINVAL', 'aqmask not all ones (B-28)')
  t.equal(host.read(ovr), '\n', 'unchanged')

  echo(host, `${BUS}/aqmask`, '+4')
  t.equal(tryEcho(host, ovr, 'vfio_ap'), 'OK', 'both masks all ones')
  t.equal(host.read(ovr), 'vfio_ap\n')
  t.equal(driverOf(host, '05.0004'), 'cex4queue', 'setting the override does not rebind by itself (B-33)')
  t.equal(tryEcho(host, `${DRIVERS}/cex4queue/unbind`, '05.0004'), 'OK')
  t.equal(tryEcho(host, `${DRIVERS}/cex4queue/bind`, '05.0004'), 'ENODEV', 'override names another driver (B-12)')
  t.equal(tryEcho(host, `${DRIVERS}/vfio_ap/bind`, '05.0004'), 'OK', 'mask gate skipped for the override driver')
  t.equal(driverOf(host, '05.0004'), 'vfio_ap')
  t.equal(statusOf(host, '05.0004'), 'unassigned')
  t.equal(
    errnoOf(() => host.write(ovr, '\n')),
    'OK',
    'a bare newline clears it',
  )
  t.equal(host.read(ovr), '\n')
})

t.test('T-57 (profile note) current-6.x has no driver_override attribute', async (t) => {
  const host = newHost({ kernel: 'current-6.x' })
  t.notOk(host.exists(`${dev('05.0004')}/driver_override`))
})
