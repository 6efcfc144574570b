//! Inventory: the stock of one product, and reservations of it for orders.

use std::collections::{BTreeMap, BTreeSet};

use cqrs_core::{Command, DomainEvent, aggregate};
use serde::{Deserialize, Serialize};

/// Items arrived in stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockAdded {
    /// How many.
    pub quantity: u32,
}

/// Items were set aside for an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// An order's reservation was given back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// Facts about a product's stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
pub enum InventoryEvent {
    /// See [`StockAdded`].
    StockAdded(StockAdded),
    /// See [`StockReserved`].
    StockReserved(StockReserved),
    /// See [`StockReleased`].
    StockReleased(StockReleased),
}

/// Add items to stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddStock {
    /// How many.
    pub quantity: u32,
}

/// Reserve items for an order. Reserving again for the same order, even after
/// its reservation was released, changes nothing: a process that sees an
/// event twice cannot reserve twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReserveStock {
    /// The order.
    pub order_id: String,
    /// How many.
    pub quantity: u32,
}

/// Give an order's reservation back; nothing to do if it has none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseStock {
    /// The order.
    pub order_id: String,
}

/// What can be asked of a product's stock.
#[derive(Clone, Debug, PartialEq, Eq, Command)]
pub enum InventoryCommand {
    /// See [`AddStock`].
    Add(AddStock),
    /// See [`ReserveStock`].
    Reserve(ReserveStock),
    /// See [`ReleaseStock`].
    Release(ReleaseStock),
}

/// Why the stock refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Adding or reserving nothing.
    #[error("the quantity must be positive")]
    ZeroQuantity,
    /// More asked than available.
    #[error("insufficient stock: {available} available, {requested} requested")]
    InsufficientStock {
        /// Items not reserved.
        available: u32,
        /// Items asked for.
        requested: u32,
    },
}

/// A product's stock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Items in stock and not reserved.
    pub available: u32,
    /// Reserved items per order.
    pub reservations: BTreeMap<String, u32>,
    /// Orders whose reservation was released: a late or repeated request to
    /// reserve for them is ignored.
    pub released: BTreeSet<String>,
}

type Decision = Result<Vec<InventoryEvent>, InventoryError>;

#[aggregate(type = "inventory", command = InventoryCommand, event = InventoryEvent, error = InventoryError)]
impl Inventory {
    #[command]
    fn add(&self, command: &AddStock) -> Decision {
        if command.quantity == 0 {
            return Err(InventoryError::ZeroQuantity);
        }
        Ok(vec![
            StockAdded {
                quantity: command.quantity,
            }
            .into(),
        ])
    }

    #[command]
    fn reserve(&self, command: &ReserveStock) -> Decision {
        if command.quantity == 0 {
            return Err(InventoryError::ZeroQuantity);
        }
        if self.reservations.contains_key(&command.order_id)
            || self.released.contains(&command.order_id)
        {
            return Ok(vec![]);
        }
        if command.quantity > self.available {
            return Err(InventoryError::InsufficientStock {
                available: self.available,
                requested: command.quantity,
            });
        }
        Ok(vec![
            StockReserved {
                order_id: command.order_id.clone(),
                quantity: command.quantity,
            }
            .into(),
        ])
    }

    #[command]
    fn release(&self, command: &ReleaseStock) -> Decision {
        Ok(self
            .reservations
            .get(&command.order_id)
            .map(|&quantity| {
                StockReleased {
                    order_id: command.order_id.clone(),
                    quantity,
                }
                .into()
            })
            .into_iter()
            .collect())
    }

    #[apply]
    fn added(&mut self, event: &StockAdded) {
        self.available += event.quantity;
    }

    #[apply]
    fn reserved(&mut self, event: &StockReserved) {
        self.available -= event.quantity;
        self.reservations
            .insert(event.order_id.clone(), event.quantity);
    }

    #[apply]
    fn released(&mut self, event: &StockReleased) {
        self.available += event.quantity;
        self.reservations.remove(&event.order_id);
        self.released.insert(event.order_id.clone());
    }
}
