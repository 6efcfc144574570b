-- Every stream falls in one of 1024 slices, fixed forever: the first 32
-- bits of the MD5 of `<aggregate type>/<aggregate id>`, modulo 1024. MD5 is
-- the same on every PostgreSQL version and platform, so a slice never
-- changes and nothing is ever re-hashed. Partitioned projections read
-- ranges of slices. Adding the column rewrites the table once.
ALTER TABLE events ADD COLUMN slice smallint NOT NULL
    GENERATED ALWAYS AS (
        (('x' || left(md5(aggregate_type || '/' || aggregate_id), 8))::bit(32)::bigint % 1024)::smallint
    ) STORED;

-- The instances running a partitioned projection, each seen within its
-- lease: they share the partitions out among themselves.
CREATE TABLE projection_instances (
    projection text NOT NULL,
    owner text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, owner)
);
