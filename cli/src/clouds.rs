//! The registry: the clouds this binary runs, and the only file that names them. Adding a
//! target kind is one `impl Cloud` in its crate and one line in each of the lists below.

use perimeter_aws::Aws;
use perimeter_azure::Azure;
use perimeter_core::lifecycle::Cloud;
use perimeter_gcp::Gcp;
use serde::ser::SerializeMap;

use perimeter_core::session::Session;

/// The names `--cloud` takes, in the order every command visits the clouds.
pub(crate) const NAMES: [&str; 3] = [Aws::NAME, Gcp::NAME, Azure::NAME];

/// One session per cloud.
#[derive(Default)]
pub(crate) struct Clouds {
    pub(crate) aws: Session<Aws>,
    pub(crate) gcp: Session<Gcp>,
    pub(crate) azure: Session<Azure>,
}

/// Runs `$body` once for each cloud's session, bound to `$s`, in [`NAMES`] order. The body is
/// compiled once per cloud: static dispatch, and `?` and `.await` work inside it.
macro_rules! for_each_cloud {
    ($clouds:expr, |$s:ident| $body:block) => {{
        {
            let $s = &mut $clouds.aws;
            $body
        }
        {
            let $s = &mut $clouds.gcp;
            $body
        }
        {
            let $s = &mut $clouds.azure;
            $body
        }
    }};
    (ref $clouds:expr, |$s:ident| $body:block) => {{
        {
            let $s = &$clouds.aws;
            $body
        }
        {
            let $s = &$clouds.gcp;
            $body
        }
        {
            let $s = &$clouds.azure;
            $body
        }
    }};
}
pub(crate) use for_each_cloud;

/// The plan document's per-cloud sections: `"aws": [...], "gcp": [...], "azure": [...]`.
impl serde::Serialize for Clouds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(NAMES.len()))?;
        map.serialize_entry(Aws::NAME, &self.aws.plans)?;
        map.serialize_entry(Gcp::NAME, &self.gcp.plans)?;
        map.serialize_entry(Azure::NAME, &self.azure.plans)?;
        map.end()
    }
}
