//! GPUs: NVIDIA ones from `nvidia-smi` (or their `/dev/nvidiaN` nodes without it), and others
//! from the kernel's DRM cards in `/sys/class/drm`.
use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use super::{command, tools, Gpu, Runner};

/// The GPUs of this host; an empty list when there are none or they cannot be seen.
pub(super) async fn probe<R: Runner>(runner: &R, timeout: Duration, path: &OsStr) -> Vec<Gpu> {
    let smi = tools::lookup(path, ["nvidia-smi"]).await.pop().flatten();
    let mut nvidia = match smi {
        Some(smi) => {
            let cmd = command(&smi, &["--query-gpu=index,name", "--format=csv,noheader"]);
            match runner.run_probe(cmd, timeout).await {
                Ok(out) if out.success() => parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)),
                Ok(out) => {
                    tracing::debug!("nvidia-smi {}", super::failure(&out));
                    Vec::new()
                }
                Err(e) => {
                    tracing::debug!(error = %e, "nvidia-smi failed");
                    Vec::new()
                }
            }
        }
        None => Vec::new(),
    };
    let scanned = tokio::task::spawn_blocking(|| {
        (
            nvidia_devices(Path::new("/dev")),
            drm_cards(Path::new("/sys/class/drm")),
        )
    })
    .await;
    let (devices, cards) = scanned.unwrap_or_default();
    if nvidia.is_empty() {
        nvidia = devices;
    }
    // The NVIDIA driver also makes a DRM card for each GPU: count those once.
    let have_nvidia = !nvidia.is_empty();
    let others = cards
        .into_iter()
        .filter(|g| !(have_nvidia && g.vendor == "nvidia"));
    nvidia.into_iter().chain(others).collect()
}

/// The lines of `nvidia-smi --query-gpu=index,name --format=csv,noheader`: `0, NVIDIA A100`.
fn parse_nvidia_smi(out: &str) -> Vec<Gpu> {
    out.lines()
        .filter_map(|line| {
            let (index, name) = line.split_once(',')?;
            let index: u32 = index.trim().parse().ok()?;
            Some(Gpu {
                vendor: "nvidia".to_string(),
                name: name.trim().to_string(),
                // The driver numbers its device nodes by the same minor as the index.
                device: format!("/dev/nvidia{index}"),
            })
        })
        .collect()
}

/// `/dev/nvidia0`, `/dev/nvidia1`, … in `dev` (not `nvidiactl` or `nvidia-uvm`).
fn nvidia_devices(dev: &Path) -> Vec<Gpu> {
    let mut found: Vec<(u32, Gpu)> = numbered(dev, "nvidia")
        .into_iter()
        .map(|(n, name)| {
            let gpu = Gpu {
                vendor: "nvidia".to_string(),
                name: String::new(),
                device: dev.join(name).to_string_lossy().into_owned(),
            };
            (n, gpu)
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, g)| g).collect()
}

/// The DRM cards of `sys_drm` (`/sys/class/drm/cardN`, not its connectors `cardN-HDMI-A-1`)
/// whose PCI vendor is a GPU maker. Others are skipped: a VM's virtual display (virtio, QEMU's
/// VGA) or a server's management controller (ASPEED) is a card, not a GPU to compute on.
fn drm_cards(sys_drm: &Path) -> Vec<Gpu> {
    let mut cards = numbered(sys_drm, "card");
    cards.sort();
    cards
        .into_iter()
        .filter_map(|(_, card)| {
            let pci = sys_drm.join(&card).join("device");
            let read = |file: &str| {
                std::fs::read_to_string(pci.join(file))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            let vendor_id = read("vendor")?;
            let vendor = vendor(&vendor_id)?;
            let name = read("product_name").unwrap_or_else(|| {
                format!("PCI {vendor_id}:{}", read("device").unwrap_or_default())
            });
            // A container computes through the render node; a card without one (an old
            // driver) is used through the card node.
            let render = numbered(&pci.join("drm"), "renderD").into_iter().min();
            let node = render.map_or(card, |(_, name)| name);
            Some(Gpu {
                vendor: vendor.to_string(),
                name,
                device: format!("/dev/dri/{node}"),
            })
        })
        .collect()
}

/// The GPU maker of a PCI vendor id (`0x10de`), when it is one.
fn vendor(pci_id: &str) -> Option<&'static str> {
    match pci_id.to_ascii_lowercase().as_str() {
        "0x10de" => Some("nvidia"),
        "0x1002" => Some("amd"),
        "0x8086" => Some("intel"),
        _ => None,
    }
}

