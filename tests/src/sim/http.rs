//! Minimal HTTP/1.1 serving on top of hyper for the REST and control servers: collect the
//! request body, call a handler, write its response. Keep-alive is on, as on RouterOS.

use std::future::Future;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

pub type Body = Full<Bytes>;

/// A request with its whole body read.
#[derive(Debug)]
pub struct HttpRequest {
    pub method: hyper::Method,
    pub uri: hyper::Uri,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

pub fn response(status: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

pub fn json_response(status: u16, body: Vec<u8>) -> Response<Body> {
    response(status, "application/json", body)
}

/// Serves one connection until the client closes it.
pub async fn serve<S, H, Fut>(io: S, handler: H)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(HttpRequest) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(e) => return Err(e),
            };
            let r = handler(HttpRequest {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
            })
            .await;
            Ok::<_, hyper::Error>(r)
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await
    {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

/// Decodes `%XX` and `+` in a query-string component into raw bytes.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let plus: String = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).collect()
}
