#!/bin/sh
# Makes the demo CA and PostgreSQL's server certificate for docker-compose.yml (the one-shot
# `certs` service runs it in the postgres image, which carries openssl) into $CERTS_DIR:
#   ca.pem                      the CA the proxy trusts (--upstream-ca /certs/ca.pem)
#   server.pem, server.key      PostgreSQL's certificate and key (ssl_cert_file, ssl_key_file)
# The server certificate names `postgres` (the compose service the proxy dials, so
# sslmode=verify-full holds), plus localhost and 127.0.0.1 for use outside compose.
# The CA key is deleted once it has signed: nothing else should ever be signed by it.
#
# Idempotent: certificates still valid for another day are kept, so `docker compose up` after
# `down` (the volume survives) does not re-issue them. Without Docker, run it by hand:
#   CERTS_DIR=/tmp/certs PG_UID=$(id -u) sh config/certs/make-certs.sh
# (scripts/demo makes its own certificates the same way.)
set -eu
CERTS_DIR=${CERTS_DIR:-/certs}
# PostgreSQL refuses a key file readable by others, and the key must belong to the user the
# server runs as: uid 999 ("postgres") in the official image.
PG_UID=${PG_UID:-999}
DAYS=${DAYS:-30}

command -v openssl >/dev/null 2>&1 || { echo "make-certs: openssl not found in this image" >&2; exit 1; }
mkdir -p "$CERTS_DIR"
cd "$CERTS_DIR"

if [ -s ca.pem ] && [ -s server.pem ] && [ -s server.key ] \
  && openssl x509 -in server.pem -noout -checkend 86400 >/dev/null 2>&1 \
  && openssl verify -CAfile ca.pem server.pem >/dev/null 2>&1; then
  echo "make-certs: certificates in $CERTS_DIR are valid for another day; keeping them"
  exit 0
fi

umask 077
rm -f ca.key ca.pem ca.srl server.csr server.key server.pem san.ext
openssl req -x509 -newkey rsa:2048 -nodes -days "$DAYS" -subj "/CN=redshift-auth-proxy demo CA" \
  -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=postgres" -keyout server.key -out server.csr 2>/dev/null
# A certificate's names live in subjectAltName; verify-full ignores the CN when SANs exist.
printf 'subjectAltName=DNS:postgres,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days "$DAYS" \
  -extfile san.ext -out server.pem 2>/dev/null
rm -f ca.key ca.srl server.csr san.ext
chmod 644 ca.pem server.pem
chmod 600 server.key
chown "$PG_UID" server.key 2>/dev/null || true
openssl verify -CAfile ca.pem server.pem
echo "make-certs: issued a CA and a server certificate for postgres, localhost, 127.0.0.1 in $CERTS_DIR"
