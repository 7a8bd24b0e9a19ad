#[path = "../../tests/tests/system/central_api/mod.rs"]
mod central_api;
