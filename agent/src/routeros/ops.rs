//! Generic typed operations behind the [`Router`] trait's default methods: list, find, create,
//! update and remove for any [`RouterObject`], with re-resolution by key when an `.id` vanished.
//! Transport-agnostic: only the raw primitives are used.

use tracing::{info, warn};

use super::Router;
use super::error::{Result, RouterError};
use super::objects::{ObjectSpec, RouterObject, key_label};
use super::value::{Id, Row, Text};

/// Reads a singleton menu (`/system/identity`); REST may answer an object or a one-row array.
pub(crate) async fn singleton<R: Router + ?Sized>(
    r: &R,
    menu: &str,
    proplist: &[&str],
) -> Result<Row> {
    r.print(menu, &[], proplist)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| RouterError::Protocol(format!("{menu} returned no row")))
}

pub(crate) async fn list<O: RouterObject, R: Router + ?Sized>(r: &R) -> Result<Vec<O>> {
    find(r, &[]).await
}

/// The objects matching `key`, parsed as their rows arrive (see [`Router::print_each`]).
pub(crate) async fn find<O: RouterObject, R: Router + ?Sized>(
    r: &R,
    key: &[(&str, Text)],
) -> Result<Vec<O>> {
    let mut out = Vec::new();
    each(r, key, |o| out.push(o)).await?;
    // A listing is kept for a whole pass: give back what doubling the vector left unused.
    out.shrink_to_fit();
    Ok(out)
}

/// Hands each object of menu `O` matching `key` to `visit` as its row arrives, without
/// keeping the listing (a row that cannot be parsed is logged and skipped).
pub(crate) async fn each<O: RouterObject, R: Router + ?Sized>(
    r: &R,
    key: &[(&str, Text)],
    mut visit: impl FnMut(O) + Send,
) -> Result<()> {
    r.print_each(O::MENU, key, O::PROPLIST, &mut |row| match O::from_row(&row) {
        Ok(o) => visit(o),
        // One odd row (a value format we do not know) must not hide all the others.
        Err(e) => {
            warn!(kind = O::KIND, error = %e, "skipping a row the router sent that we cannot parse")
        }
    })
    .await
}

pub(crate) async fn find_one<O: RouterObject, R: Router + ?Sized>(
    r: &R,
    key: &[(&str, Text)],
) -> Result<Option<O>> {
    Ok(find(r, key).await?.into_iter().next())
}

pub(crate) async fn create<S: ObjectSpec, R: Router + ?Sized>(r: &R, spec: &S) -> Result<Id> {
    let id = r.add(S::Object::MENU, &spec.attrs()).await?;
    info!(router = %r.describe(), kind = S::Object::KIND, key = %key_label(&spec.key()), id = %id, "created");
    Ok(id)
}

pub(crate) async fn update<S: ObjectSpec, R: Router + ?Sized>(
    r: &R,
    id: &Id,
    spec: &S,
) -> Result<Id> {
    // Key fields are not rewritten: the object is found by them, so they are unchanged, and
    // re-sending a name read from the router could alter bytes some transports cannot carry
    // (REST JSON and non-UTF-8 names). A rename is a remove and a create.
    let key_names: Vec<&str> = spec.key().iter().map(|(k, _)| *k).collect();
    let attrs: Vec<(&str, Text)> = spec
        .attrs()
        .into_iter()
        .filter(|(k, _)| !key_names.contains(k))
        .collect();
    let id = match r.set(S::Object::MENU, id, &attrs).await {
        Ok(()) => id.clone(),
        Err(RouterError::NotFound(_)) => {
            // Ids change on reboot (§7.8): find the object again by its key.
            let key = spec.key();
            let found = r.print(S::Object::MENU, &key, &[".id"]).await?;
            let Some(row) = found.first() else {
                return Err(RouterError::NotFound(format!(
                    "{} {}",
                    S::Object::KIND,
                    key_label(&key)
                )));
            };
            let new_id = row.id()?;
            info!(kind = S::Object::KIND, key = %key_label(&key), old_id = %id, new_id = %new_id, "id vanished; re-resolved by key");
            r.set(S::Object::MENU, &new_id, &attrs).await?;
            new_id
        }
        Err(e) => return Err(e),
    };
    info!(router = %r.describe(), kind = S::Object::KIND, key = %key_label(&spec.key()), id = %id, "updated");
    Ok(id)
}

