#!/bin/sh
# Makes what the secured docker-compose.yml needs, with openssl, into DIR (the first argument):
#   ca.crt, ca.key          a private CA (EC P-256, 825 days)
#   server.crt, server.key  the service's certificate for $CERT_NAMES, signed by the CA
#   $TOKEN_NAME.token       a random bearer token (the secret a client presents; no newline)
#   tokens                  its line for APMATRIX_AUTH_TOKENS_FILE: NAME:SHA-256 of the token
# Files that exist are kept, so running it again (every `docker compose up`) changes nothing; delete DIR
# to start over. With SECRETS_OWNER=uid:gid the files are handed to that user (the one running the
# service). POSIX sh, openssl and coreutils only.
set -eu

DIR=${1:?usage: make-certs.sh DIR}
CERT_NAMES=${CERT_NAMES:-DNS:localhost,IP:127.0.0.1}
TOKEN_NAME=${TOKEN_NAME:-admin-bot}
DAYS=${DAYS:-825}
EC="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

umask 077
mkdir -p "$DIR"
cd "$DIR"

if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
  # shellcheck disable=SC2086
  openssl req -x509 $EC -days "$DAYS" -subj /CN=apmatrix-compose-ca -keyout ca.key -out ca.crt \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  rm -f server.crt
fi

if [ ! -s server.crt ] || [ ! -s server.key ]; then
  # shellcheck disable=SC2086
  openssl req $EC -subj /CN=apmatrix -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$CERT_NAMES" > server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$DAYS" \
    -extfile server.ext -out server.crt 2>/dev/null
  rm -f server.csr server.ext ca.srl
fi

if [ ! -s "$TOKEN_NAME.token" ]; then
  head -c 32 /dev/urandom | openssl base64 -A | tr -d '/+=' > "$TOKEN_NAME.token"
fi
# The tokens file holds the digest only; it is written from the token every time, so it always matches.
printf '%s:%s\n' "$TOKEN_NAME" "$(openssl dgst -sha256 -r < "$TOKEN_NAME.token" | cut -d' ' -f1)" > tokens

chmod 0755 .
chmod 0644 ca.crt server.crt tokens
chmod 0600 ca.key server.key "$TOKEN_NAME.token"
if [ -n "${SECRETS_OWNER:-}" ]; then
  chown "$SECRETS_OWNER" . ca.crt server.crt server.key tokens "$TOKEN_NAME.token"
fi
echo "make-certs: $DIR holds ca.crt, server.crt/.key ($CERT_NAMES), $TOKEN_NAME.token and tokens"
