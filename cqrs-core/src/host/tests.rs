use std::time::Duration;

use async_trait::async_trait;

use super::*;

/// A service that panics as soon as it runs.
struct Panics;

#[async_trait]
impl Hosted for Panics {
    fn name(&self) -> &str {
        "panics"
    }

    async fn run(&self, _: Shutdown) -> Result<(), BoxError> {
        panic!("a bug in the service");
    }
}

/// A service that ignores the shutdown.
struct Deaf;

#[async_trait]
impl Hosted for Deaf {
    fn name(&self) -> &str {
        "deaf"
    }

    fn stage(&self) -> Stage {
        Stage::Ingress
    }

    async fn run(&self, _: Shutdown) -> Result<(), BoxError> {
        std::future::pending().await
    }
}

/// A service that runs until told to stop.
struct Obedient;

#[async_trait]
impl Hosted for Obedient {
    fn name(&self) -> &str {
        "obedient"
    }

    async fn run(&self, shutdown: Shutdown) -> Result<(), BoxError> {
        shutdown.await;
        Ok(())
    }
}

async fn settle(handle: &HostHandle, name: &str, wanted: impl Fn(&ServiceState) -> bool) {
    for _ in 0..200 {
        let health = handle.health().await;
        let service = health.services.iter().find(|service| service.name == name);
        if service.is_some_and(|service| wanted(&service.state)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{name} never reached the state: {:?}",
        handle.health().await
    );
}

#[tokio::test]
async fn a_panicking_service_is_failed_at_once_and_the_others_run_on() {
    let host = Host::new().service(Panics).service(Obedient);
    let handle = host.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(host.run(async {
        let _ = stopped.await;
    }));
    settle(
        &handle,
        "panics",
        |state| matches!(state, ServiceState::Failed(reason) if reason.contains("panicked")),
    )
    .await;
    settle(&handle, "obedient", |state| *state == ServiceState::Running).await;
    let _ = stop.send(());
    match running.await.expect("the host's task") {
        Err(HostError::Failed(failures)) => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0, "panics");
        }
        other => panic!("expected the panic reported, got {other:?}"),
    }
}

#[tokio::test]
async fn a_service_that_does_not_stop_is_abandoned_after_the_grace_period() {
    let host = Host::new()
        .shutdown_grace(Duration::from_millis(50))
        .service(Deaf)
        .service(Obedient);
    let handle = host.handle();
    let outcome = host
        .run(tokio::time::sleep(Duration::from_millis(20)))
        .await;
    match outcome {
        Err(HostError::Failed(failures)) => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0, "deaf");
            assert!(failures[0].1.to_string().contains("did not stop"));
        }
        other => panic!("expected the deaf service abandoned, got {other:?}"),
    }
    let health = handle.health().await;
    assert_eq!(
        health.services[1].state,
        ServiceState::Stopped,
        "the workers stopped after it"
    );
}
