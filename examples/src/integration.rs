//! Two services exchanging integration events through NATS JetStream.
//!
//! The **order service** (the e-commerce example's orders) publishes its
//! orders' public events with a relay: `order-placed`, `order-paid` and
//! `order-cancelled`, version 1, on subjects `shop.order.<token>.<slice>.<route>` of the
//! stream `SHOP`. The **shipping service**, a separate process with a
//! schema of its own, consumes them: it remembers what each placed order
//! contains, and when an order is paid it prepares a shipment, an aggregate
//! of its own. Neither reads the other's tables or Rust types; the
//! published language below is their whole contract.
//!
//! Run them as `cargo run --example order_service` and `cargo run --example
//! shipping_service` (see `examples/README.md`).

use std::sync::Arc;
use std::time::Duration;

use cqrskit::nats::async_nats::jetstream;
use cqrskit::nats::{
    CloudEvent, Consumer, ConsumerOptions, Handler, Outgoing, Publication, Relay, RelayOptions,
};
use cqrskit::postgres::sqlx::{self, PgConnection};
use cqrskit::postgres::{PostgresEventStore, PostgresInbox, ProjectionRunner};
use cqrskit::{BoxError, Command, CommandPipeline, DomainEvent, EventEnvelope, aggregate};
use serde::{Deserialize, Serialize};

use crate::ecommerce::OrderEvent;

/// The subject prefix of the order service's public events.
pub const ORDER_SUBJECTS: &str = "shop";
/// The CloudEvents source of the order service.
pub const ORDER_SOURCE: &str = "/shop/orders";
/// The public type of a placed order.
pub const ORDER_PLACED: &str = "com.example.shop.order-placed.v1";
/// The public type of a paid order.
pub const ORDER_PAID: &str = "com.example.shop.order-paid.v1";
/// The public type of a cancelled order.
pub const ORDER_CANCELLED: &str = "com.example.shop.order-cancelled.v1";

/// One line of a placed order, as other services see it (no prices).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicLine {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// The data of `order-placed.v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    /// The order.
    pub order: String,
    /// What it contains.
    pub lines: Vec<PublicLine>,
}

/// The data of `order-paid.v1` and `order-cancelled.v1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefV1 {
    /// The order.
    pub order: String,
}

/// The order service's published language: which order events leave the
/// service, and in what shape.
pub struct PublicOrderEvents;

impl Publication for PublicOrderEvents {
    type Event = OrderEvent;

    fn event_types(&self) -> &'static [&'static str] {
        &["OrderCreated", "OrderPaid", "OrderCancelled"]
    }

    fn publish(&self, event: &EventEnvelope<OrderEvent>) -> Result<Option<Outgoing>, BoxError> {
        let order = event.stream.aggregate_id.clone();
        let outgoing = match &event.payload {
            OrderEvent::OrderCreated(created) => {
                let lines = created
                    .lines
                    .iter()
                    .map(|line| PublicLine {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect();
                Outgoing::new(ORDER_PLACED, &OrderPlacedV1 { order, lines })?
                    .with_subject_token("placed")
            }
            OrderEvent::OrderPaid(_) => {
                Outgoing::new(ORDER_PAID, &OrderRefV1 { order })?.with_subject_token("paid")
            }
            OrderEvent::OrderCancelled(_) => Outgoing::new(ORDER_CANCELLED, &OrderRefV1 { order })?
                .with_subject_token("cancelled"),
            _ => return Ok(None),
        };
        Ok(Some(outgoing))
    }
}

/// The order service's relay, run by a projection runner.
pub fn order_relay(
    store: PostgresEventStore,
    jetstream: jetstream::Context,
) -> ProjectionRunner<Relay<PublicOrderEvents>> {
    let relay = Relay::new(
        "order_events_relay",
        jetstream,
        PublicOrderEvents,
        RelayOptions::new(ORDER_SUBJECTS, ORDER_SOURCE),
    );
    ProjectionRunner::new(store, Arc::new(relay))
}

/// A shipment was prepared for a paid order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentPrepared {
    /// What goes in the parcel.
    pub items: Vec<PublicLine>,
}

/// The shipping service's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum ShipmentEvent {
    /// See [`ShipmentPrepared`].
    ShipmentPrepared(ShipmentPrepared),
}

/// Prepare the shipment of a paid order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrepareShipment {
    /// What goes in the parcel.
    pub items: Vec<PublicLine>,
}

/// What can be asked of a shipment.
#[derive(Clone, Debug, PartialEq, Eq, Command)]
pub enum ShipmentCommand {
    /// See [`PrepareShipment`].
    Prepare(PrepareShipment),
}

/// Why a shipment refuses a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// There is nothing to ship.
    #[error("a shipment needs at least one item")]
    Empty,
}

