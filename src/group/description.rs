//! DescribeGroups and ListGroups: what the coordinator tells of its groups.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{Coordinator, GroupState};

/// A described group, for DescribeGroups and ListGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

impl Coordinator {
    /// A group as DescribeGroups tells it; `None` for a group this coordinator does not know.
    pub fn describe(&self, group_id: &str) -> Result<Option<GroupDescription>, ResponseError> {
        if !self.owns(group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        let groups = self.groups.borrow();
        let Some(group) = groups.get(group_id) else { return Ok(None) };
        // As Kafka: the protocol and each member's metadata and assignment only once the
        // group is stable; before that they are not settled.
        let stable = group.state == GroupState::Stable;
        Ok(Some(GroupDescription {
            group_id: group_id.to_string(),
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                group.protocol.clone().unwrap_or_default()
            } else {
                String::new()
            },
            members: group
                .members
                .iter()
                .map(|(id, m)| {
                    let metadata = group
                        .protocol
                        .as_ref()
                        .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                        .map(|(_, md)| md.clone());
                    let (metadata, assignment) = if stable {
                        (metadata.unwrap_or_default(), m.assignment.clone())
                    } else {
                        Default::default()
                    };
                    (
                        id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        metadata,
                        assignment,
                    )
                })
                .collect(),
        }))
    }

    /// (group id, protocol type, state) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let groups = self.groups.borrow();
        let mut out: Vec<_> = groups
            .iter()
            .map(|(id, g)| {
                (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name())
            })
            .collect();
        out.sort();
        out
    }
}
