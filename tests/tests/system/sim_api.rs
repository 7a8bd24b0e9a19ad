//! Conformance of the simulator's classic API with routeros.md §2: raw words over TCP,
//! checking login flows per version, reply sentences, tags, queries, `!empty` gating, the
//! length codec at every boundary, non-UTF-8 round trips, `listen`/`/cancel` and `/quit`.

use std::sync::Arc;

use easyisp_tests::sim::api::challenge_response;
use easyisp_tests::sim_harness::{RawApi, Sentence, SimOptions, SimProcess, attr};

fn kinds(replies: &[Sentence]) -> Vec<String> {
    replies
        .iter()
        .map(|s| String::from_utf8_lossy(&s[0]).into_owned())
        .collect()
}

async fn sim(version: &str) -> SimProcess {
    SimProcess::start(SimOptions::default().version(version))
        .await
        .expect("simulator starts")
}

#[tokio::test]
async fn plain_login_succeeds_and_fails_with_the_v7_texts() {
    let s = sim("7.16").await;
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let r = api.call(&["/ppp/secret/print"]).await.unwrap();
    assert_eq!(
        kinds(&r),
        ["!trap", "!done"],
        "commands before login are refused"
    );
    let r = api
        .call(&["/login", "=name=admin", "=password=wrong"])
        .await
        .unwrap();
    assert_eq!(kinds(&r), ["!trap", "!done"]);
    assert_eq!(
        attr(&r[0], "message"),
        Some(b"invalid user name or password (6)".as_slice())
    );
    let pw = format!("=password={}", s.options.password);
    let r = api.call(&["/login", "=name=admin", &pw]).await.unwrap();
    assert_eq!(r, vec![vec![b"!done".to_vec()]]);
    // 6.45.1+ has no challenge: a bare /login is refused.
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let r = api.call(&["/login"]).await.unwrap();
    assert_eq!(kinds(&r), ["!trap", "!done"]);
}

#[tokio::test]
async fn pre_6_43_answers_plain_login_with_a_challenge() {
    let s = sim("6.42").await;
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let pw = format!("=password={}", s.options.password);
    let r = api.call(&["/login", "=name=admin", &pw]).await.unwrap();
    assert_eq!(kinds(&r), ["!done"]);
    let challenge = hex::decode(attr(&r[0], "ret").expect("=ret= challenge")).unwrap();
    assert_eq!(challenge.len(), 16);
    let bad = format!("=response={}", challenge_response(b"nope", &challenge));
    let r = api.call(&["/login", "=name=admin", &bad]).await.unwrap();
    assert_eq!(attr(&r[0], "message"), Some(b"cannot log in".as_slice()));
    let r = api.call(&["/login"]).await.unwrap();
    let challenge = hex::decode(attr(&r[0], "ret").unwrap()).unwrap();
    let good = format!(
        "=response={}",
        challenge_response(s.options.password.as_bytes(), &challenge)
    );
    let r = api.call(&["/login", "=name=admin", &good]).await.unwrap();
    assert_eq!(kinds(&r), ["!done"]);
    let r = api.call(&["/system/identity/print"]).await.unwrap();
    assert_eq!(kinds(&r), ["!re", "!done"]);
}

#[tokio::test]
async fn six_44_accepts_both_login_methods() {
    let s = sim("6.44").await;
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let pw = format!("=password={}", s.options.password);
    assert_eq!(
        kinds(&api.call(&["/login", "=name=admin", &pw]).await.unwrap()),
        ["!done"]
    );
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let r = api.call(&["/login"]).await.unwrap();
    assert!(attr(&r[0], "ret").is_some());
}

#[tokio::test]
async fn replies_echo_tags_and_carry_ret_trap_and_category() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    let r = api
        .call(&["/ppp/secret/add", "=name=cust1", "=password=p", ".tag=7"])
        .await
        .unwrap();
    assert_eq!(kinds(&r), ["!done"]);
    assert!(r[0].contains(&b".tag=7".to_vec()));
    let id = attr(&r[0], "ret").unwrap().to_vec();
    assert!(id.starts_with(b"*"));
    let r = api.call(&["/ppp/secret/add", "=name=cust1"]).await.unwrap();
    assert_eq!(kinds(&r), ["!trap", "!done"]);
    assert_eq!(
        attr(&r[0], "message"),
        Some(b"failure: secret with the same name already exists".as_slice())
    );
    let r = api
        .call(&["/ppp/active/remove", "=.id=*80001234"])
        .await
        .unwrap();
    assert_eq!(attr(&r[0], "message"), Some(b"no such item".as_slice()));
    let r = api
        .call(&["/ppp/secret/set", "=numbers=cust1", "=service=telnet"])
        .await
        .unwrap();
    assert_eq!(
        attr(&r[0], "message"),
        Some(b"input does not match any value of service".as_slice())
    );
    assert_eq!(attr(&r[0], "category"), Some(b"1".as_slice()));
    let r = api.call(&["/ppp/nothing/print"]).await.unwrap();
    assert_eq!(kinds(&r), ["!trap", "!done"]);
    // Several commands in flight on one connection, answered with their own tags.
    api.send(&["/system/identity/print", ".tag=a"])
        .await
        .unwrap();
    api.send(&["/system/resource/print", ".tag=b"])
        .await
        .unwrap();
    let mut tags = Vec::new();
    for _ in 0..4 {
        let s = api.read().await.unwrap();
        tags.push((
            s[0].clone(),
            s.iter().find(|w| w.starts_with(b".tag=")).cloned(),
        ));
    }
    assert_eq!(tags.iter().filter(|(k, _)| k == b"!done").count(), 2);
    assert!(tags.iter().all(|(_, t)| t.is_some()));
}

