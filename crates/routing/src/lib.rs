//! Routing: turns the request target into one canonical path and picks the
//! route for (host, method, path). Pure functions over plain data, no I/O:
//! the proxy glue normalizes the path once with [`normalize_path`], looks it
//! up in the [`RouteTable`] built from config, and forwards the same
//! [`NormalizedPath`] it matched.

pub mod normalize;
pub mod pattern;
pub mod table;

pub use normalize::{normalize_path, split_path_query, NormalizedPath, PathError};
pub use pattern::{ParamPosition, PathPattern, PatternError, PatternKind, Specificity};
pub use table::{
    HostError, Lookup, Method, MethodError, Route, RouteError, RouteSpec, RouteTable,
    RouteTableError,
};
