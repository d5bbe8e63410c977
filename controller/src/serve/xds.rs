//! The ECDS gRPC server (`envoy.service.extension.v3.ExtensionConfigDiscoveryService`), state of
//! the world: every Envoy that opens a stream gets the current resource, and every new snapshot
//! is pushed to every stream. Each request after a response is that Envoy's answer to it: the
//! same nonce with no `error_detail` is an ACK, with one a NACK (Envoy keeps serving the
//! version it last accepted, and says which in `version_info`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::extension::v3::extension_config_discovery_service_server::{
    ExtensionConfigDiscoveryService, ExtensionConfigDiscoveryServiceServer,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::fleet::Fleet;
use super::grpc_security::GrpcSecurity;
use super::store::Snapshot;
use crate::ecds::TYPED_EXTENSION_CONFIG;

pub struct Ecds {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    security: Arc<GrpcSecurity>,
    stop: watch::Receiver<bool>,
    nonces: Arc<AtomicU64>,
}

impl Ecds {
    pub fn service(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        fleet: Arc<Fleet>,
        security: Arc<GrpcSecurity>,
        stop: watch::Receiver<bool>,
    ) -> ExtensionConfigDiscoveryServiceServer<Ecds> {
        ExtensionConfigDiscoveryServiceServer::new(Ecds {
            snapshots,
            fleet,
            security,
            stop,
            nonces: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Refuses, and counts, a call without the token the server requires.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.security
            .authenticate(request.metadata())
            .inspect_err(|_| {
                self.fleet.counters.unauthenticated.inc();
                let peer = request
                    .remote_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                warn!(%peer, "ECDS call refused: no valid bearer token");
            })
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExtensionConfigDiscoveryService for Ecds {
    type StreamExtensionConfigsStream = ResponseStream;
    type DeltaExtensionConfigsStream = DeltaStream;

    async fn stream_extension_configs(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        self.authenticate(&request)?;
        let (out, responses) = mpsc::channel(4);
        let session = Session {
            snapshots: self.snapshots.clone(),
            fleet: Arc::clone(&self.fleet),
            nonces: Arc::clone(&self.nonces),
            serves_resources: self.security.serves_resources(),
            out,
            node: String::new(),
            pending: None,
            sent_any: false,
        };
        tokio::spawn(session.run(request.into_inner(), self.stop.clone()));
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }

    async fn delta_extension_configs(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        self.authenticate(&request)?;
        Err(Status::unimplemented(
            "delta ECDS is not served; use the state-of-the-world stream (api_type: GRPC)",
        ))
    }

    async fn fetch_extension_configs(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        self.authenticate(&request)?;
        let snapshot = self.snapshots.borrow().clone();
        if snapshot.resource.is_none() || !self.security.serves_resources() {
            return Err(Status::not_found(
                "this controller's target is delivered by istiod; it serves no ECDS resource",
            ));
        }
        let nonce = self.nonces.fetch_add(1, Ordering::Relaxed).to_string();
        Ok(Response::new(response(&snapshot, nonce)))
    }
}

/// One Envoy's stream.
struct Session {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    fleet: Arc<Fleet>,
    nonces: Arc<AtomicU64>,
    /// Whether resources may be pushed on this server (see [`GrpcSecurity::serves_resources`]).
    serves_resources: bool,
    out: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    /// The Envoy's `node.id`, from its first request.
    node: String,
    /// The last response sent: its nonce and version, until the Envoy answers it.
    pending: Option<(String, String)>,
    /// Whether anything was sent on this stream yet.
    sent_any: bool,
}

impl Session {
    async fn run(
        mut self,
        mut requests: Streaming<DiscoveryRequest>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                () = super::stopped(&mut stop) => break,
                request = requests.message() => match request {
                    Ok(Some(request)) => {
                        if !self.on_request(request).await {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(node = %self.node, %status, "ECDS stream ended");
                        break;
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() || !self.push().await {
                        break;
                    }
                }
            }
        }
        if !self.node.is_empty() {
            info!(node = %self.node, "Envoy disconnected");
            self.fleet.disconnected(&self.node);
        }
    }

    /// Handles one request; false when the stream is to end.
    async fn on_request(&mut self, request: DiscoveryRequest) -> bool {
        if self.node.is_empty() {
            let node = request.node.clone().unwrap_or_default();
            if node.id.is_empty() {
                let _ = self
                    .out
                    .send(Err(Status::invalid_argument(
                        "the first request carries no node.id",
                    )))
                    .await;
                return false;
            }
            if !self.fleet.connected(&node.id, &node.cluster) {
                let max = self.fleet.limits().max_nodes;
                warn!(node = %node.id, cluster = %node.cluster, max, "ECDS stream refused: the fleet is full");
                let _ = self
                    .out
                    .send(Err(Status::resource_exhausted(format!(
                        "this controller tracks at most {max} Envoys"
                    ))))
                    .await;
                return false;
            }
            info!(node = %node.id, cluster = %node.cluster, "Envoy connected");
            self.node = node.id;
        }
        if request.type_url != TYPED_EXTENSION_CONFIG {
            warn!(node = %self.node, type_url = %request.type_url, "unexpected type; only ECDS TypedExtensionConfig is served");
            return true;
        }
        if request.response_nonce.is_empty() || !self.sent_any {
            // A new subscription (or the same Envoy after a reconnect, perhaps echoing a nonce
            // of the controller it was talking to before): send what is current.
            debug!(node = %self.node, version = %request.version_info, names = ?request.resource_names, "subscribed");
            return self.push().await;
        }
        let Some((nonce, version)) = self.pending.take() else {
            return true;
        };
        if request.response_nonce != nonce {
            // An answer to an older response; the newer one's answer is still to come.
            self.pending = Some((nonce, version));
            return true;
        }
        match request.error_detail {
            Some(error) => {
                warn!(node = %self.node, %version, serving = %request.version_info, reason = %error.message, "Envoy rejected the configuration (NACK)");
                self.fleet
                    .nacked(&self.node, &version, &request.version_info, &error.message);
            }
            None => {
                info!(node = %self.node, %version, "Envoy accepted the configuration (ACK)");
                self.fleet.acked(&self.node, &request.version_info);
            }
        }
        true
    }

    /// Sends the current snapshot; false if the stream has gone.
    async fn push(&mut self) -> bool {
        let snapshot = self.snapshots.borrow_and_update().clone();
        if snapshot.resource.is_none() || !self.serves_resources {
            // A kube:// target istiod delivers (or one that became a dynamic-module
            // EnvoyFilter, on a server not secured to push it): an empty response would tell
            // this Envoy to drop the configuration it has.
            debug!(node = %self.node, "no ECDS resource to push for this target");
            return true;
        }
        let nonce = self.nonces.fetch_add(1, Ordering::Relaxed).to_string();
        let response = response(&snapshot, nonce.clone());
        self.pending = Some((nonce, snapshot.version.clone()));
        self.sent_any = true;
        self.fleet.sent(&self.node, &snapshot.version);
        debug!(node = %self.node, version = %snapshot.version, "pushing configuration");
        self.out.send(Ok(response)).await.is_ok()
    }
}

fn response(snapshot: &Snapshot, nonce: String) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: snapshot.version.clone(),
        resources: snapshot
            .resource
            .iter()
            .map(|resource| resource.any.clone())
            .collect(),
        type_url: TYPED_EXTENSION_CONFIG.to_owned(),
        nonce,
        ..Default::default()
    }
}
