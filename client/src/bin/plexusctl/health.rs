//! `plexusctl health`: asks plexusd's gRPC health service (`grpc.health.v1.Health/Check`)
//! whether a service is serving. Exit 0 when it is, 1 otherwise; the Helm chart's readiness
//! probe runs this inside the plexusd container.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::api_error;

/// Ask plexusd's health service whether it is serving.
#[derive(Debug, Args)]
pub struct Cmd {
    /// The gRPC service to ask about; empty means the server as a whole.
    #[arg(long, default_value = "plexus.v1.Node")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    timeout: u64,
}

impl Cmd {
    pub async fn run(self, socket: &Path) -> anyhow::Result<ExitCode> {
        let check = async {
            let channel = plexus_client::channel(socket).await?;
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: self.service.clone(),
                })
                .await
                .map_err(api_error)?
                .into_inner();
            anyhow::Ok(answer.status)
        };
        let status = tokio::time::timeout(Duration::from_secs(self.timeout), check)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no health answer from {} within {}s",
                    socket.display(),
                    self.timeout
                )
            })??;
        let name = ServingStatus::try_from(status)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN_STATUS");
        let service = if self.service.is_empty() {
            "(server)"
        } else {
            &self.service
        };
        println!("{service}: {name}");
        if status == ServingStatus::Serving as i32 {
            Ok(ExitCode::SUCCESS)
        } else {
            Ok(ExitCode::FAILURE)
        }
    }
}
