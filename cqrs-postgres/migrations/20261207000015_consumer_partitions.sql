-- Consumers split by slice (the NATS consumer's partitions): how many
-- partitions each consumer has, who holds each partition's lease, and the
-- instances running each consumer (to share the partitions out).

CREATE TABLE IF NOT EXISTS consumer_partitions (
    consumer text NOT NULL,
    partition integer NOT NULL,
    -- The consumer's partition count when the row was made: instances
    -- configured with another count refuse to start.
    partitions integer NOT NULL,
    owner text,
    -- Moves at every takeover: what proves, in each transaction, that its
    -- writer still holds the partition.
    fencing_token bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, partition)
);

CREATE TABLE IF NOT EXISTS consumer_instances (
    consumer text NOT NULL,
    instance text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, instance)
);
