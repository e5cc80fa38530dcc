//! JoinGroup: a member (new, known, or static by its instance id) joins its group, which
//! starts a rebalance or joins the one being prepared; the answer comes when the join phase
//! ends (`rebalance.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::warn;

use super::{
    Coordinator, Group, GroupState, JoinRequest, JoinResult, Member, GROUPS_MAX,
    MEMBERS_PER_GROUP_MAX, MEMBER_METADATA_BYTES_MAX,
};

impl Coordinator {
    /// Handles a JoinGroup: either an immediate answer, or a receiver answered when the join
    /// phase completes.
    #[allow(clippy::result_large_err)] // the Err is the answer to send, built once per refused join
    pub fn join(&self, request: JoinRequest) -> Result<oneshot::Receiver<JoinResult>, JoinResult> {
        let group_id = request.group_id.clone();
        self.check_join(&request).map_err(|error| JoinResult::error(error, &request.member_id))?;
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(&group_id) && groups.len() >= GROUPS_MAX {
            warn!(group = %group_id, limit = GROUPS_MAX, "JoinGroup refused: too many groups");
            return Err(JoinResult::error(ResponseError::GroupMaxSizeReached, &request.member_id));
        }
        let group = groups.entry(group_id.clone()).or_insert_with(Group::new);
        if !fits(group, &request) {
            let error = ResponseError::InconsistentGroupProtocol;
            return Err(JoinResult::error(error, &request.member_id));
        }
        let member_id = self.member_id_of(&group_id, group, &request)?;
        if !group.members.contains_key(&member_id) && group.members.len() >= MEMBERS_PER_GROUP_MAX {
            warn!(group = %group_id, limit = MEMBERS_PER_GROUP_MAX, "JoinGroup refused: group is full");
            return Err(JoinResult::error(ResponseError::GroupMaxSizeReached, &member_id));
        }
        let now = Instant::now();
        let receiver = self.add_to_join(group, &member_id, request, now);
        if group.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(&group_id, group, now);
        }
        self.maybe_complete_join(&group_id, group, now);
        Ok(receiver)
    }

    /// Refuses a JoinGroup no group could take: without a group id, for a group coordinated
    /// elsewhere, with a session timeout out of bounds, without protocols, or with protocol
    /// metadata too large.
    fn check_join(&self, request: &JoinRequest) -> Result<(), ResponseError> {
        if request.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        if !self.owns(&request.group_id) {
            return Err(ResponseError::NotCoordinator);
        }
        if request.session_timeout_ms < self.config.session_timeout_ms_min
            || request.session_timeout_ms > self.config.session_timeout_ms_max
        {
            return Err(ResponseError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(ResponseError::InconsistentGroupProtocol);
        }
        if request.protocols.iter().any(|(_, m)| m.len() > MEMBER_METADATA_BYTES_MAX) {
            return Err(ResponseError::InvalidRequest);
        }
        Ok(())
    }

    /// The id the joining member goes by. A member without one gets a new one: a static
    /// member's replaces (and fences) the id its instance had, and a dynamic member on
    /// JoinGroup v4+ is first refused with MEMBER_ID_REQUIRED and its id. A member with one
    /// must be known (or have been given it by MEMBER_ID_REQUIRED), and a static member must
    /// be its instance's.
    #[allow(clippy::result_large_err)] // as `join`
    fn member_id_of(
        &self,
        group_id: &str,
        group: &mut Group,
        request: &JoinRequest,
    ) -> Result<String, JoinResult> {
        let member_id = request.member_id.clone();
        if member_id.is_empty() {
            let member_id = self.new_member_id(&request.client_id);
            match &request.group_instance_id {
                Some(instance) => fence_old_instance(group, instance, &member_id),
                None if request.require_known_member_id => {
                    return Err(require_member_id(group_id, group, &member_id, request));
                }
                None => {}
            }
            Ok(member_id)
        } else if !group.members.contains_key(&member_id)
            && group.pending.remove(&member_id).is_none()
        {
            Err(JoinResult::error(ResponseError::UnknownMemberId, &member_id))
        } else if let Some(instance) = &request.group_instance_id {
            if group.static_members.get(instance).is_some_and(|id| id != &member_id) {
                return Err(JoinResult::error(ResponseError::FencedInstanceId, &member_id));
            }
            group.static_members.insert(instance.clone(), member_id.clone());
            Ok(member_id)
        } else {
            Ok(member_id)
        }
    }

    /// Adds the member (or updates it from `request`) and leaves it waiting for the end of
    /// the join phase, through the receiver given back; a JoinGroup of it already waiting is
    /// answered REBALANCE_IN_PROGRESS. The group takes the request's protocol type if it has
    /// none yet or this is its only member.
    fn add_to_join(
        &self,
        group: &mut Group,
        member_id: &str,
        request: JoinRequest,
        now: Instant,
    ) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        let seq = self.next_member_seq.get() + 1;
        self.next_member_seq.set(seq);
        let member = group.members.entry(member_id.to_string()).or_insert_with(|| Member {
            instance_id: request.group_instance_id.clone(),
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            session_timeout: Duration::ZERO,
            rebalance_timeout: Duration::ZERO,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heartbeat: now,
            join_waiter: None,
            sync_waiter: None,
            joined_seq: seq,
        });
        member.session_timeout = Duration::from_millis(request.session_timeout_ms as u64);
        member.rebalance_timeout = Duration::from_millis(
            request.rebalance_timeout_ms.max(request.session_timeout_ms) as u64,
        );
        member.protocols = request.protocols;
        member.last_heartbeat = now;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        if let Some(old) = member.join_waiter.replace(sender) {
            let _ = old.send(JoinResult::error(ResponseError::RebalanceInProgress, member_id));
        }
        if group.protocol_type.is_none() || group.members.len() == 1 {
            group.protocol_type = Some(request.protocol_type);
        }
        receiver
    }
}

