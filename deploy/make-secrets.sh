#!/usr/bin/env sh
# Writes the secret files docker-compose.yml reads (deploy/secrets/, mode 0600, git-ignored).
# Existing files are kept: run it again after deleting one to rotate it.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
keep() { [ -s "secrets/$1" ] || printf '%s' "$2" > "secrets/$1"; }
keep redis_password "$(rand)"
keep postgres_password "$(rand)"
keep redis_url "redis://:$(cat secrets/redis_password)@redis:6379/0"
keep database_url "postgresql://nae:$(cat secrets/postgres_password)@postgres:5432/nae"
keep nae_signing_keys "optimus:$(rand)"
keep nae_admin_token "$(rand)"
keep grafana_admin_password "$(rand)"
echo "secrets in $(pwd)/secrets (Optimus's key: secrets/nae_signing_keys, as key_id:secret)"
