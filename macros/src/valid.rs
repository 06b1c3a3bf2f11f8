//! Every semantic check of a handler: subject, options, signature. Errors are
//! collected in the `Ctxt`, each on the token it is about.

use std::time::Duration;

use jetwire_grammar::{duration, name, options, subject};
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, FnArg, Lit, LitStr, Type};

use crate::ast::{ArgShape, Handler};
use crate::attr::{Args, Kind, Opt};
use crate::ctxt::Ctxt;
use crate::keys::Key;

/// Where a new durable starts reading (`deliver = ..`).
pub(crate) use jetwire_grammar::deliver::Start as Deliver;

/// The options as the runtime will get them; `None` means the default.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<Duration>>,
    pub(crate) ack_wait: Option<Duration>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deliver: Option<Deliver>,
    pub(crate) durable: Option<String>,
    pub(crate) stream: Option<String>,
    pub(crate) output: Option<String>,
    /// `output` was written, valid or not: the return type is then checked
    /// for a value to publish, never for having one.
    pub(crate) output_given: bool,
    pub(crate) singleton: Option<bool>,
    pub(crate) partitions: Option<u32>,
    pub(crate) ack: Option<options::Ack>,
    pub(crate) bind: Option<bool>,
}

use options::{MAX_CONCURRENCY, MAX_MAX_DELIVER, MAX_PARTITIONS};

/// The subject rules a handler's subject follows: an event's, a work
/// queue's, a work queue's on a stream the operator made (`stream = ".."`,
/// any namespace), or those of a handler of dead letters (a `DeadLetter`
/// payload, `dlq.` subjects). A `DeadLetter` payload on `#[queue]` is an
/// error at the type.
pub(crate) fn usage(
    cx: &Ctxt,
    kind: Kind,
    handler: &Handler<'_>,
    on_stream: bool,
) -> subject::Usage {
    let dead_letters = handler.payload.is_some_and(|p| is_dead_letter(&p.ty));
    match (kind, dead_letters, on_stream) {
        (Kind::Subscribe, true, _) => subject::Usage::DeadLetters,
        (Kind::Subscribe, false, _) => subject::Usage::Subscribe,
        (Kind::Queue, true, _) => {
            if let Some(p) = handler.payload {
                cx.error_spanned_by(
                    &p.ty,
                    "dead letters are read with #[subscribe(\"dlq.>\")], not #[queue]: every letter stays in the dead-letter stream for operators, and a dead-letter handler only watches it",
                );
            }
            subject::Usage::Queue
        }
        (Kind::Queue, false, false) => subject::Usage::Queue,
        (Kind::Queue, false, true) => subject::Usage::QueueOnStream,
    }
}

/// Whether `ty` names `DeadLetter` (`jetwire::dlq::DeadLetter`, or imported).
fn is_dead_letter(ty: &syn::Type) -> bool {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "DeadLetter"),
        _ => false,
    }
}

/// Checks the subject against the grammar and the rules of `usage`, a
/// `{group}` token allowed.
pub(crate) fn subject(cx: &Ctxt, lit: &LitStr, usage: subject::Usage) -> Option<String> {
    let value = lit.value();
    match options::handler_subject(&value, usage) {
        Ok(()) => Some(value),
        Err(mistake) => {
            crate::spans::error_in_literal(cx, lit, mistake.location, &mistake.message);
            None
        }
    }
}

