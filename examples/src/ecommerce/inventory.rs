//! Inventory: the stock of one product, and reservations of it for orders.

use std::collections::{BTreeMap, BTreeSet};

use cqrskit::{Command, DomainEvent, aggregate};
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
    /// An addition that would take the items on hand past the most a stock
    /// count can hold.
    #[error(
        "stock overflow: {on_hand} on hand (reserved included), adding {added} would exceed {}",
        u32::MAX
    )]
    StockOverflow {
        /// Items in stock, available and reserved.
        on_hand: u64,
        /// Items asked to add.
        added: u32,
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

impl Inventory {
    /// Items in stock: available and reserved.
    pub fn on_hand(&self) -> u64 {
        // Summed in u64: overflowing it would take four billion full reservations.
        let reserved: u64 = self.reservations.values().map(|&q| u64::from(q)).sum();
        u64::from(self.available) + reserved
    }
}

type Decision = Result<Vec<InventoryEvent>, InventoryError>;

#[aggregate(type = "inventory", command = InventoryCommand, event = InventoryEvent, error = InventoryError)]
impl Inventory {
    #[command]
    fn add(&self, command: &AddStock) -> Decision {
        if command.quantity == 0 {
            return Err(InventoryError::ZeroQuantity);
        }
        // Reserved items count too: a release gives them back to `available`.
        let on_hand = self.on_hand();
        if on_hand + u64::from(command.quantity) > u64::from(u32::MAX) {
            return Err(InventoryError::StockOverflow {
                on_hand,
                added: command.quantity,
            });
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

    // The handlers keep every count in range: `add` keeps the items on hand
    // within a u32, `reserve` takes no more than is available, and a release
    // gives back what was reserved. So saturating changes nothing for the
    // events they decided; events written by other code must still load
    // rather than panic (debug) or wrap (release).
    #[apply]
    fn added(&mut self, event: &StockAdded) {
        self.available = self.available.saturating_add(event.quantity);
    }

    #[apply]
    fn reserved(&mut self, event: &StockReserved) {
        self.available = self.available.saturating_sub(event.quantity);
        self.reservations
            .insert(event.order_id.clone(), event.quantity);
    }

    #[apply]
    fn released(&mut self, event: &StockReleased) {
        self.available = self.available.saturating_add(event.quantity);
        self.reservations.remove(&event.order_id);
        self.released.insert(event.order_id.clone());
    }
}
