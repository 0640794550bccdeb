#!/usr/bin/env sh
# Writes the secret files docker-compose.yml reads (deploy/secrets/, git-ignored). The folder is 0700
# (only its owner reaches the files on the host); the files are 0644 because compose mounts them into
# the containers as they are, where the services run as their own users (nae, redis, postgres, grafana).
# Existing files are kept: run it again after deleting one to rotate it.
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
chmod 700 secrets
umask 022
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
