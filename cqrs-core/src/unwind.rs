//! Panics in application code, turned into errors: a projector, a handler
//! or an upcaster that panics fails its event or message like one that
//! returned an error, instead of taking down the task that runs it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;

/// Runs `future`, turning a panic while it is polled into an error naming
/// the panic's message.
///
/// The future is dropped where it panicked, so whatever it held (a
/// transaction, say) is released; state it shared with others may be left
/// half-updated, as with any panic, which is why callers treat the panic as
/// the failure of the one item being processed and redo that item from
/// stored state.
///
/// # Errors
///
/// The panic's message, when it panicked.
pub async fn caught<F: Future>(future: F) -> Result<F::Output, String> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(&*panic).to_owned())),
        }
    })
    .await
}

/// The message a panic was raised with (`panic!("...")`), or
/// `(no message)`.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::caught;

    #[tokio::test]
    async fn a_panic_becomes_its_message_and_a_value_passes_through() {
        assert_eq!(caught(async { 7 }).await, Ok(7));
        let index = 3;
        let failed = caught(async move {
            if index > 2 {
                panic!("index {index} out of range");
            }
        })
        .await;
        assert_eq!(failed, Err("index 3 out of range".to_owned()));
    }
}
