//! Cluster region -> grid zone.
//!
//! Forecast providers speak grid zones (Electricity Maps `DE`, WattTime `CAISO_NORTH`, UK
//! `regionid:13`); clusters speak cloud regions (`eu-central-1`, `westeurope`). A shipped
//! table (`data/regions.yaml`, ~70 AWS/GCP/Azure regions) maps one to the other, extended by
//! `--region-map` / `--region-map-file`.
//!
//! Resolution order, first match wins ([`resolve`]):
//! 1. the job's spec override,
//! 2. the operator flag,
//! 3. the nodes' `topology.kubernetes.io/region` label, mapped through the table.
//!
//! A spec or flag value that is a cloud region in the table is mapped; any other value is
//! taken as the provider's own region name (so `spec.region: DE` just works). A node label
//! must be in the table: guessing a zone for an unknown data centre would plan on the wrong
//! grid, so it is an error naming the region and the flag that maps it.
//!
//! Everything here is pure; the controller lists node labels and passes them in.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::forecast::ProviderKind;

/// The node label Kubernetes cloud providers set.
pub const NODE_REGION_LABEL: &str = "topology.kubernetes.io/region";

const SHIPPED: &str = include_str!("../data/regions.yaml");

#[derive(Debug, Error, Clone, PartialEq)]
pub enum RegionError {
    #[error("unknown cloud region {region:?}: map it with --region-map {region}=ZONE (e.g. {region}=DE), CARBONSHIFT_REGION_MAP, or set spec.region on the job")]
    Unknown { region: String },
    #[error("cloud region {region:?} (zone {zone}) has no {provider} region: map it with --region-map {region}={zone},{key}=REGION")]
    NoProviderRegion {
        region: String,
        zone: String,
        provider: &'static str,
        key: &'static str,
    },
    #[error("nodes span several regions ({}): set spec.region on the job or --region on the operator", regions.join(", "))]
    Ambiguous { regions: Vec<String> },
    #[error("no region known: no node has the label topology.kubernetes.io/region; set spec.region on the job or --region on the operator")]
    NoRegion,
    #[error("bad region mapping {entry:?}: {reason} (form: CLOUD_REGION=ZONE[,watttime=REGION][,uk=regionid:N][,carbon-aware-sdk=LOCATION])")]
    BadEntry { entry: String, reason: String },
    #[error("region map {path}: {detail}")]
    File { path: String, detail: String },
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegionEntry {
    #[serde(default)]
    pub cloud: Option<String>,
    pub region: String,
    #[serde(default)]
    pub location: Option<String>,
    /// Electricity Maps zone.
    pub zone: String,
    #[serde(default)]
    pub watttime: Option<String>,
    /// UK Carbon Intensity region (`national`, `regionid:N`, `postcode:X`).
    #[serde(default)]
    pub uk: Option<String>,
    /// Carbon Aware SDK location; defaults to the cloud region name (the SDK's native
    /// location names are Azure region names).
    #[serde(default, rename = "carbon-aware-sdk", alias = "carbon_aware_sdk")]
    pub carbon_aware_sdk: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FileShape {
    Table { regions: Vec<RegionEntry> },
    Map(BTreeMap<String, String>),
}

/// Cloud region -> zones, keyed case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct RegionTable {
    entries: BTreeMap<String, RegionEntry>,
}

/// Where a resolved region came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Spec,
    Flag,
    NodeLabel,
}

/// The outcome of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The name to pass to the provider (and to `Cache::get`).
    pub provider_region: String,
    /// The Electricity Maps zone (embedded traces), when known.
    pub zone: Option<String>,
    /// The cloud region it was mapped from, if it was one.
    pub cloud_region: Option<String>,
    pub origin: Origin,
}

impl RegionTable {
    /// The table shipped in the binary.
    pub fn shipped() -> Result<Self, RegionError> {
        let mut t = RegionTable::default();
        t.merge_str(SHIPPED, "data/regions.yaml")?;
        Ok(t)
    }

