//! The Kubernetes scheduler against a mocked API server: every request it makes is checked
//! (method, path, query, body) and answered as the API server would, as kube-rs's own tests
//! do. No cluster is involved.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use super::*;

const TOKEN: &str = "the-token";
const PODS: &str = "/api/v1/namespaces/streams/pods?";
const SELECTOR: &str = "labelSelector=jobhost%2Frun%3Djob-abc";

type ApiServer = Handle<Request<Body>, Response<Body>>;

fn config() -> KubernetesConfig {
    KubernetesConfig {
        run: "job-abc".to_owned(),
        namespace: "streams".to_owned(),
        image: "registry.example/jobhost:1".to_owned(),
        args: vec!["--store".to_owned(), "s3://points/team".to_owned()],
        env_secret: Some("object-store".to_owned()),
        exchange_port: 7000,
    }
}

/// The next request: its method, its path and query, and its body as JSON (`Null` if none);
/// answered with `answer`.
async fn next(server: &mut ApiServer, answer: Value) -> (String, String, Value) {
    let (request, respond) = server.next_request().await.expect("a request");
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let body = request.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = serde_json::to_vec(&answer).unwrap();
    respond.send_response(Response::builder().body(Body::from(answer)).unwrap());
    (method, uri, body)
}

fn pod_named(name: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "streams", "resourceVersion": "7",
                      "labels": { RUN_LABEL: "job-abc" } },
        "status": { "phase": phase }
    })
}

/// Checks worker `i`'s Pod as created.
fn check_worker_pod(pod: &Value, i: u32) {
    let name = format!("job-abc-worker-{i}");
    assert_eq!(pod["metadata"]["name"], name);
    assert_eq!(pod["metadata"]["labels"][RUN_LABEL], "job-abc");
    let component = &pod["metadata"]["labels"]["app.kubernetes.io/component"];
    assert_eq!(component, "worker");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/jobhost:1");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let expected = [
        "--store",
        "s3://points/team",
        "worker",
        "--coordinator",
        "10.0.0.5:7070",
        "--name",
        &name,
        "--listen",
        "0.0.0.0:7000",
        "--advertise",
        "$(POD_IP)",
    ];
    assert_eq!(args, expected);
    let env = &container["env"];
    assert_eq!(env[0]["name"], TOKEN_VARIABLE);
    assert_eq!(env[0]["valueFrom"]["secretKeyRef"]["name"], "job-abc-token");
    assert_eq!(env[1]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    assert_eq!(container["envFrom"][0]["secretRef"]["name"], "object-store");
    assert!(
        !pod.to_string().contains(TOKEN),
        "the token in a Pod: {pod}"
    );
}

/// The API server's side of a start: the Secret, three Pods, the watch (reporting worker 2
/// failed, then ending), worker 2's replacement, and the watch resumed from the version seen
/// (left unanswered: returned with the server).
async fn serve_start(mut server: ApiServer) -> (ApiServer, impl Send) {
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "job-abc-token"}});
    let (method, uri, secret) = next(&mut server, secret).await;
    let secrets = "/api/v1/namespaces/streams/secrets?";
    assert_eq!((method.as_str(), uri.as_str()), ("POST", secrets));
    assert_eq!(secret["stringData"]["token"], TOKEN);
    assert_eq!(secret["metadata"]["labels"][RUN_LABEL], "job-abc");
    for i in 1..=3 {
        let created = pod_named(&format!("job-abc-worker-{i}"), "Pending");
        let (method, uri, pod) = next(&mut server, created).await;
        assert_eq!((method.as_str(), uri.as_str()), ("POST", PODS));
        check_worker_pod(&pod, i);
    }
    let (request, respond) = server.next_request().await.expect("a watch");
    let uri = request.uri().to_string();
    assert!(uri.starts_with(PODS), "{uri}");
    assert!(
        uri.contains("watch=true") && uri.contains(SELECTOR),
        "{uri}"
    );
    let failed = pod_named("job-abc-worker-2", "Failed");
    let events = format!("{}\n", json!({ "type": "MODIFIED", "object": failed }));
    let events = Body::from(events.into_bytes());
    respond.send_response(Response::builder().body(events).unwrap());
    let replacement = pod_named("job-abc-worker-4", "Pending");
    let (method, uri, pod) = next(&mut server, replacement).await;
    assert_eq!((method.as_str(), uri.as_str()), ("POST", PODS));
    check_worker_pod(&pod, 4);
    let (request, resumed) = server.next_request().await.expect("the watch resumed");
    let uri = request.uri().to_string();
    assert!(
        uri.contains("watch=true") && uri.contains(SELECTOR),
        "{uri}"
    );
    assert!(
        uri.contains("resourceVersion=7"),
        "not resumed where it ended: {uri}"
    );
    (server, resumed)
}

/// The API server's side of a stop: the run's Pods deleted by label, then its Secret.
async fn serve_stop(mut server: ApiServer) {
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []});
    let (method, uri, _) = next(&mut server, list).await;
    assert_eq!(method, "DELETE");
    assert!(uri.starts_with(PODS) && uri.contains(SELECTOR), "{uri}");
    let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}});
    let (method, uri, _) = next(&mut server, status).await;
    let secret = "/api/v1/namespaces/streams/secrets/job-abc-token?";
    assert_eq!((method.as_str(), uri.as_str()), ("DELETE", secret));
}

#[tokio::test]
async fn pods_are_created_labelled_watched_replaced_and_deleted() {
    let (service, server) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let mut pods = Pods::new(client, config(), 3);
    let server = tokio::spawn(serve_start(server));
    pods.start("10.0.0.5:7070".parse().unwrap(), TOKEN)
        .await
        .unwrap();
    assert_eq!(pods.ended().await, "job-abc-worker-2 ended: Failed");
    let (server, _resumed) = server.await.unwrap();
    let server = tokio::spawn(serve_stop(server));
    pods.stop().await;
    server.await.unwrap();
}
