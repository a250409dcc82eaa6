//! Which world a component implements, checked once when it is loaded, and its exports in each
//! instance.
//!
//! A role's component must implement the role's world (`source`, `operator`, `sink`). An
//! operator may implement more: `live-operator` (its `catch-up` export lets a live swap cost
//! what changed) and `timed-operator` (it keeps timers, and its `on-timer` export is called
//! when they fire). Components of the previous version of the WIT package (0.3.1) link too:
//! wasmtime matches interface names within a semver track (0.3.x), imports and exports alike.

use wasmtime::Store;
use wasmtime::component::{Component, ComponentExportIndex, Func, InstancePre, Linker};

use super::HostState;
use super::bindings::{live_operator, operator, sink, source, timed_operator};
use crate::ids::Role;

/// The `catch-up` interface's name, as a component exports it (the WIT package's version:
/// a test reads it from `wit/operator.wit`).
const CATCH_UP: &str = "jobhost:operator/catch-up@0.3.2";

/// The start of the name of the `timers` interface, as a component imports it (any version).
const TIMERS: &str = "jobhost:operator/timers@";

/// The world a role's component must implement.
pub fn world_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    }
}

/// A component linked for its role's world.
#[derive(Clone)]
pub(super) enum RolePre {
    Source(source::SourcePre<HostState>),
    Operator {
        pre: operator::OperatorPre<HostState>,
        /// Where its `catch-up`'s `restore-changes` export is, if it has one (`live-operator`).
        restore_changes: Option<ComponentExportIndex>,
        /// Its `on-timer` export, if it keeps timers (`timed-operator`).
        timed: Option<timed_operator::TimedOperatorIndices>,
    },
    Sink(sink::SinkPre<HostState>),
}

impl RolePre {
    /// Links `component` and checks its exports against the world of `role`. A component that
    /// imports `timers` must be a `timed-operator`: else its timers would never fire.
    pub(super) fn new(
        linker: &Linker<HostState>,
        component: &Component,
        role: Role,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        let keeps_timers = imports_timers(component);
        Ok(match role {
            Role::Operator => {
                // Only `catch-up` and `on-timer` can be missing: the rest is `operator`'s. The
                // bindings check their types; `restore-changes` is called with borrowed state.
                let live = live_operator::LiveOperatorIndices::new(&pre).ok();
                let restore_changes = live.and_then(|_| {
                    let interface = component.get_export_index(None, CATCH_UP)?;
                    component.get_export_index(Some(&interface), "restore-changes")
                });
                let timed =
                    match keeps_timers {
                        true => Some(timed_operator::TimedOperatorIndices::new(&pre).map_err(
                            |e| e.context("it imports `timers` but is no `timed-operator`"),
                        )?),
                        false => None,
                    };
                let pre = operator::OperatorPre::new(pre)?;
                RolePre::Operator {
                    pre,
                    restore_changes,
                    timed,
                }
            }
            _ if keeps_timers => wasmtime::bail!(
                "it imports `timers`, which only an operator keeps (world `timed-operator`)"
            ),
            Role::Source => RolePre::Source(source::SourcePre::new(pre)?),
            Role::Sink => RolePre::Sink(sink::SinkPre::new(pre)?),
        })
    }

    pub(super) fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            RolePre::Source(pre) => pre.instance_pre(),
            RolePre::Operator { pre, .. } => pre.instance_pre(),
            RolePre::Sink(pre) => pre.instance_pre(),
        }
    }

    /// Whether it is an operator with `catch-up` (`live-operator`).
    pub(super) fn catches_up(&self) -> bool {
        matches!(
            self,
            RolePre::Operator {
                restore_changes: Some(_),
                ..
            }
        )
    }

    /// Whether it is an operator that keeps timers (`timed-operator`).
    pub(super) fn keeps_timers(&self) -> bool {
        matches!(self, RolePre::Operator { timed: Some(_), .. })
    }
}

/// Whether `component` imports the `timers` interface.
fn imports_timers(component: &Component) -> bool {
    let ty = component.component_type();
    let mut imports = ty.imports(component.engine());
    imports.any(|(name, _)| name.starts_with(TIMERS))
}

/// An instance's exports, of the world its [`RolePre`] checked.
pub(super) enum Bindings {
    Source(source::Source),
    Operator(operator::Operator, Option<timed_operator::TimedOperator>),
    Sink(sink::Sink),
}

impl Bindings {
    /// The exports of `instance`, of the world `pre` checked.
    pub(super) fn new(
        pre: &RolePre,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        Ok(match pre {
            RolePre::Source(_) => Bindings::Source(source::Source::new(&mut *store, instance)?),
            RolePre::Operator { timed, .. } => {
                let timed = timed.as_ref().map(|t| t.load(&mut *store, instance));
                let operator = operator::Operator::new(&mut *store, instance)?;
                Bindings::Operator(operator, timed.transpose()?)
            }
            RolePre::Sink(_) => Bindings::Sink(sink::Sink::new(store, instance)?),
        })
    }
}

/// An instance's exports that take state: `restore`, and `catch-up`'s `restore-changes` in a
/// `live-operator`.
pub(super) struct StateExports {
    pub(super) restore: Func,
    pub(super) restore_changes: Option<Func>,
}

impl StateExports {
    /// Those of `instance`; `restore-changes` only where `pre` found it.
    pub(super) fn new(
        pre: &RolePre,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        let missing = |name| move || wasmtime::Error::msg(format!("no `{name}` export"));
        let restore = instance.get_func(&mut *store, "restore");
        let restore = restore.ok_or_else(missing("restore"))?;
        let restore_changes = match pre {
            RolePre::Operator {
                restore_changes: Some(index),
                ..
            } => {
                let func = instance.get_func(&mut *store, index);
                Some(func.ok_or_else(missing("restore-changes"))?)
            }
            _ => None,
        };
        Ok(Self {
            restore,
            restore_changes,
        })
    }
}

#[cfg(test)]
mod tests {
    /// [`super::CATCH_UP`] names the interface of the WIT package the bindings come from.
    #[test]
    fn the_catch_up_interface_is_named_with_the_packages_version() {
        let wit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/operator.wit"));
        let wit = wit.expect("the WIT package");
        let package = wit.lines().find_map(|line| line.strip_prefix("package "));
        let package = package.expect("a package line").trim_end_matches(';');
        let (name, version) = package.split_once('@').expect("a versioned package");
        assert_eq!(super::CATCH_UP, format!("{name}/catch-up@{version}"));
        assert!(super::TIMERS.starts_with(&format!("{name}/timers@")));
    }
}
