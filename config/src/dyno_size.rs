//! Dyno sizes (Heroku's `size`): the list a formation entry may ask for, with Heroku's by default.

use serde::{Deserialize, Serialize};
use wharf_domain::units::ByteSize;

/// A dyno size: its name and the memory a dyno of that size is meant to have. The local
/// supervisor records and shows the size but does not enforce the memory: that needs cgroups,
/// which `wharf serve` does not ask for (an address-space limit would break runtimes that
/// reserve more than they use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynoSize {
    /// The name clients give and `ps` shows, e.g. `Standard-2X`: letters, digits and `-`.
    pub name: String,
    /// The memory a dyno of this size is meant to have, e.g. `"1GiB"`.
    pub memory: ByteSize,
}

impl DynoSize {
    fn new(name: &str, memory_mib: u64) -> DynoSize {
        DynoSize { name: name.to_owned(), memory: ByteSize(memory_mib << 20) }
    }
}

/// Heroku's dyno sizes and their memory (<https://devcenter.heroku.com/articles/dyno-types>).
pub(crate) fn default_dyno_sizes() -> Vec<DynoSize> {
    vec![
        DynoSize::new("Basic", 512),
        DynoSize::new("Standard-1X", 512),
        DynoSize::new("Standard-2X", 1024),
        DynoSize::new("Performance-M", 2560),
        DynoSize::new("Performance-L", 14336),
    ]
}