/// Entries of `dir` named `prefix` then digits only, with their number.
fn numbered(dir: &Path, prefix: &str) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let digits = name.strip_prefix(prefix)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn pci_vendors_map_to_gpu_makers() {
        assert_eq!(vendor("0x10de"), Some("nvidia"));
        assert_eq!(vendor("0x1002"), Some("amd"));
        assert_eq!(vendor("0x8086"), Some("intel"));
        assert_eq!(vendor("0x10DE"), Some("nvidia"));
        for other in ["0x1af4", "0x1234", "0x1a03", "", "10de"] {
            assert_eq!(vendor(other), None, "{other}");
        }
    }

    #[test]
    fn nvidia_smi_lines_are_gpus() {
        let out = "0, NVIDIA A100-SXM4-40GB\n1, Tesla T4\n\nnot a gpu\n";
        let gpus = parse_nvidia_smi(out);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA A100-SXM4-40GB");
        assert_eq!(gpus[0].device, "/dev/nvidia0");
        assert_eq!(gpus[1].name, "Tesla T4");
        assert_eq!(gpus[1].device, "/dev/nvidia1");
        assert!(parse_nvidia_smi("").is_empty());
    }

    #[test]
    fn nvidia_device_nodes_are_gpus_in_order() {
        let dev = tempfile::tempdir().unwrap();
        for name in [
            "nvidia10",
            "nvidia2",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia",
            "null",
        ] {
            fs::write(dev.path().join(name), "").unwrap();
        }
        let gpus = nvidia_devices(dev.path());
        let devices: Vec<String> = gpus.iter().map(|g| g.device.clone()).collect();
        let at = |n: &str| dev.path().join(n).to_string_lossy().into_owned();
        assert_eq!(devices, [at("nvidia2"), at("nvidia10")]);
        assert!(gpus.iter().all(|g| g.vendor == "nvidia"));
        assert!(nvidia_devices(&dev.path().join("absent")).is_empty());
    }

    #[test]
    fn drm_cards_of_gpu_makers_are_gpus_with_their_render_node() {
        let sys = tempfile::tempdir().unwrap();
        let card = |name: &str, files: &[(&str, &str)], render: Option<&str>| {
            let device = sys.path().join(name).join("device");
            fs::create_dir_all(&device).unwrap();
            for (file, text) in files {
                fs::write(device.join(file), text).unwrap();
            }
            if let Some(r) = render {
                fs::create_dir_all(device.join("drm").join(r)).unwrap();
                fs::create_dir_all(device.join("drm").join(name)).unwrap();
            }
        };
        card(
            "card0",
            &[("vendor", "0x8086\n"), ("device", "0x56a0\n")],
            Some("renderD128"),
        );
        card(
            "card1",
            &[("vendor", "0x1002\n"), ("product_name", "Radeon Pro\n")],
            None,
        );
        // A virtual display: not a GPU.
        card("card2", &[("vendor", "0x1af4\n")], Some("renderD130"));
        // A connector of card0.
        fs::create_dir_all(sys.path().join("card0-HDMI-A-1")).unwrap();
        fs::create_dir_all(sys.path().join("renderD128")).unwrap();

        let gpus = drm_cards(sys.path());
        assert_eq!(
            gpus,
            [
                Gpu {
                    vendor: "intel".into(),
                    name: "PCI 0x8086:0x56a0".into(),
                    device: "/dev/dri/renderD128".into(),
                },
                Gpu {
                    vendor: "amd".into(),
                    name: "Radeon Pro".into(),
                    device: "/dev/dri/card1".into(),
                },
            ]
        );
        assert!(drm_cards(&sys.path().join("absent")).is_empty());
    }
}
