//! `partitions = N`: what it cannot go with (`singleton`, `bind`, a
//! subject ending in `>`).

use jetwire_grammar::options;

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
        cx.error_spanned_by(&opt.key, options::PARTITIONS_AND_SINGLETON);
    }
    if options.bind == Some(true)
        && let Some(opt) = key
    {
        cx.error_spanned_by(&opt.key, options::BIND_AND_PARTITIONS);
    }
    if let Some(lit) = &args.subject
        && let Err(mistake) = options::partitioned_subject(&lit.value())
    {
        crate::spans::error_in_literal(cx, lit, mistake.location, &mistake.message);
    }
}