/// A shipment, one per paid order (its id is the order's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// What is in the parcel; empty until prepared.
    pub items: Vec<PublicLine>,
}

#[aggregate(type = "shipment", command = ShipmentCommand, event = ShipmentEvent, error = ShipmentError)]
impl Shipment {
    #[command]
    fn prepare(&self, command: &PrepareShipment) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        if !self.items.is_empty() {
            return Ok(vec![]);
        }
        if command.items.is_empty() {
            return Err(ShipmentError::Empty);
        }
        Ok(vec![
            ShipmentPrepared {
                items: command.items.clone(),
            }
            .into(),
        ])
    }

    #[apply]
    fn prepared(&mut self, event: &ShipmentPrepared) {
        self.items = event.items.clone();
    }
}

/// The shipping service's handler of the order service's events: a placed
/// order's lines are kept in `<schema>.shipping_orders` (in the consumer's
/// transaction, so once); a paid one gets its shipment prepared by a
/// command whose id derives from the message (`CloudEvent::command_id`),
/// so a message handled again (after a crash before the commit) prepares
/// nothing twice.
pub struct ShippingDesk {
    shipments: CommandPipeline<Shipment>,
    orders: String,
}

impl ShippingDesk {
    /// The desk of the shipping service whose store is `store`, creating
    /// its table when missing.
    ///
    /// # Errors
    ///
    /// When the database refuses.
    pub async fn open(store: &PostgresEventStore) -> Result<Self, sqlx::Error> {
        let orders = format!("{}.shipping_orders", store.schema().quoted());
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {orders} (order_id text PRIMARY KEY, lines jsonb NOT NULL)"
        ))
        .execute(store.pool())
        .await?;
        Ok(Self {
            shipments: CommandPipeline::new(Arc::new(store.clone()), ()),
            orders,
        })
    }
}

#[cqrskit::async_trait]
impl Handler<PgConnection> for ShippingDesk {
    async fn handle(
        &self,
        event: &CloudEvent,
        transaction: &mut PgConnection,
    ) -> Result<(), BoxError> {
        match event.event_type.as_str() {
            ORDER_PLACED => {
                let placed: OrderPlacedV1 = event.data_as()?;
                sqlx::query(&format!(
                    "INSERT INTO {} (order_id, lines) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    self.orders
                ))
                .bind(&placed.order)
                .bind(sqlx::types::Json(&placed.lines))
                .execute(transaction)
                .await?;
            }
            ORDER_PAID => {
                let paid: OrderRefV1 = event.data_as()?;
                let lines: Option<sqlx::types::Json<Vec<PublicLine>>> = sqlx::query_scalar(
                    &format!("SELECT lines FROM {} WHERE order_id = $1", self.orders),
                )
                .bind(&paid.order)
                .fetch_optional(transaction)
                .await?;
                let Some(sqlx::types::Json(items)) = lines else {
                    // Placed orders are published before their payment; an
                    // order paid but never seen placed is retried, then
                    // dead-lettered for a person to look at.
                    return Err(
                        format!("order {} was paid but never seen placed", paid.order).into(),
                    );
                };
                let command = ShipmentCommand::from(PrepareShipment { items });
                let stream = CommandPipeline::<Shipment>::stream_id(&paid.order);
                let command_id = event.command_id(&stream, command.command_type());
                self.shipments
                    .execute_once(command_id, &paid.order, command, event.command_metadata())
                    .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The shipping service's consumer of the order service's events.
///
/// # Errors
///
/// When the database refuses the desk's table.
pub async fn shipping_consumer(
    store: PostgresEventStore,
    jetstream: jetstream::Context,
) -> Result<Consumer<PostgresInbox, ShippingDesk>, sqlx::Error> {
    let desk = ShippingDesk::open(&store).await?;
    let options = ConsumerOptions::new("SHOP", "shipping")
        .filter_subject(format!("{ORDER_SUBJECTS}.order.>"))
        .ack_wait(Duration::from_secs(10));
    Ok(Consumer::new(
        PostgresInbox::new(&store),
        jetstream,
        desk,
        options,
    ))
}

/// One service's store, in schema `schema` (migrated), and its JetStream
/// context: PostgreSQL at `DATABASE_URL`, NATS at `NATS_URL` (default
/// `nats://127.0.0.1:4222`).
///
/// # Errors
///
/// When `DATABASE_URL` is not set, or either server cannot be reached.
pub async fn connect_service(
    schema: &str,
) -> Result<(PostgresEventStore, jetstream::Context), BoxError> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL (scripts/ensure-postgres prints one)")?;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let store = PostgresEventStore::connect(&url)
        .await?
        .with_schema(schema)?;
    store.migrate().await?;
    let client = cqrskit::nats::async_nats::connect(&nats_url).await?;
    Ok((store, jetstream::new(client)))
}