pub(crate) async fn remove_object<O: RouterObject, R: Router + ?Sized>(
    r: &R,
    obj: &O,
) -> Result<()> {
    match r.remove(O::MENU, obj.id()).await {
        Ok(()) => {}
        Err(RouterError::NotFound(_)) => {
            let key = obj.key();
            let found = r.print(O::MENU, &key, &[".id"]).await?;
            for row in &found {
                match r.remove(O::MENU, &row.id()?).await {
                    Ok(()) | Err(RouterError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(e) => return Err(e),
    }
    info!(router = %r.describe(), kind = O::KIND, key = %key_label(&obj.key()), id = %obj.id(), "removed");
    Ok(())
}

pub(crate) async fn remove_session<R: Router + ?Sized>(r: &R, menu: &str, id: &Id) -> Result<()> {
    match r.remove(menu, id).await {
        Ok(()) => {
            info!(router = %r.describe(), menu, id = %id, "removed active session");
            Ok(())
        }
        // The session ended between our print and remove (§7.5): that is what we wanted.
        Err(RouterError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use easyisp_protocol::Secret;

    use super::*;
    use crate::routeros::objects::PppSecretSpec;

    /// An in-memory `/ppp/secret` whose ids can be renumbered, recording every call.
    #[derive(Default)]
    struct Fake {
        rows: Mutex<Vec<Row>>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn renumber(&self) {
            for (i, r) in self.rows.lock().unwrap().iter_mut().enumerate() {
                r.insert(".id", format!("*{:X}", 0x100 + i));
            }
        }
        fn position(&self, id: &Id) -> Option<usize> {
            self.rows
                .lock()
                .unwrap()
                .iter()
                .position(|r| r.text(".id") == id.as_str())
        }
    }

    #[async_trait]
    impl Router for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        async fn print(&self, _: &str, q: &[(&str, Text)], _: &[&str]) -> Result<Vec<Row>> {
            self.calls.lock().unwrap().push("print".into());
            let rows = self.rows.lock().unwrap();
            Ok(rows
                .iter()
                .filter(|r| q.iter().all(|(k, v)| r.get(k) == Some(v)))
                .cloned()
                .collect())
        }
        async fn add(&self, _: &str, attrs: &[(&str, Text)]) -> Result<Id> {
            self.calls.lock().unwrap().push("add".into());
            let mut rows = self.rows.lock().unwrap();
            let mut row = Row::default();
            for (k, v) in attrs {
                row.insert(*k, v.clone());
            }
            let id = format!("*{:X}", rows.len() + 1);
            row.insert(".id", id.as_str());
            rows.push(row);
            Ok(Id(id))
        }
        async fn set(&self, _: &str, id: &Id, attrs: &[(&str, Text)]) -> Result<()> {
            self.calls.lock().unwrap().push(format!("set {id}"));
            let i = self
                .position(id)
                .ok_or_else(|| RouterError::NotFound("no such item".into()))?;
            let mut rows = self.rows.lock().unwrap();
            for (k, v) in attrs {
                rows[i].insert(*k, v.clone());
            }
            Ok(())
        }
        async fn remove(&self, _: &str, id: &Id) -> Result<()> {
            self.calls.lock().unwrap().push(format!("remove {id}"));
            let i = self
                .position(id)
                .ok_or_else(|| RouterError::NotFound("no such item".into()))?;
            self.rows.lock().unwrap().remove(i);
            Ok(())
        }
        async fn command(&self, _: &str, _: &str, _: &[(&str, Text)]) -> Result<Vec<Row>> {
            Ok(Vec::new())
        }
    }

    fn spec(profile: &str) -> PppSecretSpec {
        PppSecretSpec {
            name: "alice".into(),
            password: Secret::new("hunter2-secret".into()),
            service: "pppoe".into(),
            profile: profile.into(),
            disabled: false,
            comment: Some("easyisp:1".into()),
            local_address: None,
            remote_address: None,
            caller_id: None,
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn vanished_id_is_re_resolved_by_name_and_nothing_logs_the_password() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let fake = Fake::default();
        let id = fake.create_ppp_secret(&spec("10M")).await.unwrap();
        fake.renumber(); // a reboot
        let new_id = fake.update_ppp_secret(&id, &spec("20M")).await.unwrap();
        assert_ne!(new_id, id);
        let s = fake
            .find_ppp_secret(&"alice".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.profile, "20M");
        assert_eq!(s.id, new_id);
        // The name is the key: an update never rewrites it.
        assert!(
            fake.calls
                .lock()
                .unwrap()
                .iter()
                .any(|c| c == &format!("set {new_id}"))
        );

        fake.renumber();
        fake.remove_ppp_secret(&s).await.unwrap();
        assert!(fake.ppp_secrets().await.unwrap().is_empty());
        // Already gone: still success.
        fake.remove_ppp_secret(&s).await.unwrap();
        // Updating what does not exist at all is NotFound.
        let e = fake.update_ppp_secret(&id, &spec("10M")).await.unwrap_err();
        assert!(matches!(e, RouterError::NotFound(_)), "{e:?}");

        let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("alice"), "{logs}");
        assert!(
            !logs.contains("hunter2"),
            "a password reached the log: {logs}"
        );
    }

    #[tokio::test]
    async fn removing_a_vanished_session_is_success() {
        let fake = Fake::default();
        fake.remove_ppp_session(&Id::from("*80000001"))
            .await
            .unwrap();
        let other = remove_session(&Fake::default(), "/ppp/active", &Id::from("*1")).await;
        assert!(other.is_ok());
    }

    #[tokio::test]
    async fn cancellation_token_stops_a_call() {
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let r: Result<()> =
            crate::routeros::cancellable(&token, std::future::pending::<Result<()>>()).await;
        assert!(matches!(r, Err(RouterError::Cancelled)));
    }
}
