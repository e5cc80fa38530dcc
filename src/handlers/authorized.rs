//! Authorized operations: the bit fields Metadata (v8+) and DescribeGroups (v3+) return when a
//! client asks for them, one bit per Kafka `AclOperation` code. Without an authorizer Kafka
//! answers every operation the resource type supports; so does Fjord, which has no ACLs yet
//! (when it has, these become per principal). Not asked for, the field is `i32::MIN`, Kafka's
//! "omitted".

/// What a client gets when it did not ask.
pub(super) const OMITTED: i32 = i32::MIN;

// Kafka's AclOperation codes (org.apache.kafka.common.acl.AclOperation).
const READ: u32 = 3;
const WRITE: u32 = 4;
const CREATE: u32 = 5;
const DELETE: u32 = 6;
const ALTER: u32 = 7;
const DESCRIBE: u32 = 8;
const CLUSTER_ACTION: u32 = 9;
const DESCRIBE_CONFIGS: u32 = 10;
const ALTER_CONFIGS: u32 = 11;
const IDEMPOTENT_WRITE: u32 = 12;

const fn bits(operations: &[u32]) -> i32 {
    let mut field = 0i32;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i];
        i += 1;
    }
    field
}

/// The operations Kafka's authorizer knows for the cluster resource.
pub(super) const CLUSTER: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);
/// ... for a topic.
pub(super) const TOPIC: i32 =
    bits(&[READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);
/// ... for a group (group configs, KIP-848, made them describable and alterable in 4.x).
pub(super) const GROUP: i32 = bits(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

/// `operations` if the client asked for them, else `OMITTED`.
pub(super) fn if_asked(asked: bool, operations: i32) -> i32 {
    if asked {
        operations
    } else {
        OMITTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka 4.4 answers without an authorizer.
    #[test]
    fn fields_match_kafkas() {
        assert_eq!(CLUSTER, 8096);
        assert_eq!(TOPIC, 3576);
        assert_eq!(GROUP, 3400);
    }
}
