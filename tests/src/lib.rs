//! The conformance suite every event store must pass.
//!
//! Each scenario in [`scenarios`] is an `async fn` taking a fresh, empty store.
//! A store's test file turns every scenario into one test with
//! [`for_each_scenario!`], so a behaviour is specified once and checked against
//! the in-memory store and PostgreSQL alike:
//!
//! ```text
//! macro_rules! in_memory {
//!     ($($name:ident),* $(,)?) => {$(
//!         #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!         async fn $name() {
//!             cqrs_tests::scenarios::$name(Arc::new(InMemoryEventStore::new())).await;
//!         }
//!     )*};
//! }
//! cqrs_tests::for_each_scenario!(in_memory);
//! ```

pub mod env;
pub mod faketime;
pub mod fixtures;
pub mod http;
pub mod instances;
pub mod ledger;
pub mod minimal;
pub mod nats;
pub mod partitioned;
pub mod pgbouncer;
pub mod postgres;
pub mod proxy;
pub mod readings;
pub mod relay;
pub mod running;
pub mod scenarios;

/// Calls `$callback!(scenario, scenario, ...)` with the name of every scenario
/// in [`scenarios`]. Adding a scenario there and here runs it against every store.
#[macro_export]
macro_rules! for_each_scenario {
    ($callback:ident) => {
        $callback!(
            append_to_a_new_stream_numbers_versions_from_one,
            no_stream_conflicts_once_the_stream_exists,
            stream_exists_conflicts_on_an_empty_stream,
            exact_version_conflicts_unless_it_matches,
            any_version_always_appends,
            a_conflict_writes_nothing,
            empty_append_checks_the_expected_version_only,
            global_positions_strictly_increase_across_streams,
            read_stream_reads_from_a_version_in_batches,
            read_log_pages_by_position,
            read_log_filters_by_event_and_aggregate_type,
            reappending_the_same_events_is_an_idempotent_success,
            reusing_an_event_id_with_other_content_is_refused,
            duplicate_ids_within_one_batch_are_refused,
            metadata_round_trips,
            snapshots_keep_only_the_newest,
            a_snapshot_rides_only_with_the_append_it_describes,
            concurrent_appends_at_the_same_version_let_exactly_one_win,
            tailing_reader_sees_every_event_exactly_once_under_concurrent_writers,
            pipeline_runs_the_bank_account_story,
            rejected_command_stores_nothing,
            snapshot_plus_events_rebuilds_the_same_state_as_full_replay,
            an_unusable_snapshot_falls_back_to_a_full_replay,
            loading_from_events_ignores_the_snapshot,
            load_at_returns_the_state_as_of_a_version,
            load_as_of_returns_the_state_at_a_time,
            command_metadata_reaches_every_stored_event,
            retries_keep_concurrent_withdrawals_within_the_balance,
            conflict_without_retry_is_reported_with_versions,
            undecodable_event_is_reported_with_its_place,
            unknown_event_type_is_reported_with_its_place,
            projector_failure_is_reported_and_the_events_stay_stored,
            catch_up_delivers_only_declared_event_types,
            event_by_id_finds_a_stored_event,
            events_by_correlation_follow_one_business_transaction,
            events_in_time_range_by_type,
            state_cache_stays_correct_when_another_writer_moves_the_aggregate,
            a_creating_command_is_decided_without_a_load,
            racing_creations_open_once_and_the_rest_are_rejected,
            edge_input_is_refused_alike_before_anything_is_written,
            whatever_is_accepted_reads_back_equal,
            reappending_compares_numbers_exactly,
            any_version_never_conflicts_under_contention,
            a_snapshot_ahead_of_its_stream_is_ignored,
            a_filter_naming_a_type_twice_reads_each_event_once,
            executing_a_command_id_again_returns_the_first_outcome,
            racing_executions_of_one_command_id_store_it_once,
            a_command_caused_by_an_event_is_applied_once_per_event,
            a_retry_after_a_lost_answer_reports_the_late_commit_not_a_rejection,
        );
    };
}
