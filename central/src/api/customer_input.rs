//! Customer request bodies and their validation (every rule of the protocol crate's
//! `validate`), turned into storage's `NewCustomer` / `CustomerPatch`. Missing required
//! fields are validation errors naming the field, not serde errors.

use super::error::ApiError;
use super::extract::nullable;
use crate::storage::{CustomerPatch, NewCustomer};
use chrono::{DateTime, Utc};
use easyisp_protocol::customer::Degrees;
use easyisp_protocol::validate::{self, LONG_TEXT_MAX, TEXT_MAX};
use easyisp_protocol::{ConnectionType, Secret};
use serde::Deserialize;
use uuid::Uuid;

const SHORT_TEXT_MAX: usize = 50;
const MAX_LIST: usize = 20;

/// The seed's create body plus our additive fields. `password` deserialises into a `Secret`,
/// so `Debug` never shows it.
#[derive(schemars::JsonSchema, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomerBody {
    username: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>")]
    password: Option<Secret<String>>,
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    phone: Option<Option<String>>,
    connection_type: Option<ConnectionType>,
    #[serde(default, deserialize_with = "nullable")]
    package_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "nullable")]
    nas_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "nullable")]
    location: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    latitude: Option<Option<Degrees>>,
    #[serde(default, deserialize_with = "nullable")]
    longitude: Option<Option<Degrees>>,
    #[serde(default, deserialize_with = "nullable")]
    apartment_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    house_number: Option<Option<String>>,
    suspended: Option<bool>,
    disabled: Option<bool>,
    auto_renew: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    static_ip: Option<Option<String>>,
    mac_bindings: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Secret<String>>, D::Error> {
    Option::<String>::deserialize(de).map(|o| o.map(Secret::new))
}

