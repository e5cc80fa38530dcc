package main

// franz-go: kadm for the admin calls, a kgo producer (acks=all; idempotent by default,
// murmur2 key partitioning as the Java client), and kgo group consumers with franz-go's
// default balancer, cooperative-sticky (incremental rebalances: a member keeps reading the
// partitions it keeps and reads newly assigned ones from the committed offsets).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type franz struct {
	bootstrap, topic, group string
	cl                      *kgo.Client // the admin client's and the producer's
	adm                     *kadm.Client
}

func franzLogger(name string) kgo.Opt {
	return kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelWarn, func() string { return "kgo " + name + ": " }))
}

func newFranz(bootstrap, topic, group string) (Adapter, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ClientID("fjord-matrix"),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		franzLogger("admin+producer"),
	)
	if err != nil {
		return nil, err
	}
	return &franz{bootstrap: bootstrap, topic: topic, group: group, cl: cl, adm: kadm.NewClient(cl)}, nil
}

func (f *franz) Client() string {
	return fmt.Sprintf("franz-go %s (kadm %s)", versionOf("github.com/twmb/franz-go"), versionOf("github.com/twmb/franz-go/pkg/kadm"))
}

func (f *franz) ListAll(ctx context.Context) (map[string]int, error) {
	topics, err := f.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	if err := topics.Error(); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for name, t := range topics {
		out[name] = len(t.Partitions)
	}
	return out, nil
}

func (f *franz) Describe(ctx context.Context, topic string) (int, error) {
	topics, err := f.adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	t, ok := topics[topic]
	if !ok {
		return 0, fmt.Errorf("ListTopics(%s) did not return it", topic)
	}
	if t.Err != nil {
		return 0, t.Err
	}
	return len(t.Partitions), nil
}

func (f *franz) AdminCalls(ctx context.Context, extra, group string, done func(string)) error {
	if _, err := f.adm.CreateTopic(ctx, adminPartitions, 1, nil, extra); err != nil {
		return fmt.Errorf("CreateTopic(%s): %w", extra, err)
	}
	done("CreateTopics")
	configs, err := f.adm.DescribeTopicConfigs(ctx, extra)
	if err != nil {
		return fmt.Errorf("DescribeTopicConfigs(%s): %w", extra, err)
	}
	rc, err := configs.On(extra, nil)
	if err != nil || rc.Err != nil || len(rc.Configs) == 0 {
		return fmt.Errorf("DescribeTopicConfigs(%s): %v %v %+v", extra, err, rc.Err, configs)
	}
	logf("%s has %d configs", extra, len(rc.Configs))
	done("DescribeConfigs")
	deleted, err := f.adm.DeleteTopics(ctx, extra)
	if err == nil {
		err = deleted.Error()
	}
	if err != nil {
		return fmt.Errorf("DeleteTopics(%s): %w", extra, err)
	}
	done("DeleteTopics")

	listed, err := f.adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("ListGroups: %w", err)
	}
	logf("groups: %v", listed.Groups())
	done("ListGroups")
	described, err := f.adm.DescribeGroups(ctx, group)
	if err == nil {
		err = described.Error()
	}
	if err != nil {
		return fmt.Errorf("DescribeGroups(%s): %w", group, err)
	}
	logf("group %s before step 4: %s", group, described[group].State)
	done("DescribeGroups")
	ends, err := f.adm.ListEndOffsets(ctx, f.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("ListEndOffsets(%s): %w", f.topic, err)
	}
	done("ListOffsets")
	fetched, err := f.adm.FetchOffsets(ctx, group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		return fmt.Errorf("FetchOffsets(%s): %w", group, err)
	}
	done("OffsetFetch")

	var epochs kadm.OffsetForLeaderEpochRequest
	for p := int32(0); p < partitions; p++ {
		epochs.Add(f.topic, p, 0)
	}
	leaderEpochs, err := f.adm.OffsetForLeaderEpoch(ctx, epochs)
	if err != nil {
		return fmt.Errorf("OffsetForLeaderEpoch(%s): %w", f.topic, err)
	}
	for _, ps := range leaderEpochs {
		for _, e := range ps {
			if e.Err != nil {
				return fmt.Errorf("OffsetForLeaderEpoch(%s) partition %d: %w", f.topic, e.Partition, e.Err)
			}
		}
	}
	done("OffsetForLeaderEpoch")

	// A group of no members, made by committing an offset for it, then deleted.
	scratch := group + ".admin"
	var offsets kadm.Offsets
	offsets.Add(kadm.Offset{Topic: f.topic, Partition: 0, At: 0, LeaderEpoch: -1})
	if err := f.adm.CommitAllOffsets(ctx, scratch, offsets); err != nil {
		return fmt.Errorf("CommitOffsets(%s): %w", scratch, err)
	}
	done("OffsetCommit")
	deletedGroups, err := f.adm.DeleteGroups(ctx, scratch)
	if err == nil {
		err = deletedGroups.Error()
	}
	if err != nil {
		return fmt.Errorf("DeleteGroups(%s): %w", scratch, err)
	}
	done("DeleteGroups")
	return nil
}

