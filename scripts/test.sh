#!/usr/bin/env bash
# The test suite: bootstrap (idempotent; it also installs the LiteRT toolchain unless
# EDGEFLEET_SKIP_LITERT=1), then pytest. The LiteRT tests find .venv-tflite the way the
# controller does (controller/config.py) and skip, saying why, without it. PostgreSQL tests run
# when a server answers on 127.0.0.1:5432; the system's PostgreSQL is started when it is
# installed but down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if command -v pg_ctlcluster >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
# Two workers, each test file on one of them (module fixtures are shared within a file): most
# tests wait on real servers, processes and timeouts, so two run in about the time of one.
exec .venv/bin/pytest -q -n "${EDGEFLEET_TEST_WORKERS:-2}" --dist loadfile "$@"
