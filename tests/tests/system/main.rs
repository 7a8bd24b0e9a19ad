//! One test binary for every cross-process test, one module per area.

mod mqtt_harness;
