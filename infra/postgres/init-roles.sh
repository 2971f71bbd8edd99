#!/usr/bin/env bash
# Runs once, when the postgres container initialises an empty data directory
# (/docker-entrypoint-initdb.d). Creates the two roles Flowdeck needs and its database:
#   flowdeck_owner  owns the schema; the migrate job connects as it (DDL, RLS policies, grants)
#   flowdeck_app    what web, worker and beat connect as; row-level security applies to it
# Neither is a superuser and neither has BYPASSRLS.
set -euo pipefail
: "${FLOWDECK_OWNER_PASSWORD:?}" "${FLOWDECK_APP_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_pw="$FLOWDECK_OWNER_PASSWORD" -v app_pw="$FLOWDECK_APP_PASSWORD" <<'SQL'
CREATE ROLE flowdeck_owner LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'owner_pw';
CREATE ROLE flowdeck_app LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD :'app_pw';
CREATE DATABASE flowdeck OWNER flowdeck_owner;
REVOKE ALL ON DATABASE flowdeck FROM PUBLIC;
GRANT CONNECT ON DATABASE flowdeck TO flowdeck_app;
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname flowdeck <<'SQL'
-- PostgreSQL 15+ no longer lets PUBLIC create in the public schema; the owner role needs to.
ALTER SCHEMA public OWNER TO flowdeck_owner;
SQL
