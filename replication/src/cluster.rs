//! The static cluster file: which brokers exist, where they listen, where their data lives.
//!
//! ```toml
//! min-insync-replicas = 2          # optional defaults for new topics
//! replication-factor = 3
//!
//! [[broker]]
//! id = 0
//! address = "127.0.0.1:9092"
//! data-dir = "b0"                  # relative to the cluster file's directory
//! ```
//! The directory holding the cluster file is also the cluster's control directory: the
//! state file, the state lock and the liveness files live there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ReplicationError;

/// Brokers in one cluster file: bounds the controller's work per tick.
pub(crate) const CLUSTER_BROKERS_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BrokerEntry {
    pub id: i32,
    pub address: String,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClusterFile {
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    #[serde(default = "default_min_insync")]
    pub min_insync_replicas: i32,
    #[serde(rename = "broker")]
    pub brokers: Vec<BrokerEntry>,
    /// The directory of the cluster file (not stored in it).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn default_replication_factor() -> i16 {
    1
}

fn default_min_insync() -> i32 {
    1
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<ClusterFile, ReplicationError> {
        let fail = |reason: String| ReplicationError::ClusterFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let mut file: ClusterFile = toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
        file.dir = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        if file.dir.as_os_str().is_empty() {
            file.dir = PathBuf::from(".");
        }
        file.validate().map_err(fail)?;
        Ok(file)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.is_empty() || self.brokers.len() > CLUSTER_BROKERS_MAX {
            return Err(format!(
                "needs between 1 and {CLUSTER_BROKERS_MAX} brokers, has {}",
                self.brokers.len()
            ));
        }
        let mut ids: Vec<i32> = self.brokers.iter().map(|b| b.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.brokers.len() || ids[0] < 0 {
            return Err("broker ids must be distinct and at least 0".to_string());
        }
        for broker in &self.brokers {
            broker.address.parse::<SocketAddr>().map_err(|_e| {
                format!("broker {}: address {:?} is not HOST:PORT", broker.id, broker.address)
            })?;
        }
        if self.replication_factor < 1 || self.replication_factor as usize > self.brokers.len() {
            return Err(format!(
                "replication-factor {} must be between 1 and the {} brokers",
                self.replication_factor,
                self.brokers.len()
            ));
        }
        if self.min_insync_replicas < 1
            || self.min_insync_replicas > i32::from(self.replication_factor)
        {
            return Err(format!(
                "min-insync-replicas {} must be between 1 and replication-factor",
                self.min_insync_replicas
            ));
        }
        Ok(())
    }

    pub fn broker(&self, id: i32) -> Option<&BrokerEntry> {
        self.brokers.iter().find(|b| b.id == id)
    }

    /// A broker's data directory, resolved against the cluster directory.
    pub fn data_dir(&self, id: i32) -> Option<PathBuf> {
        self.broker(id).map(|b| {
            if b.data_dir.is_absolute() {
                b.data_dir.clone()
            } else {
                self.dir.join(&b.data_dir)
            }
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a cluster file serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_validate() {
        let text = r#"
            replication-factor = 3
            min-insync-replicas = 2
            [[broker]]
            id = 0
            address = "127.0.0.1:9092"
            data-dir = "b0"
            [[broker]]
            id = 1
            address = "127.0.0.1:9093"
            data-dir = "b1"
            [[broker]]
            id = 2
            address = "127.0.0.1:9094"
            data-dir = "/abs/b2"
        "#;
        let mut file: ClusterFile = toml::from_str(text).unwrap();
        file.dir = PathBuf::from("/c");
        assert!(file.validate().is_ok());
        assert_eq!(file.data_dir(0), Some(PathBuf::from("/c/b0")));
        assert_eq!(file.data_dir(2), Some(PathBuf::from("/abs/b2")));
        file.replication_factor = 4;
        assert!(file.validate().is_err());
        file.replication_factor = 3;
        file.brokers[1].id = 0;
        assert!(file.validate().is_err());
    }
}
