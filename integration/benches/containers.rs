//! What plexus-nri's CreateContainer subscription costs a container (issue 14): plexus-nri
//! holds back the containers of a pod whose setup goes on past its answer, so containerd
//! calls it for every container; for every other pod it answers at once, without a call to
//! plexusd. Side by side, alternating: containerd with its primary network only (NRI on, no
//! plugin: containerd calls nobody) and plexus on the NRI path with two networks. Each pod
//! gets one container from the local pause image; CRI CreateContainer and StartContainer
//! are timed, then the pod is deleted. Prints medians, p90 and the ratio to "primary only"
//! with its 95 % interval (`integration::stats`). `PLEXUS_BENCH_PODS` sets the pods per
//! side (200 by default). Figures, not assertions. Needs root.

use std::time::{Duration, Instant};

use plexus_integration::containerd::{self, Containerd};
use plexus_integration::cri::api;
use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::image::PAUSE_IMAGE;
use plexus_integration::stats::{percentile, ratio_interval};
use plexus_integration::{Env, PodSpec, plexus};

/// A pod with one container: (CreateContainer, StartContainer).
async fn one(c: &Containerd, name: &str, networks: Option<&str>) -> (Duration, Duration) {
    let mut spec = PodSpec::new(NAMESPACE, name);
    if let Some(nets) = networks {
        spec = spec.networks(nets);
    }
    let pod = c.run_pod(&spec).await.expect("RunPodSandbox");
    let config = api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: PAUSE_IMAGE.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let started = Instant::now();
    let id = c
        .cri()
        .create_container(&pod.id, config, spec.to_config())
        .await
        .expect("CreateContainer");
    let create = started.elapsed();
    let started = Instant::now();
    c.cri().start_container(&id).await.expect("StartContainer");
    let start = started.elapsed();
    c.cri().stop_container(&id, 0).await.expect("StopContainer");
    c.cri()
        .remove_container(&id)
        .await
        .expect("RemoveContainer");
    c.delete_pod(&pod).await.expect("delete the pod");
    (create, start)
}

/// One side's line; with `base` (primary only, same rounds) its ratio and interval.
fn line(label: &str, side: &[Duration], base: Option<&[Duration]>) {
    let mut t = side.to_vec();
    t.sort();
    let ratio = match base {
        None => "1.000x".to_owned(),
        Some(base) => ratio_interval(base, side).map_or("-".to_owned(), |r| r.to_string()),
    };
    println!(
        "  {label:<26} n={:<4} median {:>7.2} ms   p90 {:>7.2} ms   ratio {ratio}",
        t.len(),
        percentile(&t, 0.5).as_secs_f64() * 1e3,
        percentile(&t, 0.9).as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    plexus_integration::bench::require_root("containers");
    let n: usize = plexus_integration::bench::count("PLEXUS_BENCH_PODS", 200);
    let base = Containerd::start(containerd::Options {
        prefix: "plexus-bench-base".into(),
        ..containerd::Options::default()
    })
    .await
    .expect("start containerd");
    let nri = Env::start_with(
        containerd::Options::default(),
        plexus::Options {
            containerd_adoption: true,
            log_level: "info".into(),
            ..plexus::Options::default()
        },
    )
    .await
    .expect("start the NRI side");
    let networks = format!("{MACVLAN},{BRIDGE}");
    let sides: [(&Containerd, Option<&str>); 2] =
        [(&base, None), (&nri.containerd, Some(&networks))];
    for i in 0..3 {
        for (k, (c, nets)) in sides.iter().enumerate() {
            one(c, &format!("warm-{k}-{i}"), *nets).await;
        }
    }
    let mut t: [[Vec<Duration>; 2]; 2] = Default::default();
    for i in 0..n {
        for k in 0..sides.len() {
            let side = (i + k) % sides.len();
            let (c, nets) = sides[side];
            let (create, start) = one(c, &format!("pod-{side}-{i}"), nets).await;
            t[side][0].push(create);
            t[side][1].push(start);
        }
    }
    println!("\nA container per pod, {n} pods per side, alternating");
    for (m, title) in ["CreateContainer", "StartContainer"].iter().enumerate() {
        println!("{title}");
        line("primary only", &t[0][m], None);
        line("plexus NRI, 2 networks", &t[1][m], Some(&t[0][m]));
    }
}
