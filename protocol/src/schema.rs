//! JSON Schemas of the wire types whose serde form is written by hand (feature `schema`):
//! they describe what `Serialize` writes and `Deserialize` accepts. The derived ones sit on
//! the types themselves.

use crate::customer::Degrees;
use crate::money::{MAX_AMOUNT, Money};
use crate::package::{MAX_SPEED, Speed};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use std::borrow::Cow;

/// A JSON number type, written into every schema that uses it (no shared definition).
macro_rules! number_schema {
    ($type:ty, $schema:expr) => {
        impl JsonSchema for $type {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                stringify!($type).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

number_schema!(
    Money,
    json_schema!({
        "type": "number",
        "description": format!(
            "An amount with at most two decimals (2000, 500.5). Amounts in requests are \
             positive and at most {MAX_AMOUNT}; balances may be negative."
        ),
    })
);

number_schema!(
    Speed,
    json_schema!({
        "type": "number",
        "minimum": 0,
        "maximum": MAX_SPEED.kbps() / 1000,
        "description": "Mbit/s, at most three decimals; 0 is unlimited.",
    })
);

number_schema!(
    Degrees,
    json_schema!({
        "type": "number",
        "description": "Decimal degrees; digits past the seventh decimal are dropped.",
    })
);
