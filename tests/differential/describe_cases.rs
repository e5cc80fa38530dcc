//! The APIs admin tools and UIs call to look at a broker, at every version Fjord advertises:
//! DescribeCluster, valid and refused. What differs between any two brokers is cleared before
//! comparing: broker ids (`compare::NODE_IDS`).

use kafka_protocol::messages::*;

use super::cases::versions;
use super::session::Session;

pub(super) fn run_all(session: &mut Session) {
    describe_cluster(session);
}

fn describe_cluster(session: &mut Session) {
    for v in versions(ApiKey::DescribeCluster) {
        for (label, operations, endpoint, fenced) in [
            ("", false, 1, false),
            ("with authorized operations", true, 1, false),
            ("controllers", false, 2, false),
            ("unknown endpoint type", false, 7, false),
            ("with fenced brokers", false, 1, true),
        ] {
            if (endpoint != 1 && v < 1) || (fenced && v < 2) {
                continue;
            }
            let mut request = DescribeClusterRequest::default();
            request.include_cluster_authorized_operations = operations;
            request.endpoint_type = endpoint;
            request.include_fenced_brokers = fenced;
            session.exchange(
                format!("describe_cluster v{v} {label}").trim_end().to_string(),
                ApiKey::DescribeCluster,
                v,
                &request,
                |_: &mut DescribeClusterResponse| {},
            );
        }
    }
}
