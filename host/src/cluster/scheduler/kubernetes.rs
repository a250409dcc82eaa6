//! The `kubernetes` scheduler: each worker a Pod, created, watched and deleted through the
//! API server (kube-rs), as Arroyo's Kubernetes scheduler does.
//!
//! For a run it creates, in its namespace:
//! - a Secret `<run>-token` holding the cluster's token (never in a Pod's spec: a Pod's
//!   environment takes it from the Secret);
//! - N Pods `<run>-worker-<i>` (restart policy `Never`: a worker that ends is replaced by a new
//!   Pod, which joins the job's next deployment), each running the image's `host ARGS worker
//!   --coordinator ADDR --name NAME --listen 0.0.0.0:PORT --advertise $(POD_IP)`, with the
//!   Pod's own IP from the downward API and, optionally, every key of a Secret (the object
//!   store's `AWS_*`) in its environment.
//!
//! Every object is labelled `app.kubernetes.io/name=jobhost`, `app.kubernetes.io/component`
//! (`worker` or `token`) and `jobhost/run=<run>`; it watches the run's Pods by that label
//! (resuming a watch the API server ends from the last resource version seen) and deletes
//! them all, and the Secret, when stopped. The state must be on an object store every
//! Pod reaches (`--store s3://...`): a Pod has no state folder in common with the coordinator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector, Pod,
    PodSpec, Secret, SecretEnvSource, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::process::TOKEN_VARIABLE;
use super::{Scheduler, SchedulerError};

/// The label every object of a run carries, with the run's name.
pub const RUN_LABEL: &str = "jobhost/run";

/// What the Pods of a run are made of.
#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// The run's name: every object's name starts with it, and [`RUN_LABEL`] says it.
    pub run: String,
    /// The namespace of every object.
    pub namespace: String,
    /// The container image holding `host`.
    pub image: String,
    /// What every worker gets before `worker` (`--store s3://...`).
    pub args: Vec<String>,
    /// A Secret every key of which goes into each worker's environment (`AWS_*`).
    pub env_secret: Option<String>,
    /// The port each worker's exchange listens on.
    pub exchange_port: u16,
}

/// Starts workers as Pods.
pub struct Pods {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    shared: Arc<Shared>,
    ended: mpsc::UnboundedReceiver<String>,
    watcher: Option<JoinHandle<()>>,
}

/// What creating one more Pod takes; shared with the watcher, which creates replacements.
struct Shared {
    pods: Api<Pod>,
    config: KubernetesConfig,
    workers: usize,
    created: AtomicUsize,
    coordinator: std::sync::Mutex<Option<SocketAddr>>,
    ended: mpsc::UnboundedSender<String>,
}

fn kube_error(what: String) -> impl FnOnce(kube::Error) -> SchedulerError {
    move |source| SchedulerError::Kubernetes {
        what,
        source: Box::new(source),
    }
}

impl Pods {
    /// `workers` Pods as `config` says, through `client`.
    pub fn new(client: kube::Client, config: KubernetesConfig, workers: usize) -> Pods {
        let pods = Api::namespaced(client.clone(), &config.namespace);
        let secrets = Api::namespaced(client, &config.namespace);
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pods: pods.clone(),
            config,
            workers,
            created: AtomicUsize::new(0),
            coordinator: std::sync::Mutex::new(None),
            ended: ended_tx,
        });
        Pods {
            pods,
            secrets,
            shared,
            ended,
            watcher: None,
        }
    }

    fn selector(&self) -> String {
        format!("{RUN_LABEL}={}", self.shared.config.run)
    }
}

/// The labels of an object of run `run`.
fn labels(run: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "jobhost".to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.to_owned(),
        ),
        (RUN_LABEL.to_owned(), run.to_owned()),
    ])
}

/// The Secret holding the token of `config`'s run.
pub fn token_secret(config: &KubernetesConfig, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("{}-token", config.run)),
            labels: Some(labels(&config.run, "token")),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("token".to_owned(), token.to_owned())])),
        ..Secret::default()
    }
}

/// The Pod of worker `name`, joining `coordinator`.
pub fn worker_pod(config: &KubernetesConfig, name: &str, coordinator: SocketAddr) -> Pod {
    let mut args = config.args.clone();
    args.extend(
        [
            "worker",
            "--coordinator",
            &coordinator.to_string(),
            "--name",
            name,
            "--listen",
            &format!("0.0.0.0:{}", config.exchange_port),
            "--advertise",
            "$(POD_IP)",
        ]
        .map(str::to_owned),
    );
    let (env, env_from) = worker_env(config);
    let container = Container {
        name: "worker".to_owned(),
        image: Some(config.image.clone()),
        args: Some(args),
        env: Some(env),
        env_from,
        ports: Some(vec![ContainerPort {
            container_port: i32::from(config.exchange_port),
            name: Some("exchange".to_owned()),
            ..ContainerPort::default()
        }]),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels(&config.run, "worker")),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            containers: vec![container],
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// A worker's environment: the run's token and the Pod's IP (which `--advertise` names), and
/// the variables of `config.env_secret`, if any.
fn worker_env(config: &KubernetesConfig) -> (Vec<EnvVar>, Option<Vec<EnvFromSource>>) {
    let from = |source| EnvVar {
        value_from: Some(source),
        ..EnvVar::default()
    };
    let token = EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: format!("{}-token", config.run),
            key: "token".to_owned(),
            optional: None,
        }),
        ..EnvVarSource::default()
    };
    let pod_ip = EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: "status.podIP".to_owned(),
            api_version: None,
        }),
        ..EnvVarSource::default()
    };
    let env = vec![
        EnvVar {
            name: TOKEN_VARIABLE.to_owned(),
            ..from(token)
        },
        EnvVar {
            name: "POD_IP".to_owned(),
            ..from(pod_ip)
        },
    ];
    let env_from = config.env_secret.as_ref().map(|secret| {
        vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: secret.clone(),
                optional: None,
            }),
            ..EnvFromSource::default()
        }]
    });
    (env, env_from)
}

