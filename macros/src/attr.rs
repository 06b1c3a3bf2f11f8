//! Parses the attribute's arguments, `("subject", key = value, ..)`, keeping
//! every span. Types and ranges are checked later, in `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Ident, LitStr, Token};

use crate::ctxt::Ctxt;

/// Which attribute is being expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Subscribe,
    Queue,
}

impl Kind {
    pub(crate) fn attr_name(self) -> &'static str {
        match self {
            Kind::Subscribe => "subscribe",
            Kind::Queue => "queue",
        }
    }

    /// An example subject for messages.
    pub(crate) fn example(self) -> &'static str {
        match self {
            Kind::Subscribe => "orders.created",
            Kind::Queue => "queue.email",
        }
    }
}

/// `key = value` as written.
pub(crate) struct Opt {
    pub(crate) key: Ident,
    pub(crate) value: Expr,
}

/// The arguments as written: the subject (if present and well placed) and the options.
pub(crate) struct Args {
    pub(crate) subject: Option<LitStr>,
    pub(crate) options: Vec<Opt>,
}

enum Arg {
    Subject(LitStr),
    Opt(Opt),
}

fn parse_arg(input: ParseStream<'_>, kind: Kind, first: bool) -> syn::Result<Arg> {
    let subject_hint = |found: &str| {
        format!(
            "the subject is a string literal: write #[{}(\"{}\")]",
            kind.attr_name(),
            if found.is_empty() {
                kind.example()
            } else {
                found
            }
        )
    };
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        if input.peek(Token![=]) {
            return Err(syn::Error::new(
                lit.span(),
                format!(
                    "option names are written without quotes: `{} = ..`",
                    lit.value()
                ),
            ));
        }
        return Ok(Arg::Subject(lit));
    }
    if input.peek(Ident::peek_any) {
        let key = Ident::parse_any(input)?;
        if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            return Ok(Arg::Opt(Opt { key, value }));
        }
        if first {
            return Err(syn::Error::new(key.span(), subject_hint("")));
        }
        if input.is_empty() || input.peek(Token![,]) {
            return Err(syn::Error::new(
                key.span(),
                format!("option `{key}` needs a value: write `{key} = ..`"),
            ));
        }
        return Err(input.error(format!("expected `=` after `{key}`: write `{key} = ..`")));
    }
    if first {
        return Err(input.error(subject_hint("")));
    }
    Err(input.error("expected an option `key = value`"))
}

/// Parses the arguments. Syntax errors are fatal (nothing sensible can be
/// checked after them); misplaced or repeated subjects are collected in `cx`.
pub(crate) fn parse(cx: &Ctxt, kind: Kind, args: TokenStream) -> syn::Result<Args> {
    if args.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!(
                "#[{}] needs a subject: write #[{}(\"{}\")]",
                kind.attr_name(),
                kind.attr_name(),
                kind.example()
            ),
        ));
    }
    let list = (|input: ParseStream<'_>| {
        let mut list = Vec::new();
        while !input.is_empty() {
            list.push(parse_arg(input, kind, list.is_empty())?);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(list)
    })
    .parse2(args)?;

    let mut subject = None;
    let mut options = Vec::new();
    for (i, arg) in list.into_iter().enumerate() {
        match arg {
            Arg::Subject(lit) if i == 0 => subject = Some(lit),
            Arg::Subject(lit) => {
                if subject.is_some() {
                    cx.error_spanned_by(
                        &lit,
                        "a handler has one subject; use a wildcard (`orders.*`) to match several",
                    );
                } else {
                    cx.error_spanned_by(
                        &lit,
                        format!(
                            "the subject comes first: #[{}({:?}, key = value, ..)]",
                            kind.attr_name(),
                            lit.value()
                        ),
                    );
                }
            }
            Arg::Opt(opt) => options.push(opt),
        }
    }
    if subject.is_none() && !cx.has_errors() {
        let at = options.first().map_or(Span::call_site(), |o| o.key.span());
        cx.error_at(
            at,
            format!(
                "#[{}] needs a subject first: write #[{}(\"{}\", ..)]",
                kind.attr_name(),
                kind.attr_name(),
                kind.example()
            ),
        );
    }
    Ok(Args { subject, options })
}
