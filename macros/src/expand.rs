//! Code generation: the user's fn untouched, plus one adapter and one
//! `inventory` registration in an anonymous const.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Item, ItemFn};

use crate::ast::Handler;
use crate::attr::{self, Kind};
use crate::ctxt::{self, Ctxt};
use crate::keys::Key;
use crate::valid::{self, Deliver, Options};

/// The whole expansion of `#[subscribe]` or `#[queue]`.
pub(crate) fn handler(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => return ctxt::with_errors(item, valid::not_a_fn(&other, kind)),
        Err(err) => return ctxt::with_errors(item, err),
    };
    let cx = Ctxt::default();
    let parsed = match attr::parse(&cx, kind, args) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    };
    let handler = Handler::from_fn(&func);
    valid::signature(&cx, kind, &handler);
    let (subject, options) = match &parsed {
        Some(args) => {
            let options = valid::options(&cx, kind, args);
            // A work queue on a stream the operator made may use any
            // namespace; a handler of dead letters reads `dlq.`.
            let usage = valid::usage(&cx, kind, &handler, options.stream.is_some());
            let subject = args
                .subject
                .as_ref()
                .and_then(|lit| valid::subject(&cx, lit, usage));
            crate::output::output_type(&cx, &handler, &options);
            crate::partitions::check(&cx, args, &options);
            (subject, options)
        }
        None => (None, Options::default()),
    };
    if let Err(err) = cx.check() {
        // `const async fn` would add rustc's own error for the same mistake.
        let mut func = func;
        if func.sig.asyncness.is_some() {
            func.sig.constness = None;
        }
        return ctxt::with_errors(quote!(#func), err);
    }
    let subject = subject.expect("no error was recorded, so the subject was parsed and valid");
    let registration = register(kind, &handler, &subject, &options);
    quote! {
        #func
        #registration
    }
}

fn register(kind: Kind, handler: &Handler<'_>, subject: &str, options: &Options) -> TokenStream {
    let fn_name = handler.name();
    let name = fn_name.to_string();
    let payload = handler
        .payload
        .expect("the signature check requires a payload");
    let payload_ty = &*payload.ty;
    let payload_name = quote!(#payload_ty).to_string().replace(' ', "");

    // The adapter's locals, each one identifier with one span wherever it
    // is written: a check spanned at the user's tokens must still name
    // the same local when those tokens come from a `macro_rules!`.
    let call_site = Span::call_site();
    let [msg, delivery, value] = ["__jetwire_msg", "__jetwire_delivery", "__jetwire_value"]
        .map(|local| format_ident!("{}", local, span = call_site));

    // Each check sits on the user's own tokens, so a wrong type is reported
    // at the parameter (or return type) that has it.
    let decode = quote_spanned! {payload_ty.span()=>
        <#payload_ty as ::jetwire::__private::Payload>::decode
    };
    let (extractor_idents, extract, requirements) = extractors(handler, &delivery);
    let output_ty = match handler.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    };
    let output_span = handler
        .output
        .map_or_else(|| handler.name().span(), |ty| ty.span());
    let into_outcome = quote_spanned! {output_span=>
        <#output_ty as ::jetwire::__private::IntoOutcome>::into_outcome
    };
    let kind_tokens = match kind {
        Kind::Subscribe => quote!(::jetwire::__private::Kind::Subscribe),
        Kind::Queue => quote!(::jetwire::__private::Kind::Queue),
    };
    // A future that is not `Send` is reported at the fn's name.
    let call = quote_spanned! {fn_name.span()=>
        ::jetwire::__private::assert_send(#fn_name(#msg #(, #extractor_idents)*))
    };
    // With `output`, the `Ok` value is published before the ack; `T` must
    // be `Serialize`, checked at `T`.
    let settle = match (
        &options.output,
        handler.output.and_then(crate::output::result_ok_type),
    ) {
        (Some(output), Some(ok_ty)) => {
            // Encoding is spanned at `T`, so a `T` that is not `Serialize`
            // is one error, there; the error type is checked at the
            // return type, as without `output`.
            let encode = quote_spanned! {ok_ty.span()=>
                |#value| ::jetwire::__private::encode_output::<#ok_ty>(&#value)
            };
            let publish = quote_spanned! {output_span=> ::jetwire::__private::publish_output };
            quote!(#publish(#delivery.context(), #output, (#call.await).map(#encode)).await)
        }
        _ => quote!(#into_outcome(#call.await)),
    };
    let options = options_tokens(options);
    let adapter = format_ident!("__jetwire_call", span = call_site);

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, non_snake_case, clippy::all)]
        const _: () = {
            fn #adapter(
                #delivery: ::jetwire::Delivery,
            ) -> ::jetwire::__private::CallFuture {
                ::std::boxed::Box::pin(async move {
                    let #msg = #decode(::core::clone::Clone::clone(#delivery.payload()), &#delivery)?;
                    #(#extract)*
                    #settle
                })
            }

            ::jetwire::__private::inventory::submit! {
                ::jetwire::__private::HandlerDef {
                    name: #name,
                    module: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                    kind: #kind_tokens,
                    subject: #subject,
                    payload: #payload_name,
                    content_type: <#payload_ty as ::jetwire::__private::Payload>::CONTENT_TYPE_READ,
                    options: #options,
                    requires: &[#(#requirements),*],
                    call: &#adapter,
                    schema: {
                        fn __jetwire_schema(
                            __jetwire_schemas: &mut ::jetwire::__private::schema::Schemas,
                        ) -> ::core::option::Option<::jetwire::__private::serde_json::Value> {
                            #[allow(unused_imports)]
                            use ::jetwire::__private::schema::{Described as _, Undescribed as _};
                            (&::jetwire::__private::schema::Probe::<#payload_ty>::new())
                                .schema(__jetwire_schemas)
                        }
                        __jetwire_schema
                    },
                }
            }
        };
    }
}

/// Each parameter after the payload: its local, the statement that takes
/// it from the delivery, and its state requirement. Whether its type is an
/// extractor is checked once, at the type, by the requirement; taking it
/// goes through the probe, which compiles for any type.
fn extractors(
    handler: &Handler<'_>,
    delivery: &syn::Ident,
) -> (Vec<syn::Ident>, Vec<TokenStream>, Vec<TokenStream>) {
    let idents: Vec<_> = (0..handler.extractors.len())
        .map(|i| format_ident!("__jetwire_arg{}", i))
        .collect();
    let extract = handler
        .extractors
        .iter()
        .zip(&idents)
        .map(|(pat, ident)| {
            let ty = &*pat.ty;
            quote! {
                let #ident: #ty = {
                    #[allow(unused_imports)]
                    use ::jetwire::__private::extract::{Extract as _, Unextractable as _};
                    (&::jetwire::__private::extract::Probe::<#ty>::new())
                        .extract(&#delivery)
                        .await?
                };
            }
        })
        .collect();
    let requirements = handler
        .extractors
        .iter()
        .map(|pat| {
            let ty = &*pat.ty;
            quote_spanned! {ty.span()=> <#ty as ::jetwire::FromDelivery>::requirement }
        })
        .collect();
    (idents, extract, requirements)
}

fn duration(d: std::time::Duration) -> TokenStream {
    let ms = d.as_millis() as u64;
    quote!(::core::time::Duration::from_millis(#ms))
}

fn opt<T>(value: Option<T>, f: impl FnOnce(T) -> TokenStream) -> TokenStream {
    match value {
        Some(v) => {
            let inner = f(v);
            quote!(::core::option::Option::Some(#inner))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// `Settings { <key>: <value>, .. }`, one field per option key.
fn options_tokens(o: &Options) -> TokenStream {
    let fields = Key::ALL.into_iter().map(|key| {
        let field = format_ident!("{}", key.name());
        let value = match key {
            Key::MaxDeliver => opt(o.max_deliver, |n| quote!(#n)),
            Key::Backoff => opt(o.backoff.as_ref(), |list| {
                let items = list.iter().copied().map(duration);
                quote!(&[#(#items),*])
            }),
            Key::AckWait => opt(o.ack_wait, duration),
            Key::Concurrency => opt(o.concurrency, |n| quote!(#n)),
            Key::Timeout => opt(o.timeout, duration),
            Key::Deliver => opt(o.deliver, |d| match d {
                Deliver::New => quote!(::jetwire::__private::Deliver::New),
                Deliver::All => quote!(::jetwire::__private::Deliver::All),
                Deliver::Last => quote!(::jetwire::__private::Deliver::Last),
                Deliver::LastPerSubject => quote!(::jetwire::__private::Deliver::LastPerSubject),
                Deliver::Sequence(n) => quote!(::jetwire::__private::Deliver::Sequence(#n)),
                Deliver::Time {
                    unix_seconds,
                    nanos,
                } => quote!(::jetwire::__private::Deliver::Time {
                    unix_seconds: #unix_seconds,
                    nanos: #nanos,
                }),
            }),
            Key::Durable => opt(o.durable.as_deref(), |s| quote!(#s)),
            Key::Stream => opt(o.stream.as_deref(), |s| quote!(#s)),
            Key::Output => opt(o.output.as_deref(), |s| quote!(#s)),
            Key::Singleton => opt(o.singleton, |b| quote!(#b)),
            Key::Partitions => opt(o.partitions, |n| quote!(#n)),
            Key::Bind => opt(o.bind, |b| quote!(#b)),
            Key::Ack => opt(o.ack, |a| match a {
                jetwire_grammar::options::Ack::First => quote!(::jetwire::__private::Ack::First),
            }),
        };
        quote!(#field: #value)
    });
    quote! {
        ::jetwire::__private::Settings { #(#fields),* }
    }
}
