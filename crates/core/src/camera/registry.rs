//! [`CameraRegistry`]: the one place a camera spec becomes a camera. Each backend crate offers
//! a [`CameraKind`]; the binary registers those its build has.

use std::fmt;
use std::sync::Arc;

use super::{Camera, CameraError};
use crate::spec::Spec;
use crate::time::Clock;

/// What every backend may need to build a camera.
#[derive(Debug, Clone)]
pub struct CameraContext {
    /// Stamps frames with their capture time and paces synthetic cameras.
    pub clock: Arc<dyn Clock>,
}

/// Builds a camera from a parsed spec whose kind is this backend's.
pub type OpenFn = fn(&Spec<'_>, &CameraContext) -> Result<Box<dyn Camera>, CameraError>;

/// One backend: the spec prefix it answers to, a line for `--camera help`, and how to build it.
#[derive(Clone)]
pub struct CameraKind {
    /// The spec's `KIND` (`sim`, `exec`).
    pub name: &'static str,
    /// One line: what it is and its grammar.
    pub summary: &'static str,
    /// A spec that works as written.
    pub example: &'static str,
    /// `Err(why)` for a kind this build lacks (e.g. OpenCV without `--features opencv`): a spec
    /// of that kind then fails with that reason instead of "unknown camera".
    pub build: Result<OpenFn, &'static str>,
}

impl fmt::Debug for CameraKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraKind")
            .field("name", &self.name)
            .field("available", &self.build.is_ok())
            .finish()
    }
}

/// The camera kinds a build has, by spec prefix.
#[derive(Debug, Default, Clone)]
pub struct CameraRegistry {
    kinds: Vec<CameraKind>,
}

impl CameraRegistry {
    pub fn new() -> CameraRegistry {
        CameraRegistry::default()
    }

    /// Adds `kind`; a later registration of the same name replaces an earlier one.
    pub fn register(&mut self, kind: CameraKind) -> &mut CameraRegistry {
        self.kinds.retain(|k| k.name != kind.name);
        self.kinds.push(kind);
        self
    }

    pub fn kinds(&self) -> &[CameraKind] {
        &self.kinds
    }

    /// The camera `spec` names, not yet opened.
    pub fn create(
        &self,
        spec: &str,
        context: &CameraContext,
    ) -> Result<Box<dyn Camera>, CameraError> {
        let error = |reason: String| CameraError::Spec {
            spec: spec.to_owned(),
            reason,
        };
        let parsed = Spec::parse(spec).map_err(error)?;
        let Some(kind) = self.kinds.iter().find(|k| k.name == parsed.kind()) else {
            return Err(error(format!(
                "unknown camera kind {:?}; this build has {} (`--camera help` lists them with examples)",
                parsed.kind(),
                self.available().join(", ")
            )));
        };
        match kind.build {
            Ok(open) => open(&parsed, context),
            Err(why) => Err(error(why.to_owned())),
        }
    }

    fn available(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|k| k.build.is_ok())
            .map(|k| k.name)
            .collect()
    }

    /// The `--camera help` text: every kind with its summary and an example; kinds this build
    /// lacks say why.
    pub fn help(&self) -> String {
        let mut text = String::from(
            "Camera specs: KIND[:SOURCE][#OPTION[&OPTION...]]; options follow the first '#'.\n",
        );
        for kind in &self.kinds {
            match kind.build {
                Ok(_) => text.push_str(&format!(
                    "\n  {}\n      {}\n      e.g. --camera '{}'\n",
                    kind.name, kind.summary, kind.example
                )),
                Err(why) => text.push_str(&format!(
                    "\n  {} (not in this build)\n      {}\n      {}\n",
                    kind.name, kind.summary, why
                )),
            }
        }
        text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::camera::Capabilities;
    use crate::camera::Captured;
    use crate::time::{ManualClock, Timestamp};

    #[derive(Debug)]
    struct Named(String);

    #[async_trait::async_trait]
    impl Camera for Named {
        fn name(&self) -> String {
            self.0.clone()
        }
        async fn open(&mut self) -> Result<Capabilities, CameraError> {
            unreachable!()
        }
        async fn next_frame(&mut self) -> Result<Captured, CameraError> {
            unreachable!()
        }
        fn capabilities(&self) -> Option<Capabilities> {
            None
        }
        async fn close(&mut self) -> Result<(), CameraError> {
            Ok(())
        }
    }

    fn open_test(spec: &Spec<'_>, _: &CameraContext) -> Result<Box<dyn Camera>, CameraError> {
        Ok(Box::new(Named(format!(
            "{}|{:?}",
            spec.kind(),
            spec.source()
        ))))
    }

    fn registry() -> CameraRegistry {
        let mut registry = CameraRegistry::new();
        registry
            .register(CameraKind {
                name: "test",
                summary: "test[:ANYTHING], a camera for tests",
                example: "test:1",
                build: Ok(open_test),
            })
            .register(CameraKind {
                name: "heavy",
                summary: "heavy:DEVICE, a backend with a system library",
                example: "heavy:0",
                build: Err("this build has no heavy cameras; rebuild with --features heavy"),
            });
        registry
    }

    fn context() -> CameraContext {
        CameraContext {
            clock: Arc::new(ManualClock::new(Timestamp(0))),
        }
    }

    #[test]
    fn specs_go_to_their_kind() {
        let camera = registry().create("test:a:b#x=1", &context()).unwrap();
        assert_eq!(camera.name(), "test|Some(\"a:b\")");
    }

    #[test]
    fn unknown_and_missing_kinds_say_what_there_is() {
        let err = |spec| match registry().create(spec, &context()) {
            Err(CameraError::Spec { reason, .. }) => reason,
            other => panic!("{spec}: {other:?}"),
        };
        assert_eq!(
            err("nope:1"),
            "unknown camera kind \"nope\"; this build has test (`--camera help` lists them with examples)"
        );
        assert_eq!(
            err("heavy:0"),
            "this build has no heavy cameras; rebuild with --features heavy"
        );
        assert!(err("test#&").contains("empty option"));
    }

    #[test]
    fn help_lists_every_kind() {
        insta::assert_snapshot!(registry().help());
    }
}