/// Whether a member with `request`'s protocols may join `group`: any may join an empty
/// group; otherwise it must have the group's protocol type and a protocol every member
/// supports.
fn fits(group: &Group, request: &JoinRequest) -> bool {
    if group.members.is_empty() {
        return true;
    }
    let same_type = group.protocol_type.as_deref() == Some(request.protocol_type.as_str());
    let shares_protocol = request.protocols.iter().any(|(name, _)| {
        group.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name))
    });
    same_type && shares_protocol
}

/// A static member rejoining without its id: the new id replaces the old one, which is
/// fenced (a JoinGroup of it waiting is answered FENCED_INSTANCE_ID).
fn fence_old_instance(group: &mut Group, instance: &str, member_id: &str) {
    let Some(old) = group.static_members.insert(instance.to_string(), member_id.to_string()) else {
        return;
    };
    if let Some(mut old_member) = group.members.remove(&old) {
        if let Some(waiter) = old_member.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(ResponseError::FencedInstanceId, &old));
        }
    }
    if group.leader.as_deref() == Some(old.as_str()) {
        group.leader = None;
    }
}

/// The MEMBER_ID_REQUIRED answer giving a new member its id, which it must join with
/// within its session timeout; GROUP_MAX_SIZE_REACHED if too many ids are out already.
fn require_member_id(
    group_id: &str,
    group: &mut Group,
    member_id: &str,
    request: &JoinRequest,
) -> JoinResult {
    if group.pending.len() >= MEMBERS_PER_GROUP_MAX {
        warn!(group = %group_id, limit = MEMBERS_PER_GROUP_MAX, "JoinGroup refused: too many pending member ids");
        return JoinResult::error(ResponseError::GroupMaxSizeReached, "");
    }
    let expiry = Instant::now() + Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    group.pending.insert(member_id.to_string(), expiry);
    JoinResult::error(ResponseError::MemberIdRequired, member_id)
}