#[tokio::test]
async fn empty_is_sent_only_from_7_18() {
    for (v, expect) in [("7.17", vec!["!done"]), ("7.18", vec!["!empty", "!done"])] {
        let s = sim(v).await;
        let mut api = s.api_login().await.unwrap();
        let r = api
            .call(&["/ppp/secret/print", "?name=nobody"])
            .await
            .unwrap();
        assert_eq!(kinds(&r), expect, "version {v}");
    }
}

#[tokio::test]
async fn queries_proplist_and_id_lists_work_like_routeros() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    for (n, c) in [("a", Some("x")), ("b", None), ("c", Some("y"))] {
        let mut w = vec![format!("/ppp/secret/add"), format!("=name={n}")];
        if let Some(c) = c {
            w.push(format!("=comment={c}"));
        }
        api.call(&w).await.unwrap();
    }
    let names = |r: &[Sentence]| -> Vec<String> {
        r.iter()
            .filter(|s| s[0] == b"!re")
            .map(|s| String::from_utf8_lossy(attr(s, "name").unwrap_or_default()).into_owned())
            .collect()
    };
    let r = api.call(&["/ppp/secret/print", "?name=a"]).await.unwrap();
    assert_eq!(names(&r), ["a"]);
    let r = api.call(&["/ppp/secret/print", "?=name=b"]).await.unwrap();
    assert_eq!(names(&r), ["b"]);
    let r = api
        .call(&["/ppp/secret/print", "?name=a", "?name=c", "?#|"])
        .await
        .unwrap();
    assert_eq!(names(&r), ["a", "c"]);
    let r = api
        .call(&["/ppp/secret/print", "=count-only=", "?>comment="])
        .await
        .unwrap();
    assert_eq!(attr(&r[0], "ret"), Some(b"2".as_slice()));
    let r = api.call(&["/ppp/secret/print", "?-comment"]).await.unwrap();
    assert_eq!(names(&r), ["b"]);
    let r = api
        .call(&["/ppp/secret/print", "?>comment="])
        .await
        .unwrap();
    assert_eq!(names(&r), ["a", "c"]);
    let r = api
        .call(&["/ppp/secret/print", "=.proplist=.id,name", "?name=a"])
        .await
        .unwrap();
    assert_eq!(r[0].len(), 3, "only .id and name: {:?}", r[0]);
    let ids: Vec<Vec<u8>> = api
        .call(&["/ppp/secret/print", "=.proplist=.id"])
        .await
        .unwrap()
        .iter()
        .filter(|s| s[0] == b"!re")
        .map(|s| attr(s, ".id").unwrap().to_vec())
        .collect();
    let list = format!("={}", String::from_utf8_lossy(&ids[..2].join(&b',')));
    let r = api
        .call(&["/ppp/secret/disable", &format!("=numbers{list}")])
        .await
        .unwrap();
    assert_eq!(kinds(&r), ["!done"]);
    let r = api
        .call(&["/ppp/secret/print", "?disabled=true"])
        .await
        .unwrap();
    assert_eq!(names(&r), ["a", "b"]);
    let r = api.call(&["/ppp/secret/remove", "=.id=c"]).await.unwrap();
    assert_eq!(kinds(&r), ["!done"], "names stand in for ids");
}

