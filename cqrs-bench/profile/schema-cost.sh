#!/usr/bin/env bash
# What one event row costs PostgreSQL, apart from any client: pgbench (C, one
# prepared statement per transaction) inserts single rows, or 100-row
# batches, into the bench's minimal baseline table and into tables of the
# events table's own shape, with and without parts of it, and prints the
# rate of each against the minimal table's. Used by docs/performance.md.
#
#   DATABASE_URL=$(scripts/ensure-postgres) cqrs-bench/profile/schema-cost.sh [seconds]
set -euo pipefail
url=${DATABASE_URL:?set DATABASE_URL, e.g. DATABASE_URL=\$(scripts/ensure-postgres)}
seconds=${1:-8}
here=$(cd "$(dirname "$0")" && pwd)
migrations="$here/../../cqrs-postgres/migrations"
schema=profile_schema_cost
work=$(mktemp -d)
trap 'rm -rf "$work"; psql "$url" -qc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true' EXIT

psql "$url" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS $schema CASCADE;
CREATE SCHEMA $schema;
SET search_path = $schema;
$(cat "$migrations"/*.sql)
-- The bench's baseline table.
CREATE TABLE raw_events (stream text NOT NULL, version bigint NOT NULL, payload jsonb NOT NULL,
                         PRIMARY KEY (stream, version));
-- The events table's columns with only its primary key.
CREATE TABLE columns_only (LIKE events INCLUDING DEFAULTS INCLUDING GENERATED);
ALTER TABLE columns_only ADD PRIMARY KEY (aggregate_type, aggregate_id, version);
-- Without the correlation column and index.
CREATE TABLE no_correlation (LIKE events INCLUDING ALL);
DROP INDEX no_correlation_correlation_id_transaction_id_position_idx;
ALTER TABLE no_correlation DROP COLUMN correlation_id;
-- The events table with json (text kept as sent) instead of jsonb columns.
CREATE TABLE json_columns (LIKE events INCLUDING ALL);
ALTER TABLE json_columns DROP COLUMN correlation_id;
ALTER TABLE json_columns ALTER COLUMN payload TYPE json, ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN metadata TYPE json, ALTER COLUMN metadata SET DEFAULT '{}'::json;
ALTER TABLE json_columns ADD COLUMN correlation_id uuid;
CREATE INDEX ON json_columns (correlation_id, transaction_id, position) WHERE correlation_id IS NOT NULL;
SQL

correlation=018f3b1e-7c4a-7def-8abc-0123456789ab
metadata="{\"correlation_id\":\"$correlation\"}"
# Time-ordered ids, as the framework's UUIDv7 (PostgreSQL 15 has no uuidv7()):
# random ones would scatter the inserts over the whole event id index.
time_ordered_id="(lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000000)::bigint), 14, '0') || substr(md5(random()::text), 1, 18))::uuid"
row() { # table version-expression from-clause
  if [ "$1" = raw_events ]; then
    echo "INSERT INTO $schema.raw_events (stream, version, payload) SELECT 's' || :r, $2, '{\"n\":1}'::jsonb $3"
  elif [ "$1" = no_correlation ]; then
    echo "INSERT INTO $schema.$1 (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata, slice)
          SELECT $time_ordered_id, 'tally', 's' || :r, $2, 'Added', 1, '{\"n\":1}', '$metadata', 7 $3"
  else
    # The correlation id and the slice as the store sends them (migration 10).
    echo "INSERT INTO $schema.$1 (event_id, aggregate_type, aggregate_id, version, event_type, event_version, payload, metadata, correlation_id, slice)
          SELECT $time_ordered_id, 'tally', 's' || :r, $2, 'Added', 1, '{\"n\":1}', '$metadata', '$correlation', 7 $3"
  fi
}
run() { # name clients script
  printf '\\set r random(1, 1000000000000)\n%s;\n' "$3" >"$work/$1.sql"
  pgbench "$url" -n -M prepared -c "$2" -j 2 -T "$seconds" -f "$work/$1.sql" 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
report() { # label clients version-expression from-clause rows-per-statement
  echo "$1"
  local base
  base=$(run "raw_events" "$2" "$(row raw_events "$3" "$4")")
  printf '  %-16s %9.0f rows/s  ratio 1.00\n' raw_events "$(echo "$base * $5" | bc)"
  for table in columns_only no_correlation json_columns events; do
    local tps
    tps=$(run "$table" "$2" "$(row "$table" "$3" "$4")")
    printf '  %-16s %9.0f rows/s  ratio %.2f\n' "$table" "$(echo "$tps * $5" | bc)" "$(echo "$tps / $base" | bc -l)"
  done
}
report "single-row inserts, 20 clients" 20 1 "" 1
report "100-row inserts, 1 client" 1 g "FROM generate_series(1, 100) g" 100
