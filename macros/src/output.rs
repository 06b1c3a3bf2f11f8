//! `output = "subject"`: where a handler's `Ok` value goes, and what the
//! return type must be with it and without it.

use syn::Type;

use crate::ast::Handler;
use crate::ctxt::Ctxt;
use crate::valid::Options;

/// What the return type must be with and without `output`: with it,
/// `Result<T, E>` with a `T` to publish; without it, nothing to publish.
pub(crate) fn output_type(cx: &Ctxt, handler: &Handler<'_>, options: &Options) {
    let ok = handler.output.and_then(result_ok_type);
    let output = options
        .output_given
        .then(|| options.output.as_deref().unwrap_or("..."));
    match (output, ok) {
        (Some(subject), None) => {
            let message = format!(
                "`output = \"{subject}\"` publishes the handler's `Ok` value: return `Result<T, HandlerError>` with `T: Serialize`"
            );
            match handler.output {
                Some(ty) => cx.error_spanned_by(ty, message),
                None => cx.error_spanned_by(handler.name(), message),
            }
        }
        (Some(subject), Some(ty)) if is_unit(ty) => cx.error_spanned_by(
            ty,
            format!(
                "`()` gives `output = \"{subject}\"` nothing to publish: return the value, e.g. `Result<Resized, HandlerError>`, or remove `output`"
            ),
        ),
        (None, Some(ty)) if !is_unit(ty) => cx.error_spanned_by(
            ty,
            "the handler returns a value but has nowhere to send it: add `output = \"subject\"` to publish it, or return `Result<(), HandlerError>`",
        ),
        _ => {}
    }
}

/// `T` of a return type written `Result<T, E>`.
pub(crate) fn result_ok_type(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}
