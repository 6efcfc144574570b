-- How many partitions each projection runs in (1: unpartitioned), recorded
-- by its first runner. A runner configured for another count refuses to
-- take a lease, so an instance started with another partition count (or an
-- unpartitioned runner of a partitioned projection, and the reverse) never
-- applies the projection's events a second time. A split moves it
-- (PartitionedRunner::split_from).
CREATE TABLE projection_layouts (
    projection text PRIMARY KEY,
    partitions integer NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Projections that ran before layouts were recorded: the layout of their
-- most recently updated row (`name[index/count]` for a partition).
INSERT INTO projection_layouts (projection, partitions)
SELECT DISTINCT ON (projection) projection, partitions
FROM (
    SELECT coalesce(parsed.part[1], name) AS projection,
           coalesce(parsed.part[3]::integer, 1) AS partitions,
           updated_at
    FROM projections,
         LATERAL (SELECT regexp_match(name, '^(.*)\[(\d+)/(\d+)\]$') AS part) AS parsed
) AS rows
ORDER BY projection, updated_at DESC;
