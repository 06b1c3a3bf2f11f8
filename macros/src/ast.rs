//! The handler fn as a typed model: payload, extractors, output.

use syn::{FnArg, ItemFn, PatType, ReturnType, Type};

/// What a parameter's type looks like, by its last path segment. Used only
/// to give better messages; the real check is a trait bound in the expansion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgShape {
    Context,
    State,
    Other,
}

impl ArgShape {
    pub(crate) fn of(ty: &Type) -> ArgShape {
        let Type::Path(path) = ty else {
            return ArgShape::Other;
        };
        match path.path.segments.last() {
            Some(seg) if seg.ident == "Context" => ArgShape::Context,
            Some(seg) if seg.ident == "State" => ArgShape::State,
            _ => ArgShape::Other,
        }
    }
}

/// A handler fn, split into the parts the expansion needs.
pub(crate) struct Handler<'a> {
    pub(crate) func: &'a ItemFn,
    /// The first typed parameter: the payload.
    pub(crate) payload: Option<&'a PatType>,
    /// Every typed parameter after the payload.
    pub(crate) extractors: Vec<&'a PatType>,
    /// The declared return type; `None` for `()`.
    pub(crate) output: Option<&'a Type>,
}

impl<'a> Handler<'a> {
    pub(crate) fn from_fn(func: &'a ItemFn) -> Handler<'a> {
        let mut typed = func.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(pat),
            FnArg::Receiver(_) => None,
        });
        let payload = typed.next();
        let extractors = typed.collect();
        let output = match &func.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        Handler {
            func,
            payload,
            extractors,
            output,
        }
    }

    pub(crate) fn name(&self) -> &syn::Ident {
        &self.func.sig.ident
    }
}