#[tokio::test]
async fn words_of_every_length_class_round_trip() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    api.call(&["/ppp/secret/add", "=name=long"]).await.unwrap();
    for len in [
        0usize,
        0x7F - 9,
        0x80 - 9,
        0x7F,
        0x80,
        0x3FFF,
        0x4000,
        0x1F_FFFF,
        0x20_0000,
    ] {
        // `=comment=` is 9 bytes, so some lengths put the whole word exactly on a boundary.
        let comment: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let set = [b"=comment=".as_slice(), &comment].concat();
        let r = api
            .call(&[b"/ppp/secret/set".as_slice(), b"=numbers=long", &set])
            .await
            .unwrap();
        assert_eq!(kinds(&r), ["!done"], "len {len:#x}");
        let r = api
            .call(&["/ppp/secret/print", "=.proplist=comment", "?name=long"])
            .await
            .unwrap();
        let got = attr(&r[0], "comment").unwrap_or_default();
        assert_eq!(got.len(), comment.len(), "len {len:#x}");
        assert!(got == comment.as_slice());
    }
}

#[tokio::test]
async fn non_utf8_names_and_comments_survive_the_api() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    let name = b"\xcf\xf0\xe8\xe2\xe5\xf2".to_vec(); // "Привет" in Windows-1251
    let r = api
        .call(&[
            b"/ip/hotspot/user/add".as_slice(),
            &[b"=name=".as_slice(), &name].concat(),
            b"=comment=\x80\xff=x",
        ])
        .await
        .unwrap();
    assert_eq!(kinds(&r), ["!done"]);
    let r = api
        .call(&[
            b"/ip/hotspot/user/print".as_slice(),
            &[b"?name=".as_slice(), &name].concat(),
        ])
        .await
        .unwrap();
    assert_eq!(attr(&r[0], "name"), Some(name.as_slice()));
    assert_eq!(attr(&r[0], "comment"), Some(b"\x80\xff=x".as_slice()));
}

#[tokio::test]
async fn quit_ends_with_a_fatal_reason_word() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    let r = api.call(&["/quit"]).await.unwrap();
    assert_eq!(
        r,
        vec![vec![
            b"!fatal".to_vec(),
            b"session terminated on request".to_vec()
        ]]
    );
    assert!(api.read().await.is_err(), "connection closed");
}

#[tokio::test]
async fn listen_streams_changes_until_cancel() {
    let s = sim("7.16").await;
    let mut api = s.api_login().await.unwrap();
    api.send(&["/ppp/secret/listen", ".tag=l"]).await.unwrap();
    // Sentences are handled in order: once this answers, the listen is in place.
    let identity = api.call(&["/system/identity/print"]).await.unwrap();
    assert_eq!(identity.last().unwrap()[0], b"!done");
    s.control
        .add("ppp/secret", serde_json::json!({"name":"new"}))
        .await
        .unwrap();
    let row = api.read().await.unwrap();
    assert_eq!(row[0], b"!re");
    assert_eq!(attr(&row, "name"), Some(b"new".as_slice()));
    s.control.remove("ppp/secret", "new").await.unwrap();
    let row = api.read().await.unwrap();
    assert_eq!(attr(&row, ".dead"), Some(b"yes".as_slice()));
    api.send(&["/cancel", "=tag=l", ".tag=c"]).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let s = api.read().await.unwrap();
        got.push((
            String::from_utf8_lossy(&s[0]).into_owned(),
            attr(&s, "message").map(<[u8]>::to_vec),
        ));
    }
    assert!(
        got.contains(&("!trap".into(), Some(b"interrupted".to_vec()))),
        "{got:?}"
    );
    assert_eq!(got.iter().filter(|(k, _)| k == "!done").count(), 2);
}

#[tokio::test]
async fn api_ssl_speaks_the_same_protocol_over_tls() {
    let s = sim("7.16").await;
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AcceptAny))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.ports.api_ssl))
        .await
        .unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let pw = format!("=password={}", s.options.password);
    easyisp_tests::sim::wire::write_sentence(&mut tls, &["/login", "=name=admin", &pw])
        .await
        .unwrap();
    let r = easyisp_tests::sim::wire::read_sentence(&mut tls)
        .await
        .unwrap();
    assert_eq!(r, vec![b"!done".to_vec()]);
}

#[tokio::test]
async fn too_many_commands_before_login_are_fatal() {
    let s = sim("7.16").await;
    let mut api = RawApi::connect(s.ports.api).await.unwrap();
    let mut last = Vec::new();
    for _ in 0..20 {
        match api.call(&["/system/identity/print"]).await {
            Ok(r) => last = kinds(&r),
            Err(_) => break,
        }
        if last == ["!fatal"] {
            break;
        }
    }
    assert_eq!(last, ["!fatal"]);
}

#[derive(Debug)]
struct AcceptAny;

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &[tokio_rustls::rustls::pki_types::CertificateDer<'_>],
        _: &tokio_rustls::rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: tokio_rustls::rustls::pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &tokio_rustls::rustls::pki_types::CertificateDer<'_>,
        _: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        Ok(tokio_rustls::rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
