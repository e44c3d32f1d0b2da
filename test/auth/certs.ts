/**
 * Test certificates made with the `openssl` CLI into a directory: a CA, a server certificate for
 * localhost / 127.0.0.1, client certificates, one from another CA, and an expired one (`openssl ca` with
 * explicit dates, since `openssl x509 -req` of OpenSSL 3.0 cannot backdate).
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`)
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

/** A certificate and its key (paths). */
export interface CertFiles {
  cert: string
  key: string
}

/** Makes a self-signed CA `name` in `dir`. */
export function makeCa(dir: string, name: string): CertFiles {
  openssl(
    [
      'req',
      '-x509',
      ...EC,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  )
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
}

/** Makes a certificate of CN `name` signed by `ca`: a server certificate for localhost and 127.0.0.1, or a client one. */
export function makeLeaf(dir: string, ca: CertFiles, name: string, kind: 'server' | 'client', dates?: { start: string; end: string }): CertFiles {
  openssl(['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir)
  const ext = kind === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n'
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext)
  if (!dates) {
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        ca.cert,
        '-CAkey',
        ca.key,
        '-CAcreateserial',
        '-out',
        `${name}.crt`,
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
      ],
      dir,
    )
  } else {
    const db = path.join(dir, `${name}-ca`)
    fs.mkdirSync(db, { recursive: true })
    fs.writeFileSync(path.join(db, 'index.txt'), '')
    fs.writeFileSync(path.join(db, 'serial'), '1000\n')
    fs.writeFileSync(
      path.join(db, 'ca.cnf'),
      `[ca]\ndefault_ca = c\n[c]\ndir = ${db}\ndatabase = ${db}/index.txt\nnew_certs_dir = ${db}\nserial = ${db}/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n[x]\nextendedKeyUsage = clientAuth\n`,
    )
    openssl(
      [
        'ca',
        '-config',
        path.join(db, 'ca.cnf'),
        '-batch',
        '-notext',
        '-cert',
        ca.cert,
        '-keyfile',
        ca.key,
        '-in',
        `${name}.csr`,
        '-out',
        `${name}.crt`,
        '-startdate',
        dates.start,
        '-enddate',
        dates.end,
        '-extensions',
        'x',
      ],
      dir,
    )
  }
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
}
