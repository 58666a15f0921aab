//! Plugin lifecycle: dial the runtime's NRI socket, start the mux, serve the Plugin
//! service on conn 1 *before* registering (Configure may arrive before the
//! RegisterPlugin response), register on conn 2, then live until the trunk closes. When
//! it closes (containerd restart) or cannot be dialed, retry with exponential backoff;
//! each new session re-registers and gets a fresh Configure and Synchronize.

use std::sync::Arc;

use plexus_proto::nri::RegisterPluginRequest;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{Backoff, Config};
use crate::error::{Error, Result};
use crate::event::Forwarder;
use crate::mux::{Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN};
use crate::service::{PluginService, RUNTIME_SERVICE};
use crate::ttrpc::{client::Client, server};

/// The NRI plugin: configuration plus the forwarder shared by all sessions.
#[derive(Debug)]
pub struct Plugin {
    config: Config,
    forwarder: Arc<Forwarder>,
}

/// The encoded RegisterPluginRequest for `name` and `idx`.
pub fn register_request(name: &str, idx: &str) -> Vec<u8> {
    RegisterPluginRequest {
        plugin_name: name.to_owned(),
        plugin_idx: idx.to_owned(),
        nri_version: String::new(),
    }
    .encode_to_vec()
}

impl Plugin {
    /// Validates `config` and prepares the (lazy) channel to plexusd.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let channel = plexus_client::channel_lazy(&config.plexusd_socket);
        let forwarder = Forwarder::new(
            channel,
            config.plexusd_socket.clone(),
            config.background_timeout,
        );
        Ok(Self {
            config,
            forwarder: Arc::new(forwarder),
        })
    }

    /// Runs forever: connect, register, serve, and reconnect with backoff.
    pub async fn run(&self) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            match self.connect_and_serve(&mut backoff).await {
                Ok(()) => tracing::info!("runtime closed the NRI connection; reconnecting"),
                Err(err) => tracing::warn!(error = %err, "NRI session failed"),
            }
            let delay = backoff.next_delay();
            tracing::debug!(?delay, "waiting before reconnecting to the runtime");
            tokio::time::sleep(delay).await;
        }
    }

    async fn connect_and_serve(&self, backoff: &mut Backoff) -> Result<()> {
        let path = &self.config.nri_socket;
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| Error::ConnectRuntime {
                path: path.clone(),
                source,
            })?;
        self.run_session(stream, || backoff.reset()).await
    }

    /// One session over an established trunk `io`. `on_registered` runs once the
    /// runtime accepted the registration. Returns when the trunk closes.
    pub async fn run_session<T, F>(&self, io: T, on_registered: F) -> Result<()>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
        F: FnOnce(),
    {
        let (mux, mut readers) = Mux::start(io, &[PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN]);
        let (Some(plugin_conn), Some(runtime_conn)) = (
            readers.remove(&PLUGIN_SERVICE_CONN),
            readers.remove(&RUNTIME_SERVICE_CONN),
        ) else {
            unreachable!("both conns were opened above");
        };
        let service = Arc::new(PluginService::new(
            self.forwarder.clone(),
            self.config.deadline,
        ));
        let serving = tokio::spawn(server::serve(
            plugin_conn,
            mux.writer(PLUGIN_SERVICE_CONN),
            service,
        ));
        let client = Client::new(runtime_conn, mux.writer(RUNTIME_SERVICE_CONN));
        let (name, idx) = (&self.config.plugin_name, &self.config.plugin_idx);
        let registered = client
            .call(
                RUNTIME_SERVICE,
                "RegisterPlugin",
                &register_request(name, idx),
                0,
                self.config.register_timeout,
            )
            .await;
        if let Err(cause) = registered {
            serving.abort();
            return Err(Error::Register {
                name: name.clone(),
                idx: idx.clone(),
                cause,
            });
        }
        tracing::info!(plugin = %format!("{idx}-{name}"), "registered with the runtime");
        on_registered();
        mux.closed().await;
        // The server ends once the trunk reader is gone (in-flight handlers finish on
        // their own, bounded by the event deadline).
        let _ = serving.await;
        Ok(())
    }
}
