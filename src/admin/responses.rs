//! The error responses the operations share, for their `#[utoipa::path]` annotations:
//! each set below is a few statuses (`Auth` = 401 + 403, …), so an annotation lists
//! `Auth, BadBody, …` instead of repeating them. Each response is defined once, in the
//! document's `components/responses`, with the JSON error body (`Error`).

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::{ContentBuilder, Header, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};

/// One shared error response: its name in `components/responses`, status, meaning.
struct Shared(&'static str, u16, &'static str);

const BAD_REQUEST: Shared = Shared(
    "BadRequest",
    400,
    "Malformed JSON (`invalid_json`, naming the line and column), a wrong type or a missing or \
     unknown field (naming the field, never the value), or an invalid value",
);
const INVALID: Shared =
    Shared("Invalid", 400, "The operation is not possible on this object (see `description`)");
const UNAUTHORIZED: Shared = Shared(
    "Unauthorized",
    401,
    "No or wrong credentials (`unauthorized`), a locked user (`user_locked`) or an expired password \
     (`password_expired`)",
);
const FORBIDDEN: Shared =
    Shared("Forbidden", 403, "The caller's role does not allow this (`unauthorized_action`)");
const NOT_FOUND: Shared = Shared("NotFound", 404, "No such object (a non-numeric uid included)");
const REFUSED: Shared = Shared(
    "Refused",
    406,
    "The change is refused (RS's \"invalid configuration parameters\"; see `error_code`)",
);
const CONFLICT: Shared =
    Shared("Conflict", 409, "The name, email or uid is taken, or the object is still in use");
const TOO_LARGE: Shared = Shared("TooLarge", 413, "The body is over 64 KiB (`body_too_large`)");
const UNAVAILABLE: Shared =
    Shared("Unavailable", 503, "The change could not be made durable (`store_error`); nothing was applied");

const ALL: [Shared; 9] =
    [BAD_REQUEST, INVALID, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, REFUSED, CONFLICT, TOO_LARGE, UNAVAILABLE];

/// The shared responses, for `components/responses`.
pub fn components() -> impl Iterator<Item = (String, Response)> {
    ALL.into_iter().map(|Shared(name, status, description)| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
        let mut r = ResponseBuilder::new().description(description).content("application/json", content);
        if status == 401 {
            let challenge = Header::new(ObjectBuilder::new().schema_type(Type::String));
            r = r.header("WWW-Authenticate", challenge);
        }
        (name.to_string(), r.build())
    })
}

fn refs(set: &[Shared]) -> BTreeMap<String, RefOr<Response>> {
    set.iter().map(|s| (s.1.to_string(), RefOr::Ref(Ref::from_response_name(s.0)))).collect()
}

macro_rules! response_set {
    ($(#[$doc:meta] $set:ident = [$($shared:ident),+];)+) => {$(
        #[$doc]
        pub struct $set;

        impl IntoResponses for $set {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                refs(&[$($shared),+])
            }
        }
    )+};
}

response_set! {
    /// Every operation needs an authenticated caller whose role allows it.
    Auth = [UNAUTHORIZED, FORBIDDEN];
    /// Operations that read a JSON body.
    BadBody = [BAD_REQUEST, TOO_LARGE];
    /// Operations without a body that can still refuse their target.
    Invalid = [INVALID];
    /// The object named by the path (or the body) does not exist.
    NotFound = [NOT_FOUND];
    /// Refused changes (406).
    Refused = [REFUSED];
    /// Taken names or uids, objects still in use.
    Conflict = [CONFLICT];
    /// Every change is durable before it is acknowledged, or not applied at all.
    Unavailable = [UNAVAILABLE];
}