/// Empty or blank optional text counts as absent (null).
fn blank_is_none(value: Option<Option<String>>) -> Option<Option<String>> {
    value.map(|v| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

struct Checked {
    email: Option<Option<String>>,
    phone: Option<Option<String>>,
    location: Option<Option<String>>,
    apartment_number: Option<Option<String>>,
    house_number: Option<Option<String>>,
    static_ip: Option<Option<String>>,
    mac_bindings: Option<Vec<String>>,
    tags: Option<Vec<String>>,
}

/// Validates and normalises the optional fields shared by create and update.
fn check_common(body: &mut CustomerBody, calling_code: Option<&str>) -> Result<Checked, ApiError> {
    if let Some(name) = &body.name {
        validate::required_text("name", name, TEXT_MAX)?;
    }
    let email = match blank_is_none(body.email.take()) {
        Some(Some(e)) => Some(Some(validate::email(&e)?)),
        other => other,
    };
    let phone = match blank_is_none(body.phone.take()) {
        Some(Some(p)) => Some(Some(validate::phone(&p, calling_code)?)),
        other => other,
    };
    let location = blank_is_none(body.location.take());
    if let Some(Some(l)) = &location {
        validate::text("location", l, LONG_TEXT_MAX)?;
    }
    let apartment_number = blank_is_none(body.apartment_number.take());
    if let Some(Some(a)) = &apartment_number {
        validate::text("apartmentNumber", a, SHORT_TEXT_MAX)?;
    }
    let house_number = blank_is_none(body.house_number.take());
    if let Some(Some(h)) = &house_number {
        validate::text("houseNumber", h, SHORT_TEXT_MAX)?;
    }
    if let Some(Some(lat)) = body.latitude {
        validate::latitude(lat)?;
    }
    if let Some(Some(lon)) = body.longitude {
        validate::longitude(lon)?;
    }
    let static_ip = blank_is_none(body.static_ip.take());
    if let Some(Some(ip)) = &static_ip {
        validate::ipv4("staticIp", ip)?;
    }
    let mac_bindings = match body.mac_bindings.take() {
        Some(list) => {
            if list.len() > MAX_LIST {
                return Err(ApiError::field(
                    "macBindings",
                    format!("at most {MAX_LIST} MAC addresses"),
                ));
            }
            Some(
                list.iter()
                    .map(|m| validate::mac("macBindings", m.trim()))
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        None => None,
    };
    let tags = match body.tags.take() {
        Some(list) => {
            if list.len() > MAX_LIST {
                return Err(ApiError::field("tags", format!("at most {MAX_LIST} tags")));
            }
            for tag in &list {
                validate::required_text("tags", tag, SHORT_TEXT_MAX)?;
            }
            Some(list.into_iter().map(|t| t.trim().to_string()).collect())
        }
        None => None,
    };
    Ok(Checked {
        email,
        phone,
        location,
        apartment_number,
        house_number,
        static_ip,
        mac_bindings,
        tags,
    })
}

impl CustomerBody {
    pub fn into_new(mut self, calling_code: Option<&str>) -> Result<NewCustomer, ApiError> {
        let username = self.username.take().unwrap_or_default();
        validate::username(&username)?;
        let password = self.password.take().unwrap_or_default();
        validate::customer_password(password.expose(), &username)?;
        let name = self
            .name
            .clone()
            .ok_or_else(|| ApiError::field("name", "name is required"))?;
        if self.suspended == Some(true) {
            return Err(ApiError::field(
                "suspended",
                "create the customer, then suspend it",
            ));
        }
        let c = check_common(&mut self, calling_code)?;
        Ok(NewCustomer {
            username,
            password,
            name: name.trim().to_string(),
            email: c.email.flatten(),
            phone: c.phone.flatten(),
            connection_type: self.connection_type.unwrap_or(ConnectionType::Pppoe),
            package_id: self.package_id.flatten(),
            router_id: self.nas_id.flatten(),
            expires_at: self.expires_at.flatten(),
            location: c.location.flatten(),
            latitude: self.latitude.flatten(),
            longitude: self.longitude.flatten(),
            apartment_number: c.apartment_number.flatten(),
            house_number: c.house_number.flatten(),
            disabled: self.disabled.unwrap_or(false),
            auto_renew: self.auto_renew.unwrap_or(false),
            static_ip: c.static_ip.flatten(),
            mac_bindings: c.mac_bindings.unwrap_or_default(),
            tags: c.tags.unwrap_or_default(),
        })
    }

    /// `current_username` is needed to check a new password against the (possibly new) name.
    pub fn into_patch(
        mut self,
        calling_code: Option<&str>,
        current_username: &str,
    ) -> Result<CustomerPatch, ApiError> {
        if let Some(username) = &self.username {
            validate::username(username)?;
        }
        if let Some(password) = &self.password {
            let username = self.username.as_deref().unwrap_or(current_username);
            validate::customer_password(password.expose(), username)?;
        }
        let c = check_common(&mut self, calling_code)?;
        Ok(CustomerPatch {
            username: self.username,
            password: self.password,
            name: self.name.map(|n| n.trim().to_string()),
            email: c.email,
            phone: c.phone,
            connection_type: self.connection_type,
            package_id: self.package_id,
            router_id: self.nas_id,
            expires_at: self.expires_at,
            location: c.location,
            latitude: self.latitude,
            longitude: self.longitude,
            apartment_number: c.apartment_number,
            house_number: c.house_number,
            suspended: self.suspended,
            disabled: self.disabled,
            auto_renew: self.auto_renew,
            static_ip: c.static_ip,
            mac_bindings: c.mac_bindings,
            tags: c.tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_body_never_shows_the_password() {
        let body: CustomerBody = serde_json::from_str(
            r#"{"username":"alice","password":"Zebra-Lamp-42","name":"Alice"}"#,
        )
        .unwrap();
        assert!(!format!("{body:?}").contains("Zebra"));
    }

    #[test]
    fn missing_required_fields_name_the_field() {
        let body: CustomerBody =
            serde_json::from_str(r#"{"password":"Zebra-Lamp-42","name":"A"}"#).unwrap();
        match body.into_new(None) {
            Err(ApiError::Validation { field, .. }) => {
                assert_eq!(field.as_deref(), Some("username"))
            }
            other => panic!("{other:?}"),
        }
    }
}
