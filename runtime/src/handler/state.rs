//! The values given to `App::state` (or `TestApp::state`), by type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// The values given to `App::state`, by type.
#[derive(Default, Clone)]
pub(crate) struct States {
    map: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl States {
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn get<T: Clone + 'static>(&self) -> Option<T> {
        self.map
            .get(&TypeId::of::<T>())?
            .downcast_ref::<T>()
            .cloned()
    }

    pub(crate) fn contains(&self, id: TypeId) -> bool {
        self.map.contains_key(&id)
    }
}
