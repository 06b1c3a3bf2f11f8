//! `partitions = N`: what it cannot go with.

use crate::attr::Args;
use crate::ctxt::Ctxt;
use crate::valid::Options;

/// `partitions` with `singleton = true`, or on a subject ending in `>`
/// (which would match the partition subjects `<subject>._p<i>` as well).
pub(crate) fn check(cx: &Ctxt, args: &Args, options: &Options) {
    if options.partitions.is_none() {
        return;
    }
    let key = args.options.iter().find(|o| o.key == "partitions");
    if options.singleton == Some(true)
        && let Some(opt) = key
    {
        cx.error_spanned_by(
            &opt.key,
            "`partitions` spreads keys over replicas, and `singleton = true` keeps every message on one: keep one of them (a singleton is one partition)",
        );
    }
    if let Some(lit) = &args.subject {
        let value = lit.value();
        if value == ">" || value.ends_with(".>") {
            let at = value.len() - 1;
            crate::spans::error_in_literal(
                cx,
                lit,
                Some(at..at + 1),
                "a partitioned handler's subject cannot end in `>`: partition i is read from `<subject>._p<i>`, which `>` matches too; name the tokens, e.g. \"queue.orders.*\"",
            );
        }
    }
}
