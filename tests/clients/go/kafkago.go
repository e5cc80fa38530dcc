package main

// segmentio/kafka-go: kafka.Client for the admin calls, a Writer (acks=all, kafka-go's Hash
// balancer: FNV-1a, not murmur2, but one partition per key), and Readers with a GroupID for
// the members (range balancer, eager rebalances: after each one a Reader reads its partitions
// from the committed offsets).
//
// kafka-go has no idempotent producer (its Writer never sends InitProducerId nor sequence
// numbers), so step 3 runs with acks=all only. The Reader does not report its assignment
// through its API; it logs it, and the member reads it from there: "subscribed to topics and
// partitions" starts a generation with its partitions, "stopped heartbeat" ends it.

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

type kafkaGo struct {
	bootstrap, topic, group string
	client                  *kafka.Client
	writer                  *kafka.Writer
}

func newKafkaGo(bootstrap, topic, group string) (Adapter, error) {
	client := &kafka.Client{Addr: kafka.TCP(bootstrap), Timeout: callTimeout}
	writer := &kafka.Writer{
		Addr:         kafka.TCP(bootstrap),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    sendBatch,
		BatchTimeout: 10 * time.Millisecond,
		ErrorLogger:  kafka.LoggerFunc(func(f string, a ...any) { logf("kafka-go writer: "+f, a...) }),
	}
	return &kafkaGo{bootstrap: bootstrap, topic: topic, group: group, client: client, writer: writer}, nil
}

func (k *kafkaGo) Client() string {
	return fmt.Sprintf("kafka-go %s (no idempotent producer)", versionOf("github.com/segmentio/kafka-go"))
}

func (k *kafkaGo) ListAll(ctx context.Context) (map[string]int, error) {
	meta, err := k.client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		out[t.Name] = len(t.Partitions)
	}
	return out, nil
}

func (k *kafkaGo) Describe(ctx context.Context, topic string) (int, error) {
	meta, err := k.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range meta.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return 0, t.Error
			}
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("Metadata([%s]) did not return it", topic)
}

func (k *kafkaGo) AdminCalls(ctx context.Context, extra, group string, done func(string)) error {
	created, err := k.client.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: extra, NumPartitions: adminPartitions, ReplicationFactor: 1}},
	})
	if err == nil {
		err = created.Errors[extra]
	}
	if err != nil {
		return fmt.Errorf("CreateTopics(%s): %w", extra, err)
	}
	done("CreateTopics")
	configs, err := k.client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{
		Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: extra}},
	})
	if err != nil {
		return fmt.Errorf("DescribeConfigs(%s): %w", extra, err)
	}
	if len(configs.Resources) != 1 || configs.Resources[0].Error != nil || len(configs.Resources[0].ConfigEntries) == 0 {
		return fmt.Errorf("DescribeConfigs(%s): %+v", extra, configs.Resources)
	}
	logf("%s has %d configs", extra, len(configs.Resources[0].ConfigEntries))
	done("DescribeConfigs")
	deleted, err := k.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{extra}})
	if err == nil {
		err = deleted.Errors[extra]
	}
	if err != nil {
		return fmt.Errorf("DeleteTopics(%s): %w", extra, err)
	}
	done("DeleteTopics")

	listed, err := k.client.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err == nil {
		err = listed.Error
	}
	if err != nil {
		return fmt.Errorf("ListGroups: %w", err)
	}
	logf("groups: %+v", listed.Groups)
	done("ListGroups")
	described, err := k.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return fmt.Errorf("DescribeGroups(%s): %w", group, err)
	}
	for _, g := range described.Groups {
		if g.Error != nil {
			return fmt.Errorf("DescribeGroups(%s): %w", group, g.Error)
		}
		logf("group %s before step 4: %s", g.GroupID, g.GroupState)
	}
	done("DescribeGroups")
	if _, err := k.EndOffsets(ctx); err != nil {
		return fmt.Errorf("ListOffsets(%s): %w", k.topic, err)
	}
	done("ListOffsets")
	fetched, err := k.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{k.topic: {0, 1, 2}}})
	if err == nil {
		err = fetched.Error
	}
	if err != nil {
		return fmt.Errorf("OffsetFetch(%s): %w", group, err)
	}
	done("OffsetFetch")

	// A group of no members, made by committing an offset for it outside any generation,
	// then deleted.
	scratch := group + ".admin"
	committed, err := k.client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID:      scratch,
		GenerationID: -1,
		Topics:       map[string][]kafka.OffsetCommit{k.topic: {{Partition: 0, Offset: 0}}},
	})
	if err == nil {
		for _, p := range committed.Topics[k.topic] {
			if p.Error != nil {
				err = fmt.Errorf("partition %d: %w", p.Partition, p.Error)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("OffsetCommit(%s): %w", scratch, err)
	}
	done("OffsetCommit")
	deletedGroups, err := k.client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{scratch}})
	if err == nil {
		err = deletedGroups.Errors[scratch]
	}
	if err != nil {
		return fmt.Errorf("DeleteGroups(%s): %w", scratch, err)
	}
	done("DeleteGroups")
	return nil
}

