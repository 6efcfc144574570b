//! Snapshots: an aggregate's state saved at a version, read by the
//! store's reader and written by its appender.

use super::batch::Batch;
use super::*;

impl LogReader<'_> {
    /// [`SnapshotStore::load_snapshot`].
    pub(super) async fn snapshot_of(
        &self,
        stream: &StreamId,
    ) -> Result<Option<Snapshot>, StoreError> {
        let mut session = self.db.session().await.map_err(store_error)?;
        let row = self
            .db
            .query(&self.sql.load_snapshot)
            .bind(&stream.aggregate_type)
            .bind(&stream.aggregate_id)
            .fetch_optional(&mut *session)
            .await
            .map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        let corrupted = |reason: String| StoreError::Corrupted {
            location: format!("snapshot of stream {stream}"),
            reason,
        };
        let version: i64 = row.try_get("version").map_err(store_error)?;
        let schema_version: i32 = row.try_get("schema_version").map_err(store_error)?;
        let state: String = row.try_get("state").map_err(store_error)?;
        Ok(Some(Snapshot {
            stream: stream.clone(),
            version: to_u64(version, "version").map_err(corrupted)?,
            schema_version: u32::try_from(schema_version)
                .map_err(|_| corrupted(format!("negative schema version {schema_version}")))?,
            state: RawValue::from_string(state)
                .map_err(|error| corrupted(format!("state is not JSON: {error}")))?,
            taken_at: row.try_get("taken_at").map_err(store_error)?,
        }))
    }
}

impl Appender<'_> {
    /// [`SnapshotStore::save_snapshot`].
    pub(super) async fn put_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        let query = self
            .db
            .query(&self.sql.save_snapshot)
            .bind(&snapshot.stream.aggregate_type)
            .bind(&snapshot.stream.aggregate_id)
            .bind(to_i64(snapshot.version, "version")?)
            .bind(i32::try_from(snapshot.schema_version).unwrap_or(i32::MAX))
            .bind(snapshot.state.get())
            .bind(snapshot.taken_at);
        let mut session = self.db.session().await.map_err(store_error)?;
        query.execute(&mut *session).await.map_err(store_error)?;
        session.finish().await.map_err(store_error)?;
        Ok(())
    }

    /// Saves the snapshot `batch` carries, when `result` stored the batch
    /// and ends at the snapshot's version, after an append whose statement
    /// could not (see `Statements::append_at_with_snapshot`). Failing to is
    /// logged: the events are stored.
    pub(super) async fn save_snapshot_after(&self, batch: &Batch, result: &AppendResult) {
        let Some(snapshot) = &batch.snapshot else {
            return;
        };
        if !snapshot.describes(&snapshot.stream, result) {
            return;
        }
        if let Err(error) = self.put_snapshot(snapshot.clone()).await {
            let stream = &snapshot.stream;
            tracing::warn!(%stream, version = snapshot.version, %error, "cannot save snapshot");
        }
    }
}