impl Shared {
    /// Creates the next worker's Pod.
    async fn create(&self) -> Result<(), SchedulerError> {
        let coordinator = self
            .coordinator
            .lock()
            .expect("not poisoned")
            .expect("started");
        let n = self.created.fetch_add(1, Ordering::SeqCst) + 1;
        let name = format!("{}-worker-{n}", self.config.run);
        let pod = worker_pod(&self.config, &name, coordinator);
        let created = self.pods.create(&PostParams::default(), &pod).await;
        created.map_err(kube_error(format!("cannot create Pod {name}")))?;
        tracing::info!(pod = %name, "worker Pod created");
        Ok(())
    }

    /// Watches the run's Pods; reports each that ended (failed, succeeded or deleted) and
    /// replaces it (at most as many times as there are workers). A watch the API server ends
    /// is resumed from the last resource version seen; one it refuses ends the watching.
    async fn watch(self: Arc<Self>, selector: String) {
        let params = WatchParams::default().labels(&selector);
        let mut version = "0".to_owned();
        loop {
            let stream = match self.pods.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(e) => return tracing::warn!("cannot watch the worker Pods: {e}"),
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let pod = match event {
                    Ok(WatchEvent::Added(pod)) => pod,
                    Ok(WatchEvent::Modified(pod)) => {
                        let phase = ended_phase(&pod);
                        self.on_ended(&pod, phase).await;
                        pod
                    }
                    Ok(WatchEvent::Deleted(pod)) => {
                        self.on_ended(&pod, Some("deleted".to_owned())).await;
                        pod
                    }
                    Ok(WatchEvent::Bookmark(_)) => continue,
                    Ok(WatchEvent::Error(e)) => {
                        return tracing::warn!("watching the worker Pods: {e}");
                    }
                    Err(e) => return tracing::warn!("watching the worker Pods: {e}"),
                };
                if let Some(seen) = pod.metadata.resource_version {
                    version = seen;
                }
            }
        }
    }

    /// `pod` ended `how` (if it did): reported, and replaced while replacements are left.
    async fn on_ended(&self, pod: &Pod, how: Option<String>) {
        let Some(how) = how else {
            return;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        tracing::warn!(pod = %name, "worker Pod ended: {how}");
        let _ = self.ended.send(format!("{name} ended: {how}"));
        if self.created.load(Ordering::SeqCst) < 2 * self.workers
            && let Err(e) = self.create().await
        {
            tracing::warn!("no replacement for {name}: {e}");
        }
    }
}

/// The phase of a Pod that ended (`Failed`, `Succeeded`), if it did.
fn ended_phase(pod: &Pod) -> Option<String> {
    let phase = pod.status.as_ref()?.phase.clone()?;
    matches!(phase.as_str(), "Failed" | "Succeeded").then_some(phase)
}

impl Scheduler for Pods {
    fn workers(&self) -> usize {
        self.shared.workers
    }

    fn start<'a>(
        &'a mut self,
        coordinator: SocketAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(async move {
            *self.shared.coordinator.lock().expect("not poisoned") = Some(coordinator);
            let secret = token_secret(&self.shared.config, token);
            let created = self.secrets.create(&PostParams::default(), &secret).await;
            created.map_err(kube_error("cannot create the token's Secret".to_owned()))?;
            for _ in 0..self.shared.workers {
                self.shared.create().await?;
            }
            let watcher = self.shared.clone().watch(self.selector());
            self.watcher = Some(tokio::spawn(watcher));
            Ok(())
        })
    }

    fn ended(&mut self) -> BoxFuture<'_, String> {
        super::next_ended(&mut self.ended)
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(watcher) = self.watcher.take() {
                watcher.abort();
            }
            let selector = self.selector();
            let params = ListParams::default().labels(&selector);
            let deleted = self
                .pods
                .delete_collection(&DeleteParams::default(), &params)
                .await;
            if let Err(e) = deleted {
                tracing::warn!("cannot delete the worker Pods ({selector}): {e}");
            }
            let name = format!("{}-token", self.shared.config.run);
            if let Err(e) = self.secrets.delete(&name, &DeleteParams::default()).await {
                tracing::warn!("cannot delete the Secret {name}: {e}");
            }
        })
    }
}

#[cfg(test)]
mod tests;