/// Checks every option: known key, not repeated, applies to `kind`, value of
/// the right type and range; then the rules between options.
pub(crate) fn options(cx: &Ctxt, kind: Kind, args: &Args) -> Options {
    let mut out = Options::default();
    let mut seen: Vec<Key> = Vec::new();
    let mut backoff_expr: Option<&Expr> = None;
    let mut max_deliver_given = false;

    for Opt { key, value } in &args.options {
        let name = key.to_string();
        let Some(known) = Key::named(&name) else {
            cx.error_spanned_by(key, unknown_option(&name, kind));
            continue;
        };
        if known.only().is_some_and(|k| k != kind) {
            cx.error_spanned_by(key, not_for_queue(known));
            continue;
        }
        if seen.contains(&known) {
            cx.error_spanned_by(key, format!("option `{name}` is given twice: keep one"));
            continue;
        }
        seen.push(known);
        match known {
            Key::MaxDeliver => {
                max_deliver_given = true;
                out.max_deliver = int(cx, &name, value, MAX_MAX_DELIVER, "5");
            }
            Key::Concurrency => {
                out.concurrency = int(cx, &name, value, MAX_CONCURRENCY, "8");
            }
            Key::AckWait => out.ack_wait = positive_duration(cx, &name, value, "30s"),
            Key::Timeout => out.timeout = positive_duration(cx, &name, value, "10s"),
            Key::Backoff => {
                backoff_expr = Some(value);
                out.backoff = backoff(cx, value);
            }
            Key::Deliver => {
                out.deliver = string(cx, &name, value, "\"new\"").and_then(|lit| {
                    jetwire_grammar::deliver::parse(&lit.value())
                        .map_err(|message| cx.error_spanned_by(&lit, message))
                        .ok()
                });
            }
            Key::Durable => out.durable = checked_name(cx, &name, value, name::Kind::Durable),
            Key::Stream => out.stream = checked_name(cx, &name, value, name::Kind::Stream),
            Key::Singleton => out.singleton = boolean(cx, &name, value),
            Key::Partitions => {
                out.partitions = int(cx, &name, value, MAX_PARTITIONS, "8");
            }
            Key::Output => {
                out.output_given = true;
                out.output = output_subject(cx, &name, value);
            }
            Key::Bind => out.bind = boolean(cx, &name, value),
            Key::Ack => {
                out.ack = string(cx, &name, value, "\"first\"").and_then(|lit| {
                    options::ack(&lit.value())
                        .map_err(|message| cx.error_spanned_by(&lit, message))
                        .ok()
                });
            }
        }
    }
    // `ack = "first"` runs a message once: nothing to redeliver or publish first.
    if out.ack == Some(options::Ack::First) {
        for opt in &args.options {
            let key = opt.key.to_string();
            if matches!(key.as_str(), "max_deliver" | "backoff" | "output") {
                cx.error_spanned_by(&opt.key, options::with_ack_first(&key));
            }
        }
    }

    // `backoff` has one delay per redelivery: at most `max_deliver - 1`.
    if let (Some(list), Some(expr)) = (&out.backoff, backoff_expr) {
        let max_deliver = out.max_deliver.filter(|_| max_deliver_given);
        if let Err(message) = options::backoff_fits(list.len(), max_deliver) {
            cx.error_spanned_by(expr, message);
        }
    }
    out
}

fn unknown_option(name: &str, kind: Kind) -> String {
    let known: Vec<&str> = Key::of(kind).map(Key::name).collect();
    let list = known
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let close = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 3)
        .min();
    match close {
        Some((_, k)) => {
            format!("unknown option `{name}`: did you mean `{k}`? expected one of {list}")
        }
        None => format!("unknown option `{name}`; expected one of {list}"),
    }
}

fn not_for_queue(key: Key) -> String {
    options::not_for_queue(key.name())
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn lit(value: &Expr) -> Option<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Some(lit),
        Expr::Group(g) => lit(&g.expr),
        _ => None,
    }
}

fn int(cx: &Ctxt, name: &str, value: &Expr, max: u32, example: &str) -> Option<u32> {
    let wrong = || options::whole_number(name, max, example);
    if let Expr::Unary(unary) = value
        && matches!(unary.op, syn::UnOp::Neg(_))
    {
        cx.error_spanned_by(value, wrong());
        return None;
    }
    let Some(Lit::Int(int)) = lit(value) else {
        cx.error_spanned_by(value, wrong());
        return None;
    };
    let parsed = int.base10_parse::<u64>().map_err(|_| wrong());
    match parsed.and_then(|n| options::in_range(name, n, max, example)) {
        Ok(n) => Some(n),
        Err(message) => {
            cx.error_spanned_by(int, message);
            None
        }
    }
}