func (k *kafkaGo) Produce(ctx context.Context, first, count int) (int, error) {
	acknowledged := 0
	for start := first; start < first+count; start += sendBatch {
		var batch []kafka.Message
		for i := start; i < min(start+sendBatch, first+count); i++ {
			key, value := record(i)
			batch = append(batch, kafka.Message{Key: key, Value: value})
		}
		if err := k.writer.WriteMessages(ctx, batch...); err != nil {
			var errs kafka.WriteErrors
			if errors.As(err, &errs) {
				return acknowledged, fmt.Errorf("%d of %d failed: %w", errs.Count(), len(batch), err)
			}
			return acknowledged, err
		}
		acknowledged += len(batch)
	}
	return acknowledged, nil
}

func (k *kafkaGo) EndOffsets(ctx context.Context) (map[int32]int64, error) {
	var reqs []kafka.OffsetRequest
	for p := 0; p < partitions; p++ {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	listed, err := k.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{k.topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	for _, p := range listed.Topics[k.topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		out[int32(p.Partition)] = p.LastOffset
	}
	if len(out) != partitions {
		return nil, fmt.Errorf("ListOffsets returned %v", listed.Topics)
	}
	return out, nil
}

func (k *kafkaGo) Close() {
	if err := k.writer.Close(); err != nil {
		logf("closing the writer: %v", err)
	}
}

type kafkaGoMember struct {
	k      *kafkaGo
	state  *MemberState
	reader *kafka.Reader
	cancel context.CancelFunc
	read   sync.WaitGroup
}

func (k *kafkaGo) Member(state *MemberState) Member {
	return &kafkaGoMember{k: k, state: state}
}

var subscribedPartition = regexp.MustCompile(`partition:(\d+)\}`)

// logged follows the Reader's log for its assignment.
func (m *kafkaGoMember) logged(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	logf("kafka-go %s: %s", m.state.name, strings.TrimSpace(line))
	switch {
	case strings.HasPrefix(format, "subscribed to topics and partitions"):
		var ps []int32
		for _, match := range subscribedPartition.FindAllStringSubmatch(line, -1) {
			p, _ := strconv.Atoi(match[1])
			ps = append(ps, int32(p))
		}
		m.state.joined(ps)
	case strings.HasPrefix(format, "stopped heartbeat"):
		m.state.rebalancing()
	}
}

func (m *kafkaGoMember) Start(ctx context.Context) error {
	m.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{m.k.bootstrap},
		GroupID:           m.k.group,
		Topic:             m.k.topic,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // synchronous commits
		HeartbeatInterval: heartbeatInterval,
		SessionTimeout:    sessionTimeout,
		MaxWait:           fetchMaxWait,
		Dialer:            &kafka.Dialer{ClientID: "fjord-matrix-" + strings.ReplaceAll(m.state.name, " ", "-"), Timeout: 10 * time.Second},
		Logger:            kafka.LoggerFunc(m.logged),
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { logf("kafka-go %s error: "+f, append([]any{m.state.name}, a...)...) }),
	})
	ctx, m.cancel = context.WithCancel(ctx)
	m.read.Add(1)
	go func() {
		defer m.read.Done()
		for {
			msg, err := m.reader.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() == nil {
					m.state.fail(fmt.Errorf("FetchMessage: %w", err))
				}
				return
			}
			m.state.message(int32(msg.Partition), msg.Offset, msg.Key, msg.Value)
		}
	}()
	return nil
}

func (m *kafkaGoMember) Commit(ctx context.Context, positions map[int32]int64) error {
	var msgs []kafka.Message
	for p, pos := range positions {
		if pos >= 0 {
			// CommitMessages commits the offset after each message.
			msgs = append(msgs, kafka.Message{Topic: m.k.topic, Partition: int(p), Offset: pos - 1})
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return m.reader.CommitMessages(ctx, msgs...)
}

func (m *kafkaGoMember) Close() error {
	if m.reader == nil {
		return nil
	}
	m.cancel()
	m.read.Wait()
	return m.reader.Close()
}
