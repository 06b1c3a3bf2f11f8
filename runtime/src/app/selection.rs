//! Which of the binary's handlers an app runs: [`App::only`],
//! [`App::only_kind`] and `JETWIRE_HANDLERS`.

use crate::app::App;
use crate::config::{Config, Selection};
use crate::error::Error;
use crate::handler::registry::{self, HandlerDef, Kind};

impl App {
    /// Keeps only the handlers with these fn names (or `module::fn` paths),
    /// of those linked or added so far: to split one binary's handlers
    /// across deployments. A name no handler answers to fails
    /// [`App::start`], naming the handlers there are. `JETWIRE_HANDLERS`
    /// ([`Config::handlers`]) chooses too, at start.
    ///
    /// ```
    /// let config = jetwire::Config::builder().app("billing").build().unwrap();
    /// let app = jetwire::App::new(config).only(&["send_invoice", "billing::on_order"]);
    /// # drop(app);
    /// ```
    pub fn only(mut self, names: &[&str]) -> App {
        if let Some(unknown) = registry::select(&mut self.handlers, &Selection::named(names)) {
            self.mistakes.push(format!("App::only: {unknown}"));
        }
        self
    }

    /// Keeps only the handlers of one kind, of those linked or added so
    /// far: [`Kind::Queue`](crate::registry::Kind::Queue) for the work
    /// queues, [`Kind::Subscribe`](crate::registry::Kind::Subscribe) for
    /// the event handlers (`JETWIRE_HANDLERS=queues` or `events`).
    ///
    /// ```
    /// use jetwire::registry::Kind;
    ///
    /// let config = jetwire::Config::builder().app("workers").build().unwrap();
    /// let app = jetwire::App::new(config).only_kind(Kind::Queue);
    /// # drop(app);
    /// ```
    pub fn only_kind(mut self, kind: Kind) -> App {
        registry::select(&mut self.handlers, &Selection::Kind(kind));
        self
    }
}

/// The handlers `JETWIRE_HANDLERS` keeps, all when it is unset; a name no
/// handler answers to fails the start.
pub(super) fn chosen(
    mut handlers: Vec<&'static HandlerDef>,
    config: &Config,
) -> Result<Vec<&'static HandlerDef>, Error> {
    let Some(value) = config.handlers.as_deref() else {
        return Ok(handlers);
    };
    match registry::select(&mut handlers, &Selection::parse(value)?) {
        None => Ok(handlers),
        Some(unknown) => Err(Error::Config(format!(
            "JETWIRE_HANDLERS={value}: {unknown}"
        ))),
    }
}