fn string(cx: &Ctxt, name: &str, value: &Expr, example: &str) -> Option<LitStr> {
    match lit(value) {
        Some(Lit::Str(s)) => Some(s.clone()),
        _ => {
            cx.error_spanned_by(
                value,
                format!("`{name}` takes a string, e.g. `{name} = {example}`"),
            );
            None
        }
    }
}

fn parse_duration(cx: &Ctxt, lit: &LitStr) -> Option<Duration> {
    match duration::parse(&lit.value()) {
        Ok(d) => Some(d),
        Err(err) => {
            cx.error_spanned_by(lit, err);
            None
        }
    }
}

fn positive_duration(cx: &Ctxt, name: &str, value: &Expr, example: &str) -> Option<Duration> {
    let lit = string(cx, name, value, &format!("\"{example}\""))?;
    let d = parse_duration(cx, &lit)?;
    if d.is_zero() {
        cx.error_spanned_by(&lit, options::zero_duration(name, example));
        return None;
    }
    Some(d)
}

fn backoff(cx: &Ctxt, value: &Expr) -> Option<Vec<Duration>> {
    let Expr::Array(ExprArray { elems, .. }) = value else {
        let hint = match lit(value) {
            Some(Lit::Str(s)) => format!("[{:?}]", s.value()),
            _ => "[\"1s\", \"5s\", \"30s\"]".to_owned(),
        };
        cx.error_spanned_by(
            value,
            format!("`backoff` takes a list of durations: `backoff = {hint}`"),
        );
        return None;
    };
    if elems.is_empty() {
        cx.error_spanned_by(value, options::EMPTY_BACKOFF);
        return None;
    }
    let mut out = Vec::with_capacity(elems.len());
    let mut ok = true;
    for elem in elems {
        match lit(elem) {
            Some(Lit::Str(s)) => match parse_duration(cx, s) {
                Some(d) => out.push(d),
                None => ok = false,
            },
            _ => {
                cx.error_spanned_by(
                    elem,
                    "each `backoff` delay is a duration string, e.g. \"5s\"",
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn checked_name(cx: &Ctxt, key: &str, value: &Expr, kind: name::Kind) -> Option<String> {
    let example = match kind {
        name::Kind::Stream => "\"ORDERS\"",
        name::Kind::Durable => "\"billing-orders\"",
    };
    let lit = string(cx, key, value, example)?;
    match name::check(&lit.value(), kind) {
        Ok(()) => Some(lit.value()),
        Err(err) => {
            cx.error_spanned_by(&lit, err);
            None
        }
    }
}

fn boolean(cx: &Ctxt, name: &str, value: &Expr) -> Option<bool> {
    match lit(value) {
        Some(Lit::Bool(b)) => Some(b.value),
        _ => {
            cx.error_spanned_by(
                value,
                format!("`{name}` takes `true` or `false`, e.g. `{name} = true`"),
            );
            None
        }
    }
}

/// The subject an `output` goes to: one a handler may publish to.
fn output_subject(cx: &Ctxt, key: &str, value: &Expr) -> Option<String> {
    let lit = string(cx, key, value, "\"images.resized\"")?;
    let value = lit.value();
    match options::output_subject(&value) {
        Ok(()) => Some(value),
        Err(mistake) => {
            crate::spans::error_in_literal(cx, &lit, mistake.location, &mistake.message);
            None
        }
    }
}

/// Checks the fn's signature: async, free, not generic, a payload first,
/// `Context` and `State<T>` after it.
pub(crate) fn signature(cx: &Ctxt, kind: Kind, handler: &Handler<'_>) {
    let sig = &handler.func.sig;
    let name = handler.name();
    let attr = kind.attr_name();
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!("#[{attr}] handlers must be async: write `async fn {name}`"),
        );
    }
    if let Some(token) = &sig.constness {
        cx.error_spanned_by(token, "a handler cannot be `const`: remove `const`");
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        cx.error_spanned_by(
            token,
            "a handler cannot be `unsafe`: remove `unsafe` and keep the unsafe block inside the body",
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(abi, "a handler cannot have an ABI: remove the `extern`");
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "a handler cannot be generic: jetwire must know the payload type to decode it; use concrete types",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        cx.error_spanned_by(
            where_clause,
            "a handler cannot have a `where` clause: use concrete types",
        );
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "a handler cannot be variadic: remove the `...`");
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => cx.error_spanned_by(
                receiver,
                "a handler is a free fn: move it out of the `impl` block and drop `self`; share data through `State<T>`",
            ),
            FnArg::Typed(pat) => {
                if contains_impl_trait(&pat.ty) {
                    cx.error_spanned_by(
                        &pat.ty,
                        "a handler cannot take `impl Trait`: jetwire must know the concrete type; name it",
                    );
                }
            }
        }
    }
    match handler.payload {
        None => {
            if !sig.inputs.iter().any(|a| matches!(a, FnArg::Receiver(_))) {
                let span = sig.paren_token.span.join();
                cx.error_at(
                    span,
                    format!(
                        "a handler takes the payload as its first parameter: write e.g. `async fn {name}(order: OrderCreated)`; use `jetwire::Raw` for the bytes as they came"
                    ),
                );
            }
        }
        Some(payload) => match ArgShape::of(&payload.ty) {
            ArgShape::Other => {
                if let Type::Reference(r) = &*payload.ty {
                    let owned = match &*r.elem {
                        Type::Path(p) if p.path.is_ident("str") => "`String`",
                        Type::Slice(_) => "`Vec<T>`, or `jetwire::Raw` for bytes",
                        _ => "the owned type",
                    };
                    cx.error_spanned_by(
                        &payload.ty,
                        format!(
                            "the payload is decoded into a value the handler owns, so it cannot be borrowed: use {owned}"
                        ),
                    );
                }
            }
            shape => {
                let what = if shape == ArgShape::Context {
                    "`Context`"
                } else {
                    "`State<T>`"
                };
                cx.error_spanned_by(
                    &payload.ty,
                    format!(
                        "the first parameter is the payload (a `Deserialize` type, or `jetwire::Raw`); {what} goes after it: write `async fn {name}(msg: MyEvent, ..)`"
                    ),
                );
            }
        },
    }
    if let Some(output) = handler.output
        && contains_impl_trait(output)
    {
        cx.error_spanned_by(
            output,
            "a handler returns `Result<(), E>` with `E: Into<HandlerError>`, or `()`; not `impl Trait`",
        );
    }
}

fn contains_impl_trait(ty: &Type) -> bool {
    match ty {
        Type::ImplTrait(_) => true,
        Type::Reference(r) => contains_impl_trait(&r.elem),
        Type::Paren(p) => contains_impl_trait(&p.elem),
        Type::Group(g) => contains_impl_trait(&g.elem),
        Type::Tuple(t) => t.elems.iter().any(contains_impl_trait),
        Type::Slice(s) => contains_impl_trait(&s.elem),
        Type::Array(a) => contains_impl_trait(&a.elem),
        Type::Path(p) => p.path.segments.iter().any(|seg| match &seg.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().any(|a| match a {
                syn::GenericArgument::Type(t) => contains_impl_trait(t),
                _ => false,
            }),
            _ => false,
        }),
        _ => false,
    }
}

/// Where an item that is not a fn gets its error.
pub(crate) fn not_a_fn(item: &syn::Item, kind: Kind) -> syn::Error {
    let span = match item {
        syn::Item::Struct(s) => s.struct_token.span(),
        syn::Item::Enum(e) => e.enum_token.span(),
        syn::Item::Mod(m) => m.mod_token.span(),
        syn::Item::Impl(i) => i.impl_token.span(),
        syn::Item::Static(s) => s.static_token.span(),
        syn::Item::Const(c) => c.const_token.span(),
        other => other.span(),
    };
    syn::Error::new(
        span,
        format!(
            "#[{}] goes on an `async fn` that handles one message, e.g. `async fn handle(msg: MyEvent) -> Result<(), HandlerError>`",
            kind.attr_name()
        ),
    )
}
