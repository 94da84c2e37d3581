#!/bin/sh
# Makes deploy/compose/secrets/ for compose.yaml: random passwords and tokens, the controllers'
# config with them filled in. Files are owned by root, group 10001 (the controller image's user),
# mode 0640; run it with sudo. An existing secrets/ directory is left as it is.
set -eu
cd "$(dirname "$0")"
if [ -e secrets ]; then echo "secrets/ exists; remove it to make new secrets" >&2; exit 1; fi
umask 077
mkdir secrets
rand() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
pg=$(rand); minio=$(rand); metrics=$(rand)
printf '%s' "$pg" > secrets/postgres-password
printf 'edgefleet' > secrets/minio-user
printf '%s' "$minio" > secrets/minio-password
printf '[default]\naws_access_key_id = edgefleet\naws_secret_access_key = %s\n' "$minio" \
  > secrets/s3-credentials
printf '%s' "$metrics" > secrets/metrics.token
sed -e "s/@POSTGRES_PASSWORD@/$pg/" -e "s/@METRICS_TOKEN@/$metrics/" controller.toml.template \
  > secrets/controller.toml
chown -R 0:10001 secrets 2>/dev/null || echo "not root: chgrp secrets/* to gid 10001 yourself" >&2
chmod 0750 secrets && chmod 0640 secrets/*
echo "wrote $(pwd)/secrets"