func (f *franz) Produce(ctx context.Context, first, count int) (int, error) {
	acknowledged := 0
	for start := first; start < first+count; start += sendBatch {
		var batch []*kgo.Record
		for i := start; i < min(start+sendBatch, first+count); i++ {
			key, value := record(i)
			batch = append(batch, &kgo.Record{Key: key, Value: value})
		}
		if err := f.cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			return acknowledged, err
		}
		acknowledged += len(batch)
	}
	return acknowledged, nil
}

func (f *franz) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	listed, err := f.adm.ListEndOffsets(ctx, f.topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

func (f *franz) Close() {
	f.cl.Close()
}

type franzMember struct {
	f      *franz
	state  *MemberState
	cl     *kgo.Client
	cancel context.CancelFunc
	polled sync.WaitGroup
}

func (f *franz) Member(state *MemberState) Member {
	return &franzMember{f: f, state: state}
}

func (m *franzMember) Start(ctx context.Context) error {
	mine := func(assigned map[string][]int32) []int32 { return assigned[m.f.topic] }
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(m.f.bootstrap),
		kgo.ClientID("fjord-matrix-"+m.state.name),
		kgo.ConsumerGroup(m.f.group),
		kgo.ConsumeTopics(m.f.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(sessionTimeout),
		kgo.HeartbeatInterval(heartbeatInterval),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { m.state.assigned(mine(a)) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { m.state.revoked(mine(r)) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, l map[string][]int32) { m.state.revoked(mine(l)) }),
		franzLogger(m.state.name),
	)
	if err != nil {
		return err
	}
	m.cl = cl
	ctx, m.cancel = context.WithCancel(ctx)
	m.polled.Add(1)
	go func() {
		defer m.polled.Done()
		for {
			fetches := cl.PollFetches(ctx)
			if fetches.IsClientClosed() || ctx.Err() != nil {
				return
			}
			fetches.EachError(func(topic string, partition int32, err error) {
				if !errors.Is(err, context.Canceled) {
					m.state.fail(fmt.Errorf("fetch %s/%d: %w", topic, partition, err))
				}
			})
			fetches.EachRecord(func(r *kgo.Record) {
				m.state.message(r.Partition, r.Offset, r.Key, r.Value)
			})
		}
	}()
	return nil
}

func (m *franzMember) stopPolling() {
	if m.cancel != nil {
		m.cancel()
		m.polled.Wait()
	}
}

func (m *franzMember) Commit(ctx context.Context, positions map[int32]int64) error {
	m.stopPolling()
	offsets := map[int32]kgo.EpochOffset{}
	for p, pos := range positions {
		if pos >= 0 {
			offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: pos}
		}
	}
	if len(offsets) == 0 {
		return nil
	}
	var commitErr error
	m.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{m.f.topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				commitErr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						commitErr = fmt.Errorf("partition %d: %w", p.Partition, err)
					}
				}
			}
		})
	return commitErr
}

func (m *franzMember) Close() error {
	m.stopPolling()
	if m.cl != nil {
		m.cl.Close()
	}
	return nil
}