    /// Adds (or overrides) entries from YAML/JSON text: either `{regions: [...]}` as in the
    /// shipped table or a plain `{cloud-region: zone}` map.
    pub fn merge_str(&mut self, text: &str, name: &str) -> Result<(), RegionError> {
        let shape: FileShape = serde_yaml::from_str(text).map_err(|e| RegionError::File {
            path: name.into(),
            detail: e.to_string(),
        })?;
        match shape {
            FileShape::Table { regions } => {
                for e in regions {
                    self.insert(e);
                }
            }
            FileShape::Map(m) => {
                for (region, zone) in m {
                    self.insert(RegionEntry {
                        cloud: None,
                        region,
                        location: None,
                        zone,
                        watttime: None,
                        uk: None,
                        carbon_aware_sdk: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// As [`RegionTable::merge_str`] from a file.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), RegionError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegionError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        self.merge_str(&text, &path.display().to_string())
    }

    /// Adds one `CLOUD_REGION=ZONE[,watttime=R][,uk=U][,carbon-aware-sdk=L]` mapping.
    pub fn add_entry(&mut self, spec: &str) -> Result<(), RegionError> {
        let bad = |reason: &str| RegionError::BadEntry {
            entry: spec.into(),
            reason: reason.into(),
        };
        let (region, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
        let mut parts = rest.split(',');
        let zone = parts.next().unwrap_or_default().trim();
        if region.trim().is_empty() || zone.is_empty() {
            return Err(bad("empty region or zone"));
        }
        let mut e = RegionEntry {
            cloud: None,
            region: region.trim().into(),
            location: None,
            zone: zone.into(),
            watttime: None,
            uk: None,
            carbon_aware_sdk: None,
        };
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| bad("an option without '='"))?;
            let v = Some(v.trim().to_string()).filter(|v| !v.is_empty());
            match k.trim() {
                "watttime" => e.watttime = v,
                "uk" | "uk-carbon-intensity" => e.uk = v,
                "carbon-aware-sdk" | "cas" => e.carbon_aware_sdk = v,
                _ => return Err(bad("options are watttime, uk, carbon-aware-sdk")),
            }
        }
        self.insert(e);
        Ok(())
    }

    fn insert(&mut self, e: RegionEntry) {
        self.entries.insert(e.region.to_ascii_lowercase(), e);
    }

    pub fn get(&self, cloud_region: &str) -> Option<&RegionEntry> {
        self.entries.get(&cloud_region.trim().to_ascii_lowercase())
    }

    /// The provider's region name for a table entry.
    pub fn provider_region(
        entry: &RegionEntry,
        provider: ProviderKind,
    ) -> Result<String, RegionError> {
        let none = |p: &'static str, key: &'static str| RegionError::NoProviderRegion {
            region: entry.region.clone(),
            zone: entry.zone.clone(),
            provider: p,
            key,
        };
        match provider {
            ProviderKind::Embedded | ProviderKind::File | ProviderKind::Electricitymaps => {
                Ok(entry.zone.clone())
            }
            ProviderKind::Watttime => entry
                .watttime
                .clone()
                .ok_or_else(|| none("WattTime", "watttime")),
            ProviderKind::CarbonAwareSdk => Ok(entry
                .carbon_aware_sdk
                .clone()
                .unwrap_or_else(|| entry.region.clone())),
            ProviderKind::UkCarbonIntensity => match &entry.uk {
                Some(u) => Ok(u.clone()),
                None if entry.zone.eq_ignore_ascii_case("GB") => Ok("national".into()),
                None => Err(none("UK Carbon Intensity", "uk")),
            },
        }
    }

    /// The Electricity Maps zone for a provider region name (for the embedded fallback):
    /// WattTime regions and Carbon Aware SDK locations are looked up in the table, UK
    /// regions are `GB`; anything else is taken to be a zone already.
    pub fn zone_for(&self, provider: ProviderKind, provider_region: &str) -> String {
        let r = provider_region.trim();
        let found = self.entries.values().find(|e| match provider {
            ProviderKind::Watttime => e
                .watttime
                .as_deref()
                .is_some_and(|w| w.eq_ignore_ascii_case(r)),
            ProviderKind::CarbonAwareSdk => {
                e.region.eq_ignore_ascii_case(r)
                    || e.carbon_aware_sdk
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(r))
            }
            _ => false,
        });
        match (provider, found) {
            (_, Some(e)) => e.zone.clone(),
            (ProviderKind::UkCarbonIntensity, None) => "GB".into(),
            _ => r.to_string(),
        }
    }
}

/// Resolves the provider region for a job: spec override, then operator flag, then the
/// nodes' region label through the table. `node_regions` are the label values of the
/// cluster's nodes (duplicates and empty strings are fine).
pub fn resolve(
    spec_region: Option<&str>,
    flag: Option<&str>,
    node_regions: &[String],
    table: &RegionTable,
    provider: ProviderKind,
) -> Result<Resolved, RegionError> {
    let given = |v: &str, origin: Origin| -> Result<Resolved, RegionError> {
        let v = v.trim();
        match table.get(v) {
            Some(e) => Ok(Resolved {
                provider_region: RegionTable::provider_region(e, provider)?,
                zone: Some(e.zone.clone()),
                cloud_region: Some(e.region.clone()),
                origin,
            }),
            None => Ok(Resolved {
                provider_region: v.to_string(),
                zone: Some(table.zone_for(provider, v)),
                cloud_region: None,
                origin,
            }),
        }
    };
    if let Some(s) = spec_region.filter(|s| !s.trim().is_empty()) {
        return given(s, Origin::Spec);
    }
    if let Some(f) = flag.filter(|s| !s.trim().is_empty()) {
        return given(f, Origin::Flag);
    }
    let mut distinct: Vec<&str> = node_regions
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    distinct.sort_unstable();
    distinct.dedup();
    match distinct.as_slice() {
        [] => Err(RegionError::NoRegion),
        [one] => {
            let e = table.get(one).ok_or_else(|| RegionError::Unknown {
                region: one.to_string(),
            })?;
            Ok(Resolved {
                provider_region: RegionTable::provider_region(e, provider)?,
                zone: Some(e.zone.clone()),
                cloud_region: Some(e.region.clone()),
                origin: Origin::NodeLabel,
            })
        }
        many => Err(RegionError::Ambiguous {
            regions: many.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RegionTable {
        RegionTable::shipped().unwrap()
    }

    #[test]
    fn shipped_table_is_large_and_well_formed() {
        let t = table();
        assert!(t.entries.len() >= 40, "{}", t.entries.len());
        for (cloud, region, zone) in [
            ("aws", "eu-central-1", "DE"),
            ("aws", "us-west-1", "US-CAL-CISO"),
            ("gcp", "europe-west9", "FR"),
            ("gcp", "europe-west1", "BE"),
            ("azure", "westeurope", "NL"),
            ("azure", "canadaeast", "CA-QC"),
            ("azure", "switzerlandnorth", "CH"),
        ] {
            let e = t.get(region).unwrap();
            assert_eq!(e.zone, zone);
            assert_eq!(e.cloud.as_deref(), Some(cloud));
        }
        for e in t.entries.values() {
            assert!(!e.zone.is_empty() && e.zone == e.zone.trim(), "{e:?}");
        }
    }

    #[test]
    fn resolution_order() {
        let t = table();
        let nodes = vec!["eu-central-1".to_string(), "eu-central-1".to_string()];
        let p = ProviderKind::Electricitymaps;
        let r = resolve(Some("FR"), Some("eu-west-2"), &nodes, &t, p).unwrap();
        assert_eq!((r.provider_region.as_str(), r.origin), ("FR", Origin::Spec));
        let r = resolve(None, Some("eu-west-2"), &nodes, &t, p).unwrap();
        assert_eq!((r.provider_region.as_str(), r.origin), ("GB", Origin::Flag));
        let r = resolve(Some(" "), None, &nodes, &t, p).unwrap();
        assert_eq!(
            (r.provider_region.as_str(), r.origin),
            ("DE", Origin::NodeLabel)
        );
        assert_eq!(r.cloud_region.as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn per_provider_names() {
        let t = table();
        let w = resolve(
            None,
            None,
            &["us-west-1".into()],
            &t,
            ProviderKind::Watttime,
        )
        .unwrap();
        assert_eq!(w.provider_region, "CAISO_NORTH");
        assert_eq!(w.zone.as_deref(), Some("US-CAL-CISO"));
        let u = resolve(
            None,
            None,
            &["uksouth".into()],
            &t,
            ProviderKind::UkCarbonIntensity,
        )
        .unwrap();
        assert_eq!(u.provider_region, "regionid:13");
        let c = resolve(
            None,
            None,
            &["westeurope".into()],
            &t,
            ProviderKind::CarbonAwareSdk,
        )
        .unwrap();
        assert_eq!(c.provider_region, "westeurope");
        let e = resolve(
            None,
            None,
            &["eu-central-1".into()],
            &t,
            ProviderKind::Watttime,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("--region-map eu-central-1=DE,watttime="),
            "{e}"
        );
        assert_eq!(
            t.zone_for(ProviderKind::Watttime, "CAISO_NORTH"),
            "US-CAL-CISO"
        );
        assert_eq!(
            t.zone_for(ProviderKind::UkCarbonIntensity, "regionid:13"),
            "GB"
        );
        assert_eq!(t.zone_for(ProviderKind::Electricitymaps, "DE"), "DE");
    }

    #[test]
    fn errors_name_the_region_and_the_fix() {
        let t = table();
        let e = resolve(
            None,
            None,
            &["mars-north-1".into()],
            &t,
            ProviderKind::Embedded,
        )
        .unwrap_err();
        assert_eq!(
            e,
            RegionError::Unknown {
                region: "mars-north-1".into()
            }
        );
        assert!(e.to_string().contains("--region-map mars-north-1=ZONE"));
        let e = resolve(
            None,
            None,
            &["eu-west-1".into(), "us-east-1".into()],
            &t,
            ProviderKind::Embedded,
        )
        .unwrap_err();
        assert!(matches!(e, RegionError::Ambiguous { .. }));
        assert_eq!(
            resolve(None, None, &[], &t, ProviderKind::Embedded).unwrap_err(),
            RegionError::NoRegion
        );
    }

    #[test]
    fn extended_by_entries_and_files() {
        let mut t = table();
        t.add_entry("onprem-muc=DE,watttime=DE_X").unwrap();
        t.add_entry("eu-west-1=GB").unwrap(); // override
        assert_eq!(
            t.get("ONPREM-MUC").unwrap().watttime.as_deref(),
            Some("DE_X")
        );
        assert_eq!(t.get("eu-west-1").unwrap().zone, "GB");
        assert!(t.add_entry("nozone").is_err());
        assert!(t.add_entry("a=B,colour=red").is_err());
        t.merge_str("{\"dc-1\": \"FI\"}", "inline").unwrap();
        assert_eq!(t.get("dc-1").unwrap().zone, "FI");
        t.merge_str("regions:\n  - {region: dc-2, zone: ES}\n", "inline")
            .unwrap();
        assert_eq!(t.get("dc-2").unwrap().zone, "ES");
        assert!(t.merge_str("[1, 2]", "inline").is_err());
    }
}
